// Strict reads of integer fields from untrusted JSON: a field that is
// missing, not an integer (1.5, true, "1"), or outside the target type's
// range is rejected rather than narrowed.
#ifndef HAVEN_REPOSITORY_JSON_FIELDS_H_
#define HAVEN_REPOSITORY_JSON_FIELDS_H_

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

namespace haven::repository {

template <typename T>
bool GetInt(const nlohmann::json& obj, const char* key, T& out) {
  if (!obj.is_object()) return false;
  auto it = obj.find(key);
  if (it == obj.end()) return false;
  if (it->is_number_unsigned()) {
    uint64_t v = it->template get<uint64_t>();
    if (v > static_cast<uint64_t>(std::numeric_limits<T>::max())) return false;
    out = static_cast<T>(v);
    return true;
  }
  if (it->is_number_integer()) {
    int64_t v = it->template get<int64_t>();
    if (v < static_cast<int64_t>(std::numeric_limits<T>::min())) return false;
    if (v > 0 && static_cast<uint64_t>(v) >
                     static_cast<uint64_t>(std::numeric_limits<T>::max()))
      return false;
    out = static_cast<T>(v);
    return true;
  }
  return false;
}

// JSON text of `j`; invalid UTF-8 in strings (a legal Linux file name can
// hold any bytes) is replaced by U+FFFD instead of throwing.
inline std::string DumpJson(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}
inline std::string DumpJson(const nlohmann::ordered_json& j, int indent = -1) {
  return j.dump(indent, ' ', false,
                nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_JSON_FIELDS_H_
