// GET /api/v1/repositories/{name}/usage: a repository's measured usage
// over time (usage_history.h), for the console's chart.
#include <charconv>
#include <ctime>

#include "appliance/routes.h"
#include "appliance/usage_history.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

using json = nlohmann::json;

constexpr int kDefaultDays = 30;

Response Usage(Services& s, const ApiCall& call) {
  const std::string& name = *call.Param("name");
  if (s.repositories == nullptr || s.repositories->Find(name) == nullptr)
    return ErrorJson(404, "no repository named " + QuoteUntrusted(name));
  int days = kDefaultDays;
  if (const std::string* v = call.Query("days")) {
    auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), days);
    if (ec != std::errc() || end != v->data() + v->size() || days < 1 ||
        days > UsageHistory::kMaxDays)
      return ErrorJson(400, "days is a whole number from 1 to " +
                                std::to_string(UsageHistory::kMaxDays));
  }
  if (s.usage_history == nullptr)
    return ErrorJson(503, "the usage history is not kept by this havend");
  int64_t since = static_cast<int64_t>(std::time(nullptr)) - days * 86400LL;
  auto samples = s.usage_history->Samples(name, since);
  if (!samples.ok()) return StatusResponse(samples.status());
  json list = json::array();
  for (const UsageSample& u : *samples)
    list.push_back(
        {{"time", FormatTime(u.time * 1000000000, TimeStyle::kRfc3339Utc)},
         {"logical_bytes", u.logical_bytes},
         {"stored_bytes", u.stored_bytes},
         {"points", u.points}});
  return OkJson({{"repository", name}, {"days", days}, {"samples", list}});
}

}  // namespace

std::vector<Route> UsageRoutes(Services& s) {
  const json count = {{"type", "integer"}, {"minimum", 0}};
  const json sample = {
      {"type", "object"},
      {"properties",
       {{"time", {{"type", "string"}, {"format", "date-time"}}},
        {"logical_bytes", count},
        {"stored_bytes", count},
        {"points", count}}}};
  return {
      {"GET",
       "/api/v1/repositories/{name}/usage",
       Access::kRole,
       Role::kAuditor,
       "a repository's measured usage over time, oldest first",
       {{"parameters",
         {{{"name", "days"},
           {"in", "query"},
           {"required", false},
           {"schema",
            {{"type", "integer"},
             {"minimum", 1},
             {"maximum", UsageHistory::kMaxDays},
             {"default", kDefaultDays}}},
           {"description",
            "how far back, in days; samples are kept 400 days, at most one "
            "per 10 minutes"}}}},
        {"responses",
         {{"200",
           {{"description",
             "{repository, days, samples: [{time, logical_bytes, "
             "stored_bytes, points}]}: time is RFC 3339 UTC; logical = "
             "the points' data before dedup and compression, stored = "
             "what the repository holds"},
            {"content",
             {{"application/json",
               {{"schema",
                 {{"type", "object"},
                  {"properties",
                   {{"repository", {{"type", "string"}}},
                    {"days", {{"type", "integer"}}},
                    {"samples",
                     {{"type", "array"}, {"items", sample}}}}}}}}}}}}},
          {"400", {{"description", "days is not 1 to 400"}}},
          {"404", {{"description", "no such repository"}}}}}},
       [&s](const ApiCall& call) { return Usage(s, call); }},
  };
}

}  // namespace haven::appliance
