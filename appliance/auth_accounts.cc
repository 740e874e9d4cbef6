// Local accounts beyond the first admin: list, make, change, delete
// (GET/POST/PUT/DELETE /api/v1/users, appliance/routes_users.cc). The rest
// of AuthService is in auth.cc and auth_session.cc.
//
// The rule that keeps the appliance manageable: there is always at least
// one admin account. Demoting or deleting an account checks the count of
// admins inside the same transaction as the change, so two admins demoting
// each other at once cannot both succeed.
#include <utility>

#include "appliance/auth.h"

namespace haven::appliance {
namespace {

Status CheckName(std::string_view user) {
  if (!ValidAuthName(user))
    return InvalidArgument("user names are 1 to 64 of A-Z a-z 0-9 . _ -");
  return OkStatus();
}

// FailedPrecondition when `user`, an admin, is the only one. Call inside
// the transaction that demotes or deletes it.
Status NotLastAdmin(StateDb& db, std::string_view user) {
  HAVEN_ASSIGN_OR_RETURN(
      auto admins,
      db.QueryOne("SELECT COUNT(*) FROM auth_accounts WHERE role = ?1",
                  {std::string(RoleName(Role::kAdmin))}));
  if (admins && admins->Int(0) > 1) return OkStatus();
  return FailedPrecondition(std::string(user) +
                            " is the last admin: make another user admin "
                            "first, or nobody could manage the appliance");
}

}  // namespace

Result<std::vector<AccountInfo>> AuthService::ListAccounts() {
  int64_t now = Now();
  HAVEN_ASSIGN_OR_RETURN(
      auto rows,
      db_.Query("SELECT a.name, a.role, a.changed, (SELECT COUNT(*) FROM"
                " auth_sessions s WHERE s.user = a.name AND s.last_seen > ?1"
                " AND s.created > ?2) FROM auth_accounts a ORDER BY a.name",
                {now - options_.session_idle_seconds,
                 now - options_.session_absolute_seconds}));
  std::vector<AccountInfo> out;
  for (const SqlRow& row : rows) {
    AccountInfo a;
    a.name = row.Text(0);
    a.role = ParseRole(row.Text(1)).value_or(Role::kNone);
    a.changed = row.Int(2);
    a.sessions = row.Int(3);
    out.push_back(std::move(a));
  }
  return out;
}

Status AuthService::CreateAccount(std::string_view user,
                                  std::string_view password, Role role) {
  HAVEN_RETURN_IF_ERROR(CheckName(user));
  if (role == Role::kNone)
    return InvalidArgument("a user's role is admin, operator or auditor");
  // Hashed before the transaction: scrypt takes a while and must not hold
  // the state database.
  HAVEN_ASSIGN_OR_RETURN(std::string hash,
                         HashPassword(password, options_.password_hash));
  StateDb::Transaction tx(db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_ASSIGN_OR_RETURN(bool exists, HasAccount(user));
  if (exists)
    return AlreadyExists("a user named " + std::string(user) +
                         " exists; change it or pick another name");
  HAVEN_RETURN_IF_ERROR(
      db_.Query("INSERT INTO auth_accounts (name, role, password_hash,"
                " changed) VALUES (?1, ?2, ?3, ?4)",
                {std::string(user), std::string(RoleName(role)), hash, Now()})
          .status());
  return tx.Commit();
}

Status AuthService::UpdateAccount(std::string_view user,
                                  std::optional<Role> role,
                                  std::optional<std::string> password) {
  HAVEN_RETURN_IF_ERROR(CheckName(user));
  if (role && *role == Role::kNone)
    return InvalidArgument("a user's role is admin, operator or auditor");
  std::optional<std::string> hash;
  if (password) {
    HAVEN_ASSIGN_OR_RETURN(hash,
                           HashPassword(*password, options_.password_hash));
  }
  StateDb::Transaction tx(db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_ASSIGN_OR_RETURN(
      auto row, db_.QueryOne("SELECT role FROM auth_accounts WHERE name = ?1",
                             {std::string(user)}));
  if (!row) return NotFound("no user named " + std::string(user));
  if (role && *role != Role::kAdmin && row->Text(0) == RoleName(Role::kAdmin)) {
    HAVEN_RETURN_IF_ERROR(NotLastAdmin(db_, user));
  }
  if (role)
    HAVEN_RETURN_IF_ERROR(
        db_.Query("UPDATE auth_accounts SET role = ?2, changed = ?3"
                  " WHERE name = ?1",
                  {std::string(user), std::string(RoleName(*role)), Now()})
            .status());
  if (hash)
    HAVEN_RETURN_IF_ERROR(
        db_.Query("UPDATE auth_accounts SET password_hash = ?2, changed = ?3"
                  " WHERE name = ?1",
                  {std::string(user), *hash, Now()})
            .status());
  HAVEN_RETURN_IF_ERROR(db_.Query("DELETE FROM auth_sessions WHERE user = ?1",
                                  {std::string(user)})
                            .status());
  return tx.Commit();
}

Status AuthService::DeleteAccount(std::string_view user,
                                  std::string_view acting_user) {
  HAVEN_RETURN_IF_ERROR(CheckName(user));
  if (user == acting_user)
    return FailedPrecondition(
        "you cannot delete the account you are logged in with; another "
        "admin can");
  StateDb::Transaction tx(db_);
  HAVEN_RETURN_IF_ERROR(tx.status());
  HAVEN_ASSIGN_OR_RETURN(
      auto row, db_.QueryOne("SELECT role FROM auth_accounts WHERE name = ?1",
                             {std::string(user)}));
  if (!row) return NotFound("no user named " + std::string(user));
  if (row->Text(0) == RoleName(Role::kAdmin)) {
    HAVEN_RETURN_IF_ERROR(NotLastAdmin(db_, user));
  }
  HAVEN_RETURN_IF_ERROR(db_.Query("DELETE FROM auth_accounts WHERE name = ?1",
                                  {std::string(user)})
                            .status());
  HAVEN_RETURN_IF_ERROR(db_.Query("DELETE FROM auth_sessions WHERE user = ?1",
                                  {std::string(user)})
                            .status());
  return tx.Commit();
}

}  // namespace haven::appliance
