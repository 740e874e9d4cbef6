// JSON text for output (--json, the API): the one place that decides how a
// result is dumped.
#ifndef HAVEN_BASE_JSON_H_
#define HAVEN_BASE_JSON_H_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

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

// The deepest JSON any Haven reader accepts from outside (API bodies,
// agents' manifests and results, config files of a point). nlohmann parses
// any depth, but copying or dumping a value recurses once per level: a
// body of a million '[' would overflow the stack.
inline constexpr int kMaxJsonDepth = 64;

// Whether `text`, read as JSON, nests arrays and objects at most
// `max_depth` deep (brackets inside strings do not count). It does not
// check the rest of the syntax: the parser does.
inline bool JsonNestingWithin(std::string_view text,
                              int max_depth = kMaxJsonDepth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return true;
}

}  // namespace haven

#endif  // HAVEN_BASE_JSON_H_
