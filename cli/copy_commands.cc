#include "cli/copy_commands.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "agent/appliance_copy.h"
#include "base/json.h"
#include "cli/output.h"
#include "cli/passphrase.h"
#include "repository/copy.h"

namespace haven::cli {

namespace {

using repository::CopyOptions;
using repository::CopyReport;
using repository::Repository;

// Where one side's passphrase comes from: its own flag and variables
// (HAVEN_FROM_PASSWORD, HAVEN_FROM_PASSWORD_FILE; TO likewise), else the
// repository's usual ones, else a prompt naming the side.
Result<std::string> SidePassphrase(const Globals& g, const std::string& side,
                                   const std::string& flag_file, bool confirm,
                                   std::string* used) {
  std::string upper = side == "from" ? "FROM" : "TO";
  PassphraseSource own;
  own.env_var = "HAVEN_" + upper + "_PASSWORD";
  own.flag_file = flag_file;
  own.env_file_var = "HAVEN_" + upper + "_PASSWORD_FILE";
  if (const char* f = std::getenv(own.env_file_var.c_str()); f && *f)
    own.env_file = f;
  own.confirm = confirm;
  own.prompt = side == "from" ? "Source repository passphrase: "
                              : "Target repository passphrase: ";
  bool own_set = !flag_file.empty() || !own.env_file.empty() ||
                 std::getenv(own.env_var.c_str()) != nullptr;
  if (own_set) return GetPassphrase(own, used);
  bool usual_set = !g.password_file.empty() ||
                   std::getenv("HAVEN_PASSWORD") != nullptr ||
                   std::getenv("HAVEN_PASSWORD_FILE") != nullptr;
  if (usual_set) return Passphrase(g, confirm, used);
  return GetPassphrase(own, used);
}

Result<std::unique_ptr<Repository>> OpenSide(const Globals& g,
                                             const std::string& path,
                                             const std::string& side,
                                             const std::string& flag_file,
                                             bool write) {
  std::string used;
  HAVEN_ASSIGN_OR_RETURN(std::string pass,
                         SidePassphrase(g, side, flag_file, false, &used));
  auto repo = Repository::Open(path, pass, OpenOpts(g, write));
  if (!repo.ok())
    return repo.status().WithContext(
        (side == "from" ? "the source " : "the target ") + path +
        (repo.status().code() == Code::kPermissionDenied
             ? " (passphrase from " + used + ")"
             : std::string()));
  return repo;
}

bool IsRemote(const std::string& where) {
  return where.rfind("https://", 0) == 0 || where.rfind("http://", 0) == 0;
}

int PrintReport(const Globals& g, const CopyReport& r, const char* verb) {
  if (g.json) {
    std::cout << DumpJson(repository::CopyReportJson(r)) << "\n";
  } else if (!g.quiet) {
    int present = 0;
    for (const auto& p : r.points) {
      if (p.outcome == "present") {
        present++;
        continue;
      }
      std::printf("%-10s %s  %-20s %s  %llu chunks, %s%s%s\n",
                  p.outcome.c_str(), p.id.substr(0, 12).c_str(), p.name.c_str(),
                  p.time.c_str(),
                  static_cast<unsigned long long>(p.chunks_sent),
                  HumanBytes(p.bytes_sent).c_str(), p.status.ok() ? "" : ": ",
                  p.status.ok() ? "" : p.status.message().c_str());
    }
    for (const auto& d : r.damaged) {
      std::string pts;
      for (const auto& id : d.points)
        pts += (pts.empty() ? "" : ", ") + id.substr(0, 12);
      std::printf(
          "DAMAGED chunk %s in the source: %s; not copied; affects "
          "%s\n",
          d.id.Hex().c_str(), d.error.c_str(), pts.c_str());
    }
    for (const auto& e : r.source_errors)
      std::printf("UNREADABLE point in the source: %s\n", e.c_str());
    if (r.dry_run)
      std::printf(
          "dry run: would copy %d of %zu selected points (%d already "
          "there), sending %llu chunks, %s; nothing was sent\n",
          static_cast<int>(r.points.size()) - present - r.failed(),
          r.points.size(), present,
          static_cast<unsigned long long>(r.chunks_sent),
          HumanBytes(r.bytes_sent).c_str());
    else
      std::printf(
          "%s %d of %zu selected points (%d already there, %d "
          "failed): sent %llu chunks, %s in %s\n",
          verb, r.copied(), r.points.size(), present, r.failed(),
          static_cast<unsigned long long>(r.chunks_sent),
          HumanBytes(r.bytes_sent).c_str(),
          FormatDuration(r.duration_seconds).c_str());
  }
  return r.failed() > 0 || !r.damaged.empty() || !r.source_errors.empty()
             ? kExitPartial
             : kExitOk;
}

Result<CopyReport> RunCopy(const Globals& g, repository::CopySource& from,
                           repository::CopyTarget& to, const CopyArgs& args) {
  CopyOptions opt = args.options;
  HAVEN_RETURN_IF_ERROR(args.ResolvePolicy(opt));
  opt.cancel = g.cancel;
  opt.progress = TerminalProgress(!g.quiet && !g.json && isatty(2),
                                  opt.dry_run ? "checking" : "copying");
  return repository::CopyPoints(from, to, opt);
}

Result<CopyReport> RunCopy(const Globals& g, Repository& from, Repository& to,
                           const CopyArgs& args) {
  repository::LocalCopySource src(from);
  repository::LocalCopyTarget dst(to);
  return RunCopy(g, src, dst, args);
}

// `from`'s chunk size, pack size, compression level and chunk-id keys.
repository::InitOptions SharedParams(const Repository& from) {
  repository::InitOptions opt;
  opt.chunk_size = from.config().chunk_size;
  opt.pack_size = from.config().pack_size;
  opt.compression_level = from.config().compression_level;
  opt.shared_ids = true;
  opt.chunk_id_key = from.secret().ChunkIdKey();
  opt.tree_id_key = from.secret().TreeIdKey();
  return opt;
}

// Makes a repository at `dir` that shares `from`'s chunk-id keys and
// parameters; its passphrase comes from `side`'s sources.
Status InitLike(const Globals& g, const Repository& from,
                const std::string& dir, const std::string& side,
                const std::string& flag_file) {
  std::string used;
  HAVEN_ASSIGN_OR_RETURN(std::string pass,
                         SidePassphrase(g, side, flag_file, true, &used));
  return Repository::Init(dir, pass, SharedParams(from));
}

}  // namespace

Status CopyArgs::ResolvePolicy(repository::CopyOptions& opt) const {
  opt.select.refs = refs;
  opt.select.names = names;
  opt.select.since = since;
  opt.select.until = until;
  opt.select.keep = keep;
  if (!limit_rate.empty()) {
    char* end = nullptr;
    double v = std::strtod(limit_rate.c_str(), &end);
    std::string unit = end ? end : "";
    double mult = unit == "" || unit == "B"      ? 1
                  : unit == "K" || unit == "KiB" ? 1024.0
                  : unit == "M" || unit == "MiB" ? 1048576.0
                  : unit == "G" || unit == "GiB" ? 1073741824.0
                                                 : -1;
    if (!(v > 0) || mult < 0)
      return InvalidArgument("--limit-rate '" + limit_rate +
                             "' is not a rate such as 20M (bytes per "
                             "second; K, M, G)");
    opt.bytes_per_second = v * mult;
  }
  return OkStatus();
}

void AddSelectionFlags(CLI::App* cmd, CopyArgs& a) {
  cmd->add_option("points", a.refs,
                  "points to copy: id prefixes, latest, NAME:latest "
                  "(default: all that match the filters)");
  cmd->add_option("--name", a.names,
                  "only points of this VM or backup name (repeatable)");
  cmd->add_option("--since", a.since,
                  "only points taken at or after (ISO "
                  "8601 UTC, 2026-12-01T00:00:00Z)");
  cmd->add_option("--until", a.until, "only points taken at or before");
  cmd->add_option("--keep-last", a.keep.last,
                  "only the N newest points of each name");
  cmd->add_option("--keep-daily", a.keep.daily,
                  "only the newest point of each of the last N days per name");
  cmd->add_option("--keep-weekly", a.keep.weekly, "the same per ISO week");
  cmd->add_option("--keep-monthly", a.keep.monthly, "the same per month");
  cmd->add_flag("--dry-run", a.options.dry_run,
                "say how many points, chunks and bytes would be sent; send "
                "nothing");
  cmd->add_option("--limit-rate", a.limit_rate,
                  "at most this many bytes per second (20M, 500K)");
}

CopyCommands::CopyCommands(CLI::App& app, const Globals& g, int& rc) {
  auto* copy = app.add_subcommand(
      "copy",
      "copy recovery points to another repository, sending only the chunks "
      "it lacks (the target must be made with init --copy-params-from)");
  copy->add_option("--from", from,
                   "source: a repository path (default: -r / "
                   "HAVEN_REPOSITORY), or https://HOST:PORT of an appliance "
                   "(HAVEN_FROM_FINGERPRINT, HAVEN_FROM_TOKEN[_FILE])");
  copy->add_option("--to", to,
                   "target: a repository path (default: -r / "
                   "HAVEN_REPOSITORY), or https://HOST:PORT of an appliance "
                   "(HAVEN_TO_FINGERPRINT, HAVEN_TO_TOKEN[_FILE])");
  copy->add_option("--from-password-file", from_password_file,
                   "source passphrase file (else HAVEN_FROM_PASSWORD, "
                   "HAVEN_FROM_PASSWORD_FILE, then the usual sources)");
  copy->add_option("--to-password-file", to_password_file,
                   "target passphrase file (else HAVEN_TO_PASSWORD, "
                   "HAVEN_TO_PASSWORD_FILE, then the usual sources)");
  AddSelectionFlags(copy, copy_args);
  copy->callback([&] { rc = Copy(g); });

  auto* seed = app.add_subcommand(
      "seed", "carry points to another site on removable media");
  seed->require_subcommand(1);
  auto* exp = seed->add_subcommand(
      "export",
      "write points of -r as a self-contained encrypted repository in DIR "
      "(a mounted USB disk); run again to add newer points");
  exp->add_option("--to", to, "the directory on the removable disk")
      ->required();
  exp->add_option("--to-password-file", to_password_file,
                  "the seed's passphrase file (else HAVEN_TO_PASSWORD, "
                  "HAVEN_TO_PASSWORD_FILE, then the usual sources)");
  AddSelectionFlags(exp, seed_args);
  exp->callback([&] { rc = SeedExport(g); });
  auto* imp = seed->add_subcommand(
      "import",
      "merge a seed into -r, checking every chunk; with --init, first make "
      "-r from the seed's parameters");
  imp->add_option("dir", from, "the seed directory")->required();
  imp->add_option("--from-password-file", from_password_file,
                  "the seed's passphrase file (else HAVEN_FROM_PASSWORD, "
                  "HAVEN_FROM_PASSWORD_FILE, then the usual sources)");
  imp->add_flag("--init", init_target,
                "create the repository at -r sharing the seed's chunk-id "
                "keys when none is there");
  imp->callback([&] { rc = SeedImport(g); });
}

int CopyCommands::Copy(const Globals& g) {
  std::string src = from.empty() ? g.repo : from;
  std::string dst = to.empty() ? g.repo : to;
  if (from.empty() && to.empty())
    return Fail(g, InvalidArgument("give --from or --to (the other side is "
                                   "-r / HAVEN_REPOSITORY)"));
  // A side is a local repository, or a remote appliance (https://HOST:PORT,
  // its fingerprint and admin token from HAVEN_FROM_* / HAVEN_TO_*).
  std::unique_ptr<Repository> src_repo, dst_repo;
  std::unique_ptr<repository::CopySource> source;
  std::unique_ptr<repository::CopyTarget> target;
  if (IsRemote(src)) {
    auto remote = agent::RemoteFromEnvironment(src, "FROM");
    if (!remote.ok()) return Fail(g, remote.status());
    auto opened = agent::OpenApplianceSource(*remote, g.cancel);
    if (!opened.ok()) return Fail(g, opened.status());
    source = std::move(opened).value();
  } else {
    auto repo = OpenSide(g, src, "from", from_password_file, false);
    if (!repo.ok()) return Fail(g, repo.status());
    src_repo = std::move(repo).value();
    source = std::make_unique<repository::LocalCopySource>(*src_repo);
  }
  if (IsRemote(dst)) {
    auto remote = agent::RemoteFromEnvironment(dst, "TO");
    if (!remote.ok()) return Fail(g, remote.status());
    auto opened = agent::OpenApplianceTarget(*remote, g.cancel);
    if (!opened.ok()) return Fail(g, opened.status());
    target = std::move(opened).value();
  } else {
    auto repo =
        OpenSide(g, dst, "to", to_password_file, !copy_args.options.dry_run);
    if (!repo.ok()) return Fail(g, repo.status());
    dst_repo = std::move(repo).value();
    target = std::make_unique<repository::LocalCopyTarget>(*dst_repo);
  }
  auto r = RunCopy(g, *source, *target, copy_args);
  if (!r.ok()) return Fail(g, r.status());
  return PrintReport(g, *r, "copied");
}

int CopyCommands::SeedExport(const Globals& g) {
  auto source = OpenSide(g, g.repo, "from", "", false);
  if (!source.ok()) return Fail(g, source.status());
  std::error_code ec;
  if (!std::filesystem::exists(to + "/config", ec)) {
    if (seed_args.options.dry_run)
      return Fail(
          g, FailedPrecondition("no seed at " + to +
                                " yet: a dry run of a first export would send "
                                "everything selected (run without --dry-run)"));
    std::filesystem::create_directories(to, ec);
    Status made = InitLike(g, **source, to, "to", to_password_file);
    if (!made.ok())
      return Fail(g, made.WithContext("making the seed at " + to));
    if (!g.quiet && !g.json)
      std::fprintf(stderr, "haven: made a seed repository at %s\n", to.c_str());
  }
  auto target =
      OpenSide(g, to, "to", to_password_file, !seed_args.options.dry_run);
  if (!target.ok()) return Fail(g, target.status());
  auto r = RunCopy(g, **source, **target, seed_args);
  if (!r.ok()) return Fail(g, r.status());
  return PrintReport(g, *r, "exported");
}

int CopyCommands::SeedImport(const Globals& g) {
  auto seed = OpenSide(g, from, "from", from_password_file, false);
  if (!seed.ok()) return Fail(g, seed.status());
  std::error_code ec;
  if (init_target && !std::filesystem::exists(g.repo + "/config", ec)) {
    std::filesystem::create_directories(g.repo, ec);
    Status made = InitLike(g, **seed, g.repo, "to", "");
    if (!made.ok())
      return Fail(g, made.WithContext("making the repository at " + g.repo));
  }
  auto target = OpenSide(g, g.repo, "to", "", true);
  if (!target.ok()) return Fail(g, target.status());
  auto r = RunCopy(g, **seed, **target, CopyArgs{});
  if (!r.ok()) return Fail(g, r.status());
  return PrintReport(g, *r, "imported");
}

Status InitCopyingParams(const Globals& g, const std::string& source,
                         const std::string& source_password_file) {
  auto from = OpenSide(g, source, "from", source_password_file, false);
  if (!from.ok()) return from.status();
  HAVEN_ASSIGN_OR_RETURN(std::string pass, Passphrase(g, true));
  return Repository::Init(g.repo, pass, SharedParams(**from));
}

}  // namespace haven::cli
