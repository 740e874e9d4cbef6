#include "appliance/schedule_spec.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <initializer_list>

#include "agent/host_backup.h"
#include "appliance/agent_jobs.h"  // --- agents: jobs ---
#include "appliance/job_kinds.h"
#include "appliance/sync_jobs.h"   // --- copies ---
#include "repository/retention.h"

namespace haven::appliance {
namespace {

using nlohmann::json;

constexpr size_t kMaxNameBytes = 64;
constexpr size_t kMaxVmNameBytes = 255;
constexpr size_t kMaxVms = 1000;
constexpr int64_t kMaxKeepCount = 1000000;

Status Bad(std::string_view field, std::string_view what) {
  return InvalidArgument(std::string(field) + ": " + std::string(what));
}

std::string Join(std::initializer_list<const char*> names) {
  std::string out;
  for (const char* n : names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

// Refuses any key of `object` not in `known`.
Status OnlyKeys(const json& object, std::string_view field,
                std::initializer_list<const char*> known) {
  for (const auto& item : object.items()) {
    const std::string& key = item.key();
    bool found = std::any_of(known.begin(), known.end(),
                             [&](const char* k) { return key == k; });
    if (!found)
      return Bad(field,
                 "unknown field " + QuoteUntrusted(key) +
                     (known.size() == 0 ? std::string(" (none taken)")
                                        : " (known: " + Join(known) + ")"));
  }
  return OkStatus();
}

Status CheckName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes)
    return Bad("name", "must be 1 to 64 characters");
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
      return Bad("name", QuoteUntrusted(name) +
                             " may hold only letters, digits, '.', '_' and "
                             "'-', and must start with a letter or digit");
  }
  return OkStatus();
}

// A list of VM names or globs: strings of printable characters.
Status CheckVmList(const json& list, std::string_view field, bool non_empty) {
  if (!list.is_array()) return Bad(field, "must be a list of VM names");
  if (non_empty && list.empty()) return Bad(field, "must name at least one VM");
  if (list.size() > kMaxVms) return Bad(field, "more than 1000 entries");
  for (size_t i = 0; i < list.size(); ++i) {
    std::string item = std::string(field) + "[" + std::to_string(i) + "]";
    if (!list[i].is_string()) return Bad(item, "must be a string");
    const std::string& s = list[i].get_ref<const std::string&>();
    if (s.empty() || s.size() > kMaxVmNameBytes)
      return Bad(item, "must be 1 to 255 bytes");
    for (unsigned char c : s)
      if (c < 0x20 || c == 0x7f)
        return Bad(item, QuoteUntrusted(s) + " holds a control character");
  }
  return OkStatus();
}

Status CheckBool(const json& p, const char* key, std::string_view field) {
  if (p.contains(key) && !p[key].is_boolean())
    return Bad(std::string(field) + "." + key, "must be true or false");
  return OkStatus();
}

Status CheckNumber(const json& p, const char* key, double lo, double hi,
                   std::string_view field) {
  if (!p.contains(key)) return OkStatus();
  const json& v = p[key];
  if (!v.is_number() || !std::isfinite(v.get<double>()) ||
      v.get<double>() < lo || v.get<double>() > hi) {
    char range[64];
    std::snprintf(range, sizeof range, "must be a number from %g to %g", lo,
                  hi);
    return Bad(std::string(field) + "." + key, range);
  }
  return OkStatus();
}

Status CheckBackupParams(const json& p) {
  HAVEN_RETURN_IF_ERROR(OnlyKeys(
      p, "params",
      {"all", "vms", "exclude", "parallel", "limit_read", "adaptive", "full"}));
  bool all = p.contains("all");
  if (all && !(p["all"].is_boolean() && p["all"].get<bool>()))
    return Bad("params.all", "must be true (or left out with \"vms\")");
  if (all == p.contains("vms"))
    return Bad("params", "give either \"all\": true or \"vms\": [names]");
  if (p.contains("vms"))
    HAVEN_RETURN_IF_ERROR(CheckVmList(p["vms"], "params.vms", true));
  if (p.contains("exclude"))
    HAVEN_RETURN_IF_ERROR(CheckVmList(p["exclude"], "params.exclude", false));
  if (p.contains("parallel")) {
    const json& n = p["parallel"];
    if (!n.is_number_integer() || n.get<int64_t>() < 1 ||
        n.get<int64_t>() > agent::kMaxParallel)
      return Bad("params.parallel", "must be an integer from 1 to " +
                                        std::to_string(agent::kMaxParallel));
  }
  HAVEN_RETURN_IF_ERROR(CheckBool(p, "adaptive", "params"));
  HAVEN_RETURN_IF_ERROR(CheckBool(p, "full", "params"));
  // MB/s (10^6 bytes), as the backup job reads it.
  return CheckNumber(p, "limit_read", 0, 1e6, "params");
}

Status CheckGcParams(const json& p) {
  HAVEN_RETURN_IF_ERROR(
      OnlyKeys(p, "params", {"repack_below", "max_unused", "dry_run"}));
  HAVEN_RETURN_IF_ERROR(CheckNumber(p, "repack_below", 0, 100, "params"));
  HAVEN_RETURN_IF_ERROR(CheckNumber(p, "max_unused", 0, 100, "params"));
  return CheckBool(p, "dry_run", "params");
}

}  // namespace

