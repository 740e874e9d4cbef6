#include "cli/agent_commands.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "agent/agent_key.h"
#include "agent/appliance_client.h"
#include "agent/host_backup.h"   // VmBackupReportJson
#include "agent/image_backup.h"  // HostName
#include "agent/remote_point_reader.h"
#include "agent/upload_sink.h"
#include "agent/vm_upload.h"
#include "base/bytes.h"
#include "base/file.h"
#include "base/json.h"
#include "cli/backup_commands.h"  // PrintVmBackup
#include "cli/file_backup_commands.h"
#include "cli/output.h"
#include "restore/file_point.h"
#include "restore/file_restore.h"
#include "restore/tar_extract.h"
#include "snapshot/libvirt_host.h"

namespace haven::cli {
namespace {

using agent::ApplianceClient;
using agent::HttpReply;
using restore::PrintableName;

std::string Str(const nlohmann::json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return "";
  const auto& v = j[key];
  if (v.is_string()) return PrintableName(v.get<std::string>());
  if (v.is_number() || v.is_boolean()) return v.dump();
  return "";
}

Result<std::unique_ptr<ApplianceClient>> Connect(const std::string& dir,
                                                 agent::AgentIdentity* out) {
  HAVEN_ASSIGN_OR_RETURN(agent::AgentIdentity id, agent::LoadIdentity(dir));
  auto client = ApplianceClient::Create(id);
  if (out) *out = std::move(id);
  return client;
}

agent::RetryPolicy Retries(const Globals& g) {
  agent::RetryPolicy r;
  r.attempts = 4;
  r.cancel = g.cancel;
  return r;
}

Result<nlohmann::json> GetJson(ApplianceClient& c, const Globals& g,
                               const std::string& path,
                               const std::string& what) {
  HAVEN_ASSIGN_OR_RETURN(HttpReply r, c.Get(path, 120, Retries(g)));
  if (r.status != 200) return agent::ReplyStatus(r, what);
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded())
    return DataLoss(what + ": the appliance's answer is not JSON");
  return j;
}

// This agent's points, newest first.
Result<std::vector<nlohmann::json>> ListPoints(ApplianceClient& c,
                                               const Globals& g) {
  HAVEN_ASSIGN_OR_RETURN(
      nlohmann::json j,
      GetJson(c, g, "/api/v1/agent/points", "listing this agent's points"));
  const nlohmann::json* list = j.is_array() ? &j : nullptr;
  if (j.is_object() && j.contains("points") && j["points"].is_array())
    list = &j["points"];
  if (list == nullptr)
    return DataLoss("the appliance's list of points is not a JSON list");
  std::vector<nlohmann::json> out;
  for (const auto& p : *list)
    if (p.is_object() && p.contains("id") && p["id"].is_string())
      out.push_back(p);
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return Str(a, "time") > Str(b, "time");
  });
  return out;
}

// POINT: an id, an id prefix, `latest` or `NAME:latest`, among this
// agent's own points.
Result<nlohmann::json> FindPoint(ApplianceClient& c, const Globals& g,
                                 const std::string& spec) {
  HAVEN_ASSIGN_OR_RETURN(auto points, ListPoints(c, g));
  if (spec == "latest" || spec.ends_with(":latest")) {
    const std::string name =
        spec == "latest" ? "" : spec.substr(0, spec.size() - 7);
    for (const auto& p : points)
      if (name.empty() || Str(p, "name") == name) return p;
    return NotFound(name.empty() ? std::string("this agent has no points yet")
                                 : "this agent has no point named " +
                                       QuoteUntrusted(name));
  }
  if (spec.empty())
    return InvalidArgument("POINT: an id, latest or NAME:latest");
  std::vector<nlohmann::json> found;
  for (const auto& p : points)
    if (p["id"].get<std::string>().starts_with(spec)) found.push_back(p);
  if (found.empty())
    return NotFound("this agent has no point " + QuoteUntrusted(spec) +
                    " (haven agent points lists them)");
  if (found.size() > 1)
    return InvalidArgument("the id prefix " + QuoteUntrusted(spec) + " names " +
                           std::to_string(found.size()) +
                           " points; give more of it");
  return found[0];
}

