// Restores through the appliance (docs/agents.md): a host agent restoring a
// VM reads the point its job names through these two routes, role agent,
// only while that job's task ("vm-restore-plan" or "vm-restore") is in
// flight for the caller:
//
//   GET  /api/v1/agent/jobs/{id}/point   the point's manifest JSON
//   POST /api/v1/agent/jobs/{id}/chunks  body: N keyed chunk ids (32 bytes
//        each, 1 <= N <= 256); answer: frames type:u8 id[32] len:u32 bytes
//        (little-endian, plain bytes), in the order asked. An id not of
//        that point refuses the whole request (403 naming it). The answer
//        stops after the frame that takes it past 64 MiB: the agent asks
//        again for the rest.
//
// Each chunk is read (and authenticated) from the repository here; the
// agent cannot compute keyed ids, so the appliance is the one that checks.
//
// An agent restoring a file point it sealed with its own key (docs/agents.md,
// "An agent's own key"; the appliance cannot open its data) reads it the
// same way, from any of its own file points, without a job:
//
//   GET  /api/v1/agent/points/{id}/manifest  the point's manifest JSON
//   POST /api/v1/agent/points/{id}/chunks    as the job's chunks route
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <variant>

#include "appliance/agent_jobs.h"
#include "appliance/agent_restore_reads.h"
#include "appliance/agent_store.h"
#include "appliance/point_access.h"
#include "appliance/routes.h"
#include "base/bytes.h"

