#include "repository/manifest_json.h"

namespace haven::repository {

nlohmann::ordered_json ManifestJson(const Manifest& m) {
  nlohmann::ordered_json j;
  j["id"] = m.id;
  j["name"] = m.name;
  j["kind"] = m.kind;
  j["time"] = m.time;
  j["hostname"] = m.hostname;
  j["consistency"] = m.consistency;
  j["consistency_reason"] = m.consistency_reason;
  j["parent"] = m.parent;
  if (!m.agent_id.empty()) j["agent_id"] = m.agent_id;
  if (!m.agent_key.empty()) j["agent_key"] = m.agent_key;
  if (!m.repaired_from.empty()) {
    j["repaired_from"] = m.repaired_from;
    j["repaired_time"] = m.repaired_time;
  }
  j["logical_bytes"] = m.stats.logical_bytes;
  j["read_bytes"] = m.stats.read_bytes;
  j["hole_bytes"] = m.stats.hole_bytes;
  j["new_chunks"] = m.stats.new_chunks;
  j["new_raw_bytes"] = m.stats.new_raw_bytes;
  j["new_stored_bytes"] = m.stats.new_stored_bytes;
  j["duration_seconds"] = m.stats.duration_seconds;
  if (!m.vm_uuid.empty()) {
    j["vm_uuid"] = m.vm_uuid;
    j["checkpoint"] = m.checkpoint;
  }
  if (m.kind == "files") {
    j["paths"] = m.file_paths;
    j["entries"] = m.file_entries;
    j["partial"] = m.partial;
  }
  j["disks"] = nlohmann::ordered_json::array();
  for (const auto* d : m.ImageDisks())
    j["disks"].push_back({{"name", d->name},
                          {"source", d->source},
                          {"capture", d->capture},
                          {"size", d->size},
                          {"chunk_size", d->chunk_size},
                          {"chunks", d->tree.count},
                          {"lost_bytes", d->LostBytes()}});
  j["config"] = nlohmann::ordered_json::array();
  for (const auto* c : m.ConfigFiles())
    j["config"].push_back({{"name", c->name}, {"size", c->size}});
  j["notes"] = m.notes;
  return j;
}

}  // namespace haven::repository
