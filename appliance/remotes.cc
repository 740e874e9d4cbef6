#include "appliance/remotes.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <ctime>

#include "base/file.h"

namespace haven::appliance {
namespace {

constexpr size_t kMaxUrlBytes = 512;
constexpr size_t kMaxTokenBytes = 512;

bool TokenFileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

int64_t Seconds() { return static_cast<int64_t>(std::time(nullptr)); }

Status CheckToken(std::string_view token) {
  if (token.empty() || token.size() > kMaxTokenBytes)
    return InvalidArgument(
        "token must be an API token of the remote "
        "appliance (1 to 512 characters)");
  for (char c : token)
    if (c <= 0x20 || c >= 0x7f)
      return InvalidArgument(
          "token must be an API token of the remote appliance: printable "
          "characters without spaces");
  return OkStatus();
}

RemoteInfo FromRow(const SqlRow& row) {
  RemoteInfo r;
  r.name = row.Text(0);
  r.url = row.Text(1);
  r.fingerprint = row.Text(2);
  r.created = row.Int(3);
  r.changed = row.Int(4);
  r.changed_by = row.Text(5);
  return r;
}

constexpr char kColumns[] =
    "SELECT name, url, fingerprint, created, changed, changed_by FROM remotes";

}  // namespace

bool ValidRemoteName(std::string_view name) {
  if (name.empty() || name.size() > 64 ||
      !std::isalnum(static_cast<unsigned char>(name[0])))
    return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' &&
        c != '-')
      return false;
  return true;
}

Result<std::unique_ptr<RemoteStore>> RemoteStore::Open(
    StateDb& db, std::string state_dir, std::function<int64_t()> now) {
  HAVEN_RETURN_IF_ERROR(
      db.Exec("CREATE TABLE IF NOT EXISTS remotes ("
              " name TEXT PRIMARY KEY, url TEXT NOT NULL,"
              " fingerprint TEXT NOT NULL, created INTEGER NOT NULL,"
              " changed INTEGER NOT NULL, changed_by TEXT NOT NULL)"));
  if (!now) now = Seconds;
  return std::unique_ptr<RemoteStore>(
      new RemoteStore(db, std::move(state_dir), std::move(now)));
}

std::string RemoteStore::TokenPath(std::string_view name) const {
  return state_dir_ + "/remotes/" + std::string(name) + ".token";
}

Result<bool> RemoteStore::Put(const RemoteUpdate& u, std::string_view by) {
  if (!ValidRemoteName(u.name))
    return InvalidArgument(
        "name must be 1 to 64 of A-Z a-z 0-9 . _ - " +
        std::string("starting with a letter or digit, not ") +
        QuoteUntrusted(u.name));
  if (u.url.size() > kMaxUrlBytes)
    return InvalidArgument("url is longer than 512 bytes");
  auto fp = agent::NormalizeFingerprint(u.fingerprint);
  if (!fp.ok()) return InvalidArgument("fingerprint: " + fp.status().message());
  // The client's own checks: https://HOST[:PORT], nothing more.
  auto client = agent::ApplianceClient::Create(u.url, *fp, "");
  if (!client.ok()) return InvalidArgument("url: " + client.status().message());
  const std::string url = (*client)->url();
  if (u.token) HAVEN_RETURN_IF_ERROR(CheckToken(*u.token));

  StateDb::Transaction tx(db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_ASSIGN_OR_RETURN(
      auto existing,
      db_.QueryOne("SELECT name FROM remotes WHERE name = ?1", {u.name}));
  const bool made = !existing.has_value();
  if (made && !u.token)
    return InvalidArgument(
        "token is required for a new remote: an API "
        "token of role admin on the remote appliance");
  if (u.token) {
    HAVEN_RETURN_IF_ERROR(MakeDirs(state_dir_ + "/remotes", 0700));
    HAVEN_RETURN_IF_ERROR(
        WriteFileAtomic(TokenPath(u.name), AsBytes(*u.token + "\n"), 0600));
  }
  const int64_t now = now_();
  HAVEN_RETURN_IF_ERROR(
      db_.Query("INSERT INTO remotes (name, url, fingerprint, created, "
                "changed, changed_by) VALUES (?1, ?2, ?3, ?4, ?4, ?5)"
                " ON CONFLICT(name) DO UPDATE SET url = ?2, fingerprint = ?3,"
                " changed = ?4, changed_by = ?5",
                {u.name, url, *fp, now, std::string(by)})
          .status());
  HAVEN_RETURN_IF_ERROR(tx.Commit());
  return made;
}

Result<std::vector<RemoteInfo>> RemoteStore::List() {
  HAVEN_ASSIGN_OR_RETURN(auto rows,
                         db_.Query(std::string(kColumns) + " ORDER BY name"));
  std::vector<RemoteInfo> out;
  for (const SqlRow& row : rows) {
    RemoteInfo r = FromRow(row);
    r.token_set = TokenFileExists(TokenPath(r.name));
    out.push_back(std::move(r));
  }
  return out;
}

Result<RemoteInfo> RemoteStore::Get(std::string_view name) {
  // Names come from request paths: one that could not have been stored is
  // not looked up (and never reaches a file name).
  if (!ValidRemoteName(name))
    return NotFound("there is no remote called " + QuoteUntrusted(name));
  HAVEN_ASSIGN_OR_RETURN(
      auto row, db_.QueryOne(std::string(kColumns) + " WHERE name = ?1",
                             {std::string(name)}));
  if (!row)
    return NotFound("there is no remote called " + QuoteUntrusted(name));
  RemoteInfo r = FromRow(*row);
  r.token_set = TokenFileExists(TokenPath(r.name));
  return r;
}

Status RemoteStore::Remove(std::string_view name) {
  HAVEN_RETURN_IF_ERROR(Get(name).status());
  HAVEN_RETURN_IF_ERROR(
      db_.Query("DELETE FROM remotes WHERE name = ?1", {std::string(name)})
          .status());
  const std::string path = TokenPath(name);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return ErrnoStatus("removing the token file of remote " + std::string(name),
                       errno);
  return OkStatus();
}

Result<agent::RemoteAppliance> RemoteStore::Connection(std::string_view name) {
  HAVEN_ASSIGN_OR_RETURN(RemoteInfo info, Get(name));
  auto text = ReadFile(TokenPath(name), kMaxTokenBytes + 2);
  if (!text.ok())
    return FailedPrecondition("the token of remote " + info.name +
                              " cannot be read (" +
                              std::string(CodeName(text.status().code())) +
                              "): set it again with POST /api/v1/remotes");
  std::string token(text->begin(), text->end());
  token = token.substr(0, token.find('\n'));
  agent::RemoteAppliance r;
  r.url = info.url;
  r.fingerprint = info.fingerprint;
  r.token = std::move(token);
  return r;
}

}  // namespace haven::appliance
