#include "restore/restore_plan_json.h"

#include <string>
#include <vector>

namespace haven::restore {
namespace {

constexpr int kPlanVersion = 1;

// Reads typed fields of one JSON object; the first bad one is remembered
// (named with `where`) and every later read is a no-op.
class Fields {
 public:
  Fields(const nlohmann::json& j, std::string where)
      : j_(j), where_(std::move(where)) {
    if (!j_.is_object()) Fail("", "an object");
  }
  void Str(const char* key, std::string& out) {
    if (const auto* v = Get(key, "a string", &nlohmann::json::is_string))
      out = v->get<std::string>();
  }
  void Bool(const char* key, bool& out) {
    if (const auto* v = Get(key, "true or false", &nlohmann::json::is_boolean))
      out = v->get<bool>();
  }
  void U64(const char* key, uint64_t& out) {
    if (const auto* v =
            Get(key, "a number of bytes", &nlohmann::json::is_number_unsigned))
      out = v->get<uint64_t>();
  }
  void Strings(const char* key, std::vector<std::string>& out) {
    const auto* v = Get(key, "a list of strings", &nlohmann::json::is_array);
    if (!v) return;
    for (const auto& s : *v) {
      if (!s.is_string()) return Fail(key, "a list of strings");
      out.push_back(s.get<std::string>());
    }
  }
  // The array `key` (nullptr when absent or not an array: an error).
  const nlohmann::json* Array(const char* key) {
    return Get(key, "a list", &nlohmann::json::is_array);
  }
  const nlohmann::json* Object(const char* key) {
    return Get(key, "an object", &nlohmann::json::is_object);
  }
  void Fail(const std::string& key, const char* want) {
    if (!status_.ok()) return;
    status_ = InvalidArgument(where_ + (key.empty() ? "" : "." + key) +
                              " must be " + want);
  }
  void Take(const Status& s) {
    if (status_.ok() && !s.ok()) status_ = s;
  }
  const Status& status() const { return status_; }

