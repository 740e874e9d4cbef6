// The local admin account `havend init` makes. The account store (password
// hashing, sessions, tokens) is the auth part's; init only calls these two.
//
// LEAD: replace the stub bodies in admin_account.cc with the auth part's
// calls (the account store's "set password" and "exists").
#ifndef HAVEN_APPLIANCE_ADMIN_ACCOUNT_H_
#define HAVEN_APPLIANCE_ADMIN_ACCOUNT_H_

#include <string_view>

#include "appliance/state_db.h"
#include "base/status.h"

namespace haven::appliance {

// Makes `user` an admin whose password is `password` (stored only as a slow
// salted hash), creating the account or replacing its password.
Status SetAdminPassword(StateDb& db, std::string_view user,
                        std::string_view password);

// Whether an account called `user` exists.
Result<bool> AccountExists(StateDb& db, std::string_view user);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_ADMIN_ACCOUNT_H_
