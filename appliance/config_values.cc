#include "appliance/config_values.h"

#include <cctype>
#include <map>

namespace haven::appliance::config_internal {

std::string_view Trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

bool ValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
          c == '-'))
      return false;
  return name != "." && name != "..";
}

Status Bad(const Line& l, std::string_view what) {
  return InvalidArgument(l.where + QuoteUntrusted(l.value) + ": " +
                         std::string(what));
}

Status SetPath(const Line& l, std::string* out) {
  if (l.value.empty() || l.value[0] != '/')
    return Bad(l, "must be an absolute path");
  *out = std::string(l.value);
  return OkStatus();
}

Status SetSecretPath(const Line& l, std::string* out, ApplianceConfig& c) {
  HAVEN_RETURN_IF_ERROR(SetPath(l, out));
  c.secret_files.push_back({*out, l.where.substr(0, l.where.size() - 1)});
  return OkStatus();
}

Status SetBool(const Line& l, bool* out) {
  static const std::map<std::string_view, bool> kWords = {
      {"yes", true}, {"true", true},   {"on", true},   {"1", true},
      {"no", false}, {"false", false}, {"off", false}, {"0", false}};
  auto it = kWords.find(l.value);
  if (it == kWords.end()) return Bad(l, "must be yes or no");
  *out = it->second;
  return OkStatus();
}

Status SetUrl(const Line& l, std::string* out,
              std::initializer_list<std::string_view> schemes) {
  std::string_view v = l.value;
  if (v.empty()) {
    out->clear();
    return OkStatus();
  }
  size_t colon = v.find("://");
  bool known = false;
  for (std::string_view s : schemes) known |= v.substr(0, colon) == s;
  std::string list;
  for (std::string_view s : schemes)
    list += (list.empty() ? "" : " or ") + std::string(s) + "://";
  if (colon == std::string_view::npos || !known)
    return Bad(l, "must start with " + list);
  std::string_view authority = v.substr(colon + 3);
  authority = authority.substr(0, authority.find('/'));
  if (authority.find('@') != std::string_view::npos)
    return InvalidArgument(
        l.where.substr(0, l.where.size() - 1) +
        ": a URL must not hold a user or password (they would be logged); "
        "give the password in a file (WebhookSecretFile=, SMTPPasswordFile=)");
  if (authority.empty()) return Bad(l, "has no host");
  *out = std::string(v);
  return OkStatus();
}

}  // namespace haven::appliance::config_internal
