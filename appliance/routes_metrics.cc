// GET /metrics: the Prometheus scrape endpoint (appliance/metrics.h).
#include "appliance/history_queries.h"
#include "appliance/metrics.h"
#include "appliance/notify_monitor.h"
#include "appliance/routes.h"

namespace haven::appliance {

std::vector<Route> MetricsRoutes(Services& s,
                                 const RepositoryUsageCache* usage) {
  nlohmann::json openapi = {
      {"description",
       "Prometheus text exposition format 0.0.4: per VM the time and size of "
       "its last successful backup, jobs by kind and state, job durations "
       "(histogram), jobs running and queued, repository stored and logical "
       "bytes and points, process memory. Scrape with an auditor token as "
       "the bearer credential."},
      {"responses",
       {{"200",
         {{
              "description",
              "the metrics",
          },
          {"content", {{"text/plain", {{"schema", {{"type", "string"}}}}}}}}},
        {"500", {{"description", "the state database could not be read"}}}}}};
  return {
      {"GET", "/metrics", Access::kRole, Role::kAuditor,
       "Prometheus metrics: backups per VM, jobs, repository usage", openapi,
       [&s, usage](const ApiCall&) -> Response {
         if (!s.db) return ErrorJson(503, "no state database");
         auto snapshot = CollectMetrics(*s.db, usage);
         if (!snapshot.ok()) return StatusResponse(snapshot.status());
         Response r;
         r.status = 200;
         r.headers.emplace_back("content-type", kMetricsContentType);
         r.body = RenderMetrics(snapshot.value());
         return r;
       }},
  };
}

}  // namespace haven::appliance
