// A recovery point's files: list a directory, search by name, download one
// file, or a selection as a tar or zip archive streamed as it is made.
// Image/VM points and file points alike (point_files.h).
#include <algorithm>
#include <set>

#include "appliance/daemon.h"
#include "appliance/point_files.h"
#include "appliance/routes.h"
#include "restore/file_restore.h"

namespace haven::appliance {
namespace {

using restore::GuestEntry;
using restore::GuestType;

constexpr size_t kDefaultPage = 1000;
constexpr size_t kMaxPage = 10000;
constexpr size_t kDefaultResults = 100;
constexpr size_t kMaxResults = 1000;
constexpr size_t kMaxArchivePaths = 1000;

// Refuses query parameters a route does not take, naming the first.
Status OnlyParams(const ApiCall& call, const std::set<std::string>& known) {
  for (const auto& [name, value] : call.query)
    if (!known.count(name)) {
      std::string list;
      for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
      return InvalidArgument("unknown query parameter " + QuoteUntrusted(name) +
                             "; this takes " + list);
    }
  return OkStatus();
}

Result<size_t> Count(const ApiCall& call, const char* name, size_t dflt,
                     size_t min, size_t max) {
  const std::string* v = call.Query(name);
  if (!v) return dflt;
  char* end = nullptr;
  unsigned long long n = v->empty() || (*v)[0] == '-'
                             ? max + 1
                             : std::strtoull(v->c_str(), &end, 10);
  if (v->empty() || (end && *end != '\0') || n < min || n > max)
    return InvalidArgument(std::string(name) + " must be a number from " +
                           std::to_string(min) + " to " + std::to_string(max) +
                           ", not " + QuoteUntrusted(*v));
  return static_cast<size_t>(n);
}

std::string QueryOr(const ApiCall& call, const char* name,
                    const std::string& dflt = "") {
  const std::string* v = call.Query(name);
  return v ? *v : dflt;
}

Result<std::shared_ptr<PointTree>> Open(Services& s, const ApiCall& call,
                                        const std::string& disk,
                                        const std::string& partition) {
  return OpenPointTree(*s.open_repositories, *call.Param("repo"),
                       *call.Param("id"), disk, partition);
}

nlohmann::ordered_json Where(const PointTree& t, const std::string& path) {
  nlohmann::ordered_json j;
  j["repository"] = t.repository;
  j["point"] = t.found.point->id;
  j["kind"] = t.found.point->kind;
  if (!t.disk.empty()) {
    j["disk"] = t.disk;
    j["partition"] = t.partition;
  }
  j["fs"] = t.fs_type;
  j["path"] = path;
  return j;
}

}  // namespace

Response ListPointFiles(const ApiCall& call, const PointTreeOpener& open) {
  if (Status st =
          OnlyParams(call, {"path", "disk", "partition", "offset", "limit"});
      !st.ok())
    return StatusResponse(st);
  auto path = CheckGuestPath(QueryOr(call, "path", "/"));
  if (!path.ok()) return StatusResponse(path.status().WithContext("path"));
  auto offset = Count(call, "offset", 0, 0, SIZE_MAX / 2);
  auto limit = Count(call, "limit", kDefaultPage, 1, kMaxPage);
  if (!offset.ok()) return StatusResponse(offset.status());
  if (!limit.ok()) return StatusResponse(limit.status());
  auto t = open(QueryOr(call, "disk"), QueryOr(call, "partition"));
  if (!t.ok()) return StatusResponse(t.status());
  restore::GuestTree& tree = *(*t)->tree;
  auto entry = tree.Lookup(*path);
  if (!entry.ok()) return StatusResponse(entry.status());
  std::vector<GuestEntry> entries;
  if (entry->type == GuestType::kDir) {
    auto list = tree.List(*entry);
    if (!list.ok()) return StatusResponse(list.status());
    entries = std::move(*list);
    std::sort(entries.begin(), entries.end(),
              [](const GuestEntry& a, const GuestEntry& b) {
                return a.name < b.name;
              });
  } else {
    entries.push_back(*entry);
  }
  nlohmann::ordered_json j = Where(**t, *path);
  j["type"] = restore::GuestTypeName(entry->type);
  j["total"] = entries.size();
  j["offset"] = *offset;
  j["entries"] = nlohmann::ordered_json::array();
  const size_t end = std::min(entries.size(), *offset + *limit);
  for (size_t i = *offset; i < end; ++i)
    j["entries"].push_back(
        GuestEntryJson(entries[i], tree.has_unix_metadata()));
  j["next_offset"] = end < entries.size() ? nlohmann::ordered_json(end)
                                          : nlohmann::ordered_json(nullptr);
  return OkOrdered(j);
}

namespace {

Response ListFiles(Services& s, const ApiCall& call) {
  return ListPointFiles(
      call, [&](const std::string& disk, const std::string& partition) {
        return Open(s, call, disk, partition);
      });
}

Response SearchFiles(Services& s, const ApiCall& call) {
  if (Status st =
          OnlyParams(call, {"name", "path", "disk", "partition", "limit"});
      !st.ok())
    return StatusResponse(st);
  const std::string glob = QueryOr(call, "name");
  if (glob.empty() || glob.size() > 255 || glob.find('/') != std::string::npos)
    return ErrorJson(400,
                     "name must be a glob of one file name ('*.conf', "
                     "'passwd'), 1-255 bytes without '/'");
  auto path = CheckGuestPath(QueryOr(call, "path", "/"));
  if (!path.ok()) return StatusResponse(path.status().WithContext("path"));
  auto limit = Count(call, "limit", kDefaultResults, 1, kMaxResults);
  if (!limit.ok()) return StatusResponse(limit.status());
  auto t = Open(s, call, QueryOr(call, "disk"), QueryOr(call, "partition"));
  if (!t.ok()) return StatusResponse(t.status());
  restore::GuestTree& tree = *(*t)->tree;
  auto root = tree.Lookup(*path);
  if (!root.ok()) return StatusResponse(root.status());
  SearchLimits limits;
  limits.results = *limit;
  SearchResult found = SearchTree(tree, *root, *path, glob, limits);
  nlohmann::ordered_json results = nlohmann::ordered_json::array();
  for (const SearchHit& hit : found.hits) {
    nlohmann::ordered_json r =
        GuestEntryJson(hit.entry, tree.has_unix_metadata());
    r["path"] = hit.path;
    results.push_back(std::move(r));
  }
  nlohmann::ordered_json j = Where(**t, *path);
  j["name"] = glob;
  j["results"] = results;
  j["visited"] = found.visited;
  j["truncated"] = found.truncated.empty()
                       ? nlohmann::ordered_json(nullptr)
                       : nlohmann::ordered_json(found.truncated);
  return OkOrdered(j);
}

std::string Disposition(const std::string& file_name) {
  return "attachment; filename=\"" + file_name + "\"";
}

Response Download(Services& s, const ApiCall& call) {
  if (Status st = OnlyParams(call, {"path", "disk", "partition"}); !st.ok())
    return StatusResponse(st);
  const std::string* raw = call.Query("path");
  if (!raw) return ErrorJson(400, "path is required: the file to download");
  auto path = CheckGuestPath(*raw);
  if (!path.ok()) return StatusResponse(path.status().WithContext("path"));
  auto t = Open(s, call, QueryOr(call, "disk"), QueryOr(call, "partition"));
  if (!t.ok()) return StatusResponse(t.status());
  restore::GuestTree& tree = *(*t)->tree;
  auto entry = tree.Lookup(*path);
  if (!entry.ok()) return StatusResponse(entry.status());
  if (entry->type != GuestType::kFile)
    return ErrorJson(400, std::string("path is a ") +
                              restore::GuestTypeName(entry->type) +
                              ", not a regular file: download directories "
                              "with POST .../archive");
  if (entry->size > tree.max_file_size())
    return ErrorJson(500, "the file claims " + std::to_string(entry->size) +
                              " bytes, more than its volume holds: the "
                              "point's file system is damaged");
  Response r;
  r.headers.emplace_back("Content-Type", "application/octet-stream");
  std::string base = path->substr(path->rfind('/') + 1);
  r.headers.emplace_back("Content-Disposition",
                         Disposition(SafeDownloadName(base)));
  r.stream_length = entry->size;
  std::shared_ptr<PointTree> keep = *t;
  GuestEntry e = *entry;
  // Fewer bytes than the length (a damaged chunk) end the connection, so
  // the client never takes a short file as whole.
  r.stream = [keep, e](const BodyWriter& write) -> Status {
    return keep->tree->ReadFile(e, [&](uint64_t, const uint8_t* data,
                                       size_t len) {
      return write(std::string_view(reinterpret_cast<const char*>(data), len));
    });
  };
  return r;
}

struct ArchiveRequest {
  std::vector<std::string> paths;
  bool zip = false;
  std::string disk, partition;
};

Result<ArchiveRequest> ParseArchive(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object())
    return InvalidArgument(
        "the body must be a JSON object {\"paths\": [...], \"format\": "
        "\"tar\"|\"zip\"}");
  ArchiveRequest a;
  for (const auto& [key, value] : j.items()) {
    if (key == "paths") {
      if (!value.is_array() || value.empty() || value.size() > kMaxArchivePaths)
        return InvalidArgument("paths must be a list of 1 to " +
                               std::to_string(kMaxArchivePaths) + " paths");
      for (const auto& p : value) {
        if (!p.is_string()) return InvalidArgument("paths: not a string");
        auto checked = CheckGuestPath(p.get<std::string>());
        if (!checked.ok()) return checked.status().WithContext("paths");
        a.paths.push_back(*checked);
      }
    } else if (key == "format") {
      if (value != "tar" && value != "zip")
        return InvalidArgument("format must be \"tar\" or \"zip\"");
      a.zip = value == "zip";
    } else if (key == "disk" && value.is_string()) {
      a.disk = value.get<std::string>();
    } else if (key == "partition" && value.is_number_integer()) {
      a.partition = std::to_string(value.get<int64_t>());
    } else {
      return InvalidArgument("unknown or mistyped field " +
                             QuoteUntrusted(key) +
                             "; the fields are paths, format, disk (string), "
                             "partition (integer)");
    }
  }
  if (a.paths.empty()) return InvalidArgument("paths is required");
  return a;
}

// The JSON of an archive request: the body, or a browser form's field
// `request` (the dispatcher has taken csrf_token out of the form).
Result<std::string> ArchiveJson(const ApiCall& call) {
  if (!call.form) return call.request.body;
  for (const auto& [name, value] : *call.form)
    if (name != "request")
      return InvalidArgument("unknown form field " + QuoteUntrusted(name) +
                             "; a form has request (the JSON request) and "
                             "csrf_token");
  auto it = call.form->find("request");
  if (it == call.form->end())
    return InvalidArgument(
        "the form has no field request: the JSON request {\"paths\": "
        "[...], \"format\": \"tar\"|\"zip\"}");
  return it->second;
}

Response Archive(Services& s, const ApiCall& call) {
  if (Status st = OnlyParams(call, {}); !st.ok()) return StatusResponse(st);
  auto json = ArchiveJson(call);
  if (!json.ok()) return StatusResponse(json.status());
  auto req = ParseArchive(*json);
  if (!req.ok()) return StatusResponse(req.status());
  auto t = Open(s, call, req->disk, req->partition);
  if (!t.ok()) return StatusResponse(t.status());
  return PointArchive(std::move(t).value(), req->paths, req->zip);
}

}  // namespace

