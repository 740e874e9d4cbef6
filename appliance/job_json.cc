#include "appliance/job_json.h"

namespace haven::appliance {
namespace {

nlohmann::json TimeOrNull(const std::string& t) {
  return t.empty() ? nlohmann::json(nullptr) : nlohmann::json(t);
}

}  // namespace

nlohmann::json ProgressJson(int64_t job_id, const Progress& p) {
  double eta = p.eta_seconds;
  if (eta < 0 && p.total_bytes > p.done_bytes && p.bytes_per_second > 0)
    eta =
        static_cast<double>(p.total_bytes - p.done_bytes) / p.bytes_per_second;
  return {{"id", job_id},
          {"phase", p.phase},
          {"item", p.item},
          {"done_bytes", p.done_bytes},
          {"total_bytes", p.total_bytes},
          {"new_bytes", p.new_bytes},
          {"bytes_per_second", p.bytes_per_second},
          {"elapsed_seconds", p.elapsed_seconds},
          {"eta_seconds", eta},
          {"items_done", p.items_done},
          {"items_running", p.items_running},
          {"items_waiting", p.items_waiting},
          {"items_failed", p.items_failed}};
}

nlohmann::json JobRecordJson(const JobRecord& r, bool full) {
  nlohmann::json j = {
      {"id", r.id},
      {"kind", r.spec.kind},
      {"repository", r.spec.repository},
      {"params", r.spec.params},
      {"requested_by", r.spec.requested_by},
      {"schedule_id", r.spec.schedule_id ? nlohmann::json(*r.spec.schedule_id)
                                         : nlohmann::json(nullptr)},
      {"state", std::string(JobStateName(r.state))},
      {"queued_at", r.queued_at},
      {"started_at", TimeOrNull(r.started_at)},
      {"ended_at", TimeOrNull(r.ended_at)},
      {"duration_seconds", r.duration_seconds},
      {"error", r.outcome.error},
      {"read_bytes", r.outcome.read_bytes},
      {"new_bytes", r.outcome.new_bytes},
      {"stored_bytes", r.outcome.stored_bytes},
  };
  if (r.state == JobState::kQueued) j["queue_reason"] = r.queue_reason;
  if (r.progress) j["progress"] = ProgressJson(r.id, *r.progress);
  if (!full) return j;
  nlohmann::json items = nlohmann::json::array();
  for (const JobItem& i : r.outcome.items)
    items.push_back({{"name", i.name},
                     {"outcome", i.outcome},
                     {"error", i.error},
                     {"read_bytes", i.read_bytes},
                     {"new_bytes", i.new_bytes},
                     {"stored_bytes", i.stored_bytes},
                     {"detail", i.detail}});
  j["items"] = items;
  j["result"] = r.outcome.result;
  return j;
}

}  // namespace haven::appliance