// --- enroll ---

int CmdEnroll(const Globals& g, const std::string& dir,
              const AgentCommands::Enroll& a) {
  std::string token = a.token;
  if (token.empty())
    if (const char* t = std::getenv("HAVEN_ENROLL_TOKEN"); t && *t) token = t;
  if (token.empty())
    return Fail(
        g, InvalidArgument("no enrollment token: give --token or set "
                           "HAVEN_ENROLL_TOKEN (the admin makes one on the "
                           "appliance: Agents -> Add agent)"));
  if (a.kind != "guest" && a.kind != "host")
    return Fail(g, InvalidArgument("--kind: guest or host, not " +
                                   QuoteUntrusted(a.kind)));
  if (auto old = agent::LoadIdentity(dir); !a.force) {
    if (old.ok())
      return Fail(
          g, AlreadyExists("this machine is already enrolled as " + old->name +
                           " with " + old->url + " (" + dir +
                           "/agent.json); --force enrolls it again (then "
                           "revoke the old agent on the appliance)"));
    if (old.status().code() != Code::kNotFound)
      return Fail(g, old.status().WithContext(
                         "an agent.json is there already; --force replaces "
                         "it"));
  }
  auto client = ApplianceClient::Create(a.url, a.fingerprint, "");
  if (!client.ok()) return Fail(g, client.status());
  nlohmann::json req;
  req["token"] = token;
  req["name"] = a.name.empty() ? agent::HostName() : a.name;
  req["kind"] = a.kind;
  req["hostname"] = agent::HostName();
  req["version"] = "haven 0.1.0";
  // Sent once: the token is good for one enrollment, and a retry after an
  // answer that was lost would only be told that it is used.
  auto r = (*client)->Post("/api/v1/agent/enroll", "application/json",
                           req.dump(), 60);
  if (!r.ok()) return Fail(g, r.status());
  if (r->status != 200 && r->status != 201)
    return Fail(g, agent::ReplyStatus(*r, "enrollment refused"));
  auto j = nlohmann::json::parse(r->body, nullptr, false);
  agent::AgentIdentity id;
  id.url = (*client)->url();
  id.fingerprint = *agent::NormalizeFingerprint(a.fingerprint);
  id.kind = a.kind;
  if (j.is_object()) {
    id.agent_id = Str(j, "agent_id");
    id.name = Str(j, "name");
    id.repository = Str(j, "repository");
    if (j.contains("credential") && j["credential"].is_string())
      id.credential = j["credential"].get<std::string>();
  }
  if (id.agent_id.empty() || id.credential.empty())
    return Fail(g, DataLoss("the appliance accepted the token but its answer "
                            "has no agent id or credential; ask the admin "
                            "for a new token"));
  if (Status s = agent::SaveIdentity(dir, id); !s.ok())
    return Fail(g, s.WithContext("enrolled as " + id.name + " (" + id.agent_id +
                                 ") but the credential could not be stored; "
                                 "revoke this agent and enroll again"));
  if (g.json) {
    nlohmann::ordered_json o;
    o["agent_id"] = id.agent_id;
    o["name"] = id.name;
    o["kind"] = id.kind;
    o["url"] = id.url;
    o["fingerprint"] = id.fingerprint;
    o["repository"] = id.repository;
    o["identity"] = dir + "/agent.json";
    std::cout << DumpJson(o) << "\n";
  } else if (!g.quiet) {
    std::printf(
        "enrolled as %s (%s) with %s; credential stored in "
        "%s/agent.json\n",
        id.name.c_str(), id.agent_id.c_str(), id.url.c_str(), dir.c_str());
  }
  return kExitOk;
}

// --- backup ---