Response PointArchive(std::shared_ptr<PointTree> tree,
                      const std::vector<std::string>& paths, bool zip) {
  // Every path is looked up before the answer starts: a missing one is a
  // 404, not a cut-off archive.
  for (const std::string& p : paths) {
    auto e = tree->tree->Lookup(p);
    if (!e.ok()) return StatusResponse(e.status().WithContext(p));
  }
  const repository::Manifest& m = *tree->found.point;
  Response r;
  r.headers.emplace_back("Content-Type",
                         zip ? "application/zip" : "application/x-tar");
  r.headers.emplace_back(
      "Content-Disposition",
      Disposition(SafeDownloadName(m.name) + "-" + m.id.substr(0, 8) +
                  (zip ? ".zip" : ".tar")));
  r.chunked = true;
  std::shared_ptr<PointTree> keep = std::move(tree);
  r.stream = [keep, paths, zip](const BodyWriter& write) -> Status {
    restore::FileRestoreOptions o;
    o.target = zip ? restore::FileTarget::kZip : restore::FileTarget::kTar;
    o.archive_writer = write;
    // Entries that cannot be archived (invalid names, FIFOs in a zip) are
    // left out as `haven restore file --tar` leaves them out.
    auto st = restore::RestoreGuestFiles(*keep->tree, paths, o);
    if (!st.ok()) return st.status();
    // The answer has started: what was left out can only be logged (the
    // count; guest names stay out of the log).
    if (!st->problems.empty())
      Log("archive of point " + keep->found.point->id + " in " +
          keep->repository + ": " + std::to_string(st->problems.size()) +
          " entries left out (invalid names, name clashes, FIFOs or devices "
          "in a zip)");
    return OkStatus();
  };
  return r;
}

