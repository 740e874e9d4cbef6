// Fuzzes havend's request-head parser: bytes straight from the network.
// Beyond not crashing, a parsed head must keep the limits and the path rules
// every handler relies on.
#include <string_view>

#include "appliance/http_message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  haven::appliance::RequestLimits limits;
  limits.max_head_bytes = 512;  // small, so the limits are reached often
  limits.max_headers = 8;
  limits.max_body_bytes = 100;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  haven::appliance::HeadParse p = haven::appliance::ParseRequestHead(text, limits);
  if (p.head && p.error) __builtin_trap();
  if (p.error && (p.error->status < 400 || p.error->status > 599)) __builtin_trap();
  if (!p.head) return 0;
  const auto& h = *p.head;
  if (h.head_bytes > size || h.head_bytes > limits.max_head_bytes) __builtin_trap();
  if (h.content_length > limits.max_body_bytes) __builtin_trap();
  if (h.request.headers.size() > limits.max_headers) __builtin_trap();
  const std::string& path = h.request.path;
  if (path.empty() || path[0] != '/' || path.find('\0') != std::string::npos ||
      path.find("/../") != std::string::npos || path.find("/./") != std::string::npos)
    __builtin_trap();
  for (const auto& [name, value] : h.request.headers)
    if (value.find_first_of("\r\n") != std::string::npos) __builtin_trap();
  return 0;
}
