#include "restore/restore_journal.h"

#include <nlohmann/json.hpp>

#include "base/file.h"

namespace haven::restore {

const RestoreJournal::Disk* RestoreJournal::FindDisk(
    const std::string& path, const std::string& format) const {
  for (const auto& d : disks)
    if (d.path == path && d.format == format) return &d;
  return nullptr;
}

RestoreJournal LoadRestoreJournal(const std::string& path,
                                  const std::string& snapshot_id) {
  RestoreJournal j;
  auto data = ReadFile(path, 1 << 20);
  if (!data.ok()) return j;
  try {
    auto doc = nlohmann::json::parse(data->begin(), data->end());
    if (!doc.is_object() || doc.value("snapshot", "") != snapshot_id) return j;
    RestoreJournal out;
    out.snapshot = snapshot_id;
    out.name = doc.value("name", "");
    out.uuid = doc.value("uuid", "");
    for (const auto& f : doc.at("files"))
      if (f.is_string()) out.files.insert(f.get<std::string>());
    if (doc.contains("disks"))
      for (const auto& d : doc.at("disks"))
        out.disks.push_back({d.at("path").get<std::string>(),
                             d.at("format").get<std::string>(),
                             d.value("staged", false)});
    if (doc.contains("networks"))
      for (const auto& n : doc.at("networks"))
        out.networks.insert(n.get<std::string>());
    out.placed = doc.value("placed", false);
    return out;
  } catch (const std::exception&) {
    return j;
  }
}

Status SaveRestoreJournal(const std::string& path,
                          const RestoreJournal& journal) {
  nlohmann::ordered_json doc = {{"version", 2},
                                {"snapshot", journal.snapshot},
                                {"name", journal.name},
                                {"uuid", journal.uuid},
                                {"files", journal.files},
                                {"disks", nlohmann::json::array()},
                                {"networks", journal.networks},
                                {"placed", journal.placed}};
  for (const auto& d : journal.disks)
    doc["disks"].push_back(
        {{"path", d.path}, {"format", d.format}, {"staged", d.staged}});
  const std::string text = doc.dump(2) + "\n";
  return WriteFileAtomic(path, Bytes(text.begin(), text.end()), 0600);
}

}  // namespace haven::restore
