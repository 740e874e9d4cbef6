#include "appliance/agents.h"

#include <chrono>
#include <utility>

#include "appliance/auth.h"
#include "appliance/credentials.h"
#include "appliance/setup.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS agent_enrollments (
  hash TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  repository TEXT NOT NULL,
  created INTEGER NOT NULL,
  expires INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  used INTEGER,
  agent_id TEXT);
CREATE TABLE IF NOT EXISTS agents (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  hostname TEXT NOT NULL,
  version TEXT NOT NULL,
  repository TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  enrolled INTEGER NOT NULL,
  last_contact INTEGER NOT NULL,
  address TEXT NOT NULL,
  revoked INTEGER);
CREATE UNIQUE INDEX IF NOT EXISTS agents_active_name ON agents(name)
  WHERE revoked IS NULL;
)sql";

// A secret longer than this is not one of ours; it is refused unhashed.
constexpr size_t kMaxSecretBytes = 128;
// Touch writes last_contact at most this often (seconds) when nothing else
// changed, so an agent's long polls do not each cost a database write.
constexpr int64_t kTouchEvery = 60;
constexpr int kMaxExpiresMinutes = 7 * 24 * 60;
constexpr size_t kMaxHostnameBytes = 253, kMaxVersionBytes = 64;

std::string Iso(int64_t seconds) {
  return FormatTime(seconds * 1000000000, TimeStyle::kRfc3339Utc);
}

bool ValidKind(std::string_view kind) {
  return kind == "guest" || kind == "host";
}

// What an agent tells about itself is shown in the console and the logs:
// printable ASCII, bounded.
Status CheckReported(std::string_view what, std::string_view text, size_t max) {
  if (text.size() > max)
    return InvalidArgument("the " + std::string(what) + " is longer than " +
                           std::to_string(max) + " bytes");
  for (char c : text)
    if (c < 0x20 || c > 0x7e)
      return InvalidArgument("the " + std::string(what) +
                             " must be printable ASCII, not " +
                             QuoteUntrusted(text));
  return OkStatus();
}

AgentInfo InfoOf(const SqlRow& row) {
  AgentInfo a;
  a.id = row.Text(0);
  a.name = row.Text(1);
  a.kind = row.Text(2);
  a.hostname = row.Text(3);
  a.version = row.Text(4);
  a.repository = row.Text(5);
  a.enrolled = row.Int(6);
  a.last_contact = row.Int(7);
  a.address = row.Text(8);
  if (!row.IsNull(9)) a.revoked = row.Int(9);
  return a;
}

constexpr char kAgentColumns[] =
    "SELECT id, name, kind, hostname, version, repository, enrolled,"
    " last_contact, address, revoked FROM agents";

}  // namespace

AgentRegistry::AgentRegistry(StateDb& db, std::function<int64_t()> now)
    : db_(db), now_(std::move(now)) {
  if (!now_)
    now_ = [] {
      return static_cast<int64_t>(
          std::chrono::duration_cast<std::chrono::seconds>(
              std::chrono::system_clock::now().time_since_epoch())
              .count());
    };
  // A constructor cannot return the error: the first statement that needs
  // the tables reports it (as "no such table") instead.
  schema_ = db_.EnsureTable(kSchema);
}

Result<NewEnrollment> AgentRegistry::CreateEnrollment(
    const EnrollmentRequest& request) {
  HAVEN_RETURN_IF_ERROR(schema_);
  if (!request.name.empty() && !ValidAuthName(request.name))
    return InvalidArgument(
        "agent names are 1 to 64 of A-Z a-z 0-9 . _ -, not " +
        QuoteUntrusted(request.name));
  if (!ValidKind(request.kind))
    return InvalidArgument("an agent's kind is guest or host, not " +
                           QuoteUntrusted(request.kind));
  if (request.repository.empty())
    return InvalidArgument("an enrollment needs a repository");
  if (request.expires_minutes < 1 ||
      request.expires_minutes > kMaxExpiresMinutes)
    return InvalidArgument("expires_minutes is 1 to " +
                           std::to_string(kMaxExpiresMinutes) + ", not " +
                           std::to_string(request.expires_minutes));
  NewEnrollment out;
  out.token = std::string(kEnrollmentPrefix) + RandomBase64Url(32);
  int64_t now = now_();
  out.expires = now + request.expires_minutes * 60LL;
  out.name = request.name;
  out.kind = request.kind;
  out.repository = request.repository;
  HAVEN_RETURN_IF_ERROR(
      db_.Query("INSERT INTO agent_enrollments (hash, name, kind, repository,"
                " created, expires, created_by) VALUES (?1, ?2, ?3, ?4, ?5,"
                " ?6, ?7)",
                {Sha256Hex(out.token), out.name, out.kind, out.repository, now,
                 out.expires, request.created_by})
          .status());
  return out;
}

