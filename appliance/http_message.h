// HTTP/1.1 requests and responses as havend's handlers see them. Parsing
// the bytes from the network is Boost.Beast's (appliance/https_server.cc).
#ifndef HAVEN_APPLIANCE_HTTP_MESSAGE_H_
#define HAVEN_APPLIANCE_HTTP_MESSAGE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace haven::appliance {

// Header names are kept lower-case (HTTP field names are case-insensitive).
using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent: "/api/v1/points?vm=a%20b"
  std::string path;    // percent-decoded, no query: "/api/v1/points"
  std::string query;   // raw, after '?': "vm=a%20b"
  Headers headers;
  std::string body;
  std::string peer;  // "127.0.0.1:53412"

  // The first header named `name` (lower-case), nullptr when absent.
  const std::string* Header(std::string_view name) const;
};

// Writes body bytes to the client; returns non-OK when the client is gone
// (the streamer should then stop).
using BodyWriter = std::function<Status(std::string_view)>;

struct Response {
  int status = 200;
  Headers headers;  // the server adds Content-Length and security headers
  std::string body;
  // For downloads: when set, `body` is ignored and the server calls this to
  // produce exactly `stream_length` bytes through the writer. Fewer bytes,
  // or a non-OK return, end the connection.
  std::function<Status(const BodyWriter&)> stream;
  uint64_t stream_length = 0;
  // With `stream`: the length is not known in advance (a tar or zip made
  // on the fly, an event stream); the body is sent with chunked
  // transfer-encoding and ends with its last chunk only when `stream`
  // returns OK, so a cut-off body is never taken as complete.
  bool chunked = false;

  static Response Json(int status, std::string json_text);
};

using Handler = std::function<Response(const Request&)>;

// "Not Found" for 404 and the like; "Unknown" for codes it does not know.
std::string_view ReasonPhrase(int status);

// What one request may be. Over max_head_bytes: 431; more header lines than
// max_headers: 431; a Content-Length over max_body_bytes: 413.
struct RequestLimits {
  size_t max_head_bytes = 16 * 1024;  // request line + headers + blank line
  size_t max_headers = 100;
  uint64_t max_body_bytes = 1 << 20;
  // Paths that may carry more (agents' chunk uploads): a request whose
  // decoded path starts with one of these prefixes may have a body of up to
  // the paired size instead of max_body_bytes.
  std::vector<std::pair<std::string, uint64_t>> large_bodies;
  // The body limit of a request for `path`.
  uint64_t BodyLimitFor(std::string_view path) const;
};

// The path of an origin-form request target ("/a%20b?q" -> "/a b"):
// percent-decoded, query dropped. nullopt for a bad escape, an encoded NUL
// or a "." / ".." segment, so no handler has to think about "/a/../b".
std::optional<std::string> DecodeTargetPath(std::string_view target);

// The query of a request ("a=1&b=x%20y" or "b=x+y"): names and values
// percent-decoded ('+' is a space); a repeated name keeps its last value; a
// name without '=' has the value "". nullopt for a bad escape or an encoded
// NUL.
std::optional<std::map<std::string, std::string>> ParseQuery(
    std::string_view query);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_HTTP_MESSAGE_H_
