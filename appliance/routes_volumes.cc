// GET /api/v1/points/{repo}/{id}/volumes: the disks of an image or VM
// point and the volumes in each (partitions, or the whole disk), as
// restore/guest_fs.h reads them — what the files routes' `disk=` and
// `partition=` choose from, and which volume they take when not told.
//
// The partition tables and file-system headers are guest bytes: they are
// parsed in a child process (restore/isolated_reader.h), as file restores
// are, so a crafted image that crashed The Sleuth Kit ends that child with
// a 500, not havend.
#include <string>

#include "appliance/daemon.h"
#include "appliance/point_access.h"
#include "appliance/routes.h"
#include "base/json.h"
#include "restore/disk_reader.h"
#include "restore/file_restore.h"
#include "restore/guest_fs.h"
#include "restore/isolated_reader.h"

namespace haven::appliance {
namespace {

using Json = nlohmann::ordered_json;

constexpr double kVolumesSeconds = 20;

Json TextOrNull(const std::string& guest_text) {
  return guest_text.empty() ? Json(nullptr)
                            : Json(restore::PrintableName(guest_text));
}

Json VolumeJson(const restore::GuestVolume& v, bool is_default) {
  Json j;
  j["number"] = v.number;
  j["start"] = v.offset;
  j["size"] = v.size;
  j["description"] = restore::PrintableName(v.description);
  j["fs"] = TextOrNull(v.fs_type);
  j["label"] = TextOrNull(v.label);
  // Why the volume cannot be browsed, when it cannot.
  j["note"] = v.fs_type.empty()
                  ? Json(v.note.empty() ? std::string("no file system Haven "
                                                      "can read")
                                        : restore::PrintableName(v.note))
                  : Json(nullptr);
  j["default"] = is_default;
  return j;
}

// One disk's layout; a disk whose layout cannot be read (a damaged chunk
// under its partition table) says so in `error` and the others still
// answer.
Json DiskJson(const repository::Repository& repo,
              const repository::DiskManifest& d, bool only_disk) {
  Json j;
  j["name"] = d.name;
  j["size"] = d.size;
  j["default"] = only_disk;
  restore::DiskReader reader(repo, d);
  auto layout = restore::ReadGuestLayout(reader);
  if (!layout.ok()) {
    j["scheme"] = nullptr;
    j["error"] = layout.status().message();
    j["default_partition"] = nullptr;
    j["default_note"] = "the disk's layout could not be read";
    j["volumes"] = Json::array();
    return j;
  }
  j["scheme"] = layout->scheme;
  j["error"] = nullptr;
  // The files routes without `partition=` take what ChooseVolume takes.
  auto chosen = restore::ChooseVolume(*layout, -1, d.name);
  size_t readable = 0;
  for (const auto& v : layout->volumes) readable += !v.fs_type.empty();
  j["default_partition"] = chosen.ok() ? Json(chosen->number) : Json(nullptr);
  j["default_note"] =
      chosen.ok() ? Json(nullptr)
      : readable > 1
          ? Json("the disk holds " + std::to_string(readable) +
                 " readable file systems: choose one with partition=")
          : Json("the disk holds no file system Haven can read");
  j["volumes"] = Json::array();
  for (const auto& v : layout->volumes)
    j["volumes"].push_back(
        VolumeJson(v, chosen.ok() && chosen->number == v.number));
  if (reader.stats().lost_reads > 0)
    j["warning"] =
        "parts of what was read lie in ranges lost before a repair and read "
        "as zeros";
  return j;
}

Status OnlyDiskParam(const ApiCall& call) {
  for (const auto& [name, value] : call.query)
    if (name != "disk")
      return InvalidArgument("unknown query parameter " + QuoteUntrusted(name) +
                             "; this takes disk");
  return OkStatus();
}

Response ListVolumes(Services& s, const ApiCall& call) {
  if (Status st = OnlyDiskParam(call); !st.ok()) return StatusResponse(st);
  const std::string* only = call.Query("disk");
  if (only && only->empty())
    return ErrorJson(400,
                     "disk is empty: name a disk of the point, or leave "
                     "disk out for all of them");
  auto found =
      FindPoint(*s.open_repositories, *call.Param("repo"), *call.Param("id"));
  if (!found.ok()) return StatusResponse(found.status());
  const repository::Manifest& m = *found->point;
  Json j;
  j["repository"] = *call.Param("repo");
  j["point"] = m.id;
  j["kind"] = m.kind;
  if (m.kind == "files") {
    if (only)
      return ErrorJson(400, "point " + m.id.substr(0, 8) +
                                " is a file backup: it has no disks (leave "
                                "out disk)");
    j["default_disk"] = nullptr;
    j["disks"] = Json::array();
    return OkOrdered(j);
  }
  const std::vector<const repository::DiskManifest*> disks = m.ImageDisks();
  if (only && !m.FindDisk(*only)) {
    std::string names;
    for (const auto* d : disks) names += (names.empty() ? "" : ", ") + d->name;
    return ErrorJson(400, "point " + m.id.substr(0, 8) + " has no disk " +
                              QuoteUntrusted(*only) + "; it has: " + names);
  }
  const bool only_disk = disks.size() == 1;
  j["default_disk"] = only_disk ? Json(disks[0]->name) : Json(nullptr);
  const repository::Repository& repo = found->open->repo();
  auto work = [&](const CancelToken&) -> Result<std::string> {
    Json list = Json::array();
    for (const auto* d : disks)
      if (!only || d->name == *only)
        list.push_back(DiskJson(repo, *d, only_disk));
    return DumpJson(list);
  };
  // Reading a few partition tables and file-system headers takes well
  // under a second; a child that takes longer is stuck (a lock inherited
  // from another thread at the fork): it is killed, not waited for.
  auto text = restore::RunIsolatedResult(work, {}, {}, kVolumesSeconds);
  if (!text.ok()) return StatusResponse(text.status());
  Json list = Json::parse(*text, nullptr, false);
  if (list.is_discarded())
    return ErrorJson(500, "the isolated layout reader returned no JSON");
  j["disks"] = std::move(list);
  return OkOrdered(j);
}

}  // namespace

std::vector<Route> VolumeRoutes(Services& s) {
  Route r;
  r.method = "GET";
  r.path = "/api/v1/points/{repo}/{id}/volumes";
  r.access = Access::kRole;
  r.role = Role::kAuditor;
  r.summary =
      "The disks of an image/VM point and the volumes in each (partitions, "
      "or the whole disk), with their file systems and the one the files "
      "routes take by default; read in an isolated child process";
  r.openapi = {
      {"parameters",
       nlohmann::json::array(
           {{{"name", "disk"},
             {"in", "query"},
             {"required", false},
             {"description", "only this disk (default: every disk)"},
             {"schema", {{"type", "string"}}}}})},
      {"responses",
       {{"200",
         {{"description",
           "{repository, point, kind, default_disk: the disk the files "
           "routes take without disk= (null: several, give disk=), disks: "
           "[{name, size, default, scheme: gpt|dos|none (null when "
           "unreadable), error: null or why the layout could not be read, "
           "default_partition: the volume the files routes take without "
           "partition= (null: see default_note), default_note, volumes: "
           "[{number: as partition= takes it (0: a disk without partition "
           "table), start, size (bytes), description: partition type, fs: "
           "ext4|ntfs|fat32|... or null when none Haven can read, label or "
           "null, note: why it cannot be browsed or null, default}]}]}; a "
           "file point answers kind files and disks []"}}},
        {"400",
         {{"description",
           "unknown parameter, unknown or empty disk, "
           "disk given for a file point"}}},
        {"404", {{"description", "no such repository or point"}}},
        {"500",
         {{"description",
           "reading the layout crashed the isolated reader (a damaged or "
           "crafted disk image)"}}},
        {"503",
         {{"description",
           "the isolated reader did not answer within 20 s and was "
           "stopped; try again"}}}}}};
  r.handler = [&s](const ApiCall& c) { return ListVolumes(s, c); };
  return {std::move(r)};
}

}  // namespace haven::appliance