Result<EnrollAnswer> AgentRegistry::Enroll(std::string_view token,
                                           std::string name, std::string kind,
                                           std::string hostname,
                                           std::string version,
                                           std::string address) {
  HAVEN_RETURN_IF_ERROR(schema_);
  HAVEN_RETURN_IF_ERROR(CheckReported("hostname", hostname, kMaxHostnameBytes));
  HAVEN_RETURN_IF_ERROR(CheckReported("version", version, kMaxVersionBytes));
  const Status unknown = PermissionDenied(
      "unknown enrollment token: it was not made by this appliance or is "
      "mistyped; make a new one (Agents -> Add agent, or `havend agent "
      "enroll-token`)");
  if (!token.starts_with(kEnrollmentPrefix) || token.size() > kMaxSecretBytes)
    return unknown;
  int64_t now = now_();
  StateDb::Transaction tx(db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_ASSIGN_OR_RETURN(
      auto row,
      db_.QueryOne("SELECT e.name, e.kind, e.repository, e.expires, e.used,"
                   " a.name FROM agent_enrollments e LEFT JOIN agents a ON"
                   " a.id = e.agent_id WHERE e.hash = ?1",
                   {Sha256Hex(token)}));
  if (!row) return unknown;
  if (!row->IsNull(4))
    return PermissionDenied("this enrollment token was used already, on " +
                            Iso(row->Int(4)) + " by agent " + row->Text(5) +
                            "; each token enrolls one agent: make a new one");
  if (row->Int(3) <= now)
    return PermissionDenied("this enrollment token expired on " +
                            Iso(row->Int(3)) + "; make a new one");
  // What the admin fixed in the token wins over what the agent asks for.
  if (!row->Text(0).empty()) name = row->Text(0);
  if (name.empty()) name = hostname;
  if (!ValidAuthName(name))
    return InvalidArgument(
        name.empty() ? std::string("the agent needs a name (or a hostname)")
                     : "agent names are 1 to 64 of A-Z a-z 0-9 . _ -, not " +
                           QuoteUntrusted(name));
  if (!kind.empty() && kind != row->Text(1))
    return InvalidArgument("this enrollment token is for a " + row->Text(1) +
                           " agent, not a " + QuoteUntrusted(kind) +
                           " one; make a token of that kind");
  EnrollAnswer out;
  AgentInfo& a = out.agent;
  a.name = name;
  a.kind = row->Text(1);
  a.repository = row->Text(2);
  a.hostname = std::move(hostname);
  a.version = std::move(version);
  a.address = std::move(address);
  a.enrolled = a.last_contact = now;
  HAVEN_ASSIGN_OR_RETURN(
      auto taken, db_.QueryOne("SELECT id FROM agents WHERE name = ?1 AND"
                               " revoked IS NULL",
                               {a.name}));
  if (taken)
    return AlreadyExists("an agent named " + a.name + " is enrolled already (" +
                         taken->Text(0) +
                         "); revoke it first, or enroll this one under "
                         "another name");
  // 64 random bits: ids are never reused, even after a revocation.
  for (int attempt = 0; a.id.empty(); ++attempt) {
    if (attempt == 8) return Internal("could not pick an unused agent id");
    std::string id = Sha256Hex(RandomBase64Url(16)).substr(0, 16);
    HAVEN_ASSIGN_OR_RETURN(
        auto same, db_.QueryOne("SELECT 1 FROM agents WHERE id = ?1", {id}));
    if (!same) a.id = id;
  }
  out.credential = std::string(kAgentCredentialPrefix) + RandomBase64Url(32);
  HAVEN_RETURN_IF_ERROR(
      db_.Query("INSERT INTO agents (id, name, kind, hostname, version,"
                " repository, hash, enrolled, last_contact, address) VALUES"
                " (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)",
                {a.id, a.name, a.kind, a.hostname, a.version, a.repository,
                 Sha256Hex(out.credential), now, a.address})
          .status());
  HAVEN_RETURN_IF_ERROR(
      db_.Query("UPDATE agent_enrollments SET used = ?2, agent_id = ?3 WHERE"
                " hash = ?1",
                {Sha256Hex(token), now, a.id})
          .status());
  HAVEN_RETURN_IF_ERROR(tx.Commit());
  return out;
}

Result<std::optional<Caller>> AgentRegistry::Authenticate(
    std::string_view credential) {
  HAVEN_RETURN_IF_ERROR(schema_);
  if (!credential.starts_with(kAgentCredentialPrefix) ||
      credential.size() > kMaxSecretBytes)
    return std::optional<Caller>();
  HAVEN_ASSIGN_OR_RETURN(
      auto row, db_.QueryOne("SELECT id, name, revoked FROM agents WHERE"
                             " hash = ?1",
                             {Sha256Hex(credential)}));
  if (!row) return std::optional<Caller>();
  if (!row->IsNull(2))
    return PermissionDenied("agent " + row->Text(1) + " was revoked on " +
                            Iso(row->Int(2)) +
                            "; enroll it again with a new enrollment token");
  Caller caller;
  caller.name = "agent:" + row->Text(1);
  caller.role = Role::kAgent;
  caller.agent_id = row->Text(0);
  return std::optional<Caller>(std::move(caller));
}

Result<std::vector<AgentInfo>> AgentRegistry::List() {
  HAVEN_RETURN_IF_ERROR(schema_);
  HAVEN_ASSIGN_OR_RETURN(
      auto rows, db_.Query(std::string(kAgentColumns) +
                           " ORDER BY revoked IS NOT NULL, name, enrolled"));
  std::vector<AgentInfo> out;
  out.reserve(rows.size());
  for (const SqlRow& row : rows) out.push_back(InfoOf(row));
  return out;
}

Result<std::optional<AgentInfo>> AgentRegistry::Get(const std::string& id) {
  HAVEN_RETURN_IF_ERROR(schema_);
  HAVEN_ASSIGN_OR_RETURN(
      auto row,
      db_.QueryOne(std::string(kAgentColumns) + " WHERE id = ?1", {id}));
  if (!row) return std::optional<AgentInfo>();
  return std::optional<AgentInfo>(InfoOf(*row));
}

Result<std::optional<AgentInfo>> AgentRegistry::FindByName(
    const std::string& name) {
  HAVEN_RETURN_IF_ERROR(schema_);
  HAVEN_ASSIGN_OR_RETURN(
      auto row, db_.QueryOne(std::string(kAgentColumns) +
                                 " WHERE name = ?1 AND revoked IS NULL",
                             {name}));
  if (!row) return std::optional<AgentInfo>();
  return std::optional<AgentInfo>(InfoOf(*row));
}

Status AgentRegistry::Revoke(const std::string& id) {
  HAVEN_RETURN_IF_ERROR(schema_);
  StateDb::Transaction tx(db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_ASSIGN_OR_RETURN(
      auto row, db_.QueryOne("SELECT revoked FROM agents WHERE id = ?1", {id}));
  if (!row) return NotFound("no agent with id " + QuoteUntrusted(id));
  if (row->IsNull(0))
    HAVEN_RETURN_IF_ERROR(
        db_.Query("UPDATE agents SET revoked = ?2 WHERE id = ?1", {id, now_()})
            .status());
  return tx.Commit();
}

Status AgentRegistry::Touch(const std::string& id, const std::string& hostname,
                            const std::string& version,
                            const std::string& address) {
  HAVEN_RETURN_IF_ERROR(schema_);
  HAVEN_RETURN_IF_ERROR(CheckReported("hostname", hostname, kMaxHostnameBytes));
  HAVEN_RETURN_IF_ERROR(CheckReported("version", version, kMaxVersionBytes));
  int64_t now = now_();
  // Read without a write transaction: most touches write nothing, and two
  // racing ones would write the same contact.
  HAVEN_ASSIGN_OR_RETURN(
      auto row, db_.QueryOne("SELECT last_contact, hostname, version, address"
                             " FROM agents WHERE id = ?1",
                             {id}));
  if (!row) return NotFound("no agent with id " + QuoteUntrusted(id));
  // Empty means "not told": what is recorded stays.
  std::string h = hostname.empty() ? row->Text(1) : hostname;
  std::string v = version.empty() ? row->Text(2) : version;
  std::string ad = address.empty() ? row->Text(3) : address;
  bool changed = h != row->Text(1) || v != row->Text(2) || ad != row->Text(3);
  if (!changed && now - row->Int(0) < kTouchEvery) return OkStatus();
  return db_
      .Query(
          "UPDATE agents SET last_contact = ?2, hostname = ?3,"
          " version = ?4, address = ?5 WHERE id = ?1",
          {id, now, h, v, ad})
      .status();
}

Result<std::string> AgentRepository(const ApplianceConfig& config,
                                    std::string_view requested) {
  if (!requested.empty()) {
    if (config.FindRepository(requested)) return std::string(requested);
    std::string known;
    for (const RepositoryConfig& r : config.repositories)
      known += (known.empty() ? "" : ", ") + r.name;
    return InvalidArgument(
        "there is no repository " + QuoteUntrusted(requested) +
        " (configured: " + (known.empty() ? "none" : known) + ")");
  }
  if (config.repositories.empty())
    return FailedPrecondition(
        "no repository is configured, so an agent would have nowhere to "
        "store its points");
  if (const RepositoryConfig* d = config.FindRepository(kDefaultRepositoryName))
    return d->name;
  return config.repositories.front().name;
}

std::string EnrollCommand(const std::string& url, const NewEnrollment& e,
                          const std::string& fingerprint) {
  std::string command = "haven agent enroll " + url + " --token " + e.token +
                        " --fingerprint " + fingerprint;
  if (!e.name.empty()) command += " --name " + e.name;
  return command;
}

}  // namespace haven::appliance
