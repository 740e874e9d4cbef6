// Jobs for agents (docs/agents.md, "Jobs for agents"): the agent's long
// poll and its reports (role agent, each only about the caller's own jobs),
// and the operator's "back up this agent now" (appliance/agent_jobs.h).
#include <charconv>

#include "appliance/agent_jobs.h"
#include "appliance/routes.h"

namespace haven::appliance {
namespace {

using nlohmann::json;

constexpr int kDefaultWaitSeconds = 25;
constexpr int kMaxWaitSeconds = 55;
constexpr size_t kMaxTextBytes = 4096;
constexpr size_t kMaxWarnings = 1000;
constexpr size_t kMaxWarningBytes = 1000;

// An agent's text for the job's log: bounded, on one line.
std::string OneLine(std::string text, size_t max) {
  if (text.size() > max) text.resize(max);
  for (char& c : text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return text;
}

Status OptionalText(const json& b, const char* name, std::string* out,
                    size_t max) {
  if (!b.contains(name) || b[name].is_null()) return OkStatus();
  if (!b[name].is_string() ||
      b[name].get_ref<const std::string&>().size() > max)
    return InvalidArgument(std::string(name) + " must be a string of at most " +
                           std::to_string(max) + " bytes");
  *out = OneLine(b[name].get<std::string>(), max);
  return OkStatus();
}

Status OptionalCount(const json& b, const char* name, uint64_t* out) {
  if (!b.contains(name)) return OkStatus();
  if (!b[name].is_number_unsigned())
    return InvalidArgument(std::string(name) +
                           " must be a non-negative integer");
  *out = b[name].get<uint64_t>();
  return OkStatus();
}

Result<AgentProgress> ParseProgress(const json& b) {
  AgentProgress p;
  HAVEN_RETURN_IF_ERROR(OptionalCount(b, "done_bytes", &p.done_bytes));
  HAVEN_RETURN_IF_ERROR(OptionalCount(b, "total_bytes", &p.total_bytes));
  HAVEN_RETURN_IF_ERROR(OptionalText(b, "item", &p.item, kMaxTextBytes));
  HAVEN_RETURN_IF_ERROR(OptionalText(b, "message", &p.message, kMaxTextBytes));
  return p;
}

bool IsPointId(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// `kind`: the task's ("file-backup", "vm-backup", "vm-restore-plan",
// "vm-restore"). A backup names its point and reports counts; a restore's
// plan or result is kept whole (bounded by the route's body limit).
Result<AgentResult> ParseResult(const json& b, const std::string& kind) {
  const bool backup = kind == "file-backup" || kind == "vm-backup";
  AgentResult r;
  if (!b.contains("outcome") || !b["outcome"].is_string())
    return InvalidArgument(
        "outcome is required: \"succeeded\", \"partial\" or \"failed\"");
  r.outcome = b["outcome"].get<std::string>();
  if (r.outcome != "succeeded" && r.outcome != "partial" &&
      r.outcome != "failed")
    return InvalidArgument("outcome must be \"succeeded\", \"partial\" or " +
                           std::string("\"failed\", not ") +
                           QuoteUntrusted(r.outcome));
  HAVEN_RETURN_IF_ERROR(OptionalText(b, "error", &r.error, kMaxTextBytes));
  if (b.contains("point") && !b["point"].is_null()) {
    if (!b["point"].is_string() || !IsPointId(b["point"].get<std::string>()))
      return InvalidArgument("point must be a point id (lower-case hex)");
    r.point = b["point"].get<std::string>();
  }
  if (backup && r.outcome != "failed" && r.point.empty())
    return InvalidArgument("a " + r.outcome +
                           " backup names the point it committed (point)");
  if (b.contains("warnings")) {
    const json& w = b["warnings"];
    if (!w.is_array())
      return InvalidArgument("warnings must be a list of strings");
    for (const json& line : w) {
      if (!line.is_string())
        return InvalidArgument("warnings must be a list of strings");
      // All are counted; the first ones are kept for the log.
      r.warnings.push_back(
          r.warnings.size() < kMaxWarnings
              ? OneLine(line.get<std::string>(), kMaxWarningBytes)
              : std::string());
    }
  }
  if (b.contains("stats")) {
    if (!b["stats"].is_object())
      return InvalidArgument("stats must be an object of counts");
    if (!backup) {
      r.stats = b["stats"];
      return r;
    }
    if (kind == "vm-backup") {
      const json& st = b["stats"];
      if (st.contains("consistency") && st["consistency"].is_string())
        r.stats["consistency"] =
            OneLine(st["consistency"].get<std::string>(), 64);
      if (st.contains("disks") && st["disks"].is_array() &&
          st["disks"].size() <= 64)
        r.stats["disks"] = st["disks"];
    }
    for (const char* k :
         {"entries", "files", "bytes", "files_read", "files_unchanged",
          "bytes_read", "uploaded_chunks", "uploaded_bytes", "skipped_chunks"})
      if (b["stats"].contains(k) && b["stats"][k].is_number_unsigned())
        r.stats[k] = b["stats"][k].get<uint64_t>();
  }
  return r;
}

Response NotEnabled() {
  return ErrorJson(503, "this havend does not hand jobs to agents");
}

// A report's refusal: 409 with "cancelled": true tells the agent to stop.
Response ReportRefused(const Status& s) {
  if (s.code() == Code::kCancelled) {
    Response r = OkJson({{"error", s.message()}, {"cancelled", true}}, 409);
    return r;
  }
  return StatusResponse(s);
}

Response NextJob(Services& s, const ApiCall& call) {
  if (!s.agent_dispatch) return NotEnabled();
  int wait = kDefaultWaitSeconds;
  if (const std::string* w = call.Query("wait")) {
    auto n = ParseRouteId(w);
    if (!n || *n < 1 || *n > kMaxWaitSeconds)
      return ErrorJson(400, "wait must be a number of seconds from 1 to 55");
    wait = static_cast<int>(*n);
  }
  AgentDispatch::Poll poll = s.agent_dispatch->NextFor(
      call.caller.agent_id, std::chrono::seconds(wait));
  if (poll.task)
    return OkJson({{"job",
                    {{"id", poll.task->job_id},
                     {"kind", poll.task->kind},
                     {"params", poll.task->params}}}});
  Response r;
  r.status = 204;
  if (poll.busy) r.headers.emplace_back("retry-after", "5");
  return r;
}

using Report = Status (*)(AgentDispatch&, const std::string&, int64_t,
                          const json&);

RouteHandler AgentReport(Services& s, Report report) {
  return [&s, report](const ApiCall& call) {
    if (!s.agent_dispatch) return NotEnabled();
    auto id = ParseRouteId(call.Param("id"));
    if (!id) return ErrorJson(400, "a job id is a number");
    auto body = JsonBodyObject(call.request);
    if (!body.ok()) return StatusResponse(body.status());
    // A result names a point: it must be one this agent committed (the
    // store records every commit), not another agent's or one never made.
    if (s.agent_store && s.db && body->contains("point") &&
        (*body)["point"].is_string()) {
      const std::string point = (*body)["point"].get<std::string>();
      auto row = s.db->QueryOne(
          "SELECT 1 FROM agent_commits WHERE agent_id = ?1 AND point_id = ?2",
          {call.caller.agent_id, point});
      if (!row.ok()) return StatusResponse(row.status());
      if (!*row)
        return ErrorJson(403, "point " + QuoteUntrusted(point) +
                                  " was not committed by this agent");
    }
    Status st = report(*s.agent_dispatch, call.caller.agent_id, *id, *body);
    if (!st.ok()) return ReportRefused(st);
    return OkJson({{"job", *id}});
  };
}

Status ReportProgress(AgentDispatch& d, const std::string& agent, int64_t id,
                      const json& body) {
  HAVEN_ASSIGN_OR_RETURN(AgentProgress p, ParseProgress(body));
  return d.Progress(agent, id, std::move(p));
}

Status ReportResult(AgentDispatch& d, const std::string& agent, int64_t id,
                    const json& body) {
  // The task's kind says what its result holds; an unknown job is refused
  // by Finish in words.
  std::optional<AgentTask> task = d.TaskOf(agent, id);
  HAVEN_ASSIGN_OR_RETURN(AgentResult r,
                         ParseResult(body, task ? task->kind : ""));
  return d.Finish(agent, id, std::move(r));
}

Response BackUpAgent(Services& s, const ApiCall& call) {
  if (!s.agent_dispatch || !s.jobs) return NotEnabled();
  auto body = JsonBodyObject(call.request);
  if (!body.ok()) return StatusResponse(body.status());
  if (body->contains("agent"))
    return ErrorJson(400, "the agent is the one in the path, not \"agent\"");
  auto agent = s.agent_dispatch->FindAgent(*call.Param("id"));
  if (!agent.ok()) return StatusResponse(agent.status());
  if (!*agent)
    return ErrorJson(404,
                     "no agent is called " + QuoteUntrusted(*call.Param("id")));
  if ((*agent)->revoked)
    return ErrorJson(409, "agent " + (*agent)->name +
                              " was revoked; enroll it again to back it up");
  // An agent enrolled without a repository writes into the default one:
  // the first configured.
  std::string repository = (*agent)->repository;
  if (repository.empty() && s.config && !s.config->repositories.empty())
    repository = s.config->repositories.front().name;
  if (repository.empty())
    return ErrorJson(409,
                     "no repository is configured for agent " + (*agent)->name);
  JobSpec spec;
  spec.kind = "agent-backup";
  spec.repository = repository;
  spec.params = std::move(*body);
  spec.params["agent"] = (*agent)->id;
  spec.requested_by = call.caller.name;
  auto id = s.jobs->Submit(std::move(spec));
  if (!id.ok()) return StatusResponse(id.status());
  Response r = OkJson({{"job", *id}}, 202);
  r.headers.emplace_back("location", "/api/v1/jobs/" + std::to_string(*id));
  return r;
}

json JsonBody(const char* description, json properties) {
  return {{"required", true},
          {"content",
           {{"application/json",
             {{"schema", {{"type", "object"}, {"properties", properties}}}}}}},
          {"description", description}};
}

}  // namespace

std::vector<Route> AgentJobRoutes(Services& s) {
  const json str = {{"type", "string"}};
  const json count = {{"type", "integer"}, {"minimum", 0}};
  const json boolean = {{"type", "boolean"}};
  const json strings = {{"type", "array"}, {"items", str}};
  const json report_answers = {
      {"200", {{"description", "taken: {\"job\": ID}"}}},
      {"400", {{"description", "a bad field, named in {\"error\"}"}}},
      {"403", {{"description", "the job is another agent's"}}},
      {"404", {{"description", "no such job running on an agent"}}},
      {"409",
       {{"description",
         "the job was cancelled ({\"cancelled\": true}: stop), or it has "
         "not been handed out or has ended"}}}};
  std::vector<Route> routes = {
      {"GET",
       "/api/v1/agent/jobs/next",
       Access::kRole,
       Role::kAgent,
       "long poll for this agent's next job",
       {{"parameters",
         {{{"name", "wait"},
           {"in", "query"},
           {"schema", {{"type", "integer"}, {"minimum", 1}, {"maximum", 55}}},
           {"description", "seconds to wait for a job (default 25)"}}}},
        {"responses",
         {{"200",
           {{"description",
             "{\"job\": {\"id\", \"kind\": \"file-backup\", \"params\": "
             "{\"name\", \"paths\", \"excludes\", \"exclude_caches\", "
             "\"one_file_system\"}}}"}}},
          {"204",
           {{"description",
             "no job came in `wait` seconds; with Retry-After, too many "
             "agents wait at once: ask again after it"}}},
          {"400", {{"description", "a bad wait"}}}}}},
       [&s](const ApiCall& c) { return NextJob(s, c); }},
      {"POST",
       "/api/v1/agent/jobs/{id}/progress",
       Access::kRole,
       Role::kAgent,
       "report progress of this agent's job (a cancelled job answers 409)",
       {{"requestBody",
         JsonBody("bytes done of total, the item at work, an optional log "
                  "line",
                  {{"done_bytes", count},
                   {"total_bytes", count},
                   {"item", str},
                   {"message", str}})},
        {"responses", report_answers}},
       AgentReport(s, ReportProgress)},
      {"POST",
       "/api/v1/agent/jobs/{id}/result",
       Access::kRole,
       Role::kAgent,
       "report how this agent's job ended",
       {{"requestBody",
         JsonBody("the outcome; the point committed (succeeded, partial) or "
                  "the error (failed)",
                  {{"outcome",
                    {{"type", "string"},
                     {"enum", {"succeeded", "partial", "failed"}}}},
                   {"point", str},
                   {"error", str},
                   {"warnings", strings},
                   {"stats", {{"type", "object"}}}})},
        {"responses", report_answers}},
       AgentReport(s, ReportResult)},
      {"POST",
       "/api/v1/agents/{id}/backup",
       Access::kRole,
       Role::kOperator,
       "back up files of an agent now, as a job (the agent runs it when it "
       "next asks for work)",
       {{"requestBody", JsonBody("what to back up on the agent",
                                 {{"name", str},
                                  {"paths", strings},
                                  {"excludes", strings},
                                  {"exclude_caches", boolean},
                                  {"one_file_system", boolean}})},
        {"responses",
         {{"202",
           {{"description", "queued: {\"job\": ID}; Location names the job"}}},
          {"400", {{"description", "a bad parameter, named in {\"error\"}"}}},
          {"404", {{"description", "no such agent"}}},
          {"409", {{"description", "the agent was revoked"}}}}}},
       [&s](const ApiCall& c) { return BackUpAgent(s, c); }},
  };
  // Progress comes every few seconds from every running agent: not audited
  // (the result is).
  for (Route& r : routes)
    if (r.path == "/api/v1/agent/jobs/{id}/progress") r.audited = false;
  return routes;
}

}  // namespace haven::appliance