int CmdBackup(const Globals& g, const std::string& dir,
              const AgentCommands::Backup& a) {
  agent::AgentIdentity id;
  auto client = Connect(dir, &id);
  if (!client.ok()) return Fail(g, client.status());
  agent::FileBackupOptions o;
  o.name = a.name.empty() ? agent::HostName() : a.name;
  o.paths = a.paths;
  o.excludes = a.excludes;
  o.exclude_file = a.exclude_file;
  o.exclude_caches = a.exclude_caches;
  o.one_file_system = a.one_file_system;
  o.threads = a.threads;
  o.progress = TerminalProgress(!g.quiet && !g.json, "backup");
  o.cancel = g.cancel;
  o.on_warning = FileBackupWarnings(g);
  auto r = agent::BackupFilesToAppliance(**client, dir, o);
  if (!r.ok())
    return Fail(g, r.status().WithContext(
                       "backup '" + o.name + "' to " + id.url +
                       " failed; no recovery point was written (chunks that "
                       "arrived are kept there for the next run)"));
  if (g.json) {
    nlohmann::ordered_json j = FileBackupJson(r->files);
    j["appliance"] = id.url;
    j["uploaded_chunks"] = r->uploaded_chunks;
    j["uploaded_bytes"] = r->uploaded_bytes;
    j["skipped_chunks"] = r->skipped_chunks;
    std::cout << DumpJson(j) << "\n";
  } else if (!g.quiet) {
    PrintFileBackupSummary(r->files);
    std::printf(
        "  uploaded %llu chunks (%s on the wire); %llu the appliance "
        "had already; took %s\n",
        static_cast<unsigned long long>(r->uploaded_chunks),
        HumanBytes(r->uploaded_bytes).c_str(),
        static_cast<unsigned long long>(r->skipped_chunks),
        FormatDuration(r->files.manifest.stats.duration_seconds).c_str());
  }
  return FileBackupExit(r->files);
}

int CmdBackupVm(const Globals& g, const std::string& dir,
                const AgentCommands::BackupVm& a) {
  agent::AgentIdentity id;
  auto client = Connect(dir, &id);
  if (!client.ok()) return Fail(g, client.status());
  auto host = snapshot::LibvirtHost::Connect(a.libvirt_uri);
  if (!host.ok()) return Fail(g, host.status());
  agent::VmBackupOptions o;
  o.full = a.full;
  o.progress = TerminalProgress(!g.quiet && !g.json, "backup");
  o.cancel = g.cancel;
  o.log = [&g](const std::string& msg) {
    if (!g.quiet) std::fprintf(stderr, "haven: %s\n", msg.c_str());
  };
  agent::AgentVmBackupResult r =
      agent::BackupVmToAppliance(**client, dir, **host, a.vm, o);
  if (g.json) {
    nlohmann::ordered_json j = agent::VmBackupReportJson(r.report);
    j["appliance"] = id.url;
    j["uploaded_chunks"] = r.uploaded_chunks;
    j["uploaded_bytes"] = r.uploaded_bytes;
    j["skipped_chunks"] = r.skipped_chunks;
    std::cout << DumpJson(j) << "\n";
  } else if (!g.quiet) {
    PrintVmBackup(r.report);
    if (r.report.ok())
      std::printf(
          "  uploaded %llu chunks (%s on the wire) to %s; %llu the "
          "appliance had already\n",
          static_cast<unsigned long long>(r.uploaded_chunks),
          HumanBytes(r.uploaded_bytes).c_str(), id.url.c_str(),
          static_cast<unsigned long long>(r.skipped_chunks));
  }
  if (r.report.ok()) return kExitOk;
  if (g.json) return kExitFailure;
  return Fail(g, r.report.status);
}

// --- points, ls, status ---