namespace {

nlohmann::json Q(const char* name, const char* description,
                 const char* type = "string", bool required = false) {
  return {{"name", name},
          {"in", "query"},
          {"required", required},
          {"description", description},
          {"schema", {{"type", type}}}};
}

nlohmann::json VolumeParams() {
  return nlohmann::json::array(
      {Q("disk", "image/VM points: the disk (default: the only one)"),
       Q("partition",
         "image/VM points: partition number as the layout numbers them "
         "(default: the only one with a readable file system)",
         "integer")});
}

nlohmann::json Errors(nlohmann::json responses) {
  responses["400"] = {
      {"description",
       "bad path (relative, '..' or '.' component, NUL or control "
       "character), bad disk/partition, unknown parameter"}};
  responses["404"] = {
      {"description", "no such repository, point or path in the point"}};
  return responses;
}

Route Make(const char* method, std::string path, std::string summary,
           nlohmann::json openapi, RouteHandler handler) {
  Route r;
  r.method = method;
  r.path = std::move(path);
  r.access = Access::kRole;
  r.role = Role::kAuditor;
  r.summary = std::move(summary);
  r.openapi = std::move(openapi);
  r.handler = std::move(handler);
  return r;
}

}  // namespace

std::vector<Route> FileRoutes(Services& s) {
  const std::string base = "/api/v1/points/{repo}/{id}";
  std::vector<Route> routes;
  nlohmann::json list_params = VolumeParams();
  list_params.push_back(Q("path", "absolute path in the point (default /)"));
  list_params.push_back(Q("offset", "paging: entries to skip", "integer"));
  list_params.push_back(
      Q("limit", "entries per page, 1-10000 (default 1000)", "integer"));
  routes.push_back(Make(
      "GET", base + "/files",
      "List a directory of a recovery point (image/VM points: inside a "
      "disk's file system; file points: the backed-up tree), sorted by name",
      {{"parameters", list_params},
       {"responses",
        Errors({{"200",
                 {{"description",
                   "{point, kind, disk, partition, fs, path, type, total, "
                   "offset, entries: [{name, type, size, mode, mode_bits, "
                   "uid, gid, mtime, link_target}], next_offset}"}}}})}},
      [&s](const ApiCall& c) { return ListFiles(s, c); }));

  nlohmann::json search_params = VolumeParams();
  search_params.push_back(
      Q("name", "glob of a file name ('*.conf'), no '/'", "string", true));
  search_params.push_back(Q("path", "directory to search under (default /)"));
  search_params.push_back(
      Q("limit", "most results, 1-1000 (default 100)", "integer"));
  routes.push_back(
      Make("GET", base + "/files/search",
           "Find files of a recovery point by name (bounded: results, 200,000 "
           "entries looked at, depth 64, 20 s)",
           {{"parameters", search_params},
            {"responses",
             Errors({{"200",
                      {{"description",
                        "{point, path, name, results: [entry + path], visited, "
                        "truncated: null or why the search stopped}"}}}})}},
           [&s](const ApiCall& c) { return SearchFiles(s, c); }));

  nlohmann::json download_params = VolumeParams();
  download_params.push_back(
      Q("path", "absolute path of a regular file", "string", true));
  routes.push_back(
      Make("GET", base + "/download",
           "Download one file of a recovery point, streamed with its length",
           {{"parameters", download_params},
            {"responses",
             Errors({{"200",
                      {{"description",
                        "the file's bytes (application/octet-stream, "
                        "Content-Disposition attachment); a damaged chunk ends "
                        "the connection before Content-Length bytes"}}}})}},
           [&s](const ApiCall& c) { return Download(s, c); }));

  nlohmann::json archive_schema = {
      {"type", "object"},
      {"required", {"paths"}},
      {"properties",
       {{"paths",
         {{"type", "array"},
          {"items", {{"type", "string"}}},
          {"description",
           "absolute paths; each goes in under its last component "
           "('/etc' -> etc/...), '/' puts in everything"}}},
        {"format", {{"type", "string"}, {"enum", {"tar", "zip"}}}},
        {"disk", {{"type", "string"}}},
        {"partition", {{"type", "integer"}}}}}};
  Route archive = Make(
      "POST", base + "/archive",
      "Download files and directory trees of a recovery point as one tar "
      "(pax) or zip archive, made as it is sent (chunked)",
      {{"description",
        "Takes a JSON body, or, so that a browser can save the archive "
        "through its own download manager instead of holding it in memory, "
        "an HTML form (application/x-www-form-urlencoded) whose field "
        "request is that JSON and whose field csrf_token is the session's "
        "CSRF token (the only route that takes the token from a form; a "
        "missing or wrong one is 403). Answers with Content-Disposition: "
        "attachment."},
       {"requestBody",
        {{"required", true},
         {"content",
          {{"application/json", {{"schema", archive_schema}}},
           {"application/x-www-form-urlencoded",
            {{"schema",
              {{"type", "object"},
               {"required", {"request"}},
               {"properties",
                {{"request",
                  {{"type", "string"},
                   {"description",
                    "the JSON request, as in application/json"}}},
                 {"csrf_token",
                  {{"type", "string"},
                   {"description",
                    "a console session's CSRF token (POST /api/v1/login, "
                    "GET /api/v1/me); not needed with a bearer "
                    "token"}}}}}}}}}}}}},
       {"responses",
        Errors({{"200",
                 {{"description",
                   "application/x-tar or application/zip, chunked; it ends "
                   "with its last chunk only when complete"}}}})}},
      [&s](const ApiCall& c) { return Archive(s, c); });
  archive.csrf_from_form = true;
  routes.push_back(std::move(archive));
  return routes;
}

}  // namespace haven::appliance
