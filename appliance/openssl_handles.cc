#include "appliance/openssl_handles.h"

#include <openssl/err.h>

namespace haven::appliance {

std::string OpenSslErrors() {
  std::string out;
  unsigned long err;  // NOLINT(runtime/int): OpenSSL's type
  while ((err = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

Status OpenSslStatus(Code code, std::string_view what) {
  std::string errors = OpenSslErrors();
  std::string msg(what);
  if (!errors.empty()) msg += ": " + errors;
  return Status(code, std::move(msg));
}

}  // namespace haven::appliance
