#include "cli/file_backup_commands.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>
#include <thread>
#include <nlohmann/json.hpp>

#include "agent/file_backup.h"
#include "base/bytes.h"
#include "base/json.h"
#include "base/time.h"
#include "cli/output.h"
#include "restore/file_point.h"
#include "restore/file_restore.h"

namespace haven::cli {
namespace {

using restore::GuestEntry;
using restore::PrintableName;

struct BackupFilesArgs {
  std::vector<std::string> paths, excludes;
  std::string name, exclude_file, pre, post, time;
  bool exclude_caches = false, one_file_system = false;
  double hook_timeout = 300;
  int threads = 0;
  std::string chunker;  // "MIN,AVG,MAX" in KiB
};

struct RestoreFilesArgs {
  std::string spec;
  std::vector<std::string> patterns;
  std::string to, tar, zip, overwrite = "never";
  bool no_sync = false;
};

}  // namespace

std::function<void(const std::string&)> FileBackupWarnings(const Globals& g) {
  const bool tty = !g.quiet && !g.json && ::isatty(STDERR_FILENO);
  const bool quiet = g.quiet;
  return [quiet, tty](const std::string& w) {
    if (quiet) return;
    std::fprintf(stderr, "%swarning: %s\n", tty ? "\r\033[K" : "",
                 PrintableName(w).c_str());
  };
}

nlohmann::ordered_json FileBackupJson(const agent::FileBackupResult& r) {
  const auto& m = r.manifest;
  nlohmann::ordered_json j;
  j["snapshot"] = m.id;
  j["name"] = m.name;
  j["kind"] = m.kind;
  j["time"] = m.time;
  j["parent"] = m.parent;
  j["partial"] = !r.warnings.empty();
  j["warnings"] = nlohmann::ordered_json::array();
  for (const auto& w : r.warnings) j["warnings"].push_back(PrintableName(w));
  j["entries"] = r.entries;
  j["files"] = r.files;
  j["dirs"] = r.dirs;
  j["symlinks"] = r.symlinks;
  j["other"] = r.other;
  j["bytes"] = r.bytes;
  j["files_read"] = r.files_read;
  j["files_unchanged"] = r.files_unchanged;
  j["bytes_read"] = r.bytes_read;
  j["new_chunks"] = m.stats.new_chunks;
  j["new_raw_bytes"] = m.stats.new_raw_bytes;
  j["new_stored_bytes"] = m.stats.new_stored_bytes;
  j["duration_seconds"] = m.stats.duration_seconds;
  return j;
}

void PrintFileBackupSummary(const agent::FileBackupResult& r) {
  const auto& m = r.manifest;
  std::printf("snapshot %s saved: files '%s'%s\n", m.id.substr(0, 8).c_str(),
              m.name.c_str(), r.warnings.empty() ? "" : " (PARTIAL)");
  std::printf(
      "  %llu entries: %llu files (%s), %llu directories, %llu symlinks, "
      "%llu other\n",
      static_cast<unsigned long long>(r.entries),
      static_cast<unsigned long long>(r.files), HumanBytes(r.bytes).c_str(),
      static_cast<unsigned long long>(r.dirs),
      static_cast<unsigned long long>(r.symlinks),
      static_cast<unsigned long long>(r.other));
  std::printf(
      "  read %llu files (%s), %llu unchanged since %s\n",
      static_cast<unsigned long long>(r.files_read),
      HumanBytes(r.bytes_read).c_str(),
      static_cast<unsigned long long>(r.files_unchanged),
      m.parent.empty() ? "(no earlier point)" : m.parent.substr(0, 8).c_str());
}

int FileBackupExit(const agent::FileBackupResult& r) {
  if (r.warnings.empty()) return kExitOk;
  std::fprintf(stderr,
               "haven: warning: the recovery point is PARTIAL: %zu "
               "entries could not be backed up whole (listed above)\n",
               r.warnings.size());
  return kExitPartial;
}

namespace {

int CmdBackupFiles(const Globals& g, const BackupFilesArgs& a) {
  auto repo = OpenRepo(g, true);
  if (!repo.ok()) return Fail(g, repo.status());
  agent::FileBackupOptions o;
  o.name = a.name;
  o.paths = a.paths;
  o.excludes = a.excludes;
  o.exclude_file = a.exclude_file;
  o.exclude_caches = a.exclude_caches;
  o.one_file_system = a.one_file_system;
  o.pre = a.pre;
  o.post = a.post;
  o.hook_timeout = a.hook_timeout;
  o.time = a.time;
  o.threads = a.threads;
  if (!a.chunker.empty()) {
    unsigned lo = 0, avg = 0, hi = 0;
    char end = 0;
    if (std::sscanf(a.chunker.c_str(), "%u,%u,%u%c", &lo, &avg, &hi, &end) !=
            3 ||
        lo == 0 || avg == 0 || hi == 0 || hi > 65536)
      return Fail(g, InvalidArgument("--chunker-params: MIN,AVG,MAX in KiB, "
                                     "e.g. 256,1024,4096, not '" +
                                     a.chunker + "'"));
    o.cdc = {lo << 10, avg << 10, hi << 10};
  }
  o.progress = TerminalProgress(!g.quiet && !g.json, "backup");
  o.cancel = g.cancel;
  o.on_warning = FileBackupWarnings(g);
  auto r = agent::BackupFiles(**repo, o);
  if (!r.ok())
    return Fail(g, r.status().WithContext(
                       "file backup '" + a.name +
                       "' failed; no recovery point was written and earlier "
                       "ones are unchanged"));
  if (g.json) {
    std::cout << DumpJson(FileBackupJson(*r)) << "\n";
  } else if (!g.quiet) {
    PrintFileBackupSummary(*r);
    const auto& m = r->manifest;
    std::printf("  new data %s in %llu chunks, stored as %s; took %s\n",
                HumanBytes(m.stats.new_raw_bytes).c_str(),
                static_cast<unsigned long long>(m.stats.new_chunks),
                HumanBytes(m.stats.new_stored_bytes).c_str(),
                FormatDuration(m.stats.duration_seconds).c_str());
  }
  return FileBackupExit(*r);
}

// `spec`'s file point; `id`, when given, gets its id.
Result<std::unique_ptr<restore::FilePoint>> OpenPoint(
    const repository::Repository& repo, const std::string& spec,
    std::string* id = nullptr) {
  // latest and NAME:latest: the latest file backup (repository.h).
  auto found = repo.FindSnapshot(spec, {"files"});
  if (!found.ok()) {
    // A point of another kind answers to the same spec: say which command
    // reads it.
    if (found.status().code() == Code::kNotFound &&
        repo.FindSnapshot(spec).ok())
      return NotFound(found.status().message() +
                      "; the files inside an image or VM backup come back "
                      "with `haven restore file " +
                      spec + " PATH --to DIR`");
    return found.status();
  }
  repository::Manifest m = std::move(found).value();
  if (id) *id = m.id;
  if (m.kind != "files")
    return InvalidArgument(
        "snapshot " + m.id.substr(0, 8) + " (" + m.name + ") is an " +
        (m.kind == "vm" ? "VM" : m.kind) +
        " backup; restore its files with `haven restore file " + spec +
        " PATH --to DIR`");
  return restore::FilePoint::Open(repo, m);
}

int CmdRestoreFiles(const Globals& g, const RestoreFilesArgs& a) {
  restore::FileRestoreOptions opt;
  if (Status s = ChooseFileTarget(a.to, a.tar, a.zip, opt); !s.ok())
    return Fail(g, s);
  if (a.overwrite == "never")
    opt.overwrite = restore::Overwrite::kNever;
  else if (a.overwrite == "if-newer")
    opt.overwrite = restore::Overwrite::kIfNewer;
  else if (a.overwrite == "always")
    opt.overwrite = restore::Overwrite::kAlways;
  else
    return Fail(g, InvalidArgument("--overwrite: never, if-newer or always, "
                                   "not '" + a.overwrite + "'"));
  opt.sync = !a.no_sync;
  opt.keep_setid = true;  // the guest's own files, back into the guest
  opt.devices = true;
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  std::string id;
  auto point = OpenPoint(**repo, a.spec, &id);
  if (!point.ok()) return Fail(g, point.status());
  if (Status s = (*point)->Select(a.patterns); !s.ok()) return Fail(g, s);
  if (Status s = (*point)->Prefetch(
          static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
      !s.ok())
    return Fail(g, s);
  opt.progress = TerminalProgress(!g.quiet && !g.json, "restore");
  opt.cancel = g.cancel;
  auto st = restore::RestoreGuestFiles(**point, {"/"}, opt);
  if (!st.ok()) return Fail(g, st.status());
  PrintProblems(*st);
  if (g.json) {
    nlohmann::ordered_json j;
    j["snapshot"] = id;
    AddRestoreJson(j, opt, *st);
    j["chunks_read"] = (*point)->chunks_read();
    std::cout << DumpJson(j) << "\n";
  } else if (!g.quiet) {
    std::printf("restored %s from snapshot %s to %s in %s%s\n",
                RestoreCounts(*st).c_str(), id.substr(0, 8).c_str(),
                opt.path.c_str(), FormatDuration(st->seconds).c_str(),
                st->problems.empty()
                    ? ""
                    : ("; " + std::to_string(st->problems.size()) +
                       " not restored (listed above)")
                          .c_str());
  }
  return st->complete() ? kExitOk : kExitPartial;
}

int CmdDiff(const Globals& g, const std::string& s1, const std::string& s2) {
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  auto a = OpenPoint(**repo, s1);
  if (!a.ok()) return Fail(g, a.status());
  auto b = OpenPoint(**repo, s2);
  if (!b.ok()) return Fail(g, b.status());
  auto d = restore::DiffPoints(**a, **b);
  if (!d.ok()) return Fail(g, d.status());
  if (g.json) {
    auto list = [](const std::vector<std::string>& v) {
      nlohmann::ordered_json j = nlohmann::ordered_json::array();
      for (const auto& p : v) j.push_back(PrintableName(p));
      return j;
    };
    nlohmann::ordered_json j;
    j["added"] = list(d->added);
    j["removed"] = list(d->removed);
    j["modified"] = list(d->modified);
    j["metadata"] = list(d->metadata);
    j["type"] = list(d->type);
    std::cout << DumpJson(j) << "\n";
    return kExitOk;
  }
  std::vector<std::pair<std::string, char>> lines;
  for (const auto& p : d->added) lines.push_back({p, '+'});
  for (const auto& p : d->removed) lines.push_back({p, '-'});
  for (const auto& p : d->modified) lines.push_back({p, 'M'});
  for (const auto& p : d->metadata) lines.push_back({p, 'm'});
  for (const auto& p : d->type) lines.push_back({p, 'T'});
  std::sort(lines.begin(), lines.end());
  for (const auto& [p, c] : lines)
    std::printf("%c %s\n", c, PrintableName(p).c_str());
  if (!g.quiet)
    std::printf("%zu added, %zu removed, %zu changed (%zu metadata only, %zu "
                "type)\n",
                d->added.size(), d->removed.size(),
                d->modified.size() + d->metadata.size() + d->type.size(),
                d->metadata.size(), d->type.size());
  return kExitOk;
}

}  // namespace

Status ChooseFileTarget(const std::string& to, const std::string& tar,
                        const std::string& zip,
                        restore::FileRestoreOptions& opt) {
  if (!to.empty() + !tar.empty() + !zip.empty() != 1)
    return InvalidArgument(
        "give exactly one of --to DIR, --tar FILE, --zip FILE");
  opt.target = !to.empty()    ? restore::FileTarget::kDirectory
               : !tar.empty() ? restore::FileTarget::kTar
                              : restore::FileTarget::kZip;
  opt.path = !to.empty() ? to : !tar.empty() ? tar : zip;
  return OkStatus();
}

void AddRestoreJson(nlohmann::ordered_json& j,
                    const restore::FileRestoreOptions& opt,
                    const restore::FileRestoreStats& st) {
  j["target"] = opt.path;
  j["format"] = opt.target == restore::FileTarget::kDirectory ? "dir"
                : opt.target == restore::FileTarget::kTar     ? "tar"
                                                              : "zip";
  // files: written with their content; hard links and entries skipped
  // (--overwrite if-newer) are counted apart, never in files.
  j["files"] = st.files;
  j["files_written"] = st.files;
  j["dirs"] = st.dirs;
  j["symlinks"] = st.symlinks;
  j["fifos"] = st.fifos;
  j["devices"] = st.devices;
  j["hardlinks"] = st.hardlinks;
  j["skipped"] = st.skipped;
  j["bytes"] = st.bytes;
  j["seconds"] = st.seconds;
  j["complete"] = st.complete();
  j["problems"] = nlohmann::ordered_json::array();
  for (const auto& p : st.problems)
    j["problems"].push_back({{"path", p.path}, {"what", p.what}});
}

std::string RestoreCounts(const restore::FileRestoreStats& st) {
  auto n = [](uint64_t v, const char* one, const char* many) {
    return std::to_string(v) + " " + (v == 1 ? one : many);
  };
  std::string files =
      n(st.files, "file", "files") + " (" + HumanBytes(st.bytes);
  if (st.skipped)
    files += "; " + std::to_string(st.skipped) + " skipped: not newer";
  return files + "), " + n(st.dirs, "directory", "directories") + ", " +
         n(st.symlinks, "symlink", "symlinks") + ", " +
         n(st.hardlinks, "hard link", "hard links") + ", " +
         std::to_string(st.fifos + st.devices) + " other";
}

void PrintProblems(const restore::FileRestoreStats& st) {
  for (const auto& p : st.problems)
    std::fprintf(stderr, "not restored: %s: %s\n", p.path.c_str(),
                 p.what.c_str());
}

int CmdFilesLs(const Globals& g, const repository::Repository& repo,
               const repository::Manifest& m, const std::string& path) {
  auto point = restore::FilePoint::Open(repo, m);
  if (!point.ok()) return Fail(g, point.status());
  auto entry = (*point)->Lookup(path.empty() ? "/" : path);
  if (!entry.ok()) return Fail(g, entry.status());
  std::vector<GuestEntry> entries;
  if (entry->type == restore::GuestType::kDir) {
    auto list = (*point)->List(*entry);
    if (!list.ok()) return Fail(g, list.status());
    entries = std::move(*list);
    std::sort(entries.begin(), entries.end(),
              [](const GuestEntry& x, const GuestEntry& y) {
                return x.name < y.name;
              });
  } else {
    entries.push_back(*entry);
  }
  if (g.json) {
    nlohmann::ordered_json j;
    j["snapshot"] = m.id;
    j["path"] = PrintableName(path.empty() ? "/" : path);
    j["entries"] = nlohmann::ordered_json::array();
    for (const auto& e : entries) {
      nlohmann::ordered_json ej;
      ej["name"] = PrintableName(e.name);
      ej["type"] = restore::GuestTypeName(e.type);
      ej["mode"] = restore::ModeString(e);
      ej["uid"] = e.uid;
      ej["gid"] = e.gid;
      ej["user"] = PrintableName(e.user);
      ej["group"] = PrintableName(e.group);
      ej["size"] = e.size;
      ej["mtime_ns"] = e.mtime_ns;
      if (e.type == restore::GuestType::kSymlink)
        ej["target"] = PrintableName(e.link_target);
      j["entries"].push_back(ej);
    }
    std::cout << DumpJson(j) << "\n";
    return kExitOk;
  }
  for (const auto& e : entries) {
    std::string name = PrintableName(e.name);
    if (e.type == restore::GuestType::kSymlink)
      name += " -> " + PrintableName(e.link_target);
    std::string user = e.user.empty() ? std::to_string(e.uid) : e.user;
    std::string group = e.group.empty() ? std::to_string(e.gid) : e.group;
    std::printf("%s  %-8s %-8s %12llu %s %s\n", restore::ModeString(e).c_str(),
                PrintableName(user).c_str(), PrintableName(group).c_str(),
                static_cast<unsigned long long>(e.size),
                FormatTime(e.mtime_ns, TimeStyle::kLocalMinutes).c_str(),
                name.c_str());
  }
  return kExitOk;
}

void AddFilesCommands(CLI::App& app, CLI::App& backup, CLI::App& restore,
                      const Globals& g, int& rc) {
  auto b = std::make_shared<BackupFilesArgs>();
  auto* files = backup.add_subcommand(
      "files",
      "back up files and directory trees (the in-guest agent): "
      "deduplicated with content-defined chunks; files unchanged since "
      "the last point of NAME (size, mtime, ctime, inode) are not read "
      "again; owners, modes, ns times, xattrs and ACLs, hard links, "
      "sparse files, FIFOs and device nodes are kept. Exit 3: partial "
      "(some entries could not be read; listed)");
  files->add_option("PATH", b->paths, "files or directories to back up")
      ->required();
  files->add_option("--name", b->name, "backup name, e.g. the guest's name")
      ->required();
  files->add_option("--exclude", b->excludes,
                    "skip entries matching GLOB: without '/' it matches "
                    "names ('*.tmp'), with '/' absolute paths "
                    "('/var/cache/*'); repeatable");
  files->add_option("--exclude-file", b->exclude_file,
                    "read more globs from a file, one per line ('#' "
                    "comments)");
  files->add_flag("--exclude-caches", b->exclude_caches,
                  "skip the contents of directories holding a CACHEDIR.TAG "
                  "(https://bford.info/cachedir/), keeping the tag");
  files->add_flag("--one-file-system", b->one_file_system,
                  "do not descend into mount points under PATH");
  files->add_option("--pre", b->pre,
                    "shell command run before reading (to quiesce an "
                    "application); if it fails, nothing is backed up");
  files->add_option("--post", b->post,
                    "shell command run after reading, also when the backup "
                    "failed; its failure makes the point partial");
  files->add_option("--hook-timeout", b->hook_timeout,
                    "seconds a --pre/--post command may run before it is "
                    "killed (and fails)")
      ->capture_default_str();
  files->add_option("--time", b->time,
                    "time to record (ISO-8601 UTC; default now)");
  files->add_option("--threads", b->threads,
                    "files read at once (default: one per core)");
  files->add_option("--chunker-params", b->chunker,
                    "MIN,AVG,MAX content chunk sizes in KiB (default "
                    "256,1024,4096; AVG a power of two). Changed files then "
                    "no longer deduplicate against chunks cut with other "
                    "sizes");
  files->callback([&g, &rc, b] { rc = CmdBackupFiles(g, *b); });

  auto r = std::make_shared<RestoreFilesArgs>();
  auto* rf = restore.add_subcommand(
      "files",
      "restore from a file backup (haven backup files) into a folder, "
      "keeping full paths (/srv/a -> DIR/srv/a), or export as tar or zip; "
      "with no PATH everything. Names that could escape the target are "
      "refused and listed");
  rf->add_option("SNAPSHOT", r->spec,
                 "id prefix, latest or NAME:latest (latest: the latest file "
                 "backup, whatever image backups came after it)")
      ->required();
  rf->add_option("PATH", r->patterns,
                 "paths in the backup, or globs ('*.conf' by name, "
                 "'/etc/*/x' by path); a directory brings its contents");
  rf->add_option("--to", r->to,
                 "folder to restore into (made if missing; not a symlink)");
  rf->add_option("--tar", r->tar,
                 "write a tar (pax; sparse files stored as their data and a "
                 "map of the holes) archive (must not exist)");
  rf->add_option("--zip", r->zip, "write a zip archive (must not exist)");
  rf->add_option("--overwrite", r->overwrite,
                 "files that exist in the folder: never (kept, listed), "
                 "if-newer (replaced when the backup's is newer; the others "
                 "are counted as skipped) or always")
      ->capture_default_str();
  rf->add_flag("--no-sync", r->no_sync,
               "do not wait for the restored files to reach the disk "
               "(faster; a crash soon after could lose some of them)");
  rf->callback([&g, &rc, r] { rc = CmdRestoreFiles(g, *r); });

  auto d = std::make_shared<std::pair<std::string, std::string>>();
  auto* diff = app.add_subcommand(
      "diff",
      "compare two file backups: + added, - removed, M content changed, "
      "m metadata only, T type changed");
  diff->add_option("SNAPSHOT1", d->first, "the older point")->required();
  diff->add_option("SNAPSHOT2", d->second, "the newer point")->required();
  diff->callback([&g, &rc, d] { rc = CmdDiff(g, d->first, d->second); });
}

}  // namespace haven::cli
