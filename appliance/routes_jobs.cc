// The job routes: history and control of jobs, and the routes that start
// repository jobs. The event stream is in routes_events.cc.
#include <charconv>

#include "appliance/job_json.h"
#include "appliance/routes.h"
#include "appliance/routes_events.h"

namespace haven::appliance {
namespace {

using nlohmann::json;

Response Accepted(int64_t id) {
  Response r = OkJson({{"job", id}}, 202);
  r.headers.emplace_back("location", "/api/v1/jobs/" + std::to_string(id));
  return r;
}

Response SubmitJob(Services& s, const ApiCall& call, std::string kind,
                   std::string repository, json params) {
  JobSpec spec;
  spec.kind = std::move(kind);
  spec.repository = std::move(repository);
  spec.params = std::move(params);
  spec.requested_by = call.caller.name;
  auto id = s.jobs->Submit(std::move(spec));
  if (!id.ok()) return StatusResponse(id.status());
  return Accepted(*id);
}

Response ListJobs(Services& s, const ApiCall& call) {
  JobFilter f;
  if (const std::string* st = call.Query("state")) {
    f.state = ParseJobState(*st);
    if (!f.state)
      return ErrorJson(400,
                       "state must be one of queued, running, succeeded, "
                       "partial, failed, cancelled, interrupted");
  }
  if (const std::string* k = call.Query("kind")) f.kind = *k;
  if (const std::string* r = call.Query("repository")) f.repository = *r;
  if (const std::string* since = call.Query("since")) f.since = *since;
  if (call.Query("limit")) {
    auto n = ParseRouteId(call.Query("limit"));
    if (!n || *n < 1 || *n > 1000)
      return ErrorJson(400, "limit must be a number from 1 to 1000");
    f.limit = static_cast<size_t>(*n);
  }
  if (call.Query("before")) {
    auto b = ParseRouteId(call.Query("before"));
    if (!b) return ErrorJson(400, "before must be a job id");
    f.before_id = *b;
  }
  auto jobs = s.jobs->List(f);
  if (!jobs.ok()) return StatusResponse(jobs.status());
  json list = json::array();
  for (const JobRecord& r : *jobs) list.push_back(JobRecordJson(r, false));
  json next = jobs->size() == f.limit ? json(jobs->back().id) : json(nullptr);
  return OkJson({{"jobs", list}, {"next_before", next}});
}

Response JobLog(Services& s, const ApiCall& call, int64_t id) {
  int64_t after = 0;
  if (call.Query("after")) {
    auto a = ParseRouteId(call.Query("after"));
    if (!a) return ErrorJson(400, "after must be a line number");
    after = *a;
  }
  auto lines = s.jobs->Log(id, after);
  if (!lines.ok()) return StatusResponse(lines.status());
  json out = json::array();
  for (const auto& [n, text] : *lines)
    out.push_back({{"line", n}, {"text", text}});
  int64_t last = lines->empty() ? after : lines->back().first;
  return OkJson({{"job", id}, {"lines", out}, {"next_after", last}});
}

// The handler of a route with an {id}: 400 for a malformed id.
RouteHandler WithId(Services& s,
                    Response (*f)(Services&, const ApiCall&, int64_t)) {
  return [&s, f](const ApiCall& call) {
    auto id = ParseRouteId(call.Param("id"));
    if (!id) return ErrorJson(400, "a job id is a number");
    return f(s, call, *id);
  };
}

Response ShowJob(Services& s, const ApiCall&, int64_t id) {
  auto r = s.jobs->Get(id);
  if (!r.ok()) return StatusResponse(r.status());
  return OkJson(JobRecordJson(*r, true));
}

Response CancelJob(Services& s, const ApiCall& call, int64_t id) {
  Status st = s.jobs->Cancel(id, call.caller.name);
  if (!st.ok()) return StatusResponse(st);
  auto r = s.jobs->Get(id);
  if (!r.ok()) return StatusResponse(r.status());
  return OkJson(JobRecordJson(*r, false), 202);
}

Response RunBackupNow(Services& s, const ApiCall& call) {
  auto body = JsonBodyObject(call.request);
  if (!body.ok()) return StatusResponse(body.status());
  std::string repository;
  if (body->contains("repository")) {
    if (!(*body)["repository"].is_string())
      return ErrorJson(400, "repository must be a repository's name");
    repository = (*body)["repository"].get<std::string>();
    body->erase("repository");
  } else if (s.config && s.config->repositories.size() == 1) {
    repository = s.config->repositories.front().name;
  } else {
    return ErrorJson(400,
                     "name the repository to back up into "
                     "(\"repository\": NAME)");
  }
  return SubmitJob(s, call, "backup", repository, std::move(*body));
}

RouteHandler RepositoryJob(Services& s, std::string kind) {
  return [&s, kind](const ApiCall& call) {
    auto body = JsonBodyObject(call.request);
    if (!body.ok()) return StatusResponse(body.status());
    return SubmitJob(s, call, kind, *call.Param("name"), std::move(*body));
  };
}

json Param(const char* name, const char* where, const char* type,
           const char* description) {
  return {{"name", name},
          {"in", where},
          {"schema", {{"type", type}}},
          {"description", description}};
}

json JsonBody(const char* description, json properties) {
  return {{"required", false},
          {"content",
           {{"application/json",
             {{"schema", {{"type", "object"}, {"properties", properties}}}}}}},
          {"description", description}};
}

const json kAccepted = {
    {"202", {{"description", "queued: {\"job\": ID}; Location names the job"}}},
    {"400", {{"description", "a bad parameter, named in {\"error\"}"}}},
    {"404", {{"description", "no such repository"}}}};

}  // namespace

std::vector<Route> JobRoutes(Services& s, int max_event_streams) {
  const json num = {{"type", "number"}};
  const json integer = {{"type", "integer"}};
  const json boolean = {{"type", "boolean"}};
  const json names = {{"type", "array"}, {"items", {{"type", "string"}}}};
  std::vector<Route> routes = {
      {"GET",
       "/api/v1/jobs",
       Access::kRole,
       Role::kAuditor,
       "list jobs, newest first (filter by state, kind, repository, since; "
       "page with before)",
       {{"parameters",
         {Param("state", "query", "string",
                "queued, running, succeeded, partial, failed, cancelled or "
                "interrupted"),
          Param("kind", "query", "string", "backup, forget, gc, check, ..."),
          Param("repository", "query", "string", "a repository's name"),
          Param("since", "query", "string",
                "ISO 8601 time or date: jobs queued at or after it"),
          Param("limit", "query", "integer", "1 to 1000 (default 100)"),
          Param("before", "query", "integer",
                "only jobs with a smaller id (next_before of the last page)")}},
        {"responses",
         {{"200",
           {{"description", "{\"jobs\": [...], \"next_before\": ID|null}"}}},
          {"400", {{"description", "a bad filter"}}}}}},
       [&s](const ApiCall& c) { return ListJobs(s, c); }},
      {"GET",
       "/api/v1/jobs/{id}",
       Access::kRole,
       Role::kAuditor,
       "one job with its items (per-VM outcome and bytes), result and last "
       "progress",
       {{"responses",
         {{"200", {{"description", "the job"}}},
          {"404", {{"description", "no such job"}}}}}},
       WithId(s, ShowJob)},
      {"GET",
       "/api/v1/jobs/{id}/log",
       Access::kRole,
       Role::kAuditor,
       "a job's log lines after line `after` (at most 5000 at a time)",
       {{"parameters",
         {Param("after", "query", "integer",
                "the last line number already read (default 0)")}},
        {"responses",
         {{"200",
           {{"description",
             "{\"job\", \"lines\": [{\"line\", "
             "\"text\"}], \"next_after\"}"}}},
          {"404", {{"description", "no such job"}}}}}},
       WithId(s, JobLog)},
      {"POST",
       "/api/v1/jobs/{id}/cancel",
       Access::kRole,
       Role::kOperator,
       "cancel a job: a queued one never runs, a running one stops at its "
       "next check (a cancelled backup leaves no new point)",
       {{"responses",
         {{"202", {{"description", "cancelled or asked to stop: the job"}}},
          {"404", {{"description", "no such job"}}},
          {"409", {{"description", "the job has already ended"}}}}}},
       WithId(s, CancelJob)},
      {"POST",
       "/api/v1/backups",
       Access::kRole,
       Role::kOperator,
       "back up VMs of the host now, as a job",
       {{"requestBody",
         JsonBody("all VMs ({\"all\": true}, optionally \"exclude\") or a "
                  "selection ({\"vms\": [...]})",
                  {{"repository", {{"type", "string"}}},
                   {"all", boolean},
                   {"vms", names},
                   {"exclude", names},
                   {"parallel", integer},
                   {"limit_read", num},
                   {"adaptive", boolean},
                   {"full", boolean}})},
        {"responses", kAccepted}},
       [&s](const ApiCall& c) { return RunBackupNow(s, c); }},
      {"POST",
       "/api/v1/repositories/{name}/forget",
       Access::kRole,
       Role::kAdmin,
       "remove recovery points by a retention policy, as a job (gc then "
       "frees their space)",
       {{"requestBody", JsonBody("at least one keep_* rule",
                                 {{"keep_last", integer},
                                  {"keep_hourly", integer},
                                  {"keep_daily", integer},
                                  {"keep_weekly", integer},
                                  {"keep_monthly", integer},
                                  {"keep_yearly", integer},
                                  {"keep_within", {{"type", "string"}}},
                                  {"name", {{"type", "string"}}},
                                  {"dry_run", boolean}})},
        {"responses", kAccepted}},
       RepositoryJob(s, "forget")},
      {"POST",
       "/api/v1/repositories/{name}/gc",
       Access::kRole,
       Role::kAdmin,
       "delete the data no recovery point uses, as a job",
       {{"requestBody", JsonBody("percentages as haven gc takes them",
                                 {{"repack_below", num},
                                  {"max_unused", num},
                                  {"dry_run", boolean}})},
        {"responses", kAccepted}},
       RepositoryJob(s, "gc")},
      {"POST",
       "/api/v1/repositories/{name}/check",
       Access::kRole,
       Role::kOperator,
       "verify that every recovery point can be restored, reading a sample "
       "of the data, as a job",
       {{"requestBody",
         JsonBody("read_data_percent: share of packs read and verified "
                  "(0: structure only)",
                  {{"read_data_percent", num}})},
        {"responses", kAccepted}},
       RepositoryJob(s, "check")},
      {"POST",
       "/api/v1/repositories/{name}/verify",
       Access::kRole,
       Role::kOperator,
       "prove the latest point of VMs by booting each as a throw-away VM on "
       "an isolated network (haven verify-restore), one at a time, as a job",
       {{"requestBody",
         JsonBody(
             "{\"all\": true} or {\"vms\": [NAME, ...]}; console: text "
             "the serial console must show; "
             "agent: the guest agent must answer (the default); "
             "timeout: seconds",
             {{"all", boolean},
              {"vms", {{"type", "array"}, {"items", {{"type", "string"}}}}},
              {"console", {{"type", "string"}}},
              {"agent", boolean},
              {"timeout", num}})},
        {"responses", kAccepted}},
       RepositoryJob(s, "verify")},
  };
  routes.push_back(EventsRoute(s, max_event_streams));
  return routes;
}

}  // namespace haven::appliance
