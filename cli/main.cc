// haven: the command line, a thin layer over the libraries.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "agent/host_backup.h"
#include "agent/image_backup.h"
#include "agent/vm_backup.h"
#include "base/bytes.h"
#include "base/file.h"
#include "base/time.h"
#include "cli/common.h"
#include "cli/file_commands.h"
#include "cli/files_commands.h"
#include "cli/output.h"
#include "cli/passphrase.h"
#include "repository/check.h"
#include "repository/forget.h"
#include "repository/gc.h"
#include "repository/json_fields.h"
#include "repository/repair.h"
#include "repository/repository.h"
#include "repository/retention.h"
#include "restore/host_restore.h"
#include "restore/image_restore.h"
#include "restore/vm_restore.h"

namespace haven::cli {
namespace {

using repository::Manifest;
using repository::Repository;

nlohmann::ordered_json SnapshotJson(const Manifest& m) {
  nlohmann::ordered_json j;
  j["id"] = m.id;
  j["name"] = m.name;
  j["kind"] = m.kind;
  j["time"] = m.time;
  j["hostname"] = m.hostname;
  j["consistency"] = m.consistency;
  j["consistency_reason"] = m.consistency_reason;
  j["parent"] = m.parent;
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

// ------------------------------------------------------------------ commands

int CmdInit(const Globals& g, const repository::InitOptions& opts) {
  auto pass = Passphrase(g, true);
  if (!pass.ok()) return Fail(g, pass.status());
  Status s = Repository::Init(g.repo, *pass, opts);
  if (!s.ok()) return Fail(g, s);
  if (g.json)
    std::cout << repository::DumpJson(nlohmann::json(
                     {{"repository", g.repo}, {"created", true}}))
              << "\n";
  else if (!g.quiet)
    std::printf("created repository at %s (chunk size %s)\n", g.repo.c_str(),
                HumanBytes(opts.chunk_size).c_str());
  return kExitOk;
}

int CmdBackupImage(const Globals& g, const std::string& path,
                   const std::string& name, const std::string& time,
                   const std::string& format) {
  auto repo = OpenRepo(g, true);
  if (!repo.ok()) return Fail(g, repo.status());
  agent::ImageBackupOptions opt;
  opt.name = name;
  opt.time = time;
  opt.format = format;
  opt.progress = TerminalProgress(!g.quiet && !g.json, "backup");
  auto m = agent::BackupImage(**repo, path, opt);
  if (!m.ok())
    return Fail(g,
                m.status().WithContext("backup of " + path +
                                       " failed; no recovery point was written "
                                       "and earlier ones are unchanged"));
  bool partial = m->consistency == "inconsistent";
  if (g.json) {
    std::cout << repository::DumpJson(SnapshotJson(*m)) << "\n";
  } else if (!g.quiet) {
    const auto& st = m->stats;
    std::printf("snapshot %s saved: %s '%s'\n", m->id.substr(0, 8).c_str(),
                m->kind.c_str(), m->name.c_str());
    std::printf(
        "  size %s, read %s, holes %s\n", HumanBytes(st.logical_bytes).c_str(),
        HumanBytes(st.read_bytes).c_str(), HumanBytes(st.hole_bytes).c_str());
    std::printf("  new data %s in %llu chunks, stored as %s\n",
                HumanBytes(st.new_raw_bytes).c_str(),
                static_cast<unsigned long long>(st.new_chunks),
                HumanBytes(st.new_stored_bytes).c_str());
    std::printf(
        "  took %s (%s/s), consistency: %s\n",
        FormatDuration(st.duration_seconds).c_str(),
        HumanBytes(static_cast<uint64_t>(st.logical_bytes /
                                         std::max(st.duration_seconds, 1e-3)))
            .c_str(),
        m->consistency.c_str());
  }
  if (partial) {
    std::fprintf(stderr, "haven: warning: %s\n", m->consistency_reason.c_str());
    return kExitPartial;
  }
  return kExitOk;
}

int CmdSnapshots(const Globals& g, const std::string& name) {
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  std::vector<std::string> errors;
  auto all = (*repo)->ListSnapshots(&errors);
  if (!all.ok()) return Fail(g, all.status());
  if (g.json) {
    nlohmann::ordered_json j = nlohmann::ordered_json::array();
    for (const auto& m : *all)
      if (name.empty() || m.name == name) {
        j.push_back(SnapshotJson(m));
        j.back()["protected"] = (*repo)->IsProtected(m.id);
      }
    std::cout << repository::DumpJson(j) << "\n";
  } else {
    std::printf("%-8s  %-20s  %-20s  %10s  %10s  %s\n", "ID", "TIME", "NAME",
                "SIZE", "NEW", "CONSISTENCY");
    for (const auto& m : *all) {
      if (!name.empty() && m.name != name) continue;
      std::string when = m.time.substr(0, 19);  // to the second
      std::replace(when.begin(), when.end(), 'T', ' ');
      std::printf(
          "%-8s  %-20s  %-20s  %10s  %10s  %s\n", m.id.substr(0, 8).c_str(),
          when.c_str(), m.name.c_str(),
          HumanBytes(m.stats.logical_bytes).c_str(),
          HumanBytes(m.stats.new_stored_bytes).c_str(),
          (m.consistency + (m.repaired_from.empty() ? "" : ", repaired") +
           ((*repo)->IsProtected(m.id) ? ", protected" : ""))
              .c_str());
    }
  }
  for (const auto& e : errors)
    std::fprintf(stderr, "haven: warning: unreadable %s\n", e.c_str());
  return errors.empty() ? kExitOk : kExitPartial;
}

int CmdShow(const Globals& g, const std::string& spec) {
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  auto m = (*repo)->FindSnapshot(spec);
  if (!m.ok()) return Fail(g, m.status());
  if (g.json) {
    std::cout << repository::DumpJson(SnapshotJson(*m), 2) << "\n";
    return kExitOk;
  }
  std::printf(
      "snapshot     %s\nname         %s\nkind         %s\ntime         %s\n"
      "host         %s\nconsistency  %s (%s)\nparent       %s\n",
      m->id.c_str(), m->name.c_str(), m->kind.c_str(), m->time.c_str(),
      m->hostname.c_str(), m->consistency.c_str(),
      m->consistency_reason.c_str(),
      m->parent.empty() ? "-" : m->parent.c_str());
  if (!m->vm_uuid.empty())
    std::printf("vm uuid      %s\ncheckpoint   %s\n", m->vm_uuid.c_str(),
                m->checkpoint.empty() ? "-" : m->checkpoint.c_str());
  for (const auto* d : m->ImageDisks()) {
    std::printf("disk         %s: %s (%llu bytes), chunk size %s, from %s\n",
                d->name.c_str(), HumanBytes(d->size).c_str(),
                static_cast<unsigned long long>(d->size),
                HumanBytes(d->chunk_size).c_str(), d->source.c_str());
    if (!d->capture.empty())
      std::printf("             read: %s\n", d->capture.c_str());
  }
  for (const auto* c : m->ConfigFiles())
    std::printf("config       %s (%s)\n", c->name.c_str(),
                HumanBytes(c->size).c_str());
  if (m->kind == "files") {
    for (const auto& p : m->file_paths)
      std::printf("path         %s\n", p.c_str());
    std::printf("entries      %llu, %s of files%s\n",
                static_cast<unsigned long long>(m->file_entries),
                HumanBytes(m->stats.logical_bytes).c_str(),
                m->partial ? "; PARTIAL: some entries could not be read whole "
                             "(notes)"
                           : "");
  }
  for (const auto& n : m->notes) std::printf("note         %s\n", n.c_str());
  if (!m->repaired_from.empty())
    std::printf("repaired     %s, replacing %s\n", m->repaired_time.c_str(),
                m->repaired_from.c_str());
  for (const auto& d : m->disks)
    for (const auto& [offset, length] : d.lost)
      std::printf("lost         disk %s bytes %llu-%llu (restored as zeros)\n",
                  d.name.c_str(), static_cast<unsigned long long>(offset),
                  static_cast<unsigned long long>(offset + length - 1));
  std::printf("new data     %s stored\n",
              HumanBytes(m->stats.new_stored_bytes).c_str());
  return kExitOk;
}

// One VM's outcome of `haven backup vm`, for people.
void PrintVmBackup(const agent::VmBackupReport& r) {
  const char* name = r.name.c_str();
  if (r.outcome == Outcome::kSkipped) {
    std::printf("%s: skipped (excluded)\n", name);
    return;
  }
  if (!r.ok()) {
    std::printf(
        "%s: %s: %s\n  no recovery point was written; earlier "
        "ones are unchanged\n",
        name, r.outcome == Outcome::kCancelled ? "CANCELLED" : "FAILED",
        r.status.message().c_str());
    return;
  }
  const auto& m = r.manifest;
  std::printf("%s: snapshot %s saved, %s, %s new data stored, took %s\n",
              name, m.id.substr(0, 8).c_str(), m.consistency.c_str(),
              HumanBytes(m.stats.new_stored_bytes).c_str(),
              FormatDuration(r.seconds).c_str());
  for (const auto& d : r.disks)
    std::printf("  %-6s %s, %s read of %s%s%s\n", d.name.c_str(),
                d.mode.c_str(), HumanBytes(d.read_bytes).c_str(),
                HumanBytes(d.size).c_str(), d.reason.empty() ? "" : " — ",
                d.reason.c_str());
  for (const auto& [disk, why] : r.skipped)
    std::printf("  %-6s skipped: %s\n", disk.c_str(), why.c_str());
  std::string names;
  for (const auto* c : m.ConfigFiles())
    names += (names.empty() ? "" : ", ") + c->name;
  std::printf("  config: %s\n", names.c_str());
  for (const auto& n : m.notes)
    if (n.rfind("disk ", 0) != 0) std::printf("  note: %s\n", n.c_str());
}

int CmdBackupVm(const Globals& g, const std::string& uri,
                agent::HostBackupRequest& req) {
  auto host = snapshot::LibvirtHost::Connect(uri);
  if (!host.ok()) return Fail(g, host.status());
  auto selection = agent::SelectVms(req, **host);
  if (!selection.ok()) return Fail(g, selection.status());
  if (req.all && selection->chosen.empty() && selection->excluded.empty()) {
    std::string msg =
        "no VM is defined on " + uri +
        ", so there is nothing to back up.\nCreate one with virt-install "
        "or 'virsh define', or try Haven on a small demo VM:\n"
        "  scripts/quickstart.sh --demo-vm";
    if (g.json)
      std::cout << repository::DumpJson(nlohmann::ordered_json(
                       {{"vms", nlohmann::json::array()},
                        {"succeeded", 0},
                        {"failed", 0},
                        {"message", msg}}))
                << "\n";
    else
      std::fprintf(stderr, "haven: %s\n", msg.c_str());
    return kExitOk;
  }
  auto repo = OpenRepo(g, true);
  if (!repo.ok()) return Fail(g, repo.status());
  const bool human = !g.quiet && !g.json;
  req.vm.log = [&](const std::string& msg) {
    if (!g.quiet) std::fprintf(stderr, "haven: %s\n", msg.c_str());
  };
  if (const char* d = std::getenv("HAVEN_FAULT_VM_BACKUP_DELAY"))
    req.vm.fault_delay = std::atof(d);
  req.progress = TerminalProgress(human, "backup");
  auto r = agent::BackupHost(**repo, **host, req);
  if (!r.ok()) return Fail(g, r.status());
  if (g.json) {
    std::cout << repository::DumpJson(agent::HostBackupResultJson(*r)) << "\n";
  } else if (human) {
    for (const auto& v : r->vms) PrintVmBackup(v);
    if (r->vms.size() > 1)
      std::printf("%d of %zu VMs backed up%s\n", r->succeeded,
                  r->vms.size() - r->skipped,
                  r->failed || r->cancelled ? "; see the failures above" : "");
  }
  return r->failed || r->cancelled ? kExitFailure : kExitOk;
}

struct RestoreVmArgs {
  bool host = false;  // `restore host`: several VMs, one summary
  std::string uri = "qemu:///system";
  std::vector<std::string> network_map;
  restore::HostRestoreRequest req;
};

void PrintVmPlan(const restore::VmPlan& p) {
  std::printf(
      "%s%s from snapshot %s (%s, %s)\n", p.name.c_str(),
      p.name == p.source_name ? "" : (" (was " + p.source_name + ")").c_str(),
      p.snapshot.id.substr(0, 8).c_str(), p.snapshot.time.c_str(),
      p.snapshot.consistency.c_str());
  std::printf("  uuid    %s\n",
              p.uuid.empty() ? "new" : (p.uuid + " (kept)").c_str());
  for (const auto& d : p.disks)
    std::printf("  disk    %-6s %s  %s  %s%s\n", d.target.c_str(),
                HumanBytes(d.size).c_str(), d.format.c_str(), d.path.c_str(),
                d.exists ? "  (replaced)" : "");
  if (!p.nvram_path.empty())
    std::printf("  nvram   %s\n", p.nvram_path.c_str());
  for (const auto& n : p.networks) {
    std::string what =
        n.action == "create"   ? "create from the recovery point"
        : n.action == "exists" ? "exists on this host, used as is"
        : n.action == "mapped" ? "mapped from " + n.from
        : n.action == "bridge"
            ? (n.name == n.from ? std::string("host bridge")
                                : "host bridge, mapped from " + n.from)
            : "MISSING on this host (see the conflict)";
    std::printf("  network %s: %s\n", n.name.c_str(), what.c_str());
  }
  for (const auto& [o, n] : p.macs)
    std::printf("  mac     %s -> %s\n", o.c_str(), n.c_str());
  if (!p.replace_domain.empty())
    std::printf("  replace domain %s\n", p.replace_domain.c_str());
  for (const auto& w : p.warnings) std::printf("  warning: %s\n", w.c_str());
  for (const auto& c : p.conflicts) std::printf("  conflict: %s\n", c.c_str());
}

int CmdRestoreVm(const Globals& g, RestoreVmArgs& a) {
  restore::HostRestoreRequest& req = a.req;
  if (!a.host && req.points.size() != 1)
    return Fail(g, InvalidArgument("restore vm takes one recovery point"));
  for (const auto& m : a.network_map) {
    size_t eq = m.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == m.size())
      return Fail(
          g, InvalidArgument("--network-map takes OLD=NEW, not '" + m + "'"));
    req.vm.network_map[m.substr(0, eq)] = m.substr(eq + 1);
  }
  if (req.all == !req.points.empty())  // before opening anything
    return Fail(
        g, InvalidArgument("name the recovery points to restore, or give --all "
                           "for the latest point of every VM"));
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  auto host = snapshot::LibvirtHost::Connect(a.uri);
  if (!host.ok()) return Fail(g, host.status());
  const bool human = !g.quiet && !g.json;
  req.vm.log = [&](const std::string& msg) {
    if (!g.quiet) std::fprintf(stderr, "haven: %s\n", msg.c_str());
  };
  req.vm.progress = [human](const std::string& label) {
    return TerminalProgress(human, "restore " + label);
  };
  auto plan = restore::PlanHostRestore(**repo, **host, req);
  if (!plan.ok()) return Fail(g, plan.status());
  if (human || (!g.json && req.dry_run))
    for (const auto& p : plan->vms) PrintVmPlan(p);
  std::fflush(stdout);  // the plan before the steps logged on stderr
  restore::HostRestoreResult r = restore::RestoreHost(**repo, **host, *plan, req);
  if (g.json) std::cout << repository::DumpJson(restore::HostRestoreResultJson(r)) << "\n";
  std::fflush(stdout);
  if (r.conflicts > 0) {
    for (const auto& p : plan->vms)
      for (const auto& c : p.conflicts)
        std::fprintf(stderr, "conflict: %s\n", c.c_str());
    std::fprintf(stderr, "haven: %zu conflict(s); nothing was changed%s\n",
                 r.conflicts,
                 req.vm.replace ? ""
                                : " (--replace allows replacing a "
                                  "same-named VM and its files)");
    return kExitFailure;
  }
  if (req.dry_run) {
    if (!g.json) std::printf("dry run: nothing was changed\n");
    return kExitOk;
  }
  for (const auto& v : r.vms) {
    const std::string& name = v.plan.name;
    if (v.outcome == Outcome::kFailed || v.outcome == Outcome::kCancelled) {
      if (!g.quiet)
        std::fprintf(stderr, "haven: %s: restore %s: %s\n", name.c_str(),
                     v.outcome == Outcome::kFailed ? "FAILED" : "CANCELLED",
                     v.status.message().c_str());
      continue;
    }
    if (!human) continue;
    std::printf("%s: defined (uuid %s) in %s", name.c_str(),
                v.result.uuid.c_str(), FormatDuration(v.result.seconds).c_str());
    if (req.vm.start)
      std::printf(", %s", v.result.started
                              ? "started"
                              : ("NOT started: " + v.result.start_error).c_str());
    std::printf("\n");
    for (const auto& n : v.result.networks_created)
      std::printf("  network %s created and started\n", n.c_str());
  }
  if (human && r.vms.size() > 1)
    std::printf(
        "%d of %zu VMs restored%s%s in %s\n", r.succeeded, r.vms.size(),
        req.vm.start
            ? (", " + std::to_string(r.succeeded - r.not_started) + " started")
                  .c_str()
            : "",
        r.failed || r.cancelled ? "; see the failures above" : "",
        FormatDuration(r.duration_seconds).c_str());
  return r.failed || r.cancelled || r.not_started ? kExitFailure : kExitOk;
}

int CmdRestoreConfig(const Globals& g, const std::string& spec,
                     const std::string& dir, bool overwrite) {
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  auto m = (*repo)->FindSnapshot(spec);
  if (!m.ok()) return Fail(g, m.status());
  auto files = m->ConfigFiles();
  if (files.empty())
    return Fail(g, NotFound("snapshot " + m->id.substr(0, 8) +
                            " holds no configuration files"));
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const auto* f : files) {
    // Names were checked when the manifest was parsed; check again, since
    // they become paths under `dir`.
    if (!repository::IsSafeConfigName(f->name))
      return Fail(g, DataLoss("config file name '" + f->name +
                              "' is not a safe relative path"));
    std::string path = dir + "/" + f->name;
    Status s = MakeDirs(path.substr(0, path.rfind('/')), 0755);
    if (!s.ok()) return Fail(g, s);
    restore::ImageRestoreOptions opt;
    opt.disk = f->name;
    opt.config = true;
    opt.overwrite = overwrite;
    auto st = restore::RestoreImage(**repo, *m, path, opt);
    if (!st.ok()) return Fail(g, st.status().WithContext(f->name));
    out.push_back({{"name", f->name}, {"path", path}, {"size", f->size}});
    if (!g.quiet && !g.json) std::printf("%s\n", path.c_str());
  }
  if (g.json)
    std::cout << repository::DumpJson(nlohmann::ordered_json(
                     {{"snapshot", m->id}, {"files", out}}))
              << "\n";
  return kExitOk;
}

int CmdRestoreImage(const Globals& g, const std::string& spec,
                    const std::string& to, const std::string& disk,
                    const std::string& format, bool overwrite,
                    bool verify_ids) {
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  auto m = (*repo)->FindSnapshot(spec);
  if (!m.ok()) return Fail(g, m.status());
  restore::ImageRestoreOptions opt;
  opt.disk = disk;
  opt.overwrite = overwrite;
  opt.verify_ids = verify_ids;
  opt.format = format;
  opt.progress = TerminalProgress(!g.quiet && !g.json, "restore");
  auto st = restore::RestoreImage(**repo, *m, to, opt);
  if (!st.ok()) return Fail(g, st.status());
  // A repaired point restores with zeros where its data was lost: say so.
  std::vector<std::pair<uint64_t, uint64_t>> lost;
  for (const auto& d : m->disks)
    if (disk.empty() || d.name == disk) lost = d.lost;
  for (const auto& [offset, length] : lost)
    std::fprintf(stderr,
                 "haven: warning: bytes %llu-%llu were lost before 'haven "
                 "repair snapshots' and are restored as zeros\n",
                 static_cast<unsigned long long>(offset),
                 static_cast<unsigned long long>(offset + length - 1));
  if (g.json) {
    std::cout << repository::DumpJson(nlohmann::ordered_json(
                     {{"snapshot", m->id},
                      {"lost_bytes",
                       [&] {
                         uint64_t n = 0;
                         for (const auto& l : lost) n += l.second;
                         return n;
                       }()},
                      {"target", to},
                      {"size", st->size},
                      {"data_bytes", st->data_bytes},
                      {"hole_bytes", st->hole_bytes},
                      {"duration_seconds", st->duration_seconds}}))
              << "\n";
  } else if (!g.quiet) {
    std::printf("restored snapshot %s (%s) to %s: %s, %s of data, in %s\n",
                m->id.substr(0, 8).c_str(), m->name.c_str(), to.c_str(),
                HumanBytes(st->size).c_str(),
                HumanBytes(st->data_bytes).c_str(),
                FormatDuration(st->duration_seconds).c_str());
  }
  return lost.empty() ? kExitOk : kExitPartial;
}

int CmdRepairSnapshots(const Globals& g,
                       const repository::RepairOptions& base) {
  auto repo = OpenRepo(g, true);
  if (!repo.ok()) return Fail(g, repo.status());
  repository::RepairOptions opt = base;
  bool chatty = !g.quiet && !g.json;
  opt.on_phase = [chatty](const std::string& p) {
    if (chatty) std::fprintf(stderr, "haven: %s\n", p.c_str());
  };
  auto r = repository::RepairSnapshots(**repo, opt);
  if (!r.ok()) return Fail(g, r.status());
  if (g.json) {
    nlohmann::ordered_json j;
    j["dry_run"] = opt.dry_run;
    j["snapshots"] = r->snapshots;
    j["damaged_chunks"] = r->damaged_chunks;
    j["repaired"] = nlohmann::ordered_json::array();
    for (const auto& p : r->repaired) {
      nlohmann::ordered_json pj = {{"old_id", p.old_id},
                                   {"new_id", p.new_id},
                                   {"name", p.name},
                                   {"time", p.time},
                                   {"lost", nlohmann::ordered_json::array()}};
      for (const auto& l : p.lost)
        pj["lost"].push_back(
            {{"disk", l.disk}, {"offset", l.offset}, {"length", l.length}});
      j["repaired"].push_back(pj);
    }
    j["unreadable"] = r->unreadable;
    j["index_entries_dropped"] = r->index_entries_dropped;
    j["findings"] = r->findings;
    std::cout << repository::DumpJson(j) << "\n";
  } else if (!g.quiet) {
    for (size_t k = 0; k < r->findings.size() && k < 10; ++k)
      std::printf("DAMAGE: %s\n", r->findings[k].c_str());
    if (r->findings.size() > 10)
      std::printf("... and %zu more findings (see 'haven check')\n",
                  r->findings.size() - 10);
    if (r->index_entries_dropped)
      std::printf(
          "%s %llu index entries naming lost data (the next backup "
          "stores those chunks again)\n",
          opt.dry_run ? "would drop" : "dropped",
          static_cast<unsigned long long>(r->index_entries_dropped));
    for (const auto& p : r->repaired) {
      uint64_t bytes = 0;
      for (const auto& l : p.lost) bytes += l.length;
      if (opt.dry_run)
        std::printf("would repair snapshot %s (%s, %s): %s lost\n",
                    p.old_id.substr(0, 8).c_str(), p.name.c_str(),
                    p.time.substr(0, 19).c_str(), HumanBytes(bytes).c_str());
      else
        std::printf("snapshot %s (%s, %s) replaced by %s: %s lost\n",
                    p.old_id.substr(0, 8).c_str(), p.name.c_str(),
                    p.time.substr(0, 19).c_str(), p.new_id.substr(0, 8).c_str(),
                    HumanBytes(bytes).c_str());
      for (const auto& l : p.lost)
        std::printf("  disk %s: bytes %llu-%llu are now zeros\n",
                    l.disk.c_str(), static_cast<unsigned long long>(l.offset),
                    static_cast<unsigned long long>(l.offset + l.length - 1));
    }
    for (const auto& u : r->unreadable)
      std::printf("UNREPAIRABLE: %s (remove it with 'haven forget ID')\n",
                  u.c_str());
    if (r->repaired.empty() && r->unreadable.empty())
      std::printf("%llu recovery points checked; nothing to repair\n",
                  static_cast<unsigned long long>(r->snapshots));
  }
  return r->unreadable.empty() ? kExitOk : kExitPartial;
}

int CmdRebuildIndex(const Globals& g) {
  auto pass = Passphrase(g, false);
  if (!pass.ok()) return Fail(g, pass.status());
  auto r = Repository::RebuildIndex(g.repo, *pass, OpenOpts(g, true));
  if (!r.ok()) return Fail(g, r.status());
  if (g.json) {
    std::cout << repository::DumpJson(nlohmann::json({{"packs", r->packs},
                                                      {"chunks", r->chunks},
                                                      {"damaged", r->damaged}}))
              << "\n";
  } else {
    std::printf("index rebuilt: %llu chunks from %llu packs\n",
                static_cast<unsigned long long>(r->chunks),
                static_cast<unsigned long long>(r->packs));
  }
  for (const auto& d : r->damaged)
    std::fprintf(stderr, "haven: damaged: %s\n", d.c_str());
  return r->damaged.empty() ? kExitOk : kExitPartial;
}

int CmdCheck(const Globals& g, double read_data_percent) {
  if (read_data_percent < 0 || read_data_percent > 100)
    return Fail(
        g, InvalidArgument("--read-data takes a percentage from 0 to 100"));
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  repository::CheckOptions opt;
  opt.read_data_percent = read_data_percent;
  bool tty = !g.quiet && !g.json && ::isatty(STDERR_FILENO);
  opt.on_phase = [tty](const std::string& p) {
    if (tty) std::fprintf(stderr, "haven: %s\n", p.c_str());
  };
  auto r = repository::CheckRepository(**repo, opt);
  if (!r.ok()) return Fail(g, r.status());
  double rate = r->read_seconds > 0 ? r->bytes_read / r->read_seconds : 0;
  if (g.json) {
    nlohmann::ordered_json j;
    j["ok"] = r->findings.empty();
    j["snapshots"] = r->snapshots;
    j["chunk_references"] = r->chunk_references;
    j["index_entries"] = r->index_entries;
    j["packs"] = r->packs;
    j["packs_read"] = r->packs_read;
    j["chunks_read"] = r->chunks_read;
    j["bytes_read"] = r->bytes_read;
    j["read_seconds"] = r->read_seconds;
    j["findings"] = r->findings;
    std::cout << repository::DumpJson(j) << "\n";
  } else {
    std::printf(
        "checked %llu recovery points (%llu chunk references), %llu index "
        "entries, "
        "%llu packs\n",
        static_cast<unsigned long long>(r->snapshots),
        static_cast<unsigned long long>(r->chunk_references),
        static_cast<unsigned long long>(r->index_entries),
        static_cast<unsigned long long>(r->packs));
    if (read_data_percent > 0)
      std::printf("read %llu packs, %llu chunks, %s in %s (%s/s)\n",
                  static_cast<unsigned long long>(r->packs_read),
                  static_cast<unsigned long long>(r->chunks_read),
                  HumanBytes(r->bytes_read).c_str(),
                  FormatDuration(r->read_seconds).c_str(),
                  HumanBytes(static_cast<uint64_t>(rate)).c_str());
    for (const auto& f : r->findings) std::printf("DAMAGE: %s\n", f.c_str());
    if (r->findings.empty())
      std::printf("no errors found\n");
    else
      std::printf("%zu problem(s) found\n", r->findings.size());
  }
  return r->findings.empty() ? kExitOk : kExitFailure;
}

int CmdGc(const Globals& g, const repository::GcOptions& base) {
  if (base.repack_below < 0 || base.repack_below > 1)
    return Fail(
        g, InvalidArgument("--repack-below takes a percentage from 0 to 100"));
  if (base.max_unused < 0 || base.max_unused > 1)
    return Fail(
        g, InvalidArgument("--max-unused takes a percentage from 0 to 100"));
  auto pass = Passphrase(g, false);
  if (!pass.ok()) return Fail(g, pass.status());
  repository::GcOptions opt = base;
  opt.open = OpenOpts(g, true);
  bool chatty = !g.quiet && !g.json;
  opt.on_phase = [chatty](const std::string& p) {
    if (chatty) std::fprintf(stderr, "haven: %s\n", p.c_str());
  };
  auto r = repository::CollectGarbage(g.repo, *pass, opt);
  if (!r.ok()) return Fail(g, r.status());
  uint64_t freed =
      r->bytes_before > r->bytes_after ? r->bytes_before - r->bytes_after : 0;
  if (g.json) {
    nlohmann::ordered_json j;
    j["dry_run"] = opt.dry_run;
    j["snapshots"] = r->snapshots;
    j["live_chunks"] = r->live_chunks;
    j["packs"] = r->packs;
    j["packs_deleted"] = r->packs_deleted;
    j["packs_repacked"] = r->packs_repacked;
    j["packs_written"] = r->packs_written;
    j["chunks_removed"] = r->chunks_removed;
    j["chunks_moved"] = r->chunks_moved;
    j["bytes_moved"] = r->bytes_moved;
    j["bytes_before"] = r->bytes_before;
    j["bytes_after"] = r->bytes_after;
    j["bytes_freed"] = freed;
    j["unused_bytes_after"] = r->unused_bytes_after;
    j["mark_seconds"] = r->mark_seconds;
    j["wait_seconds"] = r->wait_seconds;
    j["sweep_seconds"] = r->sweep_seconds;
    j["skipped"] = r->skipped;
    std::cout << repository::DumpJson(j) << "\n";
  } else if (!g.quiet) {
    const char* verb = opt.dry_run ? "would " : "";
    std::printf("%llu recovery points use %llu chunks; %llu packs examined\n",
                static_cast<unsigned long long>(r->snapshots),
                static_cast<unsigned long long>(r->live_chunks),
                static_cast<unsigned long long>(r->packs));
    std::printf(
        "%sdelete %llu unused packs, %srewrite %llu (moving %s in %llu "
        "chunks into %llu new packs)\n",
        verb, static_cast<unsigned long long>(r->packs_deleted), verb,
        static_cast<unsigned long long>(r->packs_repacked),
        HumanBytes(r->bytes_moved).c_str(),
        static_cast<unsigned long long>(r->chunks_moved),
        static_cast<unsigned long long>(r->packs_written));
    std::printf(
        "packs: %s before, %s after, %s %s (%llu chunks removed); %s unused "
        "left in kept packs\n",
        HumanBytes(r->bytes_before).c_str(), HumanBytes(r->bytes_after).c_str(),
        opt.dry_run ? "would free" : "freed", HumanBytes(freed).c_str(),
        static_cast<unsigned long long>(r->chunks_removed),
        HumanBytes(r->unused_bytes_after).c_str());
    std::printf("mark %s, waited %s for the exclusive lock, sweep %s\n",
                FormatDuration(r->mark_seconds).c_str(),
                FormatDuration(r->wait_seconds).c_str(),
                FormatDuration(r->sweep_seconds).c_str());
  }
  for (const auto& sk : r->skipped)
    std::fprintf(stderr, "haven: warning: %s\n", sk.c_str());
  return r->skipped.empty() ? kExitOk : kExitPartial;
}

struct ForgetArgs {
  repository::RetentionPolicy policy;
  std::string within;
  std::string name;                // only this backup name
  std::vector<std::string> specs;  // explicit recovery points to remove
  bool dry_run = false;
};

int CmdForget(const Globals& g, ForgetArgs a) {
  repository::ForgetRequest req;
  req.policy = a.policy;
  if (!a.within.empty()) {
    auto w = repository::ParseRetentionDuration(a.within);
    if (!w.ok()) return Fail(g, w.status().WithContext("--keep-within"));
    req.policy.within_seconds = *w;
  }
  req.points = a.specs;
  req.name = a.name;
  req.dry_run = a.dry_run;
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  auto r = repository::Forget(**repo, req);
  if (!r.ok()) return Fail(g, r.status());
  if (g.json) {
    std::cout << repository::DumpJson(repository::ForgetResultJson(*r))
              << "\n";
  } else if (!g.quiet) {
    std::string group;
    for (const auto& p : r->points) {
      const auto& d = p.decision;
      if (d.item.name != group) {
        group = d.item.name;
        std::printf("%s:\n", group.c_str());
      }
      std::string reasons;
      for (const auto& why : d.reasons)
        reasons += (reasons.empty() ? "" : ", ") + why;
      std::printf("  %-6s %s  %s  %s\n", d.keep ? "keep" : "remove",
                  d.item.id.substr(0, 8).c_str(),
                  HumanTime(d.item.time).c_str(), reasons.c_str());
    }
    if (r->dry_run)
      std::printf("dry run: would keep %llu and remove %llu recovery points\n",
                  static_cast<unsigned long long>(r->kept),
                  static_cast<unsigned long long>(r->removed));
    else
      std::printf("kept %llu, removed %llu recovery points%s\n",
                  static_cast<unsigned long long>(r->kept),
                  static_cast<unsigned long long>(r->removed),
                  r->removed ? "; run 'haven gc' to free their space" : "");
  }
  for (const auto& p : r->points)
    if (p.outcome == Outcome::kFailed)
      return Fail(g, IoError("could not remove every recovery point: " +
                             p.status.message()));
  return kExitOk;
}

int CmdProtect(const Globals& g, const std::vector<std::string>& specs,
               bool on) {
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const auto& spec : specs) {
    auto m = (*repo)->FindSnapshot(spec);
    if (!m.ok()) return Fail(g, m.status());
    Status s = (*repo)->SetProtected(m->id, on);
    if (!s.ok()) return Fail(g, s);
    out.push_back({{"id", m->id}, {"name", m->name}, {"protected", on}});
    if (!g.json && !g.quiet)
      std::printf(
          "snapshot %s (%s, %s) %s\n", m->id.substr(0, 8).c_str(),
          m->name.c_str(), m->time.substr(0, 19).c_str(),
          on ? "is protected: forget will keep it" : "is no longer protected");
  }
  if (g.json) std::cout << repository::DumpJson(out) << "\n";
  return kExitOk;
}