int CmdPoints(const Globals& g, const std::string& dir) {
  auto client = Connect(dir, nullptr);
  if (!client.ok()) return Fail(g, client.status());
  auto points = ListPoints(**client, g);
  if (!points.ok()) return Fail(g, points.status());
  if (g.json) {
    nlohmann::json j;
    j["points"] = *points;
    std::cout << DumpJson(j) << "\n";
    return kExitOk;
  }
  if (points->empty()) {
    if (!g.quiet) std::printf("no points yet (haven agent backup PATH...)\n");
    return kExitOk;
  }
  std::printf("%-10s %-22s %-20s %s\n", "ID", "TIME", "NAME", "");
  for (const auto& p : *points) {
    const bool partial = p.contains("partial") && p["partial"].is_boolean() &&
                         p["partial"].get<bool>();
    std::printf("%-10s %-22s %-20s %s\n", Str(p, "id").substr(0, 8).c_str(),
                Str(p, "time").c_str(), Str(p, "name").c_str(),
                partial ? "PARTIAL" : "");
  }
  return kExitOk;
}

int CmdLs(const Globals& g, const std::string& dir, const std::string& spec,
          const std::string& path) {
  auto client = Connect(dir, nullptr);
  if (!client.ok()) return Fail(g, client.status());
  auto point = FindPoint(**client, g, spec);
  if (!point.ok()) return Fail(g, point.status());
  const std::string id = (*point)["id"];
  auto j =
      GetJson(**client, g,
              "/api/v1/agent/points/" + agent::UrlEncode(id) +
                  "/files?path=" + agent::UrlEncode(path.empty() ? "/" : path),
              "listing " + (path.empty() ? "/" : path) + " of point " +
                  id.substr(0, 8));
  if (!j.ok()) return Fail(g, j.status());
  if (g.json) {
    std::cout << DumpJson(*j) << "\n";
    return kExitOk;
  }
  const nlohmann::json* list = nullptr;
  for (const char* key : {"entries", "files"})
    if (j->is_object() && j->contains(key) && (*j)[key].is_array())
      list = &(*j)[key];
  if (list == nullptr) {
    std::cout << DumpJson(*j, 2) << "\n";
    return kExitOk;
  }
  for (const auto& e : *list) {
    std::string mode = Str(e, "mode");
    if (mode.empty()) mode = Str(e, "type");
    std::printf("%-10s %12s %-17s %s\n", mode.c_str(), Str(e, "size").c_str(),
                Str(e, "mtime").substr(0, 16).c_str(), Str(e, "name").c_str());
  }
  return kExitOk;
}

int CmdStatus(const Globals& g, const std::string& dir) {
  agent::AgentIdentity id;
  auto client = Connect(dir, &id);
  if (!client.ok()) return Fail(g, client.status());
  auto hello = agent::SayHello(**client, g.cancel);
  if (g.json) {
    nlohmann::ordered_json j;
    j["agent_id"] = id.agent_id;
    j["name"] = id.name;
    j["kind"] = id.kind;
    j["url"] = id.url;
    j["fingerprint"] = id.fingerprint;
    j["repository"] = id.repository;
    j["identity"] = dir + "/agent.json";
    j["reachable"] = hello.ok();
    if (hello.ok())
      j["server_version"] = hello->server_version;
    else
      j["error"] = hello.status().message();
    std::cout << DumpJson(j) << "\n";
  } else {
    std::printf("agent %s (%s, %s)\n", id.name.c_str(), id.agent_id.c_str(),
                id.kind.c_str());
    std::printf(
        "  appliance  %s\n  pinned     %s\n  repository %s\n"
        "  identity   %s/agent.json\n",
        id.url.c_str(), id.fingerprint.c_str(), id.repository.c_str(),
        dir.c_str());
    if (hello.ok())
      std::printf(
          "  the appliance answers: agent %s, %s\n", hello->name.c_str(),
          hello->server_version.empty() ? "version unknown"
                                        : hello->server_version.c_str());
  }
  if (!hello.ok()) {
    std::fprintf(stderr, "haven: error: %s\n",
                 hello.status().message().c_str());
    return kExitFailure;
  }
  return kExitOk;
}

// --- key ---

