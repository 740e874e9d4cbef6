// /api/v1/schedules and /api/v1/calendar: the scheduler's part of the API.
// Reading is the auditor's, running a schedule now the operator's, and
// writing schedules the admin's.
#include <time.h>

#include "appliance/routes.h"
#include "appliance/routes_schedules_doc.h"
#include "appliance/scheduler.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

using nlohmann::json;

constexpr int kDefaultCount = 5;
constexpr int kMaxCount = 100;

json TimeOrNull(int64_t seconds) {
  if (seconds <= 0) return nullptr;
  return FormatTime(seconds * 1000000000, TimeStyle::kRfc3339Utc);
}

// "Mon 2026-12-07 02:00:00 CET", as systemd-analyze shows a run: the
// appliance's local time, in which calendar events without UTC are read.
std::string LocalTime(int64_t seconds) {
  time_t t = static_cast<time_t>(seconds);
  struct tm tm;
  if (localtime_r(&t, &tm) == nullptr) return "";
  char buf[64];
  size_t n = strftime(buf, sizeof buf, "%a %Y-%m-%d %H:%M:%S %Z", &tm);
  return std::string(buf, n);
}

json RunJson(int64_t elapse, int64_t run) {
  return {{"elapse", TimeOrNull(elapse)},
          {"run", TimeOrNull(run)},
          {"run_local", LocalTime(run)}};
}

json ScheduleJson(Scheduler& scheduler, const Schedule& s) {
  auto next = scheduler.NextRuns(s, 1);
  return {
      {"id", s.id},
      {"name", s.spec.name},
      {"calendar", s.spec.calendar},
      {"normalized", s.normalized},
      {"kind", s.spec.kind},
      {"repository", s.spec.repository},
      {"params", s.spec.params},
      {"retention", s.spec.retention},
      {"random_delay_seconds", s.spec.random_delay_seconds},
      {"persistent", s.spec.persistent},
      {"enabled", s.spec.enabled},
      {"next_run", next.empty() ? json(nullptr) : TimeOrNull(next[0].run)},
      {"next_elapse",
       next.empty() ? json(nullptr) : TimeOrNull(next[0].elapse)},
      {"last_triggered", TimeOrNull(s.last_triggered)},
      {"last_elapse", TimeOrNull(s.last_elapse)},
      {"last_job", s.last_job_id > 0 ? json(s.last_job_id) : json(nullptr)},
      {"last_error", s.last_error},
      {"created_at", TimeOrNull(s.created)},
      {"changed_at", TimeOrNull(s.changed)},
  };
}

// The {id} of the path: a positive decimal integer.
Result<int64_t> IdParam(const ApiCall& call) {
  const std::string* text = call.Param("id");
  if (text == nullptr || text->empty() || text->size() > 18 ||
      text->find_first_not_of("0123456789") != std::string::npos ||
      (*text)[0] == '0')
    return InvalidArgument("schedule id " + QuoteUntrusted(text ? *text : "") +
                           " is not a positive integer");
  return std::stoll(*text);
}

// ?count=N: 1..100, default 5.
Result<int> CountQuery(const ApiCall& call) {
  const std::string* text = call.Query("count");
  if (text == nullptr) return kDefaultCount;
  if (text->empty() || text->size() > 3 ||
      text->find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(*text) < 1 || std::stoi(*text) > kMaxCount)
    return InvalidArgument("count " + QuoteUntrusted(*text) +
                           " must be an integer from 1 to 100");
  return std::stoi(*text);
}

Result<json> Body(const ApiCall& call) {
  json body = json::parse(call.request.body, nullptr, false);
  if (body.is_discarded()) return InvalidArgument("the body is not valid JSON");
  if (!body.is_object())
    return InvalidArgument("the body must be a JSON object");
  return body;
}

Response Created(Scheduler& scheduler, const Result<Schedule>& s, int code) {
  if (!s.ok()) return StatusResponse(s.status());
  return OkJson(ScheduleJson(scheduler, s.value()), code);
}

Response ListSchedules(Scheduler& sched) {
  auto list = sched.List();
  if (!list.ok()) return StatusResponse(list.status());
  json out = json::array();
  for (const Schedule& s : *list) out.push_back(ScheduleJson(sched, s));
  return OkJson({{"schedules", out}});
}

