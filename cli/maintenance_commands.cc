#include "cli/maintenance_commands.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/bytes.h"
#include "base/json.h"
#include "base/time.h"
#include "cli/copy_commands.h"
#include "cli/output.h"
#include "cli/passphrase.h"
#include "repository/check.h"
#include "repository/forget.h"
#include "repository/gc.h"
#include "repository/repair.h"
#include "repository/retention.h"

namespace haven::cli {
namespace {

using repository::Manifest;
using repository::Repository;

// "--object-lock 30" (days), "30d", "12h", "120s"; mode governance or
// compliance.
Result<repository::ObjectLockPolicy> ParseObjectLock(const std::string& text,
                                                     const std::string& mode) {
  if (text.empty())
    return InvalidArgument("--object-lock-mode needs --object-lock DAYS");
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(text, &used);
  } catch (...) {
    used = 0;
  }
  std::string unit = text.substr(used);
  int64_t scale = unit.empty() || unit == "d" ? 86400
                  : unit == "h"               ? 3600
                  : unit == "m"               ? 60
                  : unit == "s"               ? 1
                                              : 0;
  if (used == 0 || scale == 0 || n <= 0 || n > 36500)
    return InvalidArgument("--object-lock '" + text +
                           "' is not a period: give days (30), or a number "
                           "with d, h, m or s (90d, 120s)");
  repository::ObjectLockPolicy p;
  p.seconds = n * scale;
  if (mode == "governance" || mode == "GOVERNANCE")
    p.mode = "GOVERNANCE";
  else if (mode == "compliance" || mode == "COMPLIANCE")
    p.mode = "COMPLIANCE";
  else
    return InvalidArgument("--object-lock-mode '" + mode +
                           "': choose governance or compliance");
  return p;
}

int CmdInit(const Globals& g, const repository::InitOptions& opts) {
  auto pass = Passphrase(g, true);
  if (!pass.ok()) return Fail(g, pass.status());
  Status s = Repository::Init(g.repo, *pass, opts);
  if (!s.ok()) return Fail(g, s);
  if (g.json)
    std::cout << DumpJson(nlohmann::json(
                     {{"repository", g.repo}, {"created", true}}))
              << "\n";
  else if (!g.quiet)
    std::printf("created repository at %s (chunk size %s)\n", g.repo.c_str(),
                HumanBytes(opts.chunk_size).c_str());
  return kExitOk;
}

int CmdRepairSnapshots(const Globals& g,
                       const repository::RepairOptions& base) {
  std::string used;
  auto pass = Passphrase(g, false, &used);
  if (!pass.ok()) return Fail(g, pass.status());
  // RepairSnapshots needs the repository to itself (repair.h).
  repository::OpenOptions open = OpenOpts(g, true);
  open.exclusive = true;
  open.hold_index = true;
  auto repo = repository::Repository::Open(g.repo, *pass, open);
  if (!repo.ok()) return Fail(g, NamePassphraseSource(g, repo.status(), used));
  repository::RepairOptions opt = base;
  bool chatty = !g.quiet && !g.json;
  opt.on_phase = [chatty](const std::string& p) {
    if (chatty) std::fprintf(stderr, "haven: %s\n", p.c_str());
  };
  auto r = repository::RepairSnapshots(**repo, opt);
  if (!r.ok()) return Fail(g, r.status());
  if (g.json) {
    std::cout << DumpJson(repository::RepairReportJson(*r, opt.dry_run))
              << "\n";
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
                    PointTimeForPeople(p.time).c_str(), HumanBytes(bytes).c_str());
      else
        std::printf("snapshot %s (%s, %s) replaced by %s: %s lost\n",
                    p.old_id.substr(0, 8).c_str(), p.name.c_str(),
                    PointTimeForPeople(p.time).c_str(), p.new_id.substr(0, 8).c_str(),
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
  std::string used;
  auto pass = Passphrase(g, false, &used);
  if (!pass.ok()) return Fail(g, pass.status());
  auto r = Repository::RebuildIndex(g.repo, *pass, OpenOpts(g, true));
  if (!r.ok()) return Fail(g, NamePassphraseSource(g, r.status(), used));
  if (g.json) {
    std::cout << DumpJson(nlohmann::json({{"packs", r->packs},
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
  opt.cancel = g.cancel;
  bool tty = !g.quiet && !g.json && ::isatty(STDERR_FILENO);
  opt.on_phase = [tty](const std::string& p) {
    if (tty) std::fprintf(stderr, "haven: %s\n", p.c_str());
  };
  auto r = repository::CheckRepository(**repo, opt);
  if (!r.ok()) return Fail(g, r.status());
  double rate = r->read_seconds > 0 ? r->bytes_read / r->read_seconds : 0;
  if (g.json) {
    std::cout << DumpJson(repository::CheckReportJson(*r)) << "\n";
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
  std::string used;
  auto pass = Passphrase(g, false, &used);
  if (!pass.ok()) return Fail(g, pass.status());
  repository::GcOptions opt = base;
  opt.open = OpenOpts(g, true);
  opt.cancel = g.cancel;  // Ctrl-C stops it before the sweep
  bool chatty = !g.quiet && !g.json;
  opt.on_phase = [chatty](const std::string& p) {
    if (chatty) std::fprintf(stderr, "haven: %s\n", p.c_str());
  };
  auto r = repository::CollectGarbage(g.repo, *pass, opt);
  if (!r.ok()) return Fail(g, NamePassphraseSource(g, r.status(), used));
  uint64_t freed =
      r->bytes_before > r->bytes_after ? r->bytes_before - r->bytes_after : 0;
  if (g.json) {
    std::cout << DumpJson(repository::GcReportJson(*r, opt.dry_run)) << "\n";
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
    if (r->packs_retained > 0) {
      std::string when =
          FormatTime(r->retained_until * 1000000000, TimeStyle::kLocalMinutes);
      std::printf(
          "%llu packs kept for now: object lock retains them (the "
          "last until %s); a gc after that removes them\n",
          static_cast<unsigned long long>(r->packs_retained), when.c_str());
    }
    std::printf("mark %s, waited %s for the exclusive lock, sweep %s\n",
                FormatDuration(r->mark_seconds).c_str(),
                FormatDuration(r->wait_seconds).c_str(),
                FormatDuration(r->sweep_seconds).c_str());
  }
  for (const auto& sk : r->skipped)
    std::fprintf(stderr, "haven: warning: %s\n", sk.c_str());
  return r->skipped.empty() ? kExitOk : kExitPartial;
}

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
    std::cout << DumpJson(repository::ForgetResultJson(*r))
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
      bool later = p.outcome == Outcome::kSkipped && !p.status.ok();
      std::printf("  %-6s %s  %s  %s%s\n",
                  d.keep  ? "keep"
                  : later ? "later"
                          : "remove",
                  d.item.id.substr(0, 8).c_str(),
                  PointTimeForPeople(d.item.time).c_str(), reasons.c_str(),
                  later ? ("; " + p.status.message()).c_str() : "");
    }
    if (r->deferred)
      std::printf(
          "%llu recovery points stay until their object lock ends; "
          "a forget after that removes them\n",
          static_cast<unsigned long long>(r->deferred));
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
    std::cout << DumpJson(j) << "\n";
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
  auto slot = (*repo)->key_slots().Add((*repo)->secret(), *pass);
  if (!slot.ok()) return Fail(g, slot.status());
  if (g.json)
    std::cout << DumpJson(nlohmann::json({{"slot", *slot}}))
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

MaintenanceCommands::MaintenanceCommands(CLI::App& app, const Globals& g, int& rc) {
  auto* init = app.add_subcommand("init", "create a new encrypted repository");
  init->add_option("--chunk-size", chunk_size_text,
                   "image chunk size, a power of two from 4K to 8M")
      ->capture_default_str();
  init->add_option("--compression-level", init_opts.compression_level,
                   "zstd level (-7..19)")
      ->capture_default_str();
  init->add_option("--pack-size", pack_size_text,
                   "target pack file size, 1M to 1G")
      ->capture_default_str();
  init->add_option("--copy-params-from", copy_params_from,
                   "make a repository that receives copies of SOURCE: its "
                   "chunk size, pack size, compression and chunk-id keys "
                   "(its own master key and passphrase)");
  init->add_option("--object-lock", object_lock_text,
                   "object store only: keep every pack, point and key "
                   "undeletable for DAYS (a number of days, or with a unit: "
                   "90d, 12h, 120s); the bucket must have object lock "
                   "enabled");
  init->add_option("--object-lock-mode", object_lock_mode,
                   "governance (an account allowed to bypass retention can "
                   "still delete) or compliance (nobody can, not even the "
                   "bucket's owner, until it expires)")
      ->capture_default_str();
  init->add_option("--from-password-file", copy_params_password_file,
                   "SOURCE's passphrase file (else HAVEN_FROM_PASSWORD, "
                   "HAVEN_FROM_PASSWORD_FILE, then the usual sources)");
  init->callback([&, init] {
    if (!copy_params_from.empty()) {
      for (const char* own :
           {"--chunk-size", "--pack-size", "--compression-level"})
        if (init->count(own) > 0) {
          rc = Fail(g, InvalidArgument(std::string(own) +
                                       " cannot be given with "
                                       "--copy-params-from: the source's "
                                       "value is taken"));
          return;
        }
      Status s =
          InitCopyingParams(g, copy_params_from, copy_params_password_file);
      if (!s.ok()) {
        rc = Fail(g, s);
        return;
      }
      if (g.json)
        std::cout << DumpJson(
                         nlohmann::json({{"repository", g.repo},
                                         {"created", true},
                                         {"params_from", copy_params_from}}))
                  << "\n";
      else if (!g.quiet)
        std::printf(
            "created repository at %s with the parameters and "
            "chunk-id keys of %s\n",
            g.repo.c_str(), copy_params_from.c_str());
      rc = kExitOk;
      return;
    }
    init_opts.chunk_size = ParseSize(chunk_size_text);
    init_opts.pack_size = ParseSize(pack_size_text);
    if (!object_lock_text.empty() || init->count("--object-lock-mode") > 0) {
      auto lock = ParseObjectLock(object_lock_text, object_lock_mode);
      if (!lock.ok()) {
        rc = Fail(g, lock.status());
        return;
      }
      init_opts.object_lock = *lock;
    }
    rc = CmdInit(g, init_opts);
  });

  auto* key = app.add_subcommand("key", "manage passphrases (key slots)");
  key->require_subcommand(1);
  key->add_subcommand("list", "list key slots; * marks the one that opened")
      ->callback([&] { rc = CmdKeyList(g); });
  auto* key_add =
      key->add_subcommand("add",
                          "add a passphrase (from $HAVEN_NEW_PASSWORD, "
                          "--new-password-file or a prompt)");
  key_add->add_option("--new-password-file", new_password_file,
                      "file holding the new passphrase");
  key_add->callback([&] { rc = CmdKeyAdd(g, new_password_file); });
  auto* key_rm =
      key->add_subcommand("remove", "remove a key slot (never the last one)");
  key_rm->add_option("SLOT", slot, "slot id from 'haven key list'")->required();
  key_rm->callback([&] { rc = CmdKeyRemove(g, slot); });

  auto* check = app.add_subcommand("check",
                                   "verify that every recovery point can be "
                                   "restored; exit 1 if anything is damaged");
  check->add_flag("--read-data{100}", read_data,
                  "also read, decrypt and verify stored data: all of it, or "
                  "--read-data=PERCENT of the packs chosen at random");
  check->callback([&] { rc = CmdCheck(g, read_data); });

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

  auto* gc = app.add_subcommand(
      "gc",
      "delete the data no recovery point uses (after forget); its mark "
      "runs beside backups, which wait for its final sweep");
  gc->add_option("--repack-below", repack_below_percent,
                 "rewrite packs whose share of used bytes is under this "
                 "percentage (0: only delete wholly unused packs)")
      ->capture_default_str();
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

  auto* repair = app.add_subcommand("repair", "repair what can be rebuilt");
  repair->require_subcommand(1);
  repair
      ->add_subcommand(
          "index",
          "rebuild the chunk index from the pack files (= rebuild-index)")
      ->callback([&] { rc = CmdRebuildIndex(g); });
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
}

}  // namespace haven::cli