int CmdKeyCreate(const Globals& g, const std::string& dir) {
  if (Status s = MakeDirs(dir, 0700); !s.ok()) return Fail(g, s);
  const std::string path = agent::AgentKeyPath(dir);
  auto key = agent::AgentKey::Create(path);
  if (!key.ok()) return Fail(g, key.status());
  const std::string warning =
      "WARNING: " + path +
      " is the ONLY copy of this key. From now on this agent's file backups "
      "are encrypted with it before they leave this machine: the appliance "
      "can neither read nor restore them, and without this file nobody can. "
      "Copy it now to a safe place off this machine (e.g. `install -m 600 " +
      path +
      " /safe/place/agent-key`); `haven agent restore` needs it back at " +
      path + " (mode 0600). Those backups deduplicate only with each other.";
  if (g.json) {
    nlohmann::ordered_json j;
    j["key"] = key->id();
    j["path"] = path;
    j["warning"] = warning;
    std::cout << DumpJson(j) << "\n";
  } else {
    std::printf("created agent key %s in %s\n", key->id().c_str(),
                path.c_str());
  }
  std::fprintf(stderr, "%s\n", warning.c_str());
  return kExitOk;
}

// --- restore ---

// Restores `paths` of a point sealed with this agent's key: its chunks
// come from the appliance as stored (sealed), are opened here, and go as a
// tar stream into the same extractor as an unsealed point's archive.
Status RestoreSealed(const Globals& g, const std::string& dir,
                     const agent::RemotePointReader& remote,
                     const repository::Manifest& m,
                     const std::vector<std::string>& paths,
                     const std::string& to, restore::TarExtractResult& st) {
  const std::string key_path = agent::AgentKeyPath(dir);
  auto key = agent::AgentKey::LoadIfPresent(key_path);
  if (!key.ok()) return key.status();
  if (!*key)
    return FailedPrecondition(
        "point " + m.id.substr(0, 8) + " is encrypted with agent key " +
        m.agent_key + " and this agent has no key file " + key_path +
        ": put the copy of that key there (mode 0600) and restore again");
  agent::KeyedPointReader reader(**key, remote);
  HAVEN_ASSIGN_OR_RETURN(repository::Manifest point, reader.FindSnapshot(m.id));
  HAVEN_ASSIGN_OR_RETURN(
      auto files, restore::FilePoint::Open(
                      reader, point, restore::AgentKeyed::kOpenedByReader));
  for (const std::string& p : paths) {
    if ((*files).Select({p}).ok()) {
      HAVEN_RETURN_IF_ERROR(files->Prefetch(4));
    }
    HAVEN_ASSIGN_OR_RETURN(auto x, restore::TarExtractor::Start(to));
    restore::FileRestoreOptions o;
    o.target = restore::FileTarget::kTar;
    o.archive_writer = [&x](std::string_view bytes) { return x->Write(bytes); };
    o.cancel = g.cancel;
    auto r = restore::RestoreGuestFiles(*files, {p}, o);
    auto done = x->Finish();
    HAVEN_RETURN_IF_ERROR(r.status());
    HAVEN_RETURN_IF_ERROR(done.status());
    for (const auto& problem : r->problems)
      st.problems.push_back(problem.path + ": " + problem.what);
    st.entries += done->entries;
    st.bytes += done->bytes;
    st.problems.insert(st.problems.end(), done->problems.begin(),
                       done->problems.end());
  }
  return OkStatus();
}