int CmdKeyList(const Globals& g) {
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  auto slots = (*repo)->key_slots().List();
  if (!slots.ok()) return Fail(g, slots.status());
  if (g.json) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& s : *slots)
      j.push_back({{"slot", s.slot},
                   {"created", s.created},
                   {"kdf", s.kdf},
                   {"current", s.slot == (*repo)->unlocked_slot()}});
    std::cout << repository::DumpJson(j) << "\n";
    return kExitOk;
  }
  std::printf("  %-16s  %-20s  %s\n", "SLOT", "CREATED", "KDF");
  for (const auto& s : *slots)
    std::printf("%s %-16s  %-20s  %s\n",
                s.slot == (*repo)->unlocked_slot() ? "*" : " ", s.slot.c_str(),
                s.created.c_str(), s.kdf.c_str());
  return kExitOk;
}

int CmdKeyAdd(const Globals& g, const std::string& new_password_file) {
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  PassphraseSource src;
  src.env_var = "HAVEN_NEW_PASSWORD";
  src.flag_file = new_password_file;
  src.prompt = "New passphrase: ";
  src.confirm = true;
  auto pass = GetPassphrase(src);
  if (!pass.ok()) return Fail(g, pass.status());
  auto slot = (*repo)->key_slots().Add((*repo)->master_key(), *pass);
  if (!slot.ok()) return Fail(g, slot.status());
  if (g.json)
    std::cout << repository::DumpJson(nlohmann::json({{"slot", *slot}}))
              << "\n";
  else
    std::printf("added key slot %s\n", slot->c_str());
  return kExitOk;
}

