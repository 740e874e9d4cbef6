#include "repository/manifest.h"

#include <nlohmann/json.hpp>

#include "repository/json_fields.h"

namespace haven::repository {
namespace {

constexpr uint64_t kMaxDiskSize = 1ull << 56;  // 64 PiB: beyond any disk

}  // namespace

uint64_t DiskManifest::LostBytes() const {
  uint64_t n = 0;
  for (const auto& [offset, length] : lost) n += length;
  return n;
}

bool IsSafeConfigName(const std::string& name) {
  if (name.empty() || name.size() > 255) return false;
  int parts = 0;
  size_t start = 0;
  while (true) {
    size_t end = name.find('/', start);
    std::string part = name.substr(
        start, end == std::string::npos ? std::string::npos : end - start);
    if (part.empty() || part[0] == '.' || ++parts > 4) return false;
    for (char c : part)
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
            c == '+' || c == '@'))
        return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

const DiskManifest* Manifest::FindDisk(const std::string& want) const {
  auto images = ImageDisks();
  if (want.empty()) return images.size() == 1 ? images[0] : nullptr;
  for (const auto* d : images)
    if (d->name == want) return d;
  return nullptr;
}

std::vector<const DiskManifest*> Manifest::ImageDisks() const {
  std::vector<const DiskManifest*> out;
  for (const auto& d : disks)
    if (!d.is_config() && !d.is_stream()) out.push_back(&d);
  return out;
}

const DiskManifest* Manifest::FindStream(const std::string& kind) const {
  for (const auto& d : disks)
    if (d.is_stream() && d.kind == kind) return &d;
  return nullptr;
}

std::vector<const DiskManifest*> Manifest::ConfigFiles() const {
  std::vector<const DiskManifest*> out;
  for (const auto& d : disks)
    if (d.is_config()) out.push_back(&d);
  return out;
}

const DiskManifest* Manifest::FindConfig(const std::string& name) const {
  for (const auto& d : disks)
    if (d.is_config() && d.name == name) return &d;
  return nullptr;
}

bool IsAgentId(const std::string& s) {
  return !s.empty() && s.size() <= 64 &&
         s.find_first_not_of(
             "0123456789abcdefghijklmnopqrstuvwxyz"
             "ABCDEFGHIJKLMNOPQRSTUVWXYZ_-") == std::string::npos;
}

bool IsAgentKeyId(const std::string& s) {
  return s.size() == 16 &&
         s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

bool IsSnapshotId(const std::string& s) {
  return s.size() == 32 &&
         s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

std::string Manifest::ToJson() const {
  nlohmann::ordered_json j;
  j["version"] = 1;
  j["id"] = id;
  j["name"] = name;
  j["kind"] = kind;
  j["time"] = time;
  j["hostname"] = hostname;
  j["tool"] = tool;
  j["consistency"] = consistency;
  j["consistency_reason"] = consistency_reason;
  j["parent"] = parent;
  if (!vm_uuid.empty())
    j["vm"] = {{"uuid", vm_uuid}, {"checkpoint", checkpoint}};
  if (!notes.empty()) j["notes"] = notes;
  j["disks"] = nlohmann::ordered_json::array();
  for (const auto& d : disks) {
    nlohmann::ordered_json dj;
    dj["name"] = d.name;
    if (!d.kind.empty()) dj["kind"] = d.kind;
    dj["source"] = d.source;
    if (!d.capture.empty()) dj["capture"] = d.capture;
    dj["size"] = d.size;
    dj["chunk_size"] = d.chunk_size;
    dj["chunks"] = d.tree.count;
    dj["tree"] = {{"root", d.tree.root.Hex()}, {"height", d.tree.height}};
    if (!d.lost.empty()) {
      dj["lost"] = nlohmann::ordered_json::array();
      for (const auto& [offset, length] : d.lost)
        dj["lost"].push_back({offset, length});
    }
    j["disks"].push_back(dj);
  }
  if (kind == "files")
    j["files"] = {{"paths", file_paths},
                  {"entries", file_entries},
                  {"partial", partial}};
  if (!repaired_from.empty())
    j["repaired"] = {{"from", repaired_from}, {"time", repaired_time}};
  if (!agent_id.empty()) j["agent_id"] = agent_id;
  if (!agent_key.empty()) j["agent_key"] = agent_key;
  j["stats"] = {{"logical_bytes", stats.logical_bytes},
                {"read_bytes", stats.read_bytes},
                {"hole_bytes", stats.hole_bytes},
                {"new_chunks", stats.new_chunks},
                {"new_raw_bytes", stats.new_raw_bytes},
                {"new_stored_bytes", stats.new_stored_bytes},
                {"duration_seconds", stats.duration_seconds}};
  return DumpJson(j);
}

Result<Manifest> Manifest::FromJson(std::string_view text,
                                    const std::string& what) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return DataLoss(what + ": not a JSON object");
  Manifest m;
  try {
    int64_t version = 0;
    if (!GetInt(j, "version", version))
      return DataLoss(what + ": malformed manifest (field 'version')");
    if (version != 1) return DataLoss(what + ": unsupported manifest version");
    m.id = j.at("id").get<std::string>();
    m.name = j.at("name").get<std::string>();
    m.kind = j.at("kind").get<std::string>();
    m.time = j.at("time").get<std::string>();
    m.hostname = j.value("hostname", "");
    m.tool = j.value("tool", "");
    m.consistency = j.at("consistency").get<std::string>();
    m.consistency_reason = j.value("consistency_reason", "");
    m.parent = j.value("parent", "");
    if (j.contains("vm")) {
      m.vm_uuid = j.at("vm").at("uuid").get<std::string>();
      m.checkpoint = j.at("vm").value("checkpoint", "");
    }
    if (j.contains("notes"))
      m.notes = j.at("notes").get<std::vector<std::string>>();
    for (const auto& dj : j.at("disks")) {
      DiskManifest d;
      d.name = dj.at("name").get<std::string>();
      d.kind = dj.value("kind", "");
      if (!d.kind.empty() && !d.is_config() && !d.is_stream())
        return DataLoss(what + ": unknown disk kind '" + d.kind + "'");
      if (d.is_config() && !IsSafeConfigName(d.name))
        return DataLoss(what + ": config file name '" + d.name +
                        "' is not a safe relative path");
      for (const auto& other : m.disks)
        if (other.name == d.name)
          return DataLoss(what + ": two disks named '" + d.name + "'");
      d.source = dj.value("source", "");
      d.capture = dj.value("capture", "");
      if (!GetInt(dj, "size", d.size) ||
          !GetInt(dj, "chunk_size", d.chunk_size) ||
          !GetInt(dj, "chunks", d.tree.count) ||
          !GetInt(dj.at("tree"), "height", d.tree.height))
        return DataLoss(
            what + ": malformed manifest (disk " + d.name +
            ": size, chunk_size, chunks or tree height is missing, not an "
            "integer, or out of range)");
      auto root = HexDecode(dj.at("tree").at("root").get<std::string>());
      if (!root || root->size() != 32)
        return DataLoss(what + ": bad tree root");
      std::copy(root->begin(), root->end(), d.tree.root.bytes.begin());
      if (d.is_stream() != (m.kind == "files"))
        return DataLoss(what + ": disk " + d.name + " of kind '" + d.kind +
                        "' in a point of kind '" + m.kind + "'");
      if (d.is_stream() ? d.chunk_size != 0 || d.size > kMaxDiskSize
                        : d.size > kMaxDiskSize || d.chunk_size < 512 ||
                              (d.chunk_size & (d.chunk_size - 1)) != 0 ||
                              d.chunk_size > (64u << 20))
        return DataLoss(what + ": disk " + d.name +
                        " has an impossible size or chunk size");
      // A stream's chunks have no fixed size: each holds at least a byte.
      if (d.is_stream() ? d.tree.count > d.size
                        : d.tree.count !=
                              (d.size + d.chunk_size - 1) / d.chunk_size)
        return DataLoss(what + ": disk " + d.name +
                        " chunk count does not match its size");
      if (d.tree.height < 1 || d.tree.height > kMaxTreeHeight ||
          d.tree.count > TreeCapacity(d.tree.height))
        return DataLoss(what + ": disk " + d.name +
                        " has an impossible chunk-list tree height " +
                        std::to_string(d.tree.height));
      if (dj.contains("lost")) {
        const auto& lj = dj.at("lost");
        if (!lj.is_array() || lj.size() > d.tree.count)
          return DataLoss(what + ": disk " + d.name + " has a bad lost list");
        uint64_t end = 0;
        for (const auto& r : lj) {
          if (!r.is_array() || r.size() != 2 || !r[0].is_number_unsigned() ||
              !r[1].is_number_unsigned())
            return DataLoss(what + ": disk " + d.name +
                            " has a malformed lost range");
          uint64_t offset = r[0].get<uint64_t>(), length = r[1].get<uint64_t>();
          const uint64_t limit = d.is_stream() ? d.tree.count : d.size;
          if (offset < end || length == 0 || offset > limit ||
              length > limit - offset)
            return DataLoss(what + ": disk " + d.name +
                            " has a lost range outside the disk or out of "
                            "order");
          end = offset + length;
          d.lost.push_back({offset, length});
        }
      }
      m.disks.push_back(d);
    }
    if (m.kind == "files") {
      const auto& fj = j.at("files");
      m.file_paths = fj.at("paths").get<std::vector<std::string>>();
      m.partial = fj.at("partial").get<bool>();
      if (!GetInt(fj, "entries", m.file_entries))
        return DataLoss(what + ": malformed 'files' field");
      if (!m.FindStream("catalog") || !m.FindStream("content"))
        return DataLoss(what + ": a file backup without its catalog or "
                               "content list");
    }
    if (j.contains("repaired")) {
      m.repaired_from = j.at("repaired").at("from").get<std::string>();
      m.repaired_time = j.at("repaired").value("time", "");
      if (!IsSnapshotId(m.repaired_from))
        return DataLoss(what + ": malformed 'repaired' field");
    }
    if (j.contains("agent_id")) {
      const auto& aj = j.at("agent_id");
      if (aj.is_string()) m.agent_id = aj.get<std::string>();
      if (!IsAgentId(m.agent_id))
        return DataLoss(what + ": malformed 'agent_id' field");
    }
    if (j.contains("agent_key")) {
      const auto& kj = j.at("agent_key");
      if (kj.is_string()) m.agent_key = kj.get<std::string>();
      if (!IsAgentKeyId(m.agent_key))
        return DataLoss(what +
                        ": malformed 'agent_key' field (16 lower-case hex "
                        "digits)");
    }
    const auto& s = j.at("stats");
    m.stats.logical_bytes = s.value("logical_bytes", 0ull);
    m.stats.read_bytes = s.value("read_bytes", 0ull);
    m.stats.hole_bytes = s.value("hole_bytes", 0ull);
    m.stats.new_chunks = s.value("new_chunks", 0ull);
    m.stats.new_raw_bytes = s.value("new_raw_bytes", 0ull);
    m.stats.new_stored_bytes = s.value("new_stored_bytes", 0ull);
    m.stats.duration_seconds = s.value("duration_seconds", 0.0);
  } catch (const nlohmann::json::exception& e) {
    return DataLoss(what + ": malformed manifest (" + e.what() + ")");
  }
  return m;
}

}  // namespace haven::repository