int CmdRestore(const Globals& g, const std::string& dir,
               const std::string& spec, std::vector<std::string> paths,
               const std::string& to) {
  if (to.empty()) return Fail(g, InvalidArgument("--to DIR is required"));
  auto client = Connect(dir, nullptr);
  if (!client.ok()) return Fail(g, client.status());
  auto point = FindPoint(**client, g, spec);
  if (!point.ok()) return Fail(g, point.status());
  const std::string id = (*point)["id"];
  if (paths.empty()) paths = {"/"};
  // A point sealed with this agent's key is opened here; any other comes
  // as the appliance's archive.
  agent::RemotePointReaderOptions ro;
  ro.cancel = g.cancel;
  agent::RemotePointReader remote(**client, agent::OwnPoint{id}, ro);
  std::optional<repository::Manifest> manifest;
  if ((*point)["kind"] == "files") {
    auto m = remote.Point();
    if (!m.ok()) return Fail(g, m.status());
    manifest = std::move(m).value();
  }
  if (Status s = MakeDirs(to, 0755); !s.ok()) return Fail(g, s);
  restore::TarExtractResult st;
  Status failed;
  if (manifest && !manifest->agent_key.empty())
    failed = RestoreSealed(g, dir, remote, *manifest, paths, to, st);
  for (const std::string& p : paths) {
    if (manifest && !manifest->agent_key.empty()) break;
    auto x = restore::TarExtractor::Start(to);
    if (!x.ok()) return Fail(g, x.status());
    auto r = (*client)->Download(
        "/api/v1/agent/points/" + agent::UrlEncode(id) +
            "/archive?format=tar&path=" + agent::UrlEncode(p),
        [&x](std::string_view bytes) { return (*x)->Write(bytes); }, 24 * 3600,
        g.cancel);
    auto done = (*x)->Finish();
    if (done.ok()) {
      st.entries += done->entries;
      st.bytes += done->bytes;
      st.problems.insert(st.problems.end(), done->problems.begin(),
                         done->problems.end());
    }
    if (!r.ok())
      failed = done.ok() ? r.status() : done.status();
    else if (r->status != 200)
      failed = agent::ReplyStatus(*r, "restoring " + p);
    else if (!done.ok())
      failed = done.status();
    if (!failed.ok()) break;
  }
  for (const auto& p : st.problems)
    std::fprintf(stderr, "not restored: %s\n", p.c_str());
  if (!failed.ok())
    return Fail(g, failed.WithContext("restore from point " + id.substr(0, 8) +
                                      " into " + to +
                                      " stopped; the entries written before "
                                      "are complete"));
  if (g.json) {
    nlohmann::ordered_json j;
    j["snapshot"] = id;
    j["target"] = to;
    j["entries"] = st.entries;
    j["bytes"] = st.bytes;
    j["problems"] = st.problems;
    j["complete"] = st.problems.empty();
    std::cout << DumpJson(j) << "\n";
  } else if (!g.quiet) {
    std::printf(
        "restored %llu entries (%s) from point %s to %s%s\n",
        static_cast<unsigned long long>(st.entries),
        HumanBytes(st.bytes).c_str(), id.substr(0, 8).c_str(), to.c_str(),
        st.problems.empty() ? ""
                            : ("; " + std::to_string(st.problems.size()) +
                               " not restored (listed above)")
                                  .c_str());
  }
  return st.problems.empty() ? kExitOk : kExitPartial;
}

}  // namespace

