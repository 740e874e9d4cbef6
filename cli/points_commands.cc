#include "cli/points_commands.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "restore/verify_restore.h"
#include "base/bytes.h"
#include "base/json.h"
#include "base/time.h"
#include "cli/output.h"
#include "repository/manifest_json.h"

namespace haven::cli {
namespace {

using repository::Manifest;
using repository::Repository;


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
        j.push_back(repository::ManifestJson(m));
        j.back()["protected"] = (*repo)->IsProtected(m.id);
      }
    std::cout << DumpJson(j) << "\n";
  } else {
    std::printf("%-8s  %-20s  %-20s  %10s  %10s  %s\n", "ID", "TIME", "NAME",
                "SIZE", "NEW", "CONSISTENCY");
    for (const auto& m : *all) {
      if (!name.empty() && m.name != name) continue;
      std::string when = PointTimeForPeople(m.time);
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
  if (!name.empty() && !g.quiet &&
      std::none_of(all->begin(), all->end(),
                   [&](const Manifest& m) { return m.name == name; })) {
    std::set<std::string> names;
    for (const auto& m : *all) names.insert(m.name);
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    std::fprintf(stderr, "haven: no recovery point is named '%s'%s%s\n",
                 name.c_str(),
                 names.empty() ? "" : "; the names are: ", list.c_str());
  }
  return errors.empty() ? kExitOk : kExitPartial;
}

int CmdShow(const Globals& g, const std::string& spec) {
  auto repo = OpenRepo(g, false);
  if (!repo.ok()) return Fail(g, repo.status());
  auto m = (*repo)->FindSnapshot(spec);
  if (!m.ok()) return Fail(g, m.status());
  // The last verified restore (haven verify-restore), without its image.
  const nlohmann::json verified = restore::VerificationSummary(**repo, m->id);
  if (g.json) {
    nlohmann::json j = repository::ManifestJson(*m);
    if (!verified.is_null()) j["verification"] = verified;
    std::cout << DumpJson(j, 2) << "\n";
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
  if (verified.is_object() && verified.contains("error"))
    std::printf("verified     UNREADABLE: %s\n",
                verified.value("error", "").c_str());
  else if (verified.is_object())
    std::printf("verified     %s %s: %s in %.1f s%s%s\n",
                verified.value("passed", false) ? "PASSED" : "FAILED",
                verified.value("time", "").c_str(),
                verified.value("check", "").c_str(),
                verified.value("boot_seconds", 0.0),
                verified.value("passed", false) ? "" : "; why: ",
                verified.value("reason", "").c_str());
  else if (m->kind == "vm")
    std::printf("verified     never ('haven verify-restore %s')\n",
                m->name.c_str());
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
          m->name.c_str(), PointTimeForPeople(m->time).c_str(),
          on ? "is protected: forget will keep it" : "is no longer protected");
  }
  if (g.json) std::cout << DumpJson(out) << "\n";
  return kExitOk;
}

}  // namespace

PointsCommands::PointsCommands(CLI::App& app, const Globals& g, int& rc) {
  auto* snaps = app.add_subcommand(
      "snapshots", "list recovery points (of one backup: snapshots NAME)");
  auto* by_name =
      snaps->add_option("--name", filter_name, "only this backup name");
  snaps->add_option("NAME", filter_name, "only this backup name (as --name)")
      ->excludes(by_name);
  snaps->callback([&] { rc = CmdSnapshots(g, filter_name); });

  auto* show = app.add_subcommand("show", "show what a recovery point holds");
  show->add_option("SNAPSHOT", spec, "id prefix, latest or NAME:latest")
      ->required();
  show->callback([&] { rc = CmdShow(g, spec); });

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
}

}  // namespace haven::cli
