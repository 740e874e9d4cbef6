// Strict reads of integer fields from untrusted JSON: a field that is
// missing, not an integer (1.5, true, "1"), or outside the target type's
// range is rejected rather than narrowed.
#ifndef HAVEN_REPOSITORY_JSON_FIELDS_H_
#define HAVEN_REPOSITORY_JSON_FIELDS_H_

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>

#include "base/json.h"

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

// Dumping JSON for output lives in base/json.h.
using haven::DumpJson;

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_JSON_FIELDS_H_
