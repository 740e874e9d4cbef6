#include "appliance/routes_schedules_doc.h"

namespace haven::appliance::doc {
namespace {

using nlohmann::json;

json Str(const char* description) {
  return {{"type", "string"}, {"description", description}};
}
json Time(const char* description) {
  return {{"type", "string"},
          {"format", "date-time"},
          {"nullable", true},
          {"description", description}};
}

json RetentionSchema() {
  json count = {{"type", "integer"}, {"minimum", 0}, {"maximum", 1000000}};
  return {{"type", "object"},
          {"additionalProperties", false},
          {"description",
           "restic-style retention, per VM (backup name); at least one rule"},
          {"properties",
           {{"keep_last", count},
            {"keep_hourly", count},
            {"keep_daily", count},
            {"keep_weekly", count},
            {"keep_monthly", count},
            {"keep_yearly", count},
            {"keep_within", Str("a span such as \"7d\", \"1y6m\"")}}}};
}

// The writable fields; `required` for a create.
json SpecSchema(bool create) {
  json s = {
      {"type", "object"},
      {"additionalProperties", false},
      {"properties",
       {{"name",
         {{"type", "string"},
          {"pattern", "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}}},
        {"calendar",
         Str("systemd calendar event (systemd.time(7)): \"daily\", "
             "\"Mon..Fri 02:00\", \"*-*-* 00/6:00:00\"; local time unless "
             "it ends in UTC")},
        {"kind",
         {{"type", "string"},
          {"enum",
           {"backup", "forget", "gc", "check", "verify", "agent-backup",
            "sync"}}}},
        {"repository", Str("a configured repository's name")},
        {"params",
         {{"type", "object"},
          {"description",
           "backup: {\"all\": true} or {\"vms\": [...]}, optional "
           "\"exclude\": [globs], \"parallel\" (1..32), \"limit_read\", "
           "\"adaptive\"; forget: a retention policy (keep_*); check: "
           "{\"read_data_percent\": 0..100}; gc: {}; agent-backup: "
           "{\"agent\": ID or NAME, \"paths\": [...]}, optional \"name\", "
           "\"excludes\", \"exclude_caches\", \"one_file_system\"; sync: "
           "{\"remote\": NAME, \"direction\": \"pull\" or \"push\"}, "
           "optional \"names\", \"refs\", keep_* counts, "
           "\"bytes_per_second\", \"dry_run\""}}},
        {"retention",
         json{{"nullable", true},
              {"allOf", {RetentionSchema()}},
              {"description",
               "backup schedules only: after each run that backed up VMs, "
               "a forget job applies this policy to those VMs"}}},
        {"random_delay_seconds",
         {{"type", "integer"}, {"minimum", 0}, {"maximum", 86400}}},
        {"persistent",
         {{"type", "boolean"},
          {"default", true},
          {"description",
           "a run missed while havend was down runs once at start"}}},
        {"enabled", {{"type", "boolean"}, {"default", true}}}}}};
  if (create)
    s["required"] = json::array({"name", "calendar", "kind", "repository"});
  return s;
}

json ScheduleSchema() {
  json s = SpecSchema(false);
  s.erase("additionalProperties");
  json& p = s["properties"];
  p["id"] = {{"type", "integer"}};
  p["normalized"] = Str("the calendar event as systemd-analyze prints it");
  p["next_run"] = Time(
      "when it runs next (elapse + random delay); null "
      "when disabled or it never elapses again");
  p["next_elapse"] = Time("the calendar time of that run");
  p["last_triggered"] = Time("when it last fired");
  p["last_elapse"] = Time("the calendar time it last fired for");
  p["last_job"] = {{"type", "integer"}, {"nullable", true}};
  p["last_error"] =
      Str("why the last submission failed; empty when it did not");
  p["created_at"] = Time("");
  p["changed_at"] = Time("");
  return s;
}

json JsonContent(const json& schema) {
  return {{"application/json", {{"schema", schema}}}};
}

json Error(const char* description) {
  return {{"description", description},
          {"content",
           JsonContent({{"type", "object"},
                        {"properties", {{"error", {{"type", "string"}}}}}})}};
}

json Count() {
  return {{"name", "count"},
          {"in", "query"},
          {"schema",
           {{"type", "integer"},
            {"minimum", 1},
            {"maximum", 100},
            {"default", 5}}}};
}

json OneSchedule(const char* description) {
  return {{"description", description},
          {"content", JsonContent(ScheduleSchema())}};
}

}  // namespace

json ListSchedules() {
  return {
      {"responses",
       {{"200",
         {{"description", "every schedule, by id"},
          {"content", JsonContent({{"type", "object"},
                                   {"properties",
                                    {{"schedules",
                                      {{"type", "array"},
                                       {"items", ScheduleSchema()}}}}}})}}}}}};
}

json CreateSchedule() {
  return {{"requestBody",
           {{"required", true}, {"content", JsonContent(SpecSchema(true))}}},
          {"responses",
           {{"201", OneSchedule("created")},
            {"400", Error("a field is missing or wrong; the message names it")},
            {"409", Error("the name is taken")}}}};
}

json GetSchedule() {
  return {{"responses",
           {{"200", OneSchedule("the schedule")},
            {"404", Error("no such schedule")}}}};
}

json ChangeSchedule() {
  return {{"requestBody",
           {{"required", true}, {"content", JsonContent(SpecSchema(false))}}},
          {"responses",
           {{"200", OneSchedule("the changed schedule")},
            {"400", Error("a field is wrong; the message names it")},
            {"404", Error("no such schedule")},
            {"409", Error("the new name is taken")}}}};
}

json DeleteSchedule() {
  return {
      {"responses",
       {{"200",
         {{"description", "deleted"},
          {"content", JsonContent({{"type", "object"},
                                   {"properties",
                                    {{"deleted", {{"type", "integer"}}}}}})}}},
        {"404", Error("no such schedule")}}}};
}

json NextRuns() {
  json run = {{"type", "object"},
              {"properties",
               {{"elapse", Time("the calendar time")},
                {"run", Time("the elapse plus the random delay")},
                {"run_local", Str("the run in havend's local time zone")}}}};
  return {
      {"parameters", {Count()}},
      {"responses",
       {{"200",
         {{"description", "the next runs (fewer when the event ends)"},
          {"content",
           JsonContent({{"type", "object"},
                        {"properties",
                         {{"id", {{"type", "integer"}}},
                          {"normalized", {{"type", "string"}}},
                          {"next", {{"type", "array"}, {"items", run}}}}}})}}},
        {"400", Error("count is not 1..100")},
        {"404", Error("no such schedule")}}}};
}

json RunNow() {
  return {{"responses",
           {{"202",
             {{"description", "queued as a job"},
              {"content", JsonContent({{"type", "object"},
                                       {"properties",
                                        {{"job", {{"type", "integer"}}}}}})}}},
            {"404", Error("no such schedule")}}}};
}

json CalendarPreview() {
  return {
      {"parameters",
       {{{"name", "expr"},
         {"in", "query"},
         {"required", true},
         {"schema", {{"type", "string"}, {"maxLength", 256}}},
         {"description", "a systemd calendar event"}},
        Count()}},
      {"responses",
       {{"200",
         {{"description", "the event is valid"},
          {"content",
           JsonContent(
               {{"type", "object"},
                {"properties",
                 {{"expr", {{"type", "string"}}},
                  {"normalized", {{"type", "string"}}},
                  {"next",
                   {{"type", "array"},
                    {"items",
                     {{"type", "object"},
                      {"properties",
                       {{"time", {{"type", "string"}, {"format", "date-time"}}},
                        {"local", {{"type", "string"}}}}}}}}}}}})}}},
        {"400", Error("what is wrong with the event, and its column")}}}};
}

}  // namespace haven::appliance::doc
