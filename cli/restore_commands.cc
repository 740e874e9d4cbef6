#include "cli/restore_commands.h"

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/bytes.h"
#include "base/file.h"
#include "base/json.h"
#include "cli/output.h"
#include "restore/host_restore.h"
#include "restore/image_restore.h"
#include "restore/instant_restore.h"
#include "restore/verify_restore.h"

namespace haven::cli {
namespace {

using repository::Manifest;
using repository::Repository;

void PrintVmPlan(const restore::VmPlan& p) {
  std::printf(
      "%s%s from snapshot %s (%s, %s)\n", p.name.c_str(),
      p.name == p.source_name ? "" : (" (was " + p.source_name + ")").c_str(),
      p.snapshot.id.substr(0, 8).c_str(), p.snapshot.time.c_str(),
      p.snapshot.consistency.c_str());
  if (p.state == "done")
    std::printf("  state   already restored from this point: left as it is\n");
  else if (p.state == "finish")
    std::printf(
        "  state   defined by an interrupted run of this restore: finished\n");
  std::printf("  uuid    %s (%s)\n", p.uuid.c_str(),
              p.new_uuid ? "new" : "kept");
  for (const auto& d : p.create_dirs)
    std::printf("  folder  %s (created)\n", d.c_str());
  for (const auto& d : p.disks) {
    std::string note = d.resume == "staged"   ? "  (written by the interrupted "
                                                "run; not written again)"
                       : d.resume == "placed" ? "  (in place already)"
                       : d.exists             ? "  (replaced)"
                                              : "";
    std::printf("  disk    %-6s %s  %s  %s, needs %s%s\n", d.target.c_str(),
                HumanBytes(d.size).c_str(), d.format.c_str(), d.path.c_str(),
                HumanBytes(d.data_bytes).c_str(), note.c_str());
    if (!d.overlay.empty())
      std::printf(
          "          instant: runs on %s over the point; --finish "
          "copies it to the path above\n",
          d.overlay.c_str());
  }
  if (!p.nvram_path.empty())
    std::printf("  nvram   %s\n", p.nvram_path.c_str());
  if (p.state == "restore")
    std::printf("  space   needs %s (%s at full size); %s free in %s\n",
                HumanBytes(p.space_needed).c_str(),
                HumanBytes(p.space_full).c_str(),
                HumanBytes(p.space_free).c_str(), p.dir.c_str());
  for (const auto& n : p.networks) {
    std::string what =
        n.action == "create"    ? "create from the recovery point"
        : n.action == "restore" ? "created by the restore of " + n.by
        : n.action == "resume"
            ? std::string("created by the interrupted run; started if stopped")
        : n.action == "exists" ? "exists on this host, used as is"
        : n.action == "mapped" ? "mapped from " + n.from
        : n.action == "bridge"
            ? (n.name == n.from ? std::string("host bridge")
                                : "host bridge, mapped from " + n.from)
            : "MISSING on this host (see the problem below)";
    std::printf("  network %s: %s\n", n.name.c_str(), what.c_str());
  }
  for (const auto& [o, n] : p.macs)
    std::printf("  mac     %s -> %s\n", o.empty() ? "(none)" : o.c_str(),
                n.c_str());
  if (!p.replace_domain.empty())
    std::printf("  replace domain %s\n", p.replace_domain.c_str());
  for (const auto& w : p.warnings) std::printf("  warning: %s\n", w.c_str());
  for (const auto& c : p.conflicts) std::printf("  problem: %s\n", c.c_str());
}

// restore vm --instant --finish|--discard NAME: no repository is opened.
int CmdInstantFinish(const Globals& g, RestoreVmArgs& a) {
  if (!a.instant)
    return Fail(
        g, InvalidArgument(std::string(a.finish ? "--finish" : "--discard") +
                           " goes with --instant"));
  if (a.finish && a.discard)
    return Fail(g, InvalidArgument("--finish and --discard are alternatives"));
  const std::string& name = a.req.points.front();
  auto host = snapshot::LibvirtHost::Connect(a.uri);
  if (!host.ok()) return Fail(g, host.status());
  auto log = [&](const std::string& msg) {
    if (!g.quiet) std::fprintf(stderr, "haven: %s\n", msg.c_str());
  };
  if (a.discard) {
    Status s = restore::DiscardInstant(**host, name, log);
    if (!s.ok()) return Fail(g, s);
    if (g.json)
      std::cout << DumpJson(nlohmann::json{{"name", name}, {"discarded", true}})
                << "\n";
    else if (!g.quiet)
      std::printf(
          "%s: discarded (the VM, its overlays and the guest's "
          "writes are gone)\n",
          name.c_str());
    return kExitOk;
  }
  const bool human = !g.quiet && !g.json;
  restore::InstantFinishOptions o;
  o.log = log;
  o.cancel = g.cancel;
  o.progress = [human](const std::string& label) {
    return TerminalProgress(human, "copy " + label);
  };
  auto r = restore::FinishInstant(**host, name, o);
  if (!r.ok()) return Fail(g, r.status());
  if (g.json) {
    nlohmann::json j;
    j["name"] = name;
    j["seconds"] = r->seconds;
    j["disks"] = nlohmann::json::array();
    for (const auto& d : r->disks)
      j["disks"].push_back({{"target", d.target},
                            {"path", d.path},
                            {"bytes", d.bytes},
                            {"seconds", d.seconds}});
    std::cout << DumpJson(j) << "\n";
  } else if (!g.quiet) {
    std::printf(
        "%s: runs from local storage now, without having stopped "
        "(%s)\n",
        name.c_str(), FormatDuration(r->seconds).c_str());
    for (const auto& d : r->disks)
      std::printf("  disk %s: %s\n", d.target.c_str(), d.path.c_str());
  }
  return kExitOk;
}

int CmdVerifyRestore(const Globals& g, const RestoreCommands::VerifyArgs& a) {
  std::string pass;
  auto repo = OpenRepo(g, true, &pass);
  if (!repo.ok()) return Fail(g, repo.status());
  auto point = (*repo)->FindSnapshot(
      a.point.empty() ? a.vm + ":latest" : a.point, {"vm"});
  if (!point.ok()) return Fail(g, point.status());
  if (point->name != a.vm)
    return Fail(g, InvalidArgument("point " + point->id + " is of " +
                                   point->name + ", not of " + a.vm));
  auto host = snapshot::LibvirtHost::Connect(a.uri);
  if (!host.ok()) return Fail(g, host.status());
  restore::VerifyRequest req;
  req.point = *point;
  req.source.repository = g.repo;
  if (req.source.repository.rfind("s3:", 0) != 0)
    req.source.repository =
        std::filesystem::absolute(g.repo).lexically_normal();
  req.source.passphrase = pass;
  req.source.cache_mb = a.cache_mb;
  req.storage_dir = a.storage_dir;
  req.console_pattern = a.console;
  req.agent = a.agent || a.console.empty();
  req.timeout_seconds = a.timeout;
  req.cancel = g.cancel;
  req.log = [&](const std::string& msg) {
    if (!g.quiet) std::fprintf(stderr, "haven: %s\n", msg.c_str());
  };
  auto r = restore::VerifyRestore(**repo, **host, req);
  if (!r.ok()) return Fail(g, r.status());
  Status stored = (*repo)->WriteVerification(
      point->id, restore::VerifyResultJson(*r, true).dump());
  if (!a.screenshot.empty() && !r->screenshot_png.empty()) {
    Status s = WriteFileAtomic(a.screenshot, AsBytes(r->screenshot_png));
    if (!s.ok()) return Fail(g, s);
  }
  if (g.json) {
    nlohmann::json j = restore::VerifyResultJson(*r, false);
    j["stored"] = stored.ok();
    std::cout << DumpJson(j) << "\n";
  } else if (!g.quiet) {
    std::printf("%s point %s: verify-restore %s in %s (%s)\n", r->vm.c_str(),
                r->point.substr(0, 8).c_str(), r->passed ? "PASSED" : "FAILED",
                FormatDuration(r->boot_seconds).c_str(), r->check.c_str());
    if (!r->passed) std::printf("  why: %s\n", r->reason.c_str());
    std::printf("  screenshot: %s\n",
                r->screenshot_png.empty()
                    ? ("none (" + r->screenshot_error + ")").c_str()
                    : (a.screenshot.empty() ? "stored with the point"
                                            : a.screenshot.c_str()));
    for (const auto& l : r->left_behind)
      std::printf("  LEFT BEHIND: %s\n", l.c_str());
  }
  if (!stored.ok())
    return Fail(g, stored.WithContext("the result could not be stored with "
                                      "the point"));
  return r->passed && r->left_behind.empty() ? kExitOk : kExitFailure;
}

int CmdRestoreVm(const Globals& g, RestoreVmArgs& a) {
  restore::HostRestoreRequest& req = a.req;
  if (!a.host && req.points.size() != 1)
    return Fail(g, InvalidArgument("restore vm takes one recovery point"));
  if (a.finish || a.discard) return CmdInstantFinish(g, a);
  for (const auto& m : a.network_map) {
    size_t eq = m.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == m.size())
      return Fail(
          g, InvalidArgument("--network-map takes OLD=NEW, not '" + m + "'"));
    req.vm.network_map[m.substr(0, eq)] = m.substr(eq + 1);
  }
  if (req.all && !req.points.empty())  // before opening anything
    return Fail(g, InvalidArgument(
                       "--all and naming points (" + req.points.front() +
                       ") are alternatives: --all restores the latest point "
                       "of every VM, names restore only those points; give "
                       "one or the other"));
  if (!req.all && req.points.empty())
    return Fail(
        g, InvalidArgument("name the recovery points to restore, or give --all "
                           "for the latest point of every VM"));
  std::string pass;  // instant: the server opens the repository too
  auto repo = OpenRepo(g, false, a.instant ? &pass : nullptr);
  if (!repo.ok()) return Fail(g, repo.status());
  if (a.instant) {
    restore::InstantSource src;
    src.repository = g.repo;
    if (src.repository.rfind("s3:", 0) != 0)
      src.repository = std::filesystem::absolute(g.repo).lexically_normal();
    src.passphrase = std::move(pass);
    src.cache_mb = a.cache_mb;
    req.vm.instant = src;
    req.vm.start = true;
  }
  auto host = snapshot::LibvirtHost::Connect(a.uri);
  if (!host.ok()) return Fail(g, host.status());
  const bool human = !g.quiet && !g.json;
  req.vm.log = [&](const std::string& msg) {
    if (!g.quiet) std::fprintf(stderr, "haven: %s\n", msg.c_str());
  };
  req.vm.progress = [human](const std::string& label) {
    return TerminalProgress(human, "restore " + label);
  };
  req.cancel = g.cancel;
  auto plan = restore::PlanHostRestore(**repo, **host, req);
  if (!plan.ok()) return Fail(g, plan.status());
  if (human || (!g.json && req.dry_run))
    for (const auto& p : plan->vms) PrintVmPlan(p);
  std::fflush(stdout);  // the plan before the steps logged on stderr
  restore::HostRestoreResult r =
      restore::RestoreHost(**repo, **host, *plan, req);
  if (g.json) std::cout << DumpJson(restore::HostRestoreResultJson(r)) << "\n";
  std::fflush(stdout);
  if (r.conflicts > 0) {
    for (const auto& p : plan->vms)
      for (const auto& c : p.conflicts)
        std::fprintf(stderr, "problem: %s: %s\n", p.name.c_str(), c.c_str());
    std::fprintf(stderr, "haven: %zu problem(s); nothing was changed%s\n",
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
    if (v.result.already)
      std::printf("%s: already restored from this point (uuid %s)",
                  name.c_str(), v.result.uuid.c_str());
    else
      std::printf("%s: defined (uuid %s) in %s", name.c_str(),
                  v.result.uuid.c_str(),
                  FormatDuration(v.result.seconds).c_str());
    if (req.vm.start)
      std::printf(", %s",
                  v.result.started
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
  // File backups hold no configuration: latest is the latest disk point.
  auto m = (*repo)->FindSnapshot(spec, {"vm", "image"});
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
    std::cout << DumpJson(nlohmann::ordered_json(
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
  // latest: the latest point with disks, not a file backup taken after it.
  auto m = (*repo)->FindSnapshot(spec, {"image", "vm"});
  if (!m.ok()) return Fail(g, m.status());
  restore::ImageRestoreOptions opt;
  opt.disk = disk;
  opt.overwrite = overwrite;
  opt.verify_ids = verify_ids;
  opt.format = format;
  opt.progress = TerminalProgress(!g.quiet && !g.json, "restore");
  opt.cancel = g.cancel;
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
    std::cout << DumpJson(nlohmann::ordered_json(
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

}  // namespace

RestoreCommands::RestoreCommands(CLI::App& app, const Globals& g, int& rc) {
  rest = app.add_subcommand("restore", "restore from a recovery point");
  rest->require_subcommand(1);
  auto* rest_image =
      rest->add_subcommand("image",
                           "write a disk of a recovery point to a sparse raw, "
                           "qcow2 or VHDX file, or to a block device");
  rest_image
      ->add_option("SNAPSHOT", spec,
                   "id prefix, latest or NAME:latest (latest: the latest "
                   "image or VM backup)")
      ->required();
  rest_image
      ->add_option("--to", to, "target file (must not exist) or block device")
      ->required();
  rest_image->add_option("--disk", disk,
                         "which disk, when the snapshot has several");
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
                "print the plan (disks, paths, folders, space, networks, "
                "UUID and MACs, problems) and change nothing; exit 1 if "
                "there is a problem. A run with the same arguments does "
                "exactly what it shows");
    c->add_flag("--verify-ids", rvm.req.vm.verify_ids,
                "also recompute every chunk's keyed hash");
    if (one) {
      c->add_flag("--instant", rvm.instant,
                  "instant recovery: start the VM at once from the point "
                  "(each disk served read-only from the repository under a "
                  "qcow2 overlay that takes the guest's writes); nothing "
                  "is copied until --finish");
      c->add_flag("--finish", rvm.finish,
                  "with --instant and the VM's NAME instead of a point: copy "
                  "the disks onto local storage while the VM runs, then "
                  "switch it over (no downtime)");
      c->add_flag("--discard", rvm.discard,
                  "with --instant and the VM's NAME: stop and undefine the "
                  "instant VM and remove its overlays");
      c->add_option("--cache-mb", rvm.cache_mb,
                    "with --instant: decompressed chunks kept in memory per "
                    "disk, in MiB")
          ->capture_default_str()
          ->check(CLI::Range(1, 65536));
    }
  };
  auto* rest_vm = rest->add_subcommand(
      "vm",
      "rebuild a VM from a recovery point on this or a new libvirt host: "
      "disks, domain definition, NVRAM and the virtual networks it used");
  rest_vm
      ->add_option("SNAPSHOT", rvm.req.points,
                   "id prefix, latest or NAME:latest")
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
                      "the latest point of every VM in the repository "
                      "(instead of naming points: not both)");
  add_vm_restore_options(rest_host, false);
  rest_host->callback([&] {
    rvm.host = true;
    rc = CmdRestoreVm(g, rvm);
  });

  auto* ver = app.add_subcommand(
      "verify-restore",
      "prove a VM's recovery point by booting it: it is restored as a "
      "throw-away VM (instant recovery, on an isolated network made for the "
      "test), checked, screenshotted and removed; the result is stored with "
      "the point ('haven show'). Exit 0 passed, 1 failed");
  ver->add_option("VM", verify.vm, "the VM (backup name)")->required();
  ver->add_option("POINT", verify.point,
                  "id prefix of one of its points (default: its latest)");
  ver->add_option("--check-console", verify.console,
                  "passes when the serial console shows this text (plain "
                  "text, at most 256 bytes)");
  ver->add_flag("--check-agent", verify.agent,
                "passes when the QEMU guest agent answers (the default when "
                "no check is given)");
  ver->add_option("--timeout", verify.timeout,
                  "seconds the checks may take from the VM's start")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  ver->add_option("--storage-dir", verify.storage_dir,
                  std::string("folder for the throw-away VM's overlays and "
                              "console (default: ") +
                      restore::kDefaultStorageDir + ")");
  ver->add_option("--screenshot", verify.screenshot,
                  "also write the screenshot (PNG) to this file");
  ver->add_option("--connect", verify.uri, "libvirt URI")
      ->capture_default_str();
  ver->add_option("--cache-mb", verify.cache_mb,
                  "decompressed chunks kept in memory per disk, in MiB")
      ->capture_default_str()
      ->check(CLI::Range(1, 65536));
  ver->callback([&] { rc = CmdVerifyRestore(g, verify); });
}

}  // namespace haven::cli