 private:
  const nlohmann::json* Get(const char* key, const char* want,
                            bool (nlohmann::json::*is)() const noexcept) {
    if (!status_.ok()) return nullptr;
    auto it = j_.find(key);
    if (it == j_.end() || !((*it).*is)()) {
      Fail(key, want);
      return nullptr;
    }
    return &*it;
  }
  const nlohmann::json& j_;
  std::string where_;
  Status status_;
};

}  // namespace

nlohmann::json VmPlanJson(const VmPlan& p) {
  nlohmann::json j;
  j["version"] = kPlanVersion;
  j["snapshot"] = p.snapshot.id;
  j["source_name"] = p.source_name;
  j["name"] = p.name;
  j["uuid"] = p.uuid;
  j["new_uuid"] = p.new_uuid;
  j["state"] = p.state;
  j["dir"] = p.dir;
  j["create_dirs"] = p.create_dirs;
  j["space"] = {{"needed", p.space_needed},
                {"full", p.space_full},
                {"free", p.space_free}};
  j["journal"] = p.journal;
  j["disks"] = nlohmann::json::array();
  for (const PlannedDisk& d : p.disks)
    j["disks"].push_back({{"target", d.target},
                          {"path", d.path},
                          {"format", d.format},
                          {"size", d.size},
                          {"data_bytes", d.data_bytes},
                          {"exists", d.exists},
                          {"resume", d.resume}});
  if (!p.instant_dir.empty()) {  // instant recovery only
    j["instant_dir"] = p.instant_dir;
    j["instant_xml"] = p.instant_xml;
    for (size_t i = 0; i < p.disks.size(); ++i)
      j["disks"][i]["overlay"] = p.disks[i].overlay;
  }
  j["networks"] = nlohmann::json::array();
  for (const PlannedNetwork& n : p.networks)
    j["networks"].push_back({{"name", n.name},
                             {"from", n.from},
                             {"action", n.action},
                             {"xml", n.xml},
                             {"by", n.by}});
  j["nvram_path"] = p.nvram_path;
  j["nvram_config"] = p.nvram_config;
  j["replace_domain"] = p.replace_domain;
  j["xml"] = p.xml;
  j["macs"] = nlohmann::json::array();
  for (const auto& [was, now] : p.macs)
    j["macs"].push_back({{"old", was}, {"new", now}});
  j["conflicts"] = p.conflicts;
  j["warnings"] = p.warnings;
  return j;
}

Result<VmPlan> VmPlanFromJson(const nlohmann::json& j,
                              const repository::PointReader& repo) {
  VmPlan p;
  Fields f(j, "plan");
  if (f.status().ok() && j.value("version", 0) != kPlanVersion)
    return InvalidArgument(
        "plan: version " + std::to_string(j.value("version", 0)) +
        " is not one this Haven reads (" + std::to_string(kPlanVersion) + ")");
  std::string id;
  f.Str("snapshot", id);
  f.Str("source_name", p.source_name);
  f.Str("name", p.name);
  f.Str("uuid", p.uuid);
  f.Bool("new_uuid", p.new_uuid);
  f.Str("state", p.state);
  f.Str("dir", p.dir);
  f.Strings("create_dirs", p.create_dirs);
  if (const auto* space = f.Object("space")) {
    Fields s(*space, "plan.space");
    s.U64("needed", p.space_needed);
    s.U64("full", p.space_full);
    s.U64("free", p.space_free);
    f.Take(s.status());
  }
  f.Str("journal", p.journal);
  if (j.contains("instant_dir")) {
    f.Str("instant_dir", p.instant_dir);
    f.Str("instant_xml", p.instant_xml);
  }
  if (const auto* disks = f.Array("disks")) {
    for (const auto& dj : *disks) {
      Fields d(dj, "plan.disks[" + std::to_string(p.disks.size()) + "]");
      PlannedDisk pd;
      d.Str("target", pd.target);
      d.Str("path", pd.path);
      d.Str("format", pd.format);
      d.U64("size", pd.size);
      d.U64("data_bytes", pd.data_bytes);
      d.Bool("exists", pd.exists);
      d.Str("resume", pd.resume);
      if (dj.contains("overlay")) d.Str("overlay", pd.overlay);
      f.Take(d.status());
      p.disks.push_back(std::move(pd));
    }
  }
  if (const auto* nets = f.Array("networks")) {
    for (const auto& nj : *nets) {
      Fields n(nj, "plan.networks[" + std::to_string(p.networks.size()) + "]");
      PlannedNetwork pn;
      n.Str("name", pn.name);
      n.Str("from", pn.from);
      n.Str("action", pn.action);
      n.Str("xml", pn.xml);
      n.Str("by", pn.by);
      f.Take(n.status());
      p.networks.push_back(std::move(pn));
    }
  }
  f.Str("nvram_path", p.nvram_path);
  f.Str("nvram_config", p.nvram_config);
  f.Str("replace_domain", p.replace_domain);
  f.Str("xml", p.xml);
  if (const auto* macs = f.Array("macs")) {
    for (const auto& mj : *macs) {
      Fields m(mj, "plan.macs[" + std::to_string(p.macs.size()) + "]");
      std::string was, now;
      m.Str("old", was);
      m.Str("new", now);
      f.Take(m.status());
      p.macs.emplace_back(std::move(was), std::move(now));
    }
  }
  f.Strings("conflicts", p.conflicts);
  f.Strings("warnings", p.warnings);
  HAVEN_RETURN_IF_ERROR(f.status());
  if (p.state != "restore" && p.state != "finish" && p.state != "done")
    return InvalidArgument("plan.state must be restore, finish or done");
  // A repository reads the point's own file (never a prefix match); another
  // reader (through the appliance) answers for the id it was given.
  const auto* local = dynamic_cast<const repository::Repository*>(&repo);
  auto m = local ? local->LoadSnapshot(id) : repo.FindSnapshot(id);
  if (!m.ok()) {
    if (m.status().code() == Code::kNotFound)
      return NotFound("the recovery point " + id.substr(0, 8) +
                      " the plan restores is no longer in the repository");
    return m.status().WithContext("recovery point " + id.substr(0, 8));
  }
  p.snapshot = std::move(*m);
  return p;
}

nlohmann::json VmRestoreOptionsJson(const VmRestoreOptions& o) {
  return {{"name", o.name},
          {"storage_dir", o.storage_dir},
          {"pool", o.pool},
          {"format", o.format},
          {"network_map", o.network_map},
          {"new_identity", o.new_identity},
          {"replace", o.replace},
          {"start", o.start},
          {"verify_ids", o.verify_ids},
          {"create_networks", o.create_networks}};
}

Result<VmRestoreOptions> VmRestoreOptionsFromJson(const nlohmann::json& j) {
  VmRestoreOptions o;
  Fields f(j, "options");
  f.Str("name", o.name);
  f.Str("storage_dir", o.storage_dir);
  f.Str("pool", o.pool);
  f.Str("format", o.format);
  if (const auto* map = f.Object("network_map")) {
    for (const auto& [from, to] : map->items()) {
      if (!to.is_string()) {
        f.Fail("network_map." + from, "a string");
        break;
      }
      o.network_map[from] = to.get<std::string>();
    }
  }
  f.Bool("new_identity", o.new_identity);
  f.Bool("replace", o.replace);
  f.Bool("start", o.start);
  f.Bool("verify_ids", o.verify_ids);
  f.Bool("create_networks", o.create_networks);
  HAVEN_RETURN_IF_ERROR(f.status());
  return o;
}

nlohmann::json HostRestorePlanJson(const HostRestorePlan& plan) {
  nlohmann::json vms = nlohmann::json::array();
  for (const VmPlan& p : plan.vms) vms.push_back(VmPlanJson(p));
  return {{"vms", vms}};
}

Result<HostRestorePlan> HostRestorePlanFromJson(
    const nlohmann::json& j, const repository::PointReader& repo) {
  if (!j.is_object() || !j.contains("vms") || !j["vms"].is_array())
    return InvalidArgument("host plan: vms must be a list of VM plans");
  HostRestorePlan plan;
  for (const auto& v : j["vms"]) {
    auto p = VmPlanFromJson(v, repo);
    if (!p.ok())
      return p.status().WithContext(
          "VM " + std::to_string(plan.vms.size() + 1) + " of the host plan");
    plan.vms.push_back(std::move(*p));
  }
  return plan;
}

nlohmann::json FileRestoreStatsJson(const FileRestoreStats& st) {
  nlohmann::json j = {{"files", st.files},
                      {"dirs", st.dirs},
                      {"symlinks", st.symlinks},
                      {"fifos", st.fifos},
                      {"devices", st.devices},
                      {"hardlinks", st.hardlinks},
                      {"skipped", st.skipped},
                      {"bytes", st.bytes},
                      {"seconds", st.seconds},
                      {"complete", st.complete()},
                      {"planned_more", st.planned_more}};
  j["problems"] = nlohmann::json::array();
  for (const auto& p : st.problems)
    j["problems"].push_back({{"path", p.path}, {"what", p.what}});
  j["planned"] = nlohmann::json::array();
  for (const auto& e : st.planned)
    j["planned"].push_back({{"path", e.path},
                            {"type", e.type},
                            {"size", e.size},
                            {"action", e.action}});
  return j;
}

Result<FileRestoreStats> FileRestoreStatsFromJson(const nlohmann::json& j) {
  FileRestoreStats st;
  Fields f(j, "file restore");
  f.U64("files", st.files);
  f.U64("dirs", st.dirs);
  f.U64("symlinks", st.symlinks);
  f.U64("fifos", st.fifos);
  f.U64("devices", st.devices);
  f.U64("hardlinks", st.hardlinks);
  f.U64("skipped", st.skipped);
  f.U64("bytes", st.bytes);
  f.U64("planned_more", st.planned_more);
  if (f.status().ok() && j.contains("seconds") && j["seconds"].is_number())
    st.seconds = j["seconds"].get<double>();
  if (const auto* problems = f.Array("problems")) {
    for (const auto& pj : *problems) {
      Fields p(pj, "file restore.problems");
      FileRestoreProblem problem;
      p.Str("path", problem.path);
      p.Str("what", problem.what);
      f.Take(p.status());
      st.problems.push_back(std::move(problem));
    }
  }
  if (const auto* planned = f.Array("planned")) {
    for (const auto& ej : *planned) {
      Fields e(ej, "file restore.planned");
      PlannedFileEntry entry;
      e.Str("path", entry.path);
      e.Str("type", entry.type);
      e.U64("size", entry.size);
      e.Str("action", entry.action);
      f.Take(e.status());
      st.planned.push_back(std::move(entry));
    }
  }
  HAVEN_RETURN_IF_ERROR(f.status());
  return st;
}

}  // namespace haven::restore
