#include "cli/backup_commands.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "agent/host_backup.h"
#include "agent/image_backup.h"
#include "base/bytes.h"
#include "base/json.h"
#include "cli/output.h"
#include "cli/points_commands.h"
#include "repository/manifest_json.h"

namespace haven::cli {
namespace {

using repository::Manifest;
using repository::Repository;

int CmdBackupImage(const Globals& g, const std::string& path,
                   const std::string& name, const std::string& time,
                   const std::string& format, double limit_read_mbps,
                   bool low_priority, bool adaptive) {
  auto repo = OpenRepo(g, true);
  if (!repo.ok()) return Fail(g, repo.status());
  agent::ImageBackupOptions opt;
  opt.name = name;
  opt.time = time;
  opt.format = format;
  opt.progress = TerminalProgress(!g.quiet && !g.json, "backup");
  opt.cancel = g.cancel;
  opt.limit_read_bytes_per_second = limit_read_mbps * 1e6;
  opt.low_priority = low_priority;
  opt.adaptive = adaptive;
  opt.log = [&](const std::string& msg) {
    if (!g.quiet) std::fprintf(stderr, "haven: %s\n", msg.c_str());
  };
  auto m = agent::BackupImage(**repo, path, opt);
  if (!m.ok())
    return Fail(g,
                m.status().WithContext("backup of " + path +
                                       " failed; no recovery point was written "
                                       "and earlier ones are unchanged"));
  bool partial = m->consistency == "inconsistent";
  if (g.json) {
    std::cout << DumpJson(repository::ManifestJson(*m)) << "\n";
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

}  // namespace

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
  std::printf("%s: snapshot %s saved, %s, %s new data stored, took %s\n", name,
              m.id.substr(0, 8).c_str(), m.consistency.c_str(),
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

namespace {

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
      std::cout << DumpJson(
                       nlohmann::ordered_json({{"vms", nlohmann::json::array()},
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
  req.cancel = g.cancel;
  auto r = agent::BackupHost(**repo, **host, req);
  if (!r.ok()) return Fail(g, r.status());
  if (g.json) {
    std::cout << DumpJson(agent::HostBackupResultJson(*r)) << "\n";
  } else if (human) {
    for (const auto& v : r->vms) PrintVmBackup(v);
    if (r->vms.size() > 1) {
      std::string not_done;
      for (const auto& v : r->vms)
        if (!v.ok() && v.outcome != Outcome::kSkipped)
          not_done += (not_done.empty() ? "" : ", ") + v.name + " (" +
                      std::string(OutcomeName(v.outcome)) + ")";
      std::printf(
          "%d of %zu VMs backed up in %s, %d at a time%s%s\n", r->succeeded,
          r->vms.size() - r->skipped,
          FormatDuration(r->duration_seconds).c_str(), r->parallel,
          not_done.empty() ? "" : "; not backed up: ", not_done.c_str());
    }
    if (r->adaptive && r->slowdowns > 0)
      std::printf(
          "adaptive: slowed down %d time(s) for I/O pressure (up to "
          "%.0f%%), to %.1f MB/s at the lowest\n",
          r->slowdowns, r->highest_pressure * 100, r->lowest_rate / 1e6);
  }
  // Some VMs landed and some did not: partial (3). None landed: failure.
  if (r->failed == 0 && r->cancelled == 0) return kExitOk;
  return r->succeeded > 0 ? kExitPartial : kExitFailure;
}

}  // namespace

BackupCommands::BackupCommands(CLI::App& app, const Globals& g, int& rc) {
  backup = app.add_subcommand("backup", "create a recovery point");
  backup->require_subcommand(1);
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
  backup_image->add_option(
      "--time", backup_time,
      "time to record for the recovery point, ISO-8601 UTC such as "
      "2026-11-22T02:00:00Z (default: now); for importing older images");
  backup_image
      ->add_option("--format", image_format,
                   "auto (from the file's magic bytes), raw, qcow2, vhd, vhdx "
                   "or vmdk; give raw for a raw image whose guest could have "
                   "written another format's header into it")
      ->capture_default_str();
  const char* kLimitHelp =
      "read at most this many MB/s (10^6 bytes) in total, holes and "
      "unchanged ranges not counted; spares the disks others use. For live "
      "VMs the reads go through their QEMU process, so this is what "
      "protects them (default: no limit)";
  backup_image->add_option("--limit-read", image_limit_read, kLimitHelp)
      ->check(CLI::PositiveNumber);
  const char* kPriorityHelp =
      "low: CPU nice 10 and I/O best-effort level 7 for Haven and what it "
      "starts, so other work on the machine goes first; normal: as started";
  backup_image->add_option("--priority", image_priority, kPriorityHelp)
      ->check(CLI::IsMember({"low", "normal"}))
      ->capture_default_str();
  const char* kAdaptiveHelp =
      "slow the reads down while the host's storage is busy (Linux I/O "
      "pressure, /proc/pressure/io, above 25% of the time: the rate halves; "
      "below 10%: it grows again, up to --limit-read if given); each change "
      "is logged";
  backup_image->add_flag("--adaptive", image_adaptive, kAdaptiveHelp);
  backup_image->callback([&] {
    rc = CmdBackupImage(g, image_path, backup_name, backup_time, image_format,
                        image_limit_read, image_priority == "low",
                        image_adaptive);
  });

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
  backup_vm->add_option("--limit-read", vm_limit_read, kLimitHelp)
      ->check(CLI::PositiveNumber);
  backup_vm->add_option("--priority", vm_priority, kPriorityHelp)
      ->check(CLI::IsMember({"low", "normal"}))
      ->capture_default_str();
  backup_vm
      ->add_option("--parallel", vm_args.parallel,
                   "VMs backed up at the same time, 1 to " +
                       std::to_string(agent::kMaxParallel) +
                       "; --limit-read is their total")
      ->check(CLI::Range(1, agent::kMaxParallel))
      ->capture_default_str();
  backup_vm->add_flag("--adaptive", vm_args.adaptive, kAdaptiveHelp);
  backup_vm->callback([&] {
    vm_args.limit_read_bytes_per_second = vm_limit_read * 1e6;
    vm_args.low_priority = vm_priority == "low";
    rc = CmdBackupVm(g, vm_uri, vm_args);
  });
}

}  // namespace haven::cli
