// Stubs until the account store is merged (see admin_account.h).
#include "appliance/admin_account.h"

namespace haven::appliance {

Status SetAdminPassword(StateDb&, std::string_view, std::string_view) {
  return FailedPrecondition("accounts are not built yet");
}

Result<bool> AccountExists(StateDb&, std::string_view) {
  return FailedPrecondition("accounts are not built yet");
}

}  // namespace haven::appliance