namespace haven::appliance {
namespace {

using repository::ChunkId;
using repository::ChunkType;

constexpr size_t kMaxIds = 256;
constexpr size_t kMaxAnswerBytes = 64u << 20;

struct Allowed {
  AgentTask task;
  FoundPoint found;
};

// The job's point, if the caller may read it; else the response to send.
std::variant<Allowed, Response> Authorize(Services& s, const ApiCall& call) {
  if (!s.agent_dispatch || !s.open_repositories)
    return ErrorJson(503, "this havend does not hand jobs to agents");
  auto id = ParseRouteId(call.Param("id"));
  if (!id) return ErrorJson(400, "a job id is a number");
  const std::string job = "job " + std::to_string(*id);
  std::optional<AgentTask> task =
      s.agent_dispatch->TaskOf(call.caller.agent_id, *id);
  if (!task) return ErrorJson(403, job + " is not running on this agent");
  if (task->kind != "vm-restore-plan" && task->kind != "vm-restore")
    return ErrorJson(403, job + " is not a restore (it is " +
                              QuoteUntrusted(task->kind) + ")");
  const nlohmann::json& p = task->params;
  if (!p.is_object() || !p.contains("repository") ||
      !p["repository"].is_string() || !p.contains("point") ||
      !p["point"].is_string())
    return ErrorJson(409, job + " names no repository and point to read");
  auto found =
      FindPoint(*s.open_repositories, p["repository"].get<std::string>(),
                p["point"].get<std::string>());
  if (!found.ok()) return StatusResponse(found.status());
  return Allowed{std::move(*task), std::move(*found)};
}

// The caller's own file point `id`; else the response to send (404 when
// there is none, 403 when it is another agent's or no agent's).
std::variant<FoundPoint, Response> AuthorizeOwn(Services& s,
                                                const ApiCall& call) {
  if (!s.agent_store || !s.open_repositories)
    return ErrorJson(503, "this havend takes no agents");
  const std::string& id = *call.Param("id");
  if (!repository::IsSnapshotId(id))
    return ErrorJson(404, "no point " + QuoteUntrusted(id) +
                              ": a point id is 32 lower-case hex digits");
  auto repo = s.agent_store->RepositoryFor(call.caller.agent_id);
  if (!repo.ok()) return StatusResponse(repo.status());
  auto found = FindPoint(*s.open_repositories, *repo, id);
  if (!found.ok()) return StatusResponse(found.status());
  if (found->point->agent_id != call.caller.agent_id)
    return ErrorJson(403, "point " + id + " belongs to another agent");
  if (found->point->kind != "files")
    return ErrorJson(409, "point " + id + " is a " + found->point->kind +
                              " point: only file points are read this way");
  return std::move(*found);
}

// Reads of chunks an agent has in progress: each holds a handler thread
// and up to 64 MiB, so one agent gets at most kMaxReadsPerAgent at once.
constexpr int kMaxReadsPerAgent = 4;
class ReadSlots {
 public:
  bool Take(const std::string& agent) {
    std::lock_guard l(mu_);
    int& n = busy_[agent];
    if (n >= kMaxReadsPerAgent) return false;
    ++n;
    return true;
  }
  void Give(const std::string& agent) {
    std::lock_guard l(mu_);
    if (--busy_[agent] <= 0) busy_.erase(agent);
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> busy_;
};

Response TooManyReads() {
  Response r = ErrorJson(503, "this agent already has " +
                                  std::to_string(kMaxReadsPerAgent) +
                                  " chunk reads in progress; try again");
  r.headers.emplace_back("retry-after", "1");
  return r;
}

// Frames of the chunks `body` asks for, each of which must be in `set`
// (else 403 naming it and `whose`); with `plan_only`, only what planning
// reads (PointChunkSet::Find).
Response ServeChunks(const repository::Repository& repo,
                     const PointChunkSet& set, const std::string& body,
                     const std::string& whose, bool plan_only = false) {
  if (body.empty() || body.size() % 32 != 0 || body.size() / 32 > kMaxIds)
    return ErrorJson(400, "the body must be 1 to " + std::to_string(kMaxIds) +
                              " chunk ids of 32 bytes, not " +
                              std::to_string(body.size()) + " bytes");
  const size_t n = body.size() / 32;
  std::vector<std::pair<ChunkId, ChunkType>> asked(n);
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(asked[i].first.bytes.data(), body.data() + 32 * i, 32);
    auto type = set.Find(asked[i].first, plan_only);
    if (!type)
      return ErrorJson(
          403, "chunk " + asked[i].first.Hex() + " is not part of " + whose +
                   (plan_only && set.Find(asked[i].first)
                        ? " that planning reads (a disk's data is read by "
                          "the restore itself)"
                        : ""));
    asked[i].second = *type;
  }
  // Each id once: a repeat would only make this appliance read and decrypt
  // the same chunk again.
  std::unordered_set<ChunkId, repository::ChunkIdHash> distinct;
  for (const auto& [id, type] : asked)
    if (!distinct.insert(id).second)
      return ErrorJson(
          400, "chunk " + id.Hex() + " is asked for twice in one request");
  repository::ReadContext ctx;
  Bytes data;
  Response r;
  r.status = 200;
  r.headers.emplace_back("Content-Type", "application/octet-stream");
  for (const auto& [id, type] : asked) {
    Status st = repo.ReadChunk(type, id, data, ctx);
    if (!st.ok()) return StatusResponse(st);
    const size_t frame = 1 + 32 + 4 + data.size();
    // Never past the cap (the agent's client refuses larger answers): the
    // agent asks again for the rest. The first frame always fits.
    if (!r.body.empty() && r.body.size() + frame > kMaxAnswerBytes) break;
    uint8_t head[1 + 32 + 4];
    head[0] = static_cast<uint8_t>(type);
    std::memcpy(head + 1, id.bytes.data(), 32);
    for (int b = 0; b < 4; ++b)
      head[33 + b] = static_cast<uint8_t>(data.size() >> (8 * b));
    r.body.append(reinterpret_cast<const char*>(head), sizeof head);
    r.body.append(reinterpret_cast<const char*>(data.data()), data.size());
  }
  return r;
}

Response OwnManifest(Services& s, const ApiCall& call) {
  auto a = AuthorizeOwn(s, call);
  if (auto* r = std::get_if<Response>(&a)) return std::move(*r);
  return Response::Json(200, std::get<FoundPoint>(a).point->ToJson());
}

// Own points' sets are kept per agent (job id 0): one point at a time.
Response OwnChunks(Services& s, AgentRestoreReads& reads, ReadSlots& slots,
                   const ApiCall& call) {
  auto a = AuthorizeOwn(s, call);
  if (auto* r = std::get_if<Response>(&a)) return std::move(*r);
  const FoundPoint& found = std::get<FoundPoint>(a);
  if (call.request.body.empty() || call.request.body.size() % 32 != 0 ||
      call.request.body.size() / 32 > kMaxIds)
    return ServeChunks(found.open->repo(), PointChunkSet(), call.request.body,
                       "");
  const repository::Repository& repo = found.open->repo();
  auto set = reads.ChunksOf(0, call.caller.agent_id, repo, *found.point);
  if (!set.ok()) return StatusResponse(set.status());
  if (!slots.Take(call.caller.agent_id)) return TooManyReads();
  Response r = ServeChunks(repo, **set, call.request.body,
                           "point " + found.point->id.substr(0, 8));
  slots.Give(call.caller.agent_id);
  return r;
}

Response Point(Services& s, const ApiCall& call) {
  auto a = Authorize(s, call);
  if (auto* r = std::get_if<Response>(&a)) return std::move(*r);
  const Allowed& ok = std::get<Allowed>(a);
  return Response::Json(200, ok.found.point->ToJson());
}

Response Chunks(Services& s, AgentRestoreReads& reads, ReadSlots& slots,
                const ApiCall& call) {
  auto a = Authorize(s, call);
  if (auto* r = std::get_if<Response>(&a)) return std::move(*r);
  const Allowed& ok = std::get<Allowed>(a);
  const std::string& body = call.request.body;
  if (body.empty() || body.size() % 32 != 0 || body.size() / 32 > kMaxIds)
    return ServeChunks(ok.found.open->repo(), PointChunkSet(), body, "");
  // Sets of jobs that ended go first, so they do not outlive their jobs.
  reads.Prune([&s](int64_t job, const std::string& agent) {
    return s.agent_dispatch->TaskOf(agent, job).has_value();
  });
  const repository::Repository& repo = ok.found.open->repo();
  auto set = reads.ChunksOf(ok.task.job_id, call.caller.agent_id, repo,
                            *ok.found.point);
  if (!set.ok()) return StatusResponse(set.status());
  if (!slots.Take(call.caller.agent_id)) return TooManyReads();
  Response r =
      ServeChunks(repo, **set, body,
                  "point " + ok.found.point->id.substr(0, 8) + " that job " +
                      std::to_string(ok.task.job_id) + " restores",
                  ok.task.kind == "vm-restore-plan");
  slots.Give(call.caller.agent_id);
  return r;
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

nlohmann::json Described(const char* description) {
  return {{"description", description}};
}

}  // namespace

std::vector<Route> AgentRestoreRoutes(Services& s) {
  // The routes own the cache of chunk sets (one per router).
  auto reads = std::make_shared<AgentRestoreReads>();
  auto slots = std::make_shared<ReadSlots>();
  const nlohmann::json refused = Described(
      "the job is not a restore running on this agent (or, for chunks, an "
      "id not of its point, named)");
  std::vector<Route> routes;
  routes.push_back(
      Make("GET", "/api/v1/agent/jobs/{id}/point",
           "The recovery point this agent's restore job reads (its manifest)",
           {{"responses",
             {{"200", Described("the manifest JSON of the point")},
              {"403", refused},
              {"404", Described("the point or its repository is gone")},
              {"503", Described("the repository is busy (gc); try again")}}}},
           [&s](const ApiCall& c) { return Point(s, c); }));
  routes.push_back(Make(
      "POST", "/api/v1/agent/jobs/{id}/chunks",
      "Read chunks of the point this agent's restore job reads",
      {{"requestBody",
        {{"required", true},
         {"content",
          {{"application/octet-stream",
            {{"schema", {{"type", "string"}, {"format", "binary"}}}}}}},
         {"description",
          "N keyed chunk ids of the point, 32 bytes each, 1 <= N <= 256"}}},
       {"responses",
        {{"200", Described("application/octet-stream: frames type:u8 id[32] "
                           "len:u32 bytes (little-endian, plain), in the order "
                           "asked; it may stop after 64 MiB: ask again for the "
                           "rest")},
         {"400", Described("a body that is not 1 to 256 ids of 32 bytes")},
         {"403", refused},
         {"503", Described("the repository is busy (gc), or this agent has 4 "
                           "reads in progress; try again")}}}},
      [&s, reads, slots](const ApiCall& c) {
        return Chunks(s, *reads, *slots, c);
      }));
  routes.back().audited = false;  // many per restore; the job is audited

  // An agent's own file points (sealed with its key): without a job.
  auto own_reads = std::make_shared<AgentRestoreReads>(8);
  const nlohmann::json own_refused = Described(
      "the point belongs to another agent (or none), or (chunks) "
      "an id not of the point, named");
  routes.push_back(Make(
      "GET", "/api/v1/agent/points/{id}/manifest",
      "The manifest of one of this agent's file points (to restore a point "
      "sealed with the agent's own key on the agent)",
      {{"responses",
        {{"200", Described("the manifest JSON of the point")},
         {"403", own_refused},
         {"404", Described("no such point (the id is 32 hex digits)")},
         {"409", Described("not a file point")},
         {"503", Described("the repository is busy (gc); try again")}}}},
      [&s](const ApiCall& c) { return OwnManifest(s, c); }));
  routes.push_back(Make(
      "POST", "/api/v1/agent/points/{id}/chunks",
      "Read chunks of one of this agent's file points (as stored: a point "
      "sealed with the agent's own key answers sealed bytes)",
      {{"requestBody",
        {{"required", true},
         {"content",
          {{"application/octet-stream",
            {{"schema", {{"type", "string"}, {"format", "binary"}}}}}}},
         {"description",
          "N keyed chunk ids of the point, 32 bytes each, 1 <= N <= 256"}}},
       {"responses",
        {{"200", Described("application/octet-stream: frames type:u8 id[32] "
                           "len:u32 bytes (little-endian), in the order "
                           "asked; it may stop after 64 MiB: ask again for the "
                           "rest")},
         {"400", Described("a body that is not 1 to 256 ids of 32 bytes")},
         {"403", own_refused},
         {"404", Described("no such point (the id is 32 hex digits)")},
         {"409", Described("not a file point")},
         {"503", Described("the repository is busy (gc); try again")}}}},
      [&s, own_reads, slots](const ApiCall& c) {
        return OwnChunks(s, *own_reads, *slots, c);
      }));
  routes.back().audited = false;  // many per restore
  return routes;
}

}  // namespace haven::appliance