AgentCommands::AgentCommands(CLI::App& app, const Globals& g, int& rc) {
  state_dir = agent::DefaultAgentStateDir();
  agent = app.add_subcommand(
      "agent",
      "this machine as an agent of a Haven appliance (docs/agents.md): it "
      "uploads file backups over HTTPS with the appliance's certificate "
      "pinned and holds no repository passphrase");
  agent->require_subcommand(1);
  agent->fallthrough();
  agent
      ->add_option("--state-dir", state_dir,
                   "agent.json (the credential) and the upload cache; "
                   "default $HAVEN_AGENT_DIR, else /var/lib/haven-agent")
      ->capture_default_str();

  auto* en = agent->add_subcommand(
      "enroll",
      "trade a one-time enrollment token for this agent's credential. The "
      "token may also come from $HAVEN_ENROLL_TOKEN, which keeps it out of "
      "the process list");
  en->add_option("URL", enroll.url, "the appliance: https://HOST:8421")
      ->required();
  en->add_option("--token", enroll.token,
                 "the enrollment token (havenenroll_...; used once)");
  en->add_option("--fingerprint", enroll.fingerprint,
                 "the appliance's certificate, SHA256:AB:CD:... as the "
                 "appliance shows it; nothing else is trusted")
      ->required();
  en->add_option("--name", enroll.name,
                 "this agent's name (default: the host name)");
  en->add_option("--kind", enroll.kind, "guest or host")->capture_default_str();
  en->add_flag("--force", enroll.force,
               "replace an existing enrollment of this machine");
  en->callback([this, &g, &rc] { rc = CmdEnroll(g, state_dir, enroll); });

  auto* bk = agent->add_subcommand(
      "backup",
      "back up files to the appliance as a point of NAME: only chunks the "
      "appliance lacks are sent; files unchanged since the last point are "
      "not read again. Exit 3: partial (some entries could not be read)");
  bk->add_option("PATH", backup.paths, "files or directories")->required();
  bk->add_option("--name", backup.name, "backup name (default: the host name)");
  bk->add_option("--exclude", backup.excludes,
                 "skip entries matching GLOB (names, or absolute paths with "
                 "'/'); repeatable");
  bk->add_option("--exclude-file", backup.exclude_file,
                 "more globs, one per line");
  bk->add_flag("--exclude-caches", backup.exclude_caches,
               "skip what directories with a CACHEDIR.TAG hold");
  bk->add_flag("--one-file-system", backup.one_file_system,
               "do not descend into mount points under PATH");
  bk->add_option("--threads", backup.threads,
                 "files read at once (default: one per core)");
  bk->callback([this, &g, &rc] { rc = CmdBackup(g, state_dir, backup); });

  auto* bv = agent->add_subcommand(
      "backup-vm",
      "back up a libvirt VM of this host to the appliance (a host agent): "
      "all disks at one instant, bitmap-incremental after the first point, "
      "with its configuration; only chunks the appliance lacks are sent");
  bv->add_option("VM", backup_vm.vm, "the domain's name")->required();
  bv->add_flag("--full", backup_vm.full,
               "read every disk whole (ignore the checkpoints)");
  bv->add_option("--libvirt-uri", backup_vm.libvirt_uri, "the hypervisor")
      ->capture_default_str();
  bv->callback([this, &g, &rc] { rc = CmdBackupVm(g, state_dir, backup_vm); });

  auto* pts =
      agent->add_subcommand("points", "this agent's points, newest first");
  pts->callback([this, &g, &rc] { rc = CmdPoints(g, state_dir); });

  auto* ls = agent->add_subcommand(
      "ls", "list a directory of one of this agent's points");
  ls->add_option("POINT", point, "an id (prefix), latest or NAME:latest")
      ->required();
  ls->add_option("PATH", path, "a directory or file (default /)");
  ls->callback([this, &g, &rc] { rc = CmdLs(g, state_dir, point, path); });

  auto* rs = agent->add_subcommand(
      "restore",
      "restore files of one of this agent's points into DIR (existing files "
      "are kept; nothing is written outside DIR). Exit 3: some entries not "
      "restored (listed)");
  rs->add_option("POINT", point, "an id (prefix), latest or NAME:latest")
      ->required();
  rs->add_option("PATH", paths, "paths in the point (default: all)");
  rs->add_option("--to", to, "target directory (made if missing)")->required();
  rs->callback(
      [this, &g, &rc] { rc = CmdRestore(g, state_dir, point, paths, to); });

  auto* key = agent->add_subcommand(
      "key",
      "this agent's own encryption key (docs/agents.md, \"An agent's own "
      "key\")");
  key->require_subcommand(1);
  key->fallthrough();  // --state-dir after `key create`
  auto* key_create = key->add_subcommand(
      "create",
      "make STATE_DIR/agent-key (64 random bytes, mode 0600; never "
      "replaced): file backups are then encrypted with it before they "
      "leave this machine, and the appliance cannot read or restore them. "
      "It is the only copy: copy it somewhere safe");
  key_create->fallthrough();
  key_create->callback([this, &g, &rc] { rc = CmdKeyCreate(g, state_dir); });

  auto* st = agent->add_subcommand(
      "status",
      "this agent's identity (not its credential) and whether the "
      "appliance answers");
  st->callback([this, &g, &rc] { rc = CmdStatus(g, state_dir); });
}

}  // namespace haven::cli
