// An enrolled agent's uploads and its own points (docs/agents.md,
// "Protocol"): /api/v1/agent/chunks/missing, /agent/chunks, /agent/points
// (commit and list), /agent/vm-points (commit), /agent/points/{id} and its
// files and archive (file backups only). Every
// route needs role agent (the dispatcher lets only an agent's credential
// call them) and touches only the caller's namespace: its own upload rows
// (agent_store.h) and the points whose manifest carries its agent id.
#include <set>

#include "appliance/agent_store.h"
#include "appliance/point_files.h"
#include "appliance/routes.h"
#include "base/json.h"

namespace haven::appliance {
namespace {

Response Refused(const AgentRefusal& r) {
  nlohmann::ordered_json j;
  j["error"] = r.error;
  if (r.status == 409) j["missing"] = r.missing;
  return Response::Json(r.status, DumpJson(j));
}

Response Octets(std::string body) {
  Response r;
  r.status = 200;
  r.headers.emplace_back("Content-Type", "application/octet-stream");
  r.body = std::move(body);
  return r;
}

Status OnlyParams(const ApiCall& call, const std::set<std::string>& known) {
  for (const auto& [name, value] : call.query)
    if (!known.count(name))
      return InvalidArgument("unknown query parameter " + QuoteUntrusted(name));
  return OkStatus();
}

Response Missing(Services& s, const ApiCall& call) {
  auto answer = s.agent_store->Missing(call.caller.agent_id, call.request.body);
  if (!answer.ok()) return StatusResponse(answer.status());
  return Octets(std::move(answer).value());
}

Response Chunks(Services& s, const ApiCall& call) {
  auto answer =
      s.agent_store->StoreChunks(call.caller.agent_id, call.request.body);
  if (!answer.ok()) return StatusResponse(answer.status());
  if (auto* refused = std::get_if<AgentRefusal>(&*answer))
    return Refused(*refused);
  const ChunksReceived& got = std::get<ChunksReceived>(*answer);
  nlohmann::ordered_json j;
  j["received"] = got.received;
  j["new"] = got.new_chunks;
  j["new_stored_bytes"] = got.new_stored_bytes;
  return OkOrdered(j);
}

// The answer to a commit (files or VM): 201 with the new point, 200 with
// the one a retried upload id made; `with_created` adds "created".
Response Committed(const Result<AgentAnswer<AgentCommit>>& answer,
                   bool with_created) {
  if (!answer.ok()) return StatusResponse(answer.status());
  if (auto* refused = std::get_if<AgentRefusal>(&answer.value()))
    return Refused(*refused);
  const AgentCommit& c = std::get<AgentCommit>(answer.value());
  nlohmann::ordered_json j;
  j["id"] = c.id;
  j["name"] = c.name;
  j["time"] = c.time;
  if (with_created) j["created"] = c.created;
  return Response::Json(c.created ? 201 : 200, DumpJson(j));
}

Response CommitPoint(Services& s, const ApiCall& call) {
  return Committed(
      s.agent_store->Commit(call.caller.agent_id, call.request.body), false);
}

Response CommitVmPoint(Services& s, const ApiCall& call) {
  return Committed(
      s.agent_store->CommitVm(call.caller.agent_id, call.request.body), true);
}

// The caller's point `id` of its repository: 404 when there is none, 403
// when it is another agent's (or no agent's).
Result<FoundPoint> OwnPoint(Services& s, const ApiCall& call,
                            std::string* repo) {
  const std::string& id = *call.Param("id");
  if (!repository::IsSnapshotId(id))
    return NotFound("no point " + QuoteUntrusted(id) +
                    ": a point id is 32 lower-case hex digits");
  HAVEN_ASSIGN_OR_RETURN(*repo,
                         s.agent_store->RepositoryFor(call.caller.agent_id));
  HAVEN_ASSIGN_OR_RETURN(FoundPoint found,
                         FindPoint(*s.open_repositories, *repo, id));
  if (found.point->agent_id != call.caller.agent_id)
    return PermissionDenied("point " + id + " belongs to another agent");
  return found;
}

Response ListOwn(Services& s, const ApiCall& call) {
  if (Status st = OnlyParams(call, {"kind"}); !st.ok())
    return StatusResponse(st);
  const std::string* kind = call.Query("kind");
  if (kind && *kind != "files" && *kind != "vm")
    return ErrorJson(400, "kind must be files or vm");
  auto repo = s.agent_store->RepositoryFor(call.caller.agent_id);
  if (!repo.ok()) return StatusResponse(repo.status());
  auto open = s.open_repositories->Get(*repo);
  if (!open.ok()) return StatusResponse(open.status());
  auto list = (*open)->Points();
  if (!list.ok()) return StatusResponse(list.status());
  nlohmann::ordered_json out;
  out["points"] = nlohmann::ordered_json::array();
  for (const auto& m : (*list)->points)  // newest first
    if (m->agent_id == call.caller.agent_id && (!kind || m->kind == *kind))
      out["points"].push_back(
          PointSummaryJson(*m, *repo, (*list)->protected_ids.count(m->id) > 0));
  return OkOrdered(out);
}

Response ShowOwn(Services& s, const ApiCall& call) {
  std::string repo;
  auto found = OwnPoint(s, call, &repo);
  if (!found.ok()) return StatusResponse(found.status());
  return OkOrdered(PointDetailJson(*found->point, repo, found->is_protected));
}

PointTreeOpener OwnTree(Services& s, const ApiCall& call) {
  return [&s, &call](const std::string& disk, const std::string& partition)
             -> Result<std::shared_ptr<PointTree>> {
    std::string repo;
    HAVEN_ASSIGN_OR_RETURN(FoundPoint found, OwnPoint(s, call, &repo));
    if (found.point->kind != "files")
      return FailedPrecondition(
          "point " + found.point->id + " is a " + found.point->kind +
          " point: files and archive serve file backups only");
    return OpenPointTree(std::move(found), repo, disk, partition);
  };
}

Response OwnFiles(Services& s, const ApiCall& call) {
  return ListPointFiles(call, OwnTree(s, call));
}

Response OwnArchive(Services& s, const ApiCall& call) {
  if (Status st = OnlyParams(call, {"path", "format"}); !st.ok())
    return StatusResponse(st);
  const std::string* raw = call.Query("path");
  if (!raw)
    return ErrorJson(400, "path is required: what to put in the archive");
  auto path = CheckGuestPath(*raw);
  if (!path.ok()) return StatusResponse(path.status().WithContext("path"));
  const std::string* format = call.Query("format");
  if (format && *format != "tar" && *format != "zip")
    return ErrorJson(400, "format must be tar or zip");
  auto tree = OwnTree(s, call)("", "");
  if (!tree.ok()) return StatusResponse(tree.status());
  return PointArchive(std::move(tree).value(), {*path},
                      format && *format == "zip");
}

Route Make(const char* method, std::string path, std::string summary,
           nlohmann::json openapi, RouteHandler handler) {
  Route r;
  r.method = method;
  r.path = std::move(path);
  r.access = Access::kRole;
  r.role = Role::kAgent;
  r.summary = std::move(summary);
  r.openapi = std::move(openapi);
  r.handler = std::move(handler);
  return r;
}

nlohmann::json Binary(const char* description) {
  return {{"required", true},
          {"content",
           {{"application/octet-stream",
             {{"schema", {{"type", "string"}, {"format", "binary"}}}}}}},
          {"description", description}};
}

nlohmann::json Described(const char* description) {
  return {{"description", description}};
}

nlohmann::json QueryParam(const char* name, const char* description,
                          bool required = false) {
  return {{"name", name},
          {"in", "query"},
          {"required", required},
          {"description", description},
          {"schema", {{"type", "string"}}}};
}

}  // namespace

std::vector<Route> AgentPointRoutes(Services& s) {
  std::vector<Route> routes;
  routes.push_back(Make(
      "POST", "/api/v1/agent/chunks/missing",
      "Which of these chunks the appliance needs from this agent",
      {{"requestBody",
        Binary("N upload ids (SHA-256 of a chunk's plain bytes), 32 bytes "
               "each, 1 <= N <= 32768")},
       {"responses",
        {{"200",
          Described("application/octet-stream, N bytes: 1 where the "
                    "appliance needs the chunk, 0 where it holds it for "
                    "this agent (what other agents store does not count)")},
         {"400", Described("a body that is not 1 to 32768 ids of 32 bytes")},
         {"503", Described("the repository is busy (gc); try again")}}}},
      [&s](const ApiCall& c) { return Missing(s, c); }));
  routes.back().audited = false;  // many per backup; the commit is audited
  routes.push_back(Make(
      "POST", "/api/v1/agent/chunks",
      "Upload chunks: each is decoded and checked against its id before "
      "any is stored; answered once they are durable",
      {{"requestBody",
        Binary("at most 64 MiB of frames upload_id[32] raw_len:u32 "
               "codec:u8 data_len:u32 data[data_len] (little-endian; codec "
               "0 plain, 1 zstd, plus 0x10 for a tree node: 1..1024 upload "
               "ids of chunks this agent holds or sent earlier in the body; "
               "raw_len 1..16 MiB; at most 256 MiB decoded per upload)")},
       {"responses",
        {{"200",
          Described("{received: frames, new: chunks new for this agent, "
                    "new_stored_bytes: what they occupy in the repository}")},
         {"400", Described("a malformed frame, named")},
         {"409",
          Described("{error, missing: [upload id hex, ... (at most 100)]}: "
                    "tree nodes name chunks this agent does not hold; "
                    "nothing of the batch was stored")},
         {"422",
          Described("a chunk whose bytes do not match its id (or whose zstd "
                    "data does not decode to raw_len bytes), named; nothing "
                    "of the batch was stored")},
         {"503", Described("the repository is busy (gc); try again")}}}},
      [&s](const ApiCall& c) { return Chunks(s, c); }));
  routes.back().audited = false;
  routes.push_back(Make(
      "POST", "/api/v1/agent/points",
      "Commit a file-backup point from chunks this agent uploaded; the "
      "point is written last (the commit point)",
      {{"requestBody",
        Binary("json_len:u32, the JSON {upload_id (32 hex), name, time, "
               "hostname, consistency, consistency_reason, paths, entries, "
               "partial, notes, stats, catalog: {count, bytes}, content: "
               "{count, bytes}, agent_key (optional: 16 hex digits naming "
               "the agent's own key its data chunks are sealed with; the "
               "stream sizes are then those of the sealed chunks)}, then "
               "catalog.count and content.count upload ids of 32 bytes")},
       {"responses",
        {{"201", Described("{id, name, time}: the new point")},
         {"200", Described("{id, name, time}: a retry of a commit already made "
                           "(same upload_id)")},
         {"400", Described("malformed body or JSON, or sizes that do not match "
                           "the chunks")},
         {"409",
          Described("{error, missing: [upload id hex, ... (at most 100)]}: "
                    "chunks this agent has not uploaded or the appliance no "
                    "longer holds; nothing was committed")},
         {"503", Described("the repository is busy (gc); try again")}}}},
      [&s](const ApiCall& c) { return CommitPoint(s, c); }));
  routes.push_back(Make(
      "POST", "/api/v1/agent/vm-points",
      "Commit a VM point whose chunk-list trees this agent uploaded (tree "
      "nodes); the point is written last (the commit point)",
      {{"requestBody",
        {{"required", true},
         {"content",
          {{"application/json",
            {{"schema",
              {{"type", "object"},
               {"required", {"upload_id", "manifest"}},
               {"properties",
                {{"upload_id",
                  {{"type", "string"},
                   {"description", "32 hex digits: a retry sends the same"}}},
                 {"manifest",
                  {{"type", "object"},
                   {"description",
                    "the point's manifest (kind vm) with every tree root an "
                    "upload id of a tree node this agent uploaded, or zero; "
                    "id, time, tool, parent and agent_id are the "
                    "appliance's"}}}}}}}}}}},
         {"description", "at most 1 MiB"}}},
       {"responses",
        {{"201", Described("{id, name, time, created: true}: the new point")},
         {"200", Described("{id, name, time, created: false}: a retry of a "
                           "commit already made (same upload_id)")},
         {"400", Described("a malformed body or manifest, the field named")},
         {"409",
          Described("{error, missing: [upload id hex, ... (at most 100)]}: "
                    "tree roots this agent has not uploaded or the appliance "
                    "no longer holds; or {error}: the name is another "
                    "agent's. Nothing was committed")},
         {"503", Described("the repository is busy (gc); try again")}}}},
      [&s](const ApiCall& c) { return CommitVmPoint(s, c); }));
  routes.push_back(Make(
      "GET", "/api/v1/agent/points", "This agent's points, newest first",
      {{"parameters", {QueryParam("kind", "files or vm: only points of it")}},
       {"responses",
        {{"200",
          Described("{points: [{repository, id, name, kind, time, hostname, "
                    "consistency, ..., agent_id}]}")},
         {"400", Described("an unknown parameter or kind")}}}},
      [&s](const ApiCall& c) { return ListOwn(s, c); }));
  const nlohmann::json own_errors = {
      {"403", Described("the point belongs to another agent (or none)")},
      {"404", Described("no such point (the id is 32 hex digits)")}};
  nlohmann::json show_responses = own_errors;
  show_responses["200"] =
      Described("the point as GET /api/v1/points/{repo}/{id} shows it");
  routes.push_back(Make("GET", "/api/v1/agent/points/{id}",
                        "One of this agent's points",
                        {{"responses", show_responses}},
                        [&s](const ApiCall& c) { return ShowOwn(s, c); }));
  nlohmann::json files_responses = own_errors;
  files_responses["200"] = Described(
      "as GET /api/v1/points/{repo}/{id}/files: {point, path, type, total, "
      "offset, entries, next_offset}");
  files_responses["400"] = Described("a bad path or parameter");
  files_responses["409"] = Described("a VM point: no files to list");
  routes.push_back(
      Make("GET", "/api/v1/agent/points/{id}/files",
           "List a directory of one of this agent's points",
           {{"parameters",
             {QueryParam("path", "absolute path in the point (default /)"),
              QueryParam("offset", "paging: entries to skip"),
              QueryParam("limit", "entries per page, 1-10000 (default 1000)")}},
            {"responses", files_responses}},
           [&s](const ApiCall& c) { return OwnFiles(s, c); }));
  nlohmann::json archive_responses = own_errors;
  archive_responses["200"] = Described(
      "application/x-tar or application/zip, chunked; it ends with its last "
      "chunk only when complete");
  archive_responses["400"] = Described("a bad path or format");
  archive_responses["409"] = Described("a VM point: no files to archive");
  routes.push_back(Make(
      "GET", "/api/v1/agent/points/{id}/archive",
      "Files of one of this agent's points as a tar or zip stream",
      {{"parameters",
        {QueryParam("path", "absolute path: a file or a directory tree", true),
         QueryParam("format", "tar (default) or zip")}},
       {"responses", archive_responses}},
      [&s](const ApiCall& c) { return OwnArchive(s, c); }));
  return routes;
}

}  // namespace haven::appliance
