#include "cli/image_files_commands.h"


#include <algorithm>
#include <cstdio>
#include <ctime>
#include <functional>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/bytes.h"
#include "base/json.h"
#include "base/time.h"
#include "cli/file_backup_commands.h"
#include "cli/output.h"
#include "restore/disk_reader.h"
#include "restore/file_restore.h"
#include "restore/guest_fs.h"
#include "restore/isolated_reader.h"

namespace haven::cli {
namespace {

using restore::GuestEntry;

struct FileArgs {
  std::string spec, disk, path;
  int partition = -1;
  std::vector<std::string> paths;
  std::string to, tar, zip;
};

// A recovery point's disk opened for reading file systems. The reader
// refers to the repository and the manifest, so they live here too.
struct OpenedDisk {
  std::unique_ptr<repository::Repository> repo;
  std::unique_ptr<repository::Manifest> snapshot;
  const repository::DiskManifest* disk = nullptr;
  std::unique_ptr<restore::DiskReader> reader;
};

// `kinds`: what latest and NAME:latest may choose (repository.h); empty
// for ls, which reads every kind.
Result<OpenedDisk> OpenDisk(const Globals& g, const FileArgs& a,
                            const std::vector<std::string>& kinds = {}) {
  OpenedDisk o;
  HAVEN_ASSIGN_OR_RETURN(o.repo, OpenRepo(g, false));
  auto found = o.repo->FindSnapshot(a.spec, kinds);
  if (!found.ok()) {
    if (found.status().code() == Code::kNotFound &&
        o.repo->FindSnapshot(a.spec).ok())
      return NotFound(found.status().message() +
                      "; a file backup's files come back with `haven "
                      "restore files " +
                      a.spec + " PATH --to DIR`");
    return found.status();
  }
  repository::Manifest m = std::move(found).value();
  o.snapshot = std::make_unique<repository::Manifest>(std::move(m));
  if (o.snapshot->kind == "files") return o;  // no disk: a file backup
  o.disk = o.snapshot->FindDisk(a.disk);
  if (!o.disk) {
    std::string names;
    for (const auto* d : o.snapshot->ImageDisks())
      names += (names.empty() ? "" : ", ") + d->name;
    return InvalidArgument(
        "snapshot " + o.snapshot->id.substr(0, 8) +
        (a.disk.empty()
             ? " has several disks: " + names + "; choose one with --disk"
             : " has no disk " + a.disk + "; it has: " + names));
  }
  o.reader = std::make_unique<restore::DiskReader>(*o.repo, *o.disk);
  return o;
}

struct OpenedFs {
  restore::GuestVolume volume;
  std::unique_ptr<restore::GuestFs> fs;
};

Result<OpenedFs> OpenFs(OpenedDisk& d, int partition) {
  HAVEN_ASSIGN_OR_RETURN(restore::GuestLayout layout,
                         restore::ReadGuestLayout(*d.reader));
  OpenedFs o;
  HAVEN_ASSIGN_OR_RETURN(
      o.volume, restore::ChooseVolume(layout, partition, d.disk->name));
  HAVEN_ASSIGN_OR_RETURN(o.fs, restore::GuestFs::Open(*d.reader, o.volume));
  return o;
}

void AddReadStats(nlohmann::ordered_json& j, const restore::DiskReader& r) {
  restore::DiskReadStats s = r.stats();
  j["chunks_read"] = s.chunks_fetched;
  j["nodes_read"] = s.nodes_fetched;
  j["cache_hits"] = s.cache_hits;
  j["disk_chunks"] = s.disk_chunks;
}

// A repaired point reads zeros where its data was lost: say so if any
// read touched such a range.
bool WarnLost(const restore::DiskReader& r) {
  if (r.stats().lost_reads == 0) return false;
  std::fprintf(stderr,
               "haven: warning: some of what was read lies in ranges lost "
               "before 'haven repair snapshots'; they read as zeros, so "
               "listed or restored data may hold zeros\n");
  return true;
}

int CmdLsLayout(const Globals& g, OpenedDisk& d) {
  auto layout = restore::ReadGuestLayout(*d.reader);
  if (!layout.ok()) return Fail(g, layout.status());
  if (g.json) {
    nlohmann::ordered_json j;
    j["snapshot"] = d.snapshot->id;
    j["disk"] = d.disk->name;
    j["size"] = d.disk->size;
    j["scheme"] = layout->scheme;
    j["volumes"] = nlohmann::ordered_json::array();
    for (const auto& v : layout->volumes)
      j["volumes"].push_back({{"number", v.number},
                              {"offset", v.offset},
                              {"size", v.size},
                              {"description", v.description},
                              {"fs", v.fs_type},
                              {"label", v.label},
                              {"note", v.note}});
    AddReadStats(j, *d.reader);
    std::cout << DumpJson(j) << "\n";
  } else {
    std::printf("snapshot %s (%s), disk %s: %s, %s\n",
                d.snapshot->id.substr(0, 8).c_str(), d.snapshot->name.c_str(),
                d.disk->name.c_str(), HumanBytes(d.disk->size).c_str(),
                layout->scheme == "none"  ? "no partition table"
                : layout->scheme == "dos" ? "MBR partition table"
                : layout->scheme == "gpt"
                    ? "GPT partition table"
                    : (layout->scheme + " partitions").c_str());
    std::printf("%3s  %14s  %10s  %-8s  %-16s  %s\n", "#", "offset", "size",
                "fs", "label", "type");
    for (const auto& v : layout->volumes)
      std::printf(
          "%3d  %14llu  %10s  %-8s  %-16s  %s%s%s\n", v.number,
          static_cast<unsigned long long>(v.offset), HumanBytes(v.size).c_str(),
          v.fs_type.empty() ? "-" : v.fs_type.c_str(),
          v.label.empty() ? "-" : restore::PrintableName(v.label).c_str(),
          v.description.empty() ? "-" : v.description.c_str(),
          v.note.empty() ? "" : ": ", v.note.c_str());
  }
  return WarnLost(*d.reader) ? kExitPartial : kExitOk;
}

void PrintEntry(const GuestEntry& e, bool unix_meta) {
  std::string owner = unix_meta ? std::to_string(e.uid) : "-";
  std::string group = unix_meta ? std::to_string(e.gid) : "-";
  std::string name = restore::PrintableName(e.name);
  if (e.type == restore::GuestType::kSymlink)
    name += e.link_problem.empty()
                ? " -> " + restore::PrintableName(e.link_target)
                : " -> ? (" + restore::PrintableName(e.link_problem) + ")";
  std::printf("%s  %6s  %6s  %12llu  %s  %s\n", restore::ModeString(e).c_str(),
              owner.c_str(), group.c_str(),
              static_cast<unsigned long long>(e.size),
              FormatTime(e.mtime_ns, TimeStyle::kLocal).c_str(), name.c_str());
}

nlohmann::ordered_json EntryJson(const GuestEntry& e, bool unix_meta) {
  nlohmann::ordered_json j;
  // Names are raw bytes; JSON needs valid UTF-8, so the escaped form.
  j["name"] = restore::PrintableName(e.name);
  j["type"] = restore::GuestTypeName(e.type);
  j["size"] = e.size;
  j["mode"] = restore::ModeString(e);
  if (unix_meta) {
    j["uid"] = e.uid;
    j["gid"] = e.gid;
  }
  j["mtime"] = FormatTime(e.mtime_ns, TimeStyle::kUtcSpaced);
  j["mtime_utc"] = FormatTime(e.mtime_ns, TimeStyle::kRfc3339Utc);
  j["mtime_ns"] = e.mtime_ns;
  j["inode"] = e.inode;
  if (e.type == restore::GuestType::kSymlink) {
    j["link"] = restore::PrintableName(e.link_target);
    if (!e.link_problem.empty())
      j["link_problem"] = restore::PrintableName(e.link_problem);
  }
  return j;
}

int CmdLs(const Globals& g, const FileArgs& a) {
  auto d = OpenDisk(g, a);
  if (!d.ok()) return Fail(g, d.status());
  if (d->snapshot->kind == "files")
    return CmdFilesLs(g, *d->repo, *d->snapshot, a.path);
  if (a.path.empty()) return CmdLsLayout(g, *d);
  auto fs = OpenFs(*d, a.partition);
  if (!fs.ok()) return Fail(g, fs.status());
  auto entry = fs->fs->Lookup(a.path);
  if (!entry.ok()) return Fail(g, entry.status());
  std::vector<GuestEntry> entries;
  if (entry->type == restore::GuestType::kDir) {
    auto list = fs->fs->List(*entry);
    if (!list.ok()) return Fail(g, list.status().WithContext(a.path));
    entries = std::move(*list);
    std::sort(entries.begin(), entries.end(),
              [](const GuestEntry& x, const GuestEntry& y) {
                return x.name < y.name;
              });
  } else {
    entries.push_back(*entry);
  }
  const bool unix_meta = fs->fs->has_unix_metadata();
  if (g.json) {
    nlohmann::ordered_json j;
    j["snapshot"] = d->snapshot->id;
    j["disk"] = d->disk->name;
    j["partition"] = fs->volume.number;
    j["fs"] = fs->fs->type();
    j["path"] = a.path;
    j["entries"] = nlohmann::ordered_json::array();
    for (const auto& e : entries)
      j["entries"].push_back(EntryJson(e, unix_meta));
    AddReadStats(j, *d->reader);
    std::cout << DumpJson(j) << "\n";
  } else {
    for (const auto& e : entries) PrintEntry(e, unix_meta);
  }
  return WarnLost(*d->reader) ? kExitPartial : kExitOk;
}

int CmdRestoreFile(const Globals& g, const FileArgs& a) {
  restore::FileRestoreOptions opt;
  if (Status s = ChooseFileTarget(a.to, a.tar, a.zip, opt); !s.ok())
    return Fail(g, s);
  auto d = OpenDisk(g, a, {"image", "vm"});
  if (!d.ok()) return Fail(g, d.status());
  if (d->snapshot->kind == "files")
    return Fail(g, InvalidArgument("snapshot " + a.spec +
                                   " is a file backup: use `haven restore "
                                   "files " + a.spec + " PATH --to DIR`"));
  auto fs = OpenFs(*d, a.partition);
  if (!fs.ok()) return Fail(g, fs.status());
  opt.progress = TerminalProgress(!g.quiet && !g.json, "restore");
  opt.cancel = g.cancel;
  auto st = restore::RestoreGuestFiles(*fs->fs, a.paths, opt);
  if (!st.ok()) return Fail(g, st.status());
  PrintProblems(*st);
  const bool lost = WarnLost(*d->reader);
  if (g.json) {
    nlohmann::ordered_json j;
    j["snapshot"] = d->snapshot->id;
    j["disk"] = d->disk->name;
    j["partition"] = fs->volume.number;
    j["fs"] = fs->fs->type();
    AddRestoreJson(j, opt, *st);
    j["complete"] = st->complete() && !lost;
    AddReadStats(j, *d->reader);
    std::cout << DumpJson(j) << "\n";
  } else if (!g.quiet) {
    restore::DiskReadStats rs = d->reader->stats();
    std::printf(
        "restored %s from %s%s of disk %s to %s in %s; read %llu of %llu "
        "chunks%s\n",
        RestoreCounts(*st).c_str(), fs->fs->type().c_str(),
        fs->volume.number == 0
            ? ""
            : (" partition " + std::to_string(fs->volume.number)).c_str(),
        d->disk->name.c_str(), opt.path.c_str(),
        FormatDuration(st->seconds).c_str(),
        static_cast<unsigned long long>(rs.chunks_fetched),
        static_cast<unsigned long long>(rs.disk_chunks),
        st->problems.empty() ? ""
                             : ("; " + std::to_string(st->problems.size()) +
                                " entries not restored (listed above)")
                                   .c_str());
  }
  return st->complete() && !lost ? kExitOk : kExitPartial;
}

// SNAPSHOT, --disk and --partition: how both commands name a volume.
void AddVolumeOptions(CLI::App* cmd, FileArgs& a, const char* snapshot_help) {
  cmd->add_option("SNAPSHOT", a.spec, snapshot_help)->required();
  cmd->add_option("--disk", a.disk,
                  "which disk, when the snapshot has several");
  cmd->add_option("--partition", a.partition,
                  "partition number as `haven ls SNAPSHOT` shows it (default: "
                  "the only one with a readable file system)");
}

// Through restore/isolated_reader.h: a crash of the file-system parser
// kills a child, and this process reports it and exits 1.
int RunIsolated(const Globals& g, const FileArgs& a,
                const std::function<int()>& body) {
  auto rc = restore::RunIsolated(body, {a.to, {a.tar, a.zip}});
  return rc.ok() ? *rc : Fail(g, rc.status());
}

}  // namespace

void AddFileCommands(CLI::App& app, CLI::App& restore, const Globals& g,
                     int& rc) {
  auto args = std::make_shared<FileArgs>();
  auto* ls = app.add_subcommand(
      "ls",
      "list what a recovery point holds, without restoring it. A disk of "
      "an image or VM backup: with no PATH its partitions and file "
      "systems, with PATH a directory like ls -l (ext2/3/4, NTFS, FAT, "
      "exFAT, HFS+). A file backup: the directory PATH (default /)");
  AddVolumeOptions(ls, *args, "id prefix, latest or NAME:latest");
  ls->add_option("PATH", args->path,
                 "a path inside the file system, e.g. /etc");
  ls->callback([&g, &rc, args] {
    rc = RunIsolated(g, *args, [&] { return CmdLs(g, *args); });
  });

  auto* file = restore.add_subcommand(
      "file",
      "restore files and directory trees from a disk of an image or VM "
      "backup into a folder, or export them as tar or zip; each PATH goes "
      "in under its last component (/etc/ssh -> DIR/ssh); mode, owner and "
      "times are kept where the file system has them, symlinks with their "
      "targets (NTFS symlinks and junctions too), sparse files with their "
      "holes. Exit 3: some entries were not restored (listed with why)");
  AddVolumeOptions(file, *args,
                   "id prefix, latest or NAME:latest (latest: the latest "
                   "image or VM backup)");
  file->add_option("PATH", args->paths,
                   "paths inside the file system ('/' for all), as they are: "
                   "globs are not expanded")
      ->required();
  file->add_option("--to", args->to,
                   "folder to restore into (made if missing; existing files "
                   "are never replaced; not a symlink)");
  file->add_option("--tar", args->tar,
                   "write a tar (pax; sparse files stored as their data "
                   "and a map of the holes) archive instead (must not "
                   "exist)");
  file->add_option("--zip", args->zip,
                   "write a zip archive instead (must not exist)");
  file->callback([&g, &rc, args] {
    rc = RunIsolated(g, *args, [&] { return CmdRestoreFile(g, *args); });
  });
}

}  // namespace haven::cli