Status CheckRetention(const json& policy, std::string_view field) {
  std::string f(field);
  if (!policy.is_object()) return Bad(f, "must be an object of keep_* rules");
  HAVEN_RETURN_IF_ERROR(
      OnlyKeys(policy, f,
               {"keep_last", "keep_hourly", "keep_daily", "keep_weekly",
                "keep_monthly", "keep_yearly", "keep_within"}));
  bool any = false;
  for (const auto& [key, value] : policy.items()) {
    std::string item = f + "." + key;
    if (key == "keep_within") {
      if (!value.is_string())
        return Bad(item, "must be a duration such as \"7d\" or \"1y6m\"");
      auto seconds =
          repository::ParseRetentionDuration(value.get<std::string>());
      if (!seconds.ok()) return Bad(item, seconds.status().message());
      any = true;
      continue;
    }
    if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
        value.get<int64_t>() > kMaxKeepCount)
      return Bad(item, "must be an integer from 0 to 1000000");
    any = any || value.get<int64_t>() > 0;
  }
  if (!any)
    return Bad(f,
               "a retention policy needs at least one rule (keep_last, "
               "keep_daily, ... above 0, or keep_within); it would keep "
               "everything");
  return OkStatus();
}

Status CheckScheduleParams(std::string_view kind, const json& params) {
  if (!params.is_object()) return Bad("params", "must be a JSON object");
  if (kind == "backup") return CheckBackupParams(params);
  if (kind == "forget") {
    // A retention policy, and optionally one backup name and a dry run.
    json policy = params;
    if (params.contains("name")) {
      if (!params["name"].is_string() ||
          params["name"].get<std::string>().empty())
        return Bad("params.name", "must be a backup (VM) name");
      policy.erase("name");
    }
    HAVEN_RETURN_IF_ERROR(CheckBool(params, "dry_run", "params"));
    policy.erase("dry_run");
    return CheckRetention(policy, "params");
  }
  if (kind == "check") {
    HAVEN_RETURN_IF_ERROR(OnlyKeys(params, "params", {"read_data_percent"}));
    return CheckNumber(params, "read_data_percent", 0, 100, "params");
  }
  if (kind == "gc") return CheckGcParams(params);
  if (kind == "verify") {  // one verified restore per VM, one at a time
    Status s = ValidateVerifyParams(params);
    if (!s.ok()) return Bad("params", s.message());
    return OkStatus();
  }
  // --- agents: jobs ---
  if (kind == "agent-backup") {
    Status s = ValidateAgentBackupParams(params);
    if (!s.ok()) return Bad("params", s.message());
    return OkStatus();
  }
  // --- copies ---
  if (kind == "sync") {
    Status s = ValidateSyncParams(params);
    if (!s.ok()) return Bad("params", s.message());
    return OkStatus();
  }
  return Bad("kind", QuoteUntrusted(kind) +
                         " is not a job kind a schedule runs (backup, forget, "
                         "gc, check, verify, agent-backup, sync)");
}

Result<CalendarEvent> ParseScheduleCalendar(std::string_view text) {
  auto event = ParseCalendar(text);
  if (!event.ok()) return Bad("calendar", event.status().message());
  return event;
}

Result<ScheduleSpec> ParseScheduleSpec(const json& body,
                                       const ScheduleSpec* base,
                                       const RepositoryKnown& known) {
  if (!body.is_object())
    return InvalidArgument("the body must be a JSON object");
  HAVEN_RETURN_IF_ERROR(
      OnlyKeys(body, "body",
               {"name", "calendar", "kind", "repository", "params", "retention",
                "random_delay_seconds", "persistent", "enabled"}));
  ScheduleSpec spec = base ? *base : ScheduleSpec{};
  auto text = [&](const char* key, std::string* out) -> Status {
    if (!body.contains(key)) {
      if (base == nullptr) return Bad(key, "is required");
      return OkStatus();
    }
    if (!body[key].is_string()) return Bad(key, "must be a string");
    *out = body[key].get<std::string>();
    return OkStatus();
  };
  auto flag = [&](const char* key, bool* out) -> Status {
    if (!body.contains(key)) return OkStatus();
    if (!body[key].is_boolean()) return Bad(key, "must be true or false");
    *out = body[key].get<bool>();
    return OkStatus();
  };
  HAVEN_RETURN_IF_ERROR(text("name", &spec.name));
  HAVEN_RETURN_IF_ERROR(text("calendar", &spec.calendar));
  HAVEN_RETURN_IF_ERROR(text("kind", &spec.kind));
  HAVEN_RETURN_IF_ERROR(text("repository", &spec.repository));
  HAVEN_RETURN_IF_ERROR(flag("persistent", &spec.persistent));
  HAVEN_RETURN_IF_ERROR(flag("enabled", &spec.enabled));
  if (body.contains("params")) spec.params = body["params"];
  if (body.contains("retention")) spec.retention = body["retention"];
  if (body.contains("random_delay_seconds")) {
    const json& d = body["random_delay_seconds"];
    if (!d.is_number_integer() || d.get<int64_t>() < 0 ||
        d.get<int64_t>() > kMaxRandomDelaySeconds)
      return Bad("random_delay_seconds",
                 "must be an integer from 0 to 86400 (a day)");
    spec.random_delay_seconds = d.get<int64_t>();
  }

  HAVEN_RETURN_IF_ERROR(CheckName(spec.name));
  HAVEN_RETURN_IF_ERROR(ParseScheduleCalendar(spec.calendar).status());
  HAVEN_RETURN_IF_ERROR(CheckScheduleParams(spec.kind, spec.params));
  if (!spec.retention.is_null()) {
    if (spec.kind != "backup")
      return Bad("retention",
                 "only a backup schedule carries a retention policy (a "
                 "forget schedule has it in params)");
    HAVEN_RETURN_IF_ERROR(CheckRetention(spec.retention, "retention"));
  }
  if (spec.repository.empty()) return Bad("repository", "must not be empty");
  if (!known(spec.repository))
    return Bad("repository", "no repository named " +
                                 QuoteUntrusted(spec.repository) +
                                 " is configured");
  return spec;
}

}  // namespace haven::appliance
