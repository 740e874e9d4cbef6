#include "appliance/setup.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "appliance/auth.h"
#include "appliance/auth_commands.h"
#include "appliance/scheduler.h"
#include "appliance/certificate.h"
#include "appliance/https_server.h"
#include "appliance/repositories.h"
#include "appliance/state_db.h"
#include "base/file.h"
#include "repository/crypto.h"
#include "repository/repository.h"

namespace haven::appliance {
namespace {

using Say = std::function<void(const std::string&)>;

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string Absolute(const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  char cwd[4096];
  if (!::getcwd(cwd, sizeof cwd)) return path;
  return std::string(cwd) + "/" + path;
}

// A new secret file, 0600, written durably; AlreadyExists if it is there.
Status WriteSecret(const std::string& path, const std::string& secret) {
  std::string text = secret + "\n";
  return WriteFileExclusive(path, AsBytes(text), 0600);
}

// The default nightly schedule, a host backup of every VM into `repository`
// at kNightlySchedule: true when it made it, false when a schedule was there
// already (idempotent: init calls it on every run).
Result<bool> EnsureNightlySchedule(StateDb& db, const std::string& repository) {
  return AddDefaultSchedule(db, repository, static_cast<int64_t>(time(nullptr)));
}

Status SetUpStateDir(const std::string& dir, SetupResult& r, const Say& say) {
  if (!Exists(dir)) {
    HAVEN_RETURN_IF_ERROR(MakeDirs(dir, 0700));
    r.changed = true;
    say("made the state directory " + dir + " (0700)");
    return OkStatus();
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return ErrnoStatus("stat " + dir, errno);
  if (!S_ISDIR(st.st_mode))
    return FailedPrecondition("the state directory " + dir +
                              " exists and is not a directory");
  // A host backup lets QEMU pass through (o+x, never read) to its job
  // folder under /var/lib/haven/jobs; reading or writing by others is wrong.
  if (st.st_mode & 066)
    r.warnings.push_back("the state directory " + dir +
                         " may be read or written by others: chmod 700 it");
  say("kept the state directory " + dir);
  return OkStatus();
}

Status SetUpCertificate(const SetupOptions& o, const ApplianceConfig& c,
                        SetupResult& r, const Say& say) {
  Result<ServerCertificate> cert =
      c.cert_file.empty()
          ? LoadOrCreateCertificate(c.state_dir, o.host_name.empty()
                                                     ? LocalHostName()
                                                     : o.host_name)
          : LoadCertificate(c.key_file, c.cert_file);
  HAVEN_RETURN_IF_ERROR(cert.status());
  r.fingerprint = cert->fingerprint;
  r.public_key_pin = cert->public_key_pin;
  r.changed |= cert->created;
  if (!c.cert_file.empty())
    say("kept the configured certificate " + c.cert_file);
  else
    say(std::string(cert->created ? "made" : "kept") +
        " the self-signed certificate " + c.state_dir + "/" + kCertFileName);
  return OkStatus();
}

// The repository at `repo.path` with the passphrase in repo.password_file:
// made when neither exists, finished when only the passphrase file does
// (an init stopped between the two), checked when both do.
Status SetUpRepository(const RepositoryConfig& repo, SetupResult& r,
                       const Say& say) {
  bool have_pass = Exists(repo.password_file);
  if (!have_pass) {
    if (Exists(repo.path + "/config"))
      return FailedPrecondition(
          "the repository " + repo.path + " exists but its passphrase file " +
          repo.password_file +
          " does not; put its passphrase there (0600) and run init again");
    HAVEN_RETURN_IF_ERROR(MakeDirs(Parent(repo.password_file), 0700));
    HAVEN_RETURN_IF_ERROR(WriteSecret(repo.password_file, RandomSecret(32)));
    r.changed = true;
    say("made a random passphrase in " + repo.password_file +
        " (0600) - copy it somewhere safe: without it the backups cannot be "
        "read");
  }
  HAVEN_RETURN_IF_ERROR(CheckSecretFile(repo.password_file, ""));
  HAVEN_ASSIGN_OR_RETURN(std::string pass, ReadSecretFile(repo.password_file));
  repository::OpenOptions open;
  open.lock_wait_seconds = 30;
  auto opened = repository::Repository::Open(repo.path, pass, open);
  if (opened.ok()) {
    say("kept the repository " + repo.name + " at " + repo.path +
        " (it opens with " + repo.password_file + ")");
    return OkStatus();
  }
  if (Exists(repo.path + "/config"))
    return Status(opened.status().code(),
                  "the repository " + repo.path + " does not open with " +
                      repo.password_file + ": " + opened.status().message());
  HAVEN_RETURN_IF_ERROR(repository::Repository::Init(repo.path, pass, {}));
  r.changed = true;
  say("made the repository " + repo.name + " at " + repo.path);
  return OkStatus();
}

Status SetUpAdmin(StateDb& db, const std::string& file, SetupResult& r,
                  const Say& say) {
  HAVEN_ASSIGN_OR_RETURN(auto auth, AuthService::Open(db));
  auto exists = auth->HasAccount(kAdminUser);
  HAVEN_RETURN_IF_ERROR(exists.status());
  if (*exists) {
    r.admin_password_file = Exists(file) ? file : "";
    say("kept the admin account");
    return OkStatus();
  }
  // The file first: an init stopped before the account is made sets the
  // same password on its next run.
  if (!Exists(file)) HAVEN_RETURN_IF_ERROR(WriteSecret(file, RandomSecret(20)));
  HAVEN_RETURN_IF_ERROR(CheckSecretFile(file, ""));
  HAVEN_ASSIGN_OR_RETURN(std::string password, ReadSecretFile(file));
  HAVEN_RETURN_IF_ERROR(SetAdminPassword(db, password));
  r.changed = true;
  r.admin_password_file = file;
  say("made the admin account \"admin\"; its password is in " + file +
      " (0600)");
  return OkStatus();
}

// The configuration: the file's when it exists, with the command line's
// values over it; the defaults under the state directory otherwise.
// `*differs` is set when the command line asks for something the existing
// file does not say: a [Repository default] it lacks or names elsewhere,
// another state directory or listen address.
Result<ApplianceConfig> Configuration(const SetupOptions& o, bool exists,
                                      bool* differs) {
  ApplianceConfig c;
  if (exists) {
    auto bytes = ReadFile(o.config_path, 1 << 20);
    if (!bytes.ok())
      return Status(bytes.status().code(), "cannot read " + o.config_path +
                                               ": " + bytes.status().message());
    HAVEN_ASSIGN_OR_RETURN(
        c,
        ParseConfig(std::string(bytes->begin(), bytes->end()), o.config_path));
  }
  *differs = false;
  if (o.state_dir) {
    *differs |= c.state_dir != Absolute(*o.state_dir);
    c.state_dir = Absolute(*o.state_dir);
  }
  if (o.listen) {
    HAVEN_RETURN_IF_ERROR(ParseListenAddress(*o.listen).status());
    *differs |= c.listen != *o.listen;
    c.listen = *o.listen;
  }
  RepositoryConfig* repo = nullptr;
  for (RepositoryConfig& r : c.repositories)
    if (r.name == kDefaultRepositoryName) repo = &r;
  *differs |= !repo ||
              (o.repository_path && repo->path != Absolute(*o.repository_path));
  if (!repo) {
    c.repositories.push_back({kDefaultRepositoryName, "", ""});
    repo = &c.repositories.back();
  }
  if (o.repository_path) repo->path = Absolute(*o.repository_path);
  if (repo->path.empty()) repo->path = c.state_dir + "/" + kRepositoryDirName;
  if (repo->password_file.empty())
    repo->password_file = c.state_dir + "/" + kRepositoryPassFileName;
  return c;
}

std::string Url(const ApplianceConfig& c, const std::string& host_name) {
  ListenAddress a;
  if (auto parsed = ParseListenAddress(c.listen);
      !c.listen.empty() && parsed.ok())
    a = *parsed;
  std::string host = a.host;
  if (host.empty() || host == "0.0.0.0" || host == "::")
    host = host_name.empty() ? LocalHostName() : host_name;
  else if (host.find(':') != std::string::npos)
    host = "[" + host + "]";
  return "https://" + host + ":" + std::to_string(a.port) + "/";
}

}  // namespace

std::string RandomSecret(size_t length) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
  constexpr size_t kSize = sizeof kAlphabet - 1;  // 57
  std::string out;
  while (out.size() < length) {
    uint8_t b[64];
    repository::RandomBytes(b, sizeof b);
    for (uint8_t v : b)  // rejection keeps every character equally likely
      if (v < 256 - 256 % kSize && out.size() < length)
        out += kAlphabet[v % kSize];
  }
  return out;
}

Result<SetupResult> SetUpAppliance(const SetupOptions& o, const Say& say) {
  SetupResult r;
  r.config_path = Absolute(o.config_path);
  bool config_exists = Exists(r.config_path);
  SetupOptions opts = o;
  opts.config_path = r.config_path;
  bool differs = false;
  HAVEN_ASSIGN_OR_RETURN(ApplianceConfig c,
                         Configuration(opts, config_exists, &differs));
  const RepositoryConfig& repo = *c.FindRepository(kDefaultRepositoryName);
  r.state_dir = c.state_dir;
  r.repository_path = repo.path;
  r.passphrase_file = repo.password_file;

  HAVEN_RETURN_IF_ERROR(SetUpStateDir(c.state_dir, r, say));
  HAVEN_RETURN_IF_ERROR(SetUpCertificate(o, c, r, say));
  std::string db_path = c.state_dir + "/" + kStateDbFileName;
  bool db_existed = Exists(db_path);
  HAVEN_ASSIGN_OR_RETURN(std::unique_ptr<StateDb> db, StateDb::Open(db_path));
  r.changed |= !db_existed;
  say(std::string(db_existed ? "kept" : "made") + " the state database " +
      db_path);
  HAVEN_RETURN_IF_ERROR(SetUpRepository(repo, r, say));
  HAVEN_RETURN_IF_ERROR(
      SetUpAdmin(*db, c.state_dir + "/" + kAdminPasswordFileName, r, say));

  auto scheduled = EnsureNightlySchedule(*db, kDefaultRepositoryName);
  if (scheduled.ok()) {
    r.changed |= *scheduled;
    say(std::string(*scheduled ? "made" : "kept") + " the nightly schedule (" +
        kNightlySchedule + ", every VM)");
  } else if (scheduled.status().code() == Code::kFailedPrecondition) {
    r.warnings.push_back("no nightly schedule made: " +
                         scheduled.status().message());
  } else {
    return scheduled.status();
  }

  if (!config_exists) {
    HAVEN_RETURN_IF_ERROR(MakeDirs(Parent(r.config_path), 0755));
    std::string text = InitialConfigText(c);
    HAVEN_RETURN_IF_ERROR(
        WriteFileExclusive(r.config_path, AsBytes(text), 0640));
    r.changed = true;
    say("wrote the configuration " + r.config_path);
  } else {
    say("kept the configuration " + r.config_path);
    if (differs)
      r.warnings.push_back(
          r.config_path +
          " is not changed by init and does not say what the command line "
          "asked for; havend serve uses the file unless given the same "
          "options. For this repository it needs: [Repository " +
          kDefaultRepositoryName + "] Path=" + repo.path +
          " PasswordFile=" + repo.password_file);
  }
  // The unit makes only the state directory writable (ProtectSystem=strict).
  if (r.config_path == kDefaultConfigPath &&
      repo.path.rfind(c.state_dir + "/", 0) != 0)
    r.warnings.push_back(
        "the systemd unit lets havend write only in " + c.state_dir +
        ": for the repository " + repo.path +
        " run `systemctl edit havend` and add [Service] ReadWritePaths=" +
        repo.path);
  r.url = Url(c, o.host_name);
  return r;
}

}  // namespace haven::appliance
