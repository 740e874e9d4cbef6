#include "agent/vm_backup.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include "agent/image_backup.h"
#include "base/process.h"
#include "base/time.h"
#include "snapshot/image_source.h"
#include "snapshot/nbd_source.h"

namespace haven::agent {
namespace {

using repository::DiskManifest;
using repository::Manifest;
using snapshot::DomainDisk;
using snapshot::DomainInfo;
using snapshot::JobDisk;

std::string NewCheckpointName() {
  // haven-20261123T020304Z-1a2b3c4d: sortable by time, unique per run.
  std::string t = NowIso8601();
  t.erase(std::remove_if(t.begin(), t.end(),
                         [](char c) { return c == '-' || c == ':'; }),
          t.end());
  uint8_t raw[4];
  repository::RandomBytes(raw, sizeof raw);
  return std::string(snapshot::kCheckpointPrefix) + t + "-" +
         HexEncode(ByteSpan(raw, sizeof raw));
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

struct GuestFreeze {
  bool frozen = false;      // the agent froze something: thaw it
  bool consistent = false;  // every file system on the backed-up disks
  int count = 0;            // file systems frozen
  std::string why_not;      // when not consistent
};

// At most a few guest-given names, quoted, for a message.
std::string FewNames(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < 4; ++i)
    out += (i ? ", " : "") + QuoteUntrusted(names[i]);
  if (names.size() > 4) out += ", ...";
  return out;
}

// Nothing was frozen because the agent failed (or is absent): `why`.
GuestFreeze NotFrozen(const Status& why) {
  GuestFreeze r;
  r.why_not = "guest agent did not freeze file systems (" + why.message() + ")";
  return r;
}

// Freezes the guest file systems that lie on the `backed_up` disks (and
// those the agent cannot place on a disk), as the guest agent lists them.
// Application-consistent means every one on the backed-up disks was frozen;
// an agent that froze nothing, or could not say where its file systems
// are, leaves the point crash-consistent with the reason.
GuestFreeze FreezeGuest(const snapshot::Vm& vm,
                        const std::vector<std::string>& backed_up) {
  GuestFreeze r;
  auto listed = vm.GuestFileSystems();
  if (listed.status().code() == Code::kFailedPrecondition)
    return NotFrozen(listed.status());
  if (!listed.ok()) {
    // No agent, or one too old to list file systems: freezing everything
    // still helps the data, but the point cannot be called consistent.
    auto f = vm.Freeze();
    if (!f.ok()) return NotFrozen(f.status());
    r.frozen = true;
    r.count = *f;
    r.why_not = "the guest agent froze " + std::to_string(*f) +
                " file system(s) but could not list them (" +
                listed.status().message() +
                "), so it is not known that those on the backed-up disks were "
                "among them";
    return r;
  }
  std::vector<std::string> ours, unplaced, devices;
  for (const auto& fs : *listed) {
    const bool on_backed_up = std::any_of(
        fs.disks.begin(), fs.disks.end(),
        [&](const std::string& d) { return Contains(backed_up, d); });
    if (!on_backed_up && !fs.disks.empty()) continue;  // another disk's
    // One freeze per device: a bind mount is the same file system.
    if (!fs.device.empty()) {
      if (Contains(devices, fs.device)) continue;
      devices.push_back(fs.device);
    }
    (on_backed_up ? ours : unplaced).push_back(fs.mountpoint);
  }
  if (ours.empty() && unplaced.empty()) {
    r.why_not =
        listed->empty()
            ? "the guest agent lists no mounted file system, so none was "
              "frozen"
            : "no file system on the backed-up disks is mounted in the guest "
              "(the guest agent lists " +
                  std::to_string(listed->size()) +
                  " on other disks), so none was frozen";
    return r;
  }
  std::vector<std::string> mountpoints = ours;
  mountpoints.insert(mountpoints.end(), unplaced.begin(), unplaced.end());
  auto f = vm.Freeze(mountpoints);
  if (!f.ok()) return NotFrozen(f.status());
  r.frozen = true;
  r.count = *f;
  if (static_cast<size_t>(*f) < mountpoints.size())
    r.why_not = "the guest agent froze " + std::to_string(*f) + " of the " +
                std::to_string(mountpoints.size()) +
                " file systems on the backed-up disks (" +
                FewNames(mountpoints) + ")";
  else if (ours.empty())
    r.why_not =
        "the guest agent could not say which disk its file "
        "system(s) " +
        FewNames(unplaced) +
        " lie on; they were frozen, but it is not known that they are "
        "all those on the backed-up disks";
  else
    r.consistent = true;
  return r;
}

// The whole job for one VM; the report is filled as it goes.
class VmJob {
 public:
  VmJob(PointSink& sink, const snapshot::LibvirtHost& host,
        const VmBackupOptions& options, VmBackupReport& report)
      : sink_(sink), host_(host), opt_(options), report_(report) {}