Response NextOf(Scheduler& sched, const ApiCall& call) {
  auto id = IdParam(call);
  if (!id.ok()) return StatusResponse(id.status());
  auto count = CountQuery(call);
  if (!count.ok()) return StatusResponse(count.status());
  auto s = sched.Get(*id);
  if (!s.ok()) return StatusResponse(s.status());
  json next = json::array();
  for (const ScheduledRun& r : sched.NextRuns(*s, *count))
    next.push_back(RunJson(r.elapse, r.run));
  return OkJson({{"id", s->id},
                 {"calendar", s->spec.calendar},
                 {"normalized", s->normalized},
                 {"enabled", s->spec.enabled},
                 {"random_delay_seconds", s->spec.random_delay_seconds},
                 {"next", next}});
}

Response Calendar(Scheduler& sched, const ApiCall& call) {
  const std::string* expr = call.Query("expr");
  if (expr == nullptr || expr->empty())
    return ErrorJson(400, "expr: give a calendar event, e.g. ?expr=daily");
  auto count = CountQuery(call);
  if (!count.ok()) return StatusResponse(count.status());
  auto event = ParseCalendar(*expr);
  if (!event.ok()) return StatusResponse(event.status());
  json next = json::array();
  int64_t from = sched.NowMs() / 1000;
  while (static_cast<int>(next.size()) < *count) {
    auto t = NextElapse(*event, from);
    if (!t) break;
    next.push_back({{"time", TimeOrNull(*t)}, {"local", LocalTime(*t)}});
    from = *t;
  }
  return OkJson(
      {{"expr", *expr}, {"normalized", Normalized(*event)}, {"next", next}});
}

}  // namespace

std::vector<Route> ScheduleRoutes(Services& services) {
  // The scheduler is looked up when a request comes, not when the table
  // is built: `havend openapi` builds it with no services at all.
  const std::string base = "/api/v1/schedules";
  return {
      {"GET", base, Access::kRole, Role::kAuditor,
       "list the schedules, each with its next run", doc::ListSchedules(),
       [&services](const ApiCall&) {
         return ListSchedules((*services.scheduler));
       }},
      {"POST", base, Access::kRole, Role::kAdmin,
       "create a schedule (a systemd calendar event and the job it runs)",
       doc::CreateSchedule(),
       [&services](const ApiCall& call) {
         auto body = Body(call);
         if (!body.ok()) return StatusResponse(body.status());
         return Created((*services.scheduler), (*services.scheduler).Add(*body),
                        201);
       }},
      {"GET", base + "/{id}", Access::kRole, Role::kAuditor,
       "show one schedule with its next run", doc::GetSchedule(),
       [&services](const ApiCall& call) {
         auto id = IdParam(call);
         if (!id.ok()) return StatusResponse(id.status());
         return Created((*services.scheduler), (*services.scheduler).Get(*id),
                        200);
       }},
      {"PUT", base + "/{id}", Access::kRole, Role::kAdmin,
       "change a schedule: the fields given replace the stored ones",
       doc::ChangeSchedule(),
       [&services](const ApiCall& call) {
         auto id = IdParam(call);
         if (!id.ok()) return StatusResponse(id.status());
         auto body = Body(call);
         if (!body.ok()) return StatusResponse(body.status());
         return Created((*services.scheduler),
                        (*services.scheduler).Change(*id, *body), 200);
       }},
      {"DELETE", base + "/{id}", Access::kRole, Role::kAdmin,
       "delete a schedule (its jobs stay in the history)",
       doc::DeleteSchedule(),
       [&services](const ApiCall& call) {
         auto id = IdParam(call);
         if (!id.ok()) return StatusResponse(id.status());
         Status s = (*services.scheduler).Remove(*id);
         if (!s.ok()) return StatusResponse(s);
         return OkJson({{"deleted", *id}});
       }},
      {"GET", base + "/{id}/next", Access::kRole, Role::kAuditor,
       "the next N run times of a schedule (random delay included)",
       doc::NextRuns(),
       [&services](const ApiCall& call) {
         return NextOf((*services.scheduler), call);
       }},
      {"POST", base + "/{id}/run", Access::kRole, Role::kOperator,
       "run a schedule's job now; its timed runs stay as they are",
       doc::RunNow(),
       [&services](const ApiCall& call) {
         auto id = IdParam(call);
         if (!id.ok()) return StatusResponse(id.status());
         auto job = (*services.scheduler).RunNow(*id, call.caller.name);
         if (!job.ok()) return StatusResponse(job.status());
         return OkJson({{"job", *job}}, 202);
       }},
      {"GET", "/api/v1/calendar", Access::kRole, Role::kAuditor,
       "check a calendar event: its normalized form and next N elapses",
       doc::CalendarPreview(),
       [&services](const ApiCall& call) {
         return Calendar((*services.scheduler), call);
       }},
  };
}

}  // namespace haven::appliance
