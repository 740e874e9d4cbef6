// /api/v1/copy/...: this appliance as either side of a copy another one
// runs (agent/appliance_copy.h, docs/copies.md): its repository's copy
// parameters, points, manifests and chunks to read, and chunks and points
// to store. Admin only: a copy reads every point in plain form and writes
// new ones. The routes parse, call repository/copy.h's LocalCopySource or
// LocalCopyTarget, and serve; wire formats in agent/copy_wire.h.
//
// Each route works on the repository ?repository=NAME, by default the one
// named "default" (else the first configured): reads through the API's
// read-only cache, writes through a repository opened for writing
// (appliance/writable_repositories.h), as a backup holds it.
#include <unordered_set>

#include "agent/copy_wire.h"
#include "appliance/point_access.h"
#include "appliance/routes.h"
#include "appliance/sync_jobs.h"
#include "appliance/writable_repositories.h"
#include "base/json.h"
#include "repository/copy.h"
#include "repository/repository.h"

namespace haven::appliance {
namespace {

using nlohmann::json;
using repository::ChunkId;
using repository::ChunkIdHash;
using repository::ChunkType;
using repository::CopyChunk;

// The read answer is built a few chunks at a time: a group asks for about
// what the answer still has room for, guessing each chunk as large as the
// largest seen so far (at first the image chunk size, and only a few).
constexpr size_t kFirstReadGroup = 4;
constexpr size_t kMaxReadGroup = 32;

Result<std::string> RepositoryOf(Services& s, const ApiCall& call) {
  for (const auto& [name, value] : call.query)
    if (name != "repository")
      return InvalidArgument("unknown query parameter " + QuoteUntrusted(name) +
                             " (the copy routes take only repository)");
  const std::string* r = call.Query("repository");
  return CopyRepository(*s.config, r ? *r : "");
}

Result<std::shared_ptr<OpenRepository>> Readable(Services& s,
                                                 const ApiCall& call) {
  HAVEN_ASSIGN_OR_RETURN(std::string name, RepositoryOf(s, call));
  return s.open_repositories->Get(name);
}

Result<std::shared_ptr<repository::Repository>> Writable(Services& s,
                                                         const ApiCall& call) {
  HAVEN_ASSIGN_OR_RETURN(std::string name, RepositoryOf(s, call));
  if (s.writable_repositories == nullptr)
    return Unavailable("this havend does not take copies");
  return s.writable_repositories->Get(name);
}

// {"type": "data" | "tree", "ids": [64 hex, ...]}: at most `max_ids`, and
// each at most once when `distinct`.
struct IdsRequest {
  ChunkType type = ChunkType::kData;
  std::vector<ChunkId> ids;
};

Result<IdsRequest> ParseIds(const Request& req, size_t max_ids, bool distinct) {
  HAVEN_ASSIGN_OR_RETURN(json body, JsonBodyObject(req));
  for (const auto& [key, value] : body.items())
    if (key != "type" && key != "ids")
      return InvalidArgument("unknown field " + QuoteUntrusted(key) +
                             " (the fields are type and ids)");
  IdsRequest r;
  auto type = body.find("type");
  if (type == body.end() || !type->is_string() ||
      (*type != "data" && *type != "tree"))
    return InvalidArgument("type must be \"data\" or \"tree\"");
  r.type = *type == "tree" ? ChunkType::kTree : ChunkType::kData;
  auto ids = body.find("ids");
  if (ids == body.end() || !ids->is_array() || ids->size() > max_ids)
    return InvalidArgument("ids must be a list of at most " +
                           std::to_string(max_ids) + " chunk ids");
  std::unordered_set<ChunkId, ChunkIdHash> seen;
  r.ids.reserve(ids->size());
  for (size_t i = 0; i < ids->size(); ++i) {
    const json& v = (*ids)[i];
    auto id = v.is_string() ? agent::ParseChunkIdHex(v.get<std::string>())
                            : Result<ChunkId>(InvalidArgument(""));
    if (!id.ok())
      return InvalidArgument("ids[" + std::to_string(i) +
                             "] is not a chunk id (64 lower-case hex digits)");
    if (distinct && !seen.insert(*id).second)
      return InvalidArgument("ids[" + std::to_string(i) +
                             "] is asked for twice: ask for each id once");
    r.ids.push_back(*id);
  }
  return r;
}

Response Octets(std::string body) {
  Response r;
  r.status = 200;
  r.headers.emplace_back("content-type", "application/octet-stream");
  r.body = std::move(body);
  return r;
}

Response Info(Services& s, const ApiCall& call) {
  auto open = Readable(s, call);
  if (!open.ok()) return StatusResponse(open.status());
  repository::CopyParams p = repository::LocalCopyParams((*open)->repo());
  nlohmann::ordered_json j;
  j["repository_id"] = p.repository_id;
  j["id_check"] = p.id_check;
  j["chunk_size"] = p.chunk_size;
  return OkOrdered(j);
}

Response Points(Services& s, const ApiCall& call) {
  auto open = Readable(s, call);
  if (!open.ok()) return StatusResponse(open.status());
  repository::LocalCopySource source((*open)->repo());
  std::vector<std::string> errors;
  auto points = source.Points(&errors);
  if (!points.ok()) return StatusResponse(points.status());
  nlohmann::ordered_json j;
  j["points"] = nlohmann::ordered_json::array();
  for (const repository::PointSummary& p : *points)
    j["points"].push_back(
        {{"id", p.id}, {"name", p.name}, {"kind", p.kind}, {"time", p.time}});
  j["errors"] = errors;
  return OkOrdered(j);
}

Response ShowManifest(Services& s, const ApiCall& call) {
  const std::string& id = *call.Param("id");
  if (!repository::IsSnapshotId(id))
    return ErrorJson(404, "no point " + QuoteUntrusted(id) +
                              ": a point id is 32 lower-case hex digits");
  auto open = Readable(s, call);
  if (!open.ok()) return StatusResponse(open.status());
  repository::LocalCopySource source((*open)->repo());
  auto m = source.LoadPoint(id);
  if (!m.ok()) return StatusResponse(m.status());
  return Response::Json(200, m->ToJson());
}

Response ReadChunks(Services& s, const ApiCall& call) {
  auto req = ParseIds(call.request, agent::kMaxCopyReadIds, true);
  if (!req.ok()) return StatusResponse(req.status());
  auto open = Readable(s, call);
  if (!open.ok()) return StatusResponse(open.status());
  const repository::Repository& repo = (*open)->repo();
  repository::LocalCopySource source(repo);
  uint64_t large = req->type == ChunkType::kTree
                       ? repository::kTreeFanout * sizeof(ChunkId)
                       : repo.config().chunk_size;
  // The first k ids whose entries fit in kCopyBatchBytes (the first one
  // always: an entry is at most 8 MiB); the client asks again for the rest
  // (agent/copy_wire.h).
  std::string answer;
  size_t next = 0;
  std::vector<CopyChunk> got;
  while (next < req->ids.size()) {
    const uint64_t room =
        agent::kCopyBatchBytes -
        std::min<uint64_t>(answer.size(), agent::kCopyBatchBytes);
    size_t group = static_cast<size_t>(
        std::clamp<uint64_t>(room / (large + agent::kReadEntryHeader), 1,
                             next == 0 ? kFirstReadGroup : kMaxReadGroup));
    group = std::min(group, req->ids.size() - next);
    std::vector<ChunkId> ids(req->ids.begin() + next,
                             req->ids.begin() + next + group);
    Status st = source.ReadChunks(req->type, ids, got);
    if (!st.ok()) return StatusResponse(st);
    if (got.size() != ids.size())
      return ErrorJson(500, "the repository answered " +
                                std::to_string(got.size()) + " of " +
                                std::to_string(ids.size()) + " chunks");
    for (const CopyChunk& c : got) {
      large = std::max<uint64_t>(large, c.raw.size());
      if (!answer.empty() &&
          answer.size() + agent::ReadEntrySize(c) > agent::kCopyBatchBytes)
        return Octets(std::move(answer));
      agent::AppendReadEntry(answer, c);
      ++next;
    }
  }
  return Octets(std::move(answer));
}

// A dry run's question: how large the chunks it would send are, from the
// index (no chunk is read).
Response ChunkSizes(Services& s, const ApiCall& call) {
  auto req = ParseIds(call.request, agent::kMaxCopyHasIds, false);
  if (!req.ok()) return StatusResponse(req.status());
  auto open = Readable(s, call);
  if (!open.ok()) return StatusResponse(open.status());
  repository::LocalCopySource source((*open)->repo());
  std::vector<int64_t> sizes;
  Status st = source.ChunkSizes(req->type, req->ids, sizes);
  if (!st.ok()) return StatusResponse(st);
  if (sizes.size() != req->ids.size())
    return ErrorJson(500, "the repository answered for " +
                              std::to_string(sizes.size()) + " of " +
                              std::to_string(req->ids.size()) + " chunks");
  return OkJson({{"sizes", sizes}});
}

Response HasChunks(Services& s, const ApiCall& call) {
  auto req = ParseIds(call.request, agent::kMaxCopyHasIds, false);
  if (!req.ok()) return StatusResponse(req.status());
  auto repo = Writable(s, call);
  if (!repo.ok()) return StatusResponse(repo.status());
  repository::LocalCopyTarget target(**repo);
  auto have = target.HasChunks(req->type, req->ids);
  if (!have.ok()) return StatusResponse(have.status());
  if (have->size() != req->ids.size())
    return ErrorJson(500, "the repository answered for " +
                              std::to_string(have->size()) + " of " +
                              std::to_string(req->ids.size()) + " chunks");
  json j;
  j["have"] = json::array();
  for (bool b : *have) j["have"].push_back(b);
  return OkJson(j);
}

Response PutChunks(Services& s, const ApiCall& call) {
  auto runs = agent::ParsePutBody(call.request.body);
  if (!runs.ok()) return StatusResponse(runs.status());
  auto repo = Writable(s, call);
  if (!repo.ok()) return StatusResponse(repo.status());
  repository::LocalCopyTarget target(**repo);
  uint64_t stored = 0;
  for (const agent::PutRun& run : *runs) {
    Status st = target.PutChunks(run.type, run.chunks);
    // Bytes that do not hash to their id are the client's error.
    if (st.code() == Code::kDataLoss) return ErrorJson(400, st.message());
    if (!st.ok()) return StatusResponse(st);
    stored += run.chunks.size();
  }
  return OkJson({{"stored", stored}});
}

Response CommitPoint(Services& s, const ApiCall& call) {
  auto m = repository::Manifest::FromJson(call.request.body, "the manifest");
  if (!m.ok()) return ErrorJson(400, m.status().message());
  auto repo = Writable(s, call);
  if (!repo.ok()) return StatusResponse(repo.status());
  repository::LocalCopyTarget target(**repo);
  Status st = target.CommitPoint(*m);
  if (st.code() == Code::kAlreadyExists)
    return OkJson({{"id", m->id}, {"present", true}});
  // A root the repository lacks: send the chunks, then commit again.
  if (st.code() == Code::kFailedPrecondition || st.code() == Code::kNotFound ||
      st.code() == Code::kDataLoss)
    return ErrorJson(409, st.message());
  if (!st.ok()) return StatusResponse(st);
  return OkJson({{"id", m->id}}, 201);
}

// ------------------------------------------------------------- OpenAPI

json RepositoryQuery() {
  return {{"name", "repository"},
          {"in", "query"},
          {"required", false},
          {"description",
           "the repository (default: the one named \"default\", else the "
           "first configured)"},
          {"schema", {{"type", "string"}}}};
}

json JsonBody(const char* description, json schema) {
  return {{"required", true},
          {"description", description},
          {"content", {{"application/json", {{"schema", std::move(schema)}}}}}};
}

json IdsSchema(size_t max) {
  return {
      {"type", "object"},
      {"required", {"type", "ids"}},
      {"properties",
       {{"type", {{"type", "string"}, {"enum", {"data", "tree"}}}},
        {"ids",
         {{"type", "array"},
          {"maxItems", max},
          {"items", {{"type", "string"}, {"pattern", "^[0-9a-f]{64}$"}}}}}}}};
}

json Described(const char* description) {
  return {{"description", description}};
}

Route Make(const char* method, std::string path, std::string summary,
           json openapi, RouteHandler handler) {
  Route r;
  r.method = method;
  r.path = std::move(path);
  r.access = Access::kRole;
  r.role = Role::kAdmin;
  r.summary = std::move(summary);
  openapi["parameters"] = json::array({RepositoryQuery()});
  r.openapi = std::move(openapi);
  r.handler = std::move(handler);
  return r;
}

}  // namespace

std::vector<Route> CopyRoutes(Services& s) {
  const std::string base = "/api/v1/copy";
  std::vector<Route> routes;
  routes.push_back(Make(
      "GET", base + "/info",
      "copy parameters of the repository: id, chunk-id keys' check, chunk "
      "size (two repositories copy between them when id_check and "
      "chunk_size are equal)",
      {{"responses",
        {{"200", Described("{repository_id, id_check (64 hex), chunk_size}")},
         {"404", Described("no such repository")}}}},
      [&s](const ApiCall& c) { return Info(s, c); }));
  routes.push_back(Make(
      "GET", base + "/points",
      "every readable point of the repository, oldest first, for a copy",
      {{"responses",
        {{"200",
          Described("{points: [{id, name, kind, time}], errors: [unreadable "
                    "points, one line each]}")}}}},
      [&s](const ApiCall& c) { return Points(s, c); }));
  routes.push_back(
      Make("GET", base + "/points/{id}",
           "a point's manifest (authenticated) as JSON, for a copy",
           {{"responses",
             {{"200", Described("the manifest (repository/manifest.h)")},
              {"404", Described("no such point (or not a 32-hex-digit id)")}}}},
           [&s](const ApiCall& c) { return ShowManifest(s, c); }));
  routes.push_back(Make(
      "POST", base + "/chunks/read",
      "read up to 1024 chunks in plain form; the answer holds the first k of "
      "them (k >= 1), about 16 MiB at most (never over 64 MiB)",
      {{"requestBody", JsonBody("chunk ids of one type, each once",
                                IdsSchema(agent::kMaxCopyReadIds))},
       {"responses",
        {{"200",
          {{"description",
            "application/octet-stream: per id, in order: status (1 byte: 0 "
            "ok, 1 damaged) | length (u32 LE) | raw chunk bytes or the "
            "error in words"}}},
         {"400", Described("a malformed request, named")}}}},
      [&s](const ApiCall& c) { return ReadChunks(s, c); }));
  routes.push_back(Make(
      "POST", base + "/chunks/sizes",
      "the raw sizes of up to 65536 chunks, from the index (a dry run's "
      "question: nothing is read)",
      {{"requestBody",
        JsonBody("chunk ids of one type", IdsSchema(agent::kMaxCopyHasIds))},
       {"responses",
        {{"200", Described("{sizes: [bytes per id, or -1 where the repository "
                           "does not hold it]}")},
         {"400", Described("a malformed request, named")}}}},
      [&s](const ApiCall& c) { return ChunkSizes(s, c); }));
  routes.push_back(Make(
      "POST", base + "/chunks/has",
      "which of up to 65536 chunks the repository holds",
      {{"requestBody",
        JsonBody("chunk ids of one type", IdsSchema(agent::kMaxCopyHasIds))},
       {"responses",
        {{"200", Described("{have: [true|false per id]}")},
         {"400", Described("a malformed request, named")}}}},
      [&s](const ApiCall& c) { return HasChunks(s, c); }));
  routes.push_back(Make(
      "POST", base + "/chunks/put",
      "store chunks, each checked against its keyed id first; durable "
      "when answered",
      {{"requestBody",
        {{"required", true},
         {"description",
          "frames: type (1 byte: 0 data, 1 tree) | id (32 bytes) | length "
          "(u32 LE, at most 8 MiB) | raw bytes; at most 64 MiB in all"},
         {"content",
          {{"application/octet-stream",
            {{"schema", {{"type", "string"}, {"format", "binary"}}}}}}}}},
       {"responses",
        {{"200", Described("{stored: N}")},
         {"400",
          Described("a malformed body, or a chunk whose bytes do not hash to "
                    "its id (named)")}}}},
      [&s](const ApiCall& c) { return PutChunks(s, c); }));
  routes.push_back(
      Make("POST", base + "/points",
           "commit a point under its own id (the manifest, validated) once the "
           "repository holds every chunk-list root it names",
           {{"requestBody",
             JsonBody("the manifest as GET /api/v1/copy/points/{id} gives it",
                      {{"type", "object"}})},
            {"responses",
             {{"201", Described("{id}: committed")},
              {"200", Described("{id, present: true}: the point was there")},
              {"400", Described("not a valid manifest")},
              {"409", Described("a chunk-list root is missing (named)")}}}},
           [&s](const ApiCall& c) { return CommitPoint(s, c); }));
  return routes;
}

}  // namespace haven::appliance