  Status Run(const std::string& name);
  // The job failed with `why`: the sink keeps what it can (once).
  Status Abandon(Status why) {
    if (abandoned_) return why;
    abandoned_ = true;
    return sink_.Abandon(std::move(why));
  }

 private:
  void Log(const std::string& msg) {
    if (opt_.log) opt_.log(report_.name + ": " + msg);
  }
  // Adds the time since the last mark to `phase`.
  void Mark(double& phase) {
    const double now = MonotonicSeconds();
    phase += now - last_mark_;
    last_mark_ = now;
  }
  // Decides full or incremental for each disk of a running VM.
  Result<std::vector<JobDisk>> PlanLive(const snapshot::Vm& vm,
                                        const std::vector<DomainDisk>& disks);
  Status ReadDisks(std::vector<std::unique_ptr<snapshot::DiskSource>>& sources,
                   const std::vector<JobDisk>& plan, Manifest& m);

  PointSink& sink_;
  const snapshot::LibvirtHost& host_;
  const VmBackupOptions& opt_;
  VmBackupReport& report_;
  std::optional<Manifest> parent_;
  std::vector<std::string> full_reasons_;  // per planned disk
  std::vector<std::string> paths_;         // per planned disk
  double started_ = 0, last_mark_ = 0;
  bool abandoned_ = false;
};

Result<std::vector<JobDisk>> VmJob::PlanLive(
    const snapshot::Vm& vm, const std::vector<DomainDisk>& disks) {
  std::vector<std::string> checkpoints;
  if (auto c = vm.HavenCheckpoints(); c.ok())
    checkpoints = *c;
  else
    Log("cannot list checkpoints (" + c.status().message() + ")");
  std::vector<std::string> bitmaps;
  std::string base_problem;
  if (opt_.full) {
    base_problem = "--full was given";
  } else if (!parent_) {
    base_problem = "no earlier recovery point of this VM";
  } else if (parent_->checkpoint.empty()) {
    base_problem = "the latest point (" + parent_->id.substr(0, 8) +
                   ") has no checkpoint (first run, or read while shut off)";
  } else if (!Contains(checkpoints, parent_->checkpoint)) {
    base_problem = "checkpoint " + parent_->checkpoint +
                   " of the latest point is gone (deleted, or libvirt lost "
                   "its metadata)";
  } else {
    auto b = vm.CheckpointBitmaps(parent_->checkpoint);
    if (b.ok())
      bitmaps = *b;
    else
      base_problem = b.status().message();
  }
  std::vector<JobDisk> plan;
  for (const auto& d : disks) {
    JobDisk j;
    j.target = d.target;
    j.bitmap = d.format == "qcow2";
    std::string why = base_problem;
    if (why.empty()) {
      const DiskManifest* prev = parent_->FindDisk(d.target);
      auto capacity = vm.DiskCapacity(d.target);
      if (!j.bitmap)
        why = "a " + (d.format.empty() ? std::string("raw") : d.format) +
              " disk holds no dirty bitmap; read fully every time";
      else if (!prev)
        why = "disk added since the latest point";
      else if (!Contains(bitmaps, d.target))
        why = "checkpoint " + parent_->checkpoint + " has no bitmap for it";
      else if (!capacity.ok())
        why = capacity.status().message();
      else if (*capacity != prev->size)
        why = "disk resized since the latest point";
      else if (prev->chunk_size != sink_.chunk_size())
        why = "the latest point used another chunk size";
      else if (!prev->lost.empty())
        why = "the latest point has repaired holes";
    }
    if (why.empty()) j.incremental_from = parent_->checkpoint;
    full_reasons_.push_back(why);
    plan.push_back(j);
  }
  return plan;
}

Status VmJob::ReadDisks(
    std::vector<std::unique_ptr<snapshot::DiskSource>>& sources,
    const std::vector<JobDisk>& plan, Manifest& m) {
  uint64_t total = 0, done = 0;
  for (const auto& s : sources) total += s->size();
  for (size_t i = 0; i < sources.size(); ++i) {
    snapshot::DiskSource& src = *sources[i];
    const JobDisk& j = plan[i];
    const DiskManifest* prev =
        j.incremental_from.empty() ? nullptr : parent_->FindDisk(j.target);
    CaptureOptions co;
    co.threads = opt_.threads;
    co.progress = opt_.progress;
    co.done_before = done;
    co.total_bytes = total;
    co.new_before = sink_.new_stored_bytes();
    co.started = started_;
    co.item = report_.name + "/" + j.target;
    co.cancel = opt_.cancel;
    co.limit_read = opt_.limit_read;
    DiskCapture cap;
    auto disk = CaptureDisk(sink_, src, prev, co, cap);
    if (!disk.ok()) return disk.status();
    disk->name = j.target;
    disk->source = paths_.size() > i ? paths_[i] : "";
    VmDiskReport r;
    r.name = j.target;
    r.size = src.size();
    r.read_bytes = cap.read_bytes;
    if (prev) {
      r.mode = "incremental";
      disk->capture = "incremental since " + j.incremental_from;
    } else {
      r.mode = "full";
      r.reason = full_reasons_.size() > i ? full_reasons_[i] : "";
      disk->capture = "full" + (r.reason.empty() ? "" : ": " + r.reason);
    }
    r.changed_bytes = cap.changed_bytes;
    report_.disks.push_back(r);
    m.stats.logical_bytes += src.size();
    m.stats.read_bytes += cap.read_bytes;
    m.stats.hole_bytes += cap.hole_bytes;
    m.disks.push_back(*std::move(disk));
    done += src.size();
  }
  return OkStatus();
}

Status VmJob::Run(const std::string& name) {
  started_ = last_mark_ = MonotonicSeconds();
  report_.name = name;
  if (!opt_.time.empty())
    HAVEN_RETURN_IF_ERROR(
        ParseIsoTime(opt_.time).status().WithContext("--time"));
  HAVEN_ASSIGN_OR_RETURN(auto vm, host_.Lookup(name));
  HAVEN_ASSIGN_OR_RETURN(bool active, vm->Active());
  HAVEN_ASSIGN_OR_RETURN(std::string xml, vm->Xml(!active));
  HAVEN_ASSIGN_OR_RETURN(DomainInfo info, snapshot::ParseDomainXml(xml));

  Manifest m;
  m.name = name;
  m.kind = "vm";
  m.time = opt_.time;  // empty: the capture instant, set below
  m.hostname = HostName();
  m.tool = "haven 0.1.0";
  m.vm_uuid = info.uuid;
  // No parent while a manifest is unreadable (it may be the newest; a local
  // sink for a VM refuses then): every disk is then read fully, never
  // diffed against the wrong point.
  if (auto p = sink_.LatestPoint(name, "vm"); p.ok() && p->has_value()) {
    m.parent = (*p)->id;
    if ((*p)->vm_uuid == info.uuid) parent_ = **p;
  }
  std::vector<DomainDisk> disks;
  for (const auto& d : info.disks) {
    if (d.skip_reason.empty()) {
      disks.push_back(d);
      paths_.push_back(d.volume.empty() ? d.path : d.pool + "/" + d.volume);
      continue;
    }
    report_.skipped.push_back({d.target, d.skip_reason});
    m.notes.push_back("disk " + d.target + " skipped: " + d.skip_reason);
  }
  std::vector<std::string> config_notes;
  std::shared_ptr<const std::vector<snapshot::ConfigFile>> facts =
      opt_.host_facts;
  if (!facts) {
    HAVEN_ASSIGN_OR_RETURN(auto read, host_.HostFacts());
    facts = std::make_shared<const std::vector<snapshot::ConfigFile>>(
        std::move(read));
  }
  HAVEN_ASSIGN_OR_RETURN(
      auto config, vm->CaptureConfig(info, active, xml, *facts, config_notes));
  for (auto& n : config_notes) {
    Log(n);
    m.notes.push_back(n);
  }
  std::vector<std::unique_ptr<snapshot::DiskSource>> sources;
  std::vector<JobDisk> plan;
  std::unique_ptr<snapshot::PullBackup> job;
  Status read;  // opening and reading the disks

  if (!active) {
    // Shut off: nothing writes the disks; read the files directly.
    for (const auto& d : disks) {
      HAVEN_ASSIGN_OR_RETURN(std::string path, vm->DiskPath(d));
      if (d.format.empty() || d.format == "raw") {
        HAVEN_ASSIGN_OR_RETURN(auto src, snapshot::ImageSource::Open(path));
        sources.push_back(std::move(src));
      } else {
        snapshot::NbdSpec spec;
        spec.description = d.target + " of " + name + " (" + path + ")";
        spec.command = {"qemu-nbd", "--read-only", "--format=" + d.format, "--",
                        path};
        spec.watch_files = {path};
        HAVEN_ASSIGN_OR_RETURN(auto src, snapshot::NbdSource::Open(spec));
        sources.push_back(std::move(src));
      }
      plan.push_back({d.target, "", false});
      full_reasons_.push_back("the VM is shut off: disk files read directly");
    }
    m.consistency = "offline";
    m.consistency_reason = "the VM was shut off; its disks were read directly";
    if (opt_.time.empty()) m.time = NowIso8601();  // when reading begins
  } else {
    // A job a killed Haven left on this VM would refuse ours.
    HAVEN_ASSIGN_OR_RETURN(std::string aborted,
                           snapshot::PullBackup::AbortLeftover(*vm));
    if (!aborted.empty()) Log(aborted);
    HAVEN_ASSIGN_OR_RETURN(plan, PlanLive(*vm, disks));
    Mark(report_.phases.prepare);
    for (size_t i = 0; i < plan.size(); ++i)
      if (plan[i].incremental_from.empty())
        Log(plan[i].target + ": full read: " + full_reasons_[i]);
    bool any_bitmap = std::any_of(plan.begin(), plan.end(),
                                  [](const JobDisk& j) { return j.bitmap; });
    std::string checkpoint = any_bitmap ? NewCheckpointName() : "";
    std::vector<std::string> targets;
    for (const auto& d : info.disks) targets.push_back(d.target);

    // Hooks and freeze just around the start of the job.
    std::string why_not;
    if (!opt_.pre_freeze.empty()) {
      Status h =
          RunHook(opt_.pre_freeze, name, "pre-freeze", opt_.hook_timeout);
      if (!h.ok()) why_not = h.message();
    }
    GuestFreeze freeze;
    if (why_not.empty()) {
      std::vector<std::string> backed_up;
      for (const auto& d : disks) backed_up.push_back(d.target);
      freeze = FreezeGuest(*vm, backed_up);
      why_not = freeze.why_not;
      if (freeze.frozen)
        Log("guest agent froze " + std::to_string(freeze.count) +
            " file system(s)");
    }
    auto begun = snapshot::PullBackup::Begin(*vm, plan, targets, checkpoint,
                                             info.dac_label);
    if (!begun.ok() &&
        std::any_of(plan.begin(), plan.end(), [](const JobDisk& j) {
          return !j.incremental_from.empty();
        })) {
      // A broken or foreign bitmap: start over with a full read and a new
      // checkpoint chain.
      Log("incremental job refused (" + begun.status().message() +
          "); reading every disk fully");
      for (size_t i = 0; i < plan.size(); ++i)
        if (!plan[i].incremental_from.empty()) {
          plan[i].incremental_from.clear();
          full_reasons_[i] =
              "the incremental job was refused: " + begun.status().message();
        }
      begun = snapshot::PullBackup::Begin(*vm, plan, targets, checkpoint,
                                          info.dac_label);
    }
    if (freeze.frozen) {
      Status t = vm->Thaw();
      if (!t.ok()) Log("thaw failed: " + t.message());
    }
    if (!opt_.post_thaw.empty()) {
      Status h = RunHook(opt_.post_thaw, name, "post-thaw", opt_.hook_timeout);
      if (!h.ok()) Log(h.message());
    }
    if (!begun.ok()) return begun.status();
    job = std::move(*begun);
    // The point's time is when the disks were captured (the backup job
    // began), not when the command started: with many VMs in a queue that
    // can be minutes apart.
    if (opt_.time.empty()) m.time = NowIso8601();
    m.checkpoint = checkpoint;
    if (freeze.consistent) {
      m.consistency = "application-consistent";
      m.consistency_reason =
          "every file system on the backed-up disks (" +
          std::to_string(freeze.count) +
          ") was frozen by the QEMU guest agent while the backup job started";
    } else {
      m.consistency = "crash-consistent";
      m.consistency_reason = "all disks captured at one instant; " + why_not;
    }
    Log(m.consistency + (freeze.consistent ? "" : ": " + why_not));
    if (opt_.fault_delay > 0)
      std::this_thread::sleep_for(
          std::chrono::duration<double>(opt_.fault_delay));
    for (const auto& j : plan) {
      auto src = snapshot::NbdSource::Open(job->SpecFor(j));
      if (!src.ok()) {
        read = src.status();
        break;
      }
      sources.push_back(std::move(*src));
    }
  }

  Mark(active ? report_.phases.capture : report_.phases.prepare);
  if (read.ok()) read = opt_.cancel.Check("the backup of VM " + name);
  if (read.ok()) read = ReadDisks(sources, plan, m);
  Mark(report_.phases.read);
  if (!read.ok()) read = Abandon(read);
  if (read.ok() && !active)
    for (auto& s : sources) {
      HAVEN_ASSIGN_OR_RETURN(bool changed, s->ChangedDuringRead());
      if (changed)
        read = FailedPrecondition(s->description() +
                                  " changed while it was read (was the VM "
                                  "started?); no recovery point written");
    }
  sources.clear();  // closes NBD connections (and stops qemu-nbd)
  if (!read.ok()) {
    auto still = vm->Active();
    if (active && still.ok() && !*still)
      return read.WithContext("VM " + name + " stopped during the backup");
    return read;
  }
  if (job) HAVEN_RETURN_IF_ERROR(job->End());
  if (!active) {
    auto still = vm->Active();
    if (still.ok() && *still)
      return FailedPrecondition("VM " + name +
                                " was started while its disks were read; no "
                                "recovery point written");
  }
  Status stored = StoreConfigFiles(sink_, config, m);
  if (stored.ok()) stored = sink_.Flush();
  if (stored.ok()) stored = opt_.cancel.Check("the backup of VM " + name);
  m.stats.new_chunks = sink_.new_chunks();
  m.stats.new_raw_bytes = sink_.new_raw_bytes();
  m.stats.new_stored_bytes = sink_.new_stored_bytes();
  m.stats.duration_seconds = MonotonicSeconds() - started_;
  if (stored.ok()) stored = sink_.Commit(m);
  if (!stored.ok()) {
    if (job) job->Discard();
    return Abandon(stored);
  }
  // The new checkpoint is the next run's base; older ones only cost the
  // guest write tracking.
  if (!m.checkpoint.empty())
    if (auto all = vm->HavenCheckpoints(); all.ok())
      for (const auto& c : *all)
        if (c != m.checkpoint)
          if (Status s = vm->DeleteCheckpoint(c); !s.ok())
            Log("old checkpoint not deleted: " + s.message());
  report_.manifest = m;
  Mark(report_.phases.finish);
  return OkStatus();
}

}  // namespace

VmBackupReport BackupVm(repository::Repository& repo,
                        const snapshot::LibvirtHost& host,
                        const std::string& name,
                        const VmBackupOptions& options) {
  LocalPointSink sink(repo, repository::Unreadable::kRefuse);
  return BackupVm(sink, host, name, options);
}

VmBackupReport BackupVm(PointSink& sink, const snapshot::LibvirtHost& host,
                        const std::string& name,
                        const VmBackupOptions& options) {
  VmBackupReport report;
  double start = MonotonicSeconds();
  VmJob job(sink, host, options, report);
  Status s = job.Run(name);
  if (!s.ok()) s = job.Abandon(s);  // failed before or after the reading
  report.outcome = OutcomeOf(s);
  report.status = s;
  report.seconds = MonotonicSeconds() - start;
  return report;
}

Status RunHook(const std::string& command, const std::string& vm,
               const std::string& phase, double timeout) {
  HookRequest hook;
  hook.name = "the " + phase + " hook";
  hook.command = command;
  hook.env = {"HAVEN_VM=" + vm, "HAVEN_HOOK=" + phase};
  hook.timeout = timeout;
  hook.capture = false;  // the admin sees its output as it runs
  hook.failure = Code::kUnavailable;
  return haven::RunHook(hook);
}

}  // namespace haven::agent