int CmdKeyRemove(const Globals& g, const std::string& slot) {
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  Status s = (*repo)->key_slots().Remove(slot);
  if (!s.ok()) return Fail(g, s);
  if (!g.json) std::printf("removed key slot %s\n", slot.c_str());
  return kExitOk;
}

uint32_t ParseSize(const std::string& s) {
  char* end = nullptr;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  std::string unit = end ? end : "";
  if (unit == "K" || unit == "KiB" || unit == "k")
    v <<= 10;
  else if (unit == "M" || unit == "MiB")
    v <<= 20;
  else if (unit == "G" || unit == "GiB")
    v <<= 30;
  else if (!unit.empty())
    return 0;
  return v > UINT32_MAX ? 0 : static_cast<uint32_t>(v);
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{
      "Haven: deduplicated, encrypted backups of virtual machine disks and of\n"
      "files inside guests (haven backup files).\n"
      "The repository is -r PATH, else $HAVEN_REPOSITORY, else a default local "
      "path\n"
      "(/var/lib/haven/repository for root). The passphrase comes from\n"
      "$HAVEN_PASSWORD, --password-file / $HAVEN_PASSWORD_FILE, or a prompt.\n"
      "A snapshot is named by an id prefix, 'latest' or 'NAME:latest'.\n"
      "Exit codes: 0 ok, 1 failure, 2 usage error, 3 finished but partial.",
      "haven"};
  app.set_version_flag("--version", "haven 0.1.0");
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the subcommand
  Globals g;
  g.repo = DefaultRepository();
  app.add_option("-r,--repo", g.repo, "repository directory")
      ->capture_default_str();
  app.add_option("--password-file", g.password_file,
                 "read the passphrase from this file");
  app.add_flag("--json", g.json, "machine-readable output on stdout");
  app.add_flag("-q,--quiet", g.quiet, "no progress or summaries");
  app.add_option("--lock-wait", g.lock_wait,
                 "seconds to wait for another haven process's lock")
      ->capture_default_str();

  int rc = kExitOk;
  repository::InitOptions init_opts;
  std::string chunk_size_text = "64K";
  auto* init = app.add_subcommand("init", "create a new encrypted repository");
  init->add_option("--chunk-size", chunk_size_text,
                   "image chunk size, a power of two from 4K to 8M")
      ->capture_default_str();
  init->add_option("--compression-level", init_opts.compression_level,
                   "zstd level (-7..19)")
      ->capture_default_str();
  std::string pack_size_text = "16M";
  init->add_option("--pack-size", pack_size_text,
                   "target pack file size, 1M to 1G")
      ->capture_default_str();
  init->callback([&] {
    init_opts.chunk_size = ParseSize(chunk_size_text);
    init_opts.pack_size = ParseSize(pack_size_text);
    rc = CmdInit(g, init_opts);
  });

  auto* key = app.add_subcommand("key", "manage passphrases (key slots)");
  key->require_subcommand(1);
  key->add_subcommand("list", "list key slots; * marks the one that opened")
      ->callback([&] { rc = CmdKeyList(g); });
  std::string new_password_file;
  auto* key_add =
      key->add_subcommand("add",
                          "add a passphrase (from $HAVEN_NEW_PASSWORD, "
                          "--new-password-file or a prompt)");
  key_add->add_option("--new-password-file", new_password_file,
                      "file holding the new passphrase");
  key_add->callback([&] { rc = CmdKeyAdd(g, new_password_file); });
  std::string slot;
  auto* key_rm =
      key->add_subcommand("remove", "remove a key slot (never the last one)");
  key_rm->add_option("SLOT", slot, "slot id from 'haven key list'")->required();
  key_rm->callback([&] { rc = CmdKeyRemove(g, slot); });

  auto* backup = app.add_subcommand("backup", "create a recovery point");
  backup->require_subcommand(1);
  std::string image_path, backup_name;
  auto* backup_image = backup->add_subcommand(
      "image",
      "back up a disk image — raw file or block device, qcow2 (with its "
      "backing chain), VHD/VHDX (with differencing parents) or VMDK — "
      "and a Hyper-V/VMware VM's config files beside it (holes and "
      "zeros are not stored)");
  backup_image->add_option("PATH", image_path, "image file or block device")
      ->required();
  backup_image
      ->add_option("--name", backup_name, "backup name, e.g. the VM's name")
      ->required();
  std::string backup_time;
  backup_image->add_option(
      "--time", backup_time,
      "time to record for the recovery point, ISO-8601 UTC such as "
      "2026-11-22T02:00:00Z (default: now); for importing older images");
  std::string image_format = "auto";
  backup_image
      ->add_option("--format", image_format,
                   "auto (from the file's magic bytes), raw, qcow2, vhd, vhdx "
                   "or vmdk; give raw for a raw image whose guest could have "
                   "written another format's header into it")
      ->capture_default_str();
  backup_image->callback([&] {
    rc = CmdBackupImage(g, image_path, backup_name, backup_time, image_format);
  });

  agent::HostBackupRequest vm_args;
  std::string vm_uri = "qemu:///system";
  auto* backup_vm = backup->add_subcommand(
      "vm",
      "back up libvirt VMs: disks (incremental after the first run, through "
      "checkpoints), configuration, networks and NVRAM");
  backup_vm->add_option("NAME", vm_args.names, "VMs to back up");
  backup_vm->add_flag("--all", vm_args.all, "every VM defined on the host");
  backup_vm->add_option("--exclude", vm_args.exclude,
                        "leave out VMs whose name matches (a name or a glob "
                        "such as 'test-*'); repeatable");
  backup_vm->add_option("--connect", vm_uri, "libvirt URI")
      ->capture_default_str();
  backup_vm->add_flag("--full", vm_args.vm.full,
                      "read every disk fully (a new checkpoint chain)");
  backup_vm->add_option("--pre-freeze", vm_args.vm.pre_freeze,
                        "shell command run before guest file systems are "
                        "frozen ($HAVEN_VM names the VM)");
  backup_vm->add_option("--post-thaw", vm_args.vm.post_thaw,
                        "shell command run after they are thawed");
  backup_vm
      ->add_option("--hook-timeout", vm_args.vm.hook_timeout,
                   "seconds before a hook is killed")
      ->capture_default_str();
  backup_vm->add_option("--time", vm_args.vm.time,
                        "time to record, ISO-8601 UTC (default: now)");
  backup_vm->callback([&] { rc = CmdBackupVm(g, vm_uri, vm_args); });

  std::string filter_name;
  auto* snaps = app.add_subcommand("snapshots", "list recovery points");
  snaps->add_option("--name", filter_name, "only this backup name");
  snaps->callback([&] { rc = CmdSnapshots(g, filter_name); });

  std::string spec;
  auto* show = app.add_subcommand("show", "show what a recovery point holds");
  show->add_option("SNAPSHOT", spec, "id prefix, latest or NAME:latest")
      ->required();
  show->callback([&] { rc = CmdShow(g, spec); });

  auto* rest = app.add_subcommand("restore", "restore from a recovery point");
  rest->require_subcommand(1);
  std::string to, disk;
  bool overwrite = false, verify_ids = false;
  auto* rest_image =
      rest->add_subcommand("image",
                           "write a disk of a recovery point to a sparse raw, "
                           "qcow2 or VHDX file, or to a block device");
  rest_image->add_option("SNAPSHOT", spec, "id prefix, latest or NAME:latest")
      ->required();
  rest_image
      ->add_option("--to", to, "target file (must not exist) or block device")
      ->required();
  rest_image->add_option("--disk", disk,
                         "which disk, when the snapshot has several");
  std::string restore_format = "raw";
  rest_image
      ->add_option("--format", restore_format,
                   "output format: raw (sparse), qcow2, or vhdx for Hyper-V "
                   "(qcow2 and vhdx are written through qemu-nbd)")
      ->check(CLI::IsMember({"raw", "qcow2", "vhdx"}))
      ->capture_default_str();
  rest_image->add_flag(
      "--overwrite", overwrite,
      "replace an existing file, or write onto a block device");
  rest_image->add_flag(
      "--verify-ids", verify_ids,
      "also recompute every chunk's keyed hash (AES-GCM already "
      "authenticates each chunk)");
  rest_image->callback([&] {
    rc = CmdRestoreImage(g, spec, to, disk, restore_format, overwrite,
                         verify_ids);
  });
  auto* rest_config = rest->add_subcommand(
      "config",
      "write the configuration captured with a VM's recovery point (domain "
      "XML, networks, pools, NVRAM, snapshots, host facts) into a folder");
  rest_config->add_option("SNAPSHOT", spec, "id prefix, latest or NAME:latest")
      ->required();
  rest_config->add_option("--to", to, "folder to write into")->required();
  rest_config->add_flag("--overwrite", overwrite, "replace existing files");
  rest_config->callback([&] { rc = CmdRestoreConfig(g, spec, to, overwrite); });
  AddFileCommands(app, *rest, g, rc);
  AddFilesCommands(app, *backup, *rest, g, rc);

  RestoreVmArgs rvm;
  auto add_vm_restore_options = [&](CLI::App* c, bool one) {
    c->add_option("--connect", rvm.uri, "libvirt URI")->capture_default_str();
    if (one) {
      c->add_option("--name", rvm.req.vm.name,
                    "define the VM under this name (default: its own)");
      c->add_flag("--new-identity", rvm.req.vm.new_identity,
                  "new UUID and new MAC addresses (to run beside the "
                  "original); default: keep them, as a host-loss restore "
                  "wants");
    }
    auto* dir =
        c->add_option("--storage-dir", rvm.req.vm.storage_dir,
                      std::string("folder for the disk and NVRAM files, named "
                                  "<vm>-<disk>.<format> (default: ") +
                          restore::kDefaultStorageDir + ")");
    c->add_option("--pool", rvm.req.vm.pool,
                  "put the files into this folder-backed libvirt storage "
                  "pool (dir, fs, netfs)")
        ->excludes(dir);
    c->add_option("--format", rvm.req.vm.format,
                  "disk format: qcow2 or raw (default: each disk's original "
                  "format, qcow2 unless it was raw); for Hyper-V, 'restore "
                  "image --format vhdx' writes one disk as VHDX")
        ->check(CLI::IsMember({"raw", "qcow2"}));
    c->add_option("--network-map", rvm.network_map,
                  "OLD=NEW: attach interfaces of network (or bridge) OLD to "
                  "NEW, an existing one; repeatable");
    c->add_flag("--replace", rvm.req.vm.replace,
                "replace a VM of the same name and existing disk/NVRAM "
                "files (the old VM is stopped and undefined)");
    c->add_flag("--start", rvm.req.vm.start, "start each VM once defined");
    c->add_flag("--dry-run", rvm.req.dry_run,
                "print the plan (disks, paths, networks, conflicts) and "
                "change nothing");
    c->add_flag("--verify-ids", rvm.req.vm.verify_ids,
                "also recompute every chunk's keyed hash");
  };
  auto* rest_vm = rest->add_subcommand(
      "vm",
      "rebuild a VM from a recovery point on this or a new libvirt host: "
      "disks, domain definition, NVRAM and the virtual networks it used");
  rest_vm->add_option("SNAPSHOT", rvm.req.points, "id prefix, latest or NAME:latest")
      ->required()
      ->expected(1);
  add_vm_restore_options(rest_vm, true);
  rest_vm->callback([&] { rc = CmdRestoreVm(g, rvm); });
  auto* rest_host = rest->add_subcommand(
      "host",
      "rebuild every VM of a lost host: the latest point of each VM in the "
      "repository (--all) or the points named; all are planned before "
      "anything changes");
  rest_host->add_option("SNAPSHOT", rvm.req.points,
                        "id prefix or NAME:latest, one per VM");
  rest_host->add_flag("--all", rvm.req.all,
                      "the latest point of every VM in the repository");
  add_vm_restore_options(rest_host, false);
  rest_host->callback([&] {
    rvm.host = true;
    rc = CmdRestoreVm(g, rvm);
  });

  double read_data = 0;
  auto* check = app.add_subcommand("check",
                                   "verify that every recovery point can be "
                                   "restored; exit 1 if anything is damaged");
  check->add_flag("--read-data{100}", read_data,
                  "also read, decrypt and verify stored data: all of it, or "
                  "--read-data=PERCENT of the packs chosen at random");
  check->callback([&] { rc = CmdCheck(g, read_data); });

  ForgetArgs forget_args;
  auto* forget = app.add_subcommand(
      "forget",
      "remove recovery points by retention rules (applied per backup name) "
      "or by name; protected points are never removed; 'haven gc' then frees "
      "the space");
  forget->add_option("SNAPSHOT", forget_args.specs,
                     "recovery points to remove (instead of rules)");
  forget->add_option("--keep-last", forget_args.policy.last,
                     "keep the N newest");
  forget->add_option(
      "--keep-hourly", forget_args.policy.hourly,
      "keep the newest of each of the last N hours that have one");
  forget->add_option("--keep-daily", forget_args.policy.daily,
                     "keep the newest of each of the last N days (local time)");
  forget->add_option("--keep-weekly", forget_args.policy.weekly,
                     "keep the newest of each of the last N ISO weeks");
  forget->add_option("--keep-monthly", forget_args.policy.monthly,
                     "keep the newest of each of the last N months");
  forget->add_option("--keep-yearly", forget_args.policy.yearly,
                     "keep the newest of each of the last N years");
  forget->add_option("--keep-within", forget_args.within,
                     "keep all within this span of the newest point, e.g. "
                     "7d, 2w, 1y6m, 12h");
  forget->add_option("--name", forget_args.name, "only this backup name");
  forget->add_flag("--dry-run", forget_args.dry_run,
                   "print what would be kept and removed, and why");
  forget->callback([&] { rc = CmdForget(g, forget_args); });

  repository::GcOptions gc_opts;
  double repack_below_percent = 80;
  auto* gc = app.add_subcommand(
      "gc",
      "delete the data no recovery point uses (after forget); its mark "
      "runs beside backups, which wait for its final sweep");
  gc->add_option("--repack-below", repack_below_percent,
                 "rewrite packs whose share of used bytes is under this "
                 "percentage (0: only delete wholly unused packs)")
      ->capture_default_str();
  double max_unused_percent = 5;
  gc->add_option("--max-unused", max_unused_percent,
                 "then rewrite the packs with the most unused space until "
                 "unused bytes are at most this percentage of all packs "
                 "(100: never)")
      ->capture_default_str();
  gc->add_flag("--dry-run", gc_opts.dry_run,
               "report what would be deleted and rewritten; change nothing");
  gc->callback([&] {
    gc_opts.repack_below = repack_below_percent / 100;
    gc_opts.max_unused = max_unused_percent / 100;
    rc = CmdGc(g, gc_opts);
  });

  std::vector<std::string> protect_specs;
  auto* protect = app.add_subcommand(
      "protect", "protect recovery points: forget never removes them");
  protect
      ->add_option("SNAPSHOT", protect_specs,
                   "id prefix, latest or NAME:latest")
      ->required();
  protect->callback([&] { rc = CmdProtect(g, protect_specs, true); });
  auto* unprotect = app.add_subcommand(
      "unprotect", "remove the protection of recovery points");
  unprotect
      ->add_option("SNAPSHOT", protect_specs,
                   "id prefix, latest or NAME:latest")
      ->required();
  unprotect->callback([&] { rc = CmdProtect(g, protect_specs, false); });

  auto* repair = app.add_subcommand("repair", "repair what can be rebuilt");
  repair->require_subcommand(1);
  repair
      ->add_subcommand(
          "index",
          "rebuild the chunk index from the pack files (= rebuild-index)")
      ->callback([&] { rc = CmdRebuildIndex(g); });
  repository::RepairOptions repair_opts;
  auto* repair_snaps = repair->add_subcommand(
      "snapshots",
      "rewrite recovery points that name lost or damaged chunks so that "
      "everything else in them stays restorable; lost ranges become zeros "
      "and are listed");
  repair_snaps->add_flag("--read-data", repair_opts.read_data,
                         "also decrypt every pack to find damaged chunks");
  repair_snaps->add_flag("--dry-run", repair_opts.dry_run,
                         "report what would be repaired; change nothing");
  repair_snaps->callback([&] { rc = CmdRepairSnapshots(g, repair_opts); });
  app.add_subcommand("rebuild-index",
                     "rebuild the chunk index from the pack files")
      ->callback([&] { rc = CmdRebuildIndex(g); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }
  return rc;
}

}  // namespace haven::cli

int main(int argc, char** argv) { return haven::cli::Main(argc, argv); }
