// JSON text for output (--json, the API): the one place that decides how a
// result is dumped.
#ifndef HAVEN_BASE_JSON_H_
#define HAVEN_BASE_JSON_H_

#include <nlohmann/json.hpp>
#include <string>

namespace haven {

// JSON text of `j`; invalid UTF-8 in strings (a legal Linux file name can
// hold any bytes) is replaced by U+FFFD instead of throwing.
inline std::string DumpJson(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}
inline std::string DumpJson(const nlohmann::ordered_json& j, int indent = -1) {
  return j.dump(indent, ' ', false,
                nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace haven

#endif  // HAVEN_BASE_JSON_H_
