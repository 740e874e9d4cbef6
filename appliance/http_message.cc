#include "appliance/http_message.h"

#include <algorithm>
#include <cctype>

namespace haven::appliance {
namespace {

bool IsTchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

HeadParse Fail(int status, std::string reason) {
  HeadParse out;
  out.error = HttpError{status, std::move(reason)};
  return out;
}

// Percent-decodes a path; refuses bad escapes, NUL and dot segments (no
// handler should have to think about "/a/../b").
std::optional<std::string> DecodePath(std::string_view raw) {
  std::string out;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '%') {
      out += raw[i];
      continue;
    }
    if (i + 2 >= raw.size()) return std::nullopt;
    int hi = HexValue(raw[i + 1]), lo = HexValue(raw[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    char c = static_cast<char>(hi * 16 + lo);
    if (c == '\0') return std::nullopt;
    out += c;
    i += 2;
  }
  size_t start = 0;
  while (start <= out.size()) {
    size_t end = out.find('/', start);
    if (end == std::string::npos) end = out.size();
    std::string_view seg(out.data() + start, end - start);
    if (seg == "." || seg == "..") return std::nullopt;
    start = end + 1;
  }
  return out;
}

}  // namespace

const std::string* Request::Header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return &v;
  return nullptr;
}

Response Response::Json(int status, std::string json_text) {
  Response r;
  r.status = status;
  r.headers.emplace_back("content-type", "application/json");
  r.body = std::move(json_text);
  return r;
}

std::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

HeadParse ParseRequestHead(std::string_view data, const RequestLimits& limits) {
  size_t end = data.substr(0, limits.max_head_bytes).find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (data.size() < limits.max_head_bytes) return {};
    if (data.substr(0, limits.max_head_bytes).find("\r\n") == std::string_view::npos)
      return Fail(414, "request line longer than " +
                           std::to_string(limits.max_head_bytes) + " bytes");
    return Fail(431, "request head larger than " +
                         std::to_string(limits.max_head_bytes) + " bytes");
  }
  ParsedHead head;
  head.head_bytes = end + 4;
  std::string_view text = data.substr(0, end + 2);  // each line ends in CRLF
  std::vector<std::string_view> lines;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find("\r\n", pos);
    std::string_view line = text.substr(pos, eol - pos);
    if (line.find_first_of("\r\n") != std::string_view::npos)
      return Fail(400, "bare CR or LF in the request head");
    lines.push_back(line);
    pos = eol + 2;
  }

  // Request line: METHOD SP origin-form SP HTTP/1.x
  std::string_view rl = lines[0];
  size_t sp1 = rl.find(' ');
  size_t sp2 = sp1 == std::string_view::npos ? sp1 : rl.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || rl.find(' ', sp2 + 1) != std::string_view::npos)
    return Fail(400, "malformed request line");
  std::string_view method = rl.substr(0, sp1);
  std::string_view target = rl.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = rl.substr(sp2 + 1);
  if (method.empty() || method.size() > 20 ||
      !std::all_of(method.begin(), method.end(),
                   [](char c) { return c >= 'A' && c <= 'Z'; }))
    return Fail(400, "malformed method");
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    if (version.substr(0, 5) == "HTTP/")
      return Fail(505, "only HTTP/1.1 is served");
    return Fail(400, "malformed request line");
  }
  if (target.empty() || target[0] != '/' ||
      !std::all_of(target.begin(), target.end(),
                   [](char c) { return c > 0x20 && c < 0x7f; }))
    return Fail(400, "the request target must be a path starting with '/'");
  Request& req = head.request;
  req.method = method;
  req.target = target;
  size_t q = target.find('?');
  if (q != std::string_view::npos) req.query = target.substr(q + 1);
  std::optional<std::string> path = DecodePath(target.substr(0, q));
  if (!path) return Fail(400, "bad percent-escape, NUL or dot segment in the path");
  req.path = std::move(*path);

  for (size_t i = 1; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    if (line.empty() || line[0] == ' ' || line[0] == '\t')
      return Fail(400, "folded or empty header line");
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 ||
        !std::all_of(line.begin(), line.begin() + colon, IsTchar))
      return Fail(400, "malformed header line");
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
      value.remove_suffix(1);
    for (char c : value) {
      unsigned char u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\t') || u == 0x7f)
        return Fail(400, "control character in a header value");
    }
    if (req.headers.size() >= limits.max_headers)
      return Fail(431, "more than " + std::to_string(limits.max_headers) +
                           " header lines");
    req.headers.emplace_back(Lower(line.substr(0, colon)), std::string(value));
  }

  size_t hosts = 0;
  std::optional<std::string> length;
  for (const auto& [name, value] : req.headers) {
    if (name == "host") ++hosts;
    if (name == "transfer-encoding")
      return Fail(501, "Transfer-Encoding is not accepted; send Content-Length");
    if (name == "content-length") {
      if (length && *length != value)
        return Fail(400, "conflicting Content-Length headers");
      length = value;
    }
    if (name == "expect") {
      if (Lower(value) != "100-continue")
        return Fail(417, "only 'Expect: 100-continue' is understood");
      head.expect_continue = true;
    }
  }
  if (version == "HTTP/1.1" && hosts != 1)
    return Fail(400, "an HTTP/1.1 request needs exactly one Host header");
  if (length) {
    if (length->empty() || length->size() > 19 ||
        !std::all_of(length->begin(), length->end(),
                     [](char c) { return c >= '0' && c <= '9'; }))
      return Fail(400, "malformed Content-Length");
    head.content_length = std::stoull(*length);
    if (head.content_length > limits.max_body_bytes)
      return Fail(413, "request body of " + std::to_string(head.content_length) +
                           " bytes is over the limit of " +
                           std::to_string(limits.max_body_bytes));
  } else if (req.method == "POST" || req.method == "PUT" ||
             req.method == "PATCH") {
    return Fail(411, "a request body needs a Content-Length header");
  }
  HeadParse out;
  out.head = std::move(head);
  return out;
}

}  // namespace haven::appliance
