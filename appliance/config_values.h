// Values of havend.conf keys (config.cc's parser): each setter checks one
// value and stores it, or returns InvalidArgument naming where it came from.
// Internal to config.cc and its test; not part of the appliance's API.
#ifndef HAVEN_APPLIANCE_CONFIG_VALUES_H_
#define HAVEN_APPLIANCE_CONFIG_VALUES_H_

#include <charconv>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>

#include "appliance/config.h"
#include "base/status.h"

namespace haven::appliance::config_internal {

// One Key=Value: the value, and "FILE:LINE: [Section] Key=" for errors.
struct Line {
  std::string_view value;
  std::string where;
};

using Setter = std::function<Status(const Line&)>;

std::string_view Trim(std::string_view s);
// [A-Za-z0-9._-]{1,64}, not "." or "..": a repository name.
bool ValidName(std::string_view name);
// InvalidArgument "WHERE\"VALUE\": WHAT".
Status Bad(const Line& l, std::string_view what);
// An absolute path.
Status SetPath(const Line& l, std::string* out);
// An absolute path of a secret file, also recorded in c.secret_files.
Status SetSecretPath(const Line& l, std::string* out, ApplianceConfig& c);
// yes/no, true/false, on/off, 1/0.
Status SetBool(const Line& l, bool* out);
// "" (none) or a URL with one of `schemes` and no user or password in it:
// credentials belong in files, and a URL is logged and shown by the API.
Status SetUrl(const Line& l, std::string* out,
              std::initializer_list<std::string_view> schemes);

// A whole decimal number from `min` to `max`.
template <typename T>
Status SetNumber(const Line& l, T* out, T min, T max) {
  T v{};
  auto [end, ec] =
      std::from_chars(l.value.data(), l.value.data() + l.value.size(), v);
  if (ec != std::errc() || end != l.value.data() + l.value.size() || v < min ||
      v > max)
    return Bad(l, "must be a whole number from " + std::to_string(min) +
                      " to " + std::to_string(max));
  *out = v;
  return OkStatus();
}

}  // namespace haven::appliance::config_internal

#endif  // HAVEN_APPLIANCE_CONFIG_VALUES_H_
