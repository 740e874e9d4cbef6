#include "repository/s3/s3_client.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>

namespace haven::repository::s3 {

namespace {

std::once_flag curl_once;

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(c));
  return s;
}

std::string Trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return std::string(s.substr(a, b - a));
}

// RFC 3986 unreserved characters pass; everything else is %XX (SigV4's
// canonical encoding). '/' passes in paths only.
std::string UriEncode(std::string_view s, bool keep_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

bool ValidBucket(const std::string& b) {
  if (b.size() < 3 || b.size() > 63) return false;
  for (char c : b)
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.'))
      return false;
  return std::isalnum(static_cast<unsigned char>(b.front())) &&
         std::isalnum(static_cast<unsigned char>(b.back()));
}

bool ValidPrefixSegment(const std::string& s) {
  if (s.empty() || s == "." || s == "..") return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ||
          c == '.'))
      return false;
  return true;
}

size_t WriteBody(char* data, size_t size, size_t n, void* user);
size_t WriteHeader(char* data, size_t size, size_t n, void* user);

struct Transfer {
  S3Response* response;
  size_t max_body;
  CURL* curl;
  bool too_large = false;
};

// An error reply's body (XML naming the error) is bounded on its own: a
// small ranged read must still see a 503's or 404's reason.
constexpr size_t kMaxErrorBody = 64 << 10;

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  size_t limit = status >= 200 && status < 300 ? t->max_body : kMaxErrorBody;
  if (t->response->body.size() + len > limit) {
    t->too_large = true;
    return 0;  // aborts the transfer
  }
  t->response->body.insert(t->response->body.end(),
                           reinterpret_cast<uint8_t*>(data),
                           reinterpret_cast<uint8_t*>(data) + len);
  return len;
}

size_t WriteHeader(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) {
    t->response->headers.clear();  // a new response (after 100 Continue)
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon != std::string_view::npos)
    t->response->headers[Lower(std::string(line.substr(0, colon)))] =
        Trim(line.substr(colon + 1));
  return size * n;
}

bool RetryableCurlError(CURLcode c) {
  switch (c) {
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_WRITE_ERROR:  // our own abort (too large)
      return false;
    default:
      return true;
  }
}

std::string ErrorText(const S3Response& r) {
  std::string_view xml(reinterpret_cast<const char*>(r.body.data()),
                       std::min<size_t>(r.body.size(), 4096));
  std::string code = XmlFirst(xml, "Code"), msg = XmlFirst(xml, "Message");
  std::string out = "HTTP " + std::to_string(r.status);
  // Both come from the server: cut to a line and keep them printable.
  auto clean = [](std::string s) {
    if (s.size() > 200) s.resize(200);
    for (char& c : s)
      if (!std::isprint(static_cast<unsigned char>(c))) c = '?';
    return s;
  };
  if (!code.empty()) out += " " + clean(code);
  if (!msg.empty()) out += ": " + clean(msg);
  return out;
}

std::string ReadFileText(const std::string& path) {
  std::ifstream in(path);
  if (!in) return "";
  return std::string((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
}

}  // namespace

// ------------------------------------------------------------ locations

std::string S3Location::Spec() const {
  std::string s = "s3:" + scheme + "://" + host + "/" + bucket;
  if (!prefix.empty()) s += "/" + prefix;
  return s;
}

bool IsS3Spec(std::string_view spec) { return spec.rfind("s3:", 0) == 0; }

Result<S3Location> ParseS3Spec(std::string_view spec) {
  const std::string form =
      " (expected s3:https://ENDPOINT/BUCKET[/PREFIX], e.g. "
      "s3:https://s3.example.net/backups/haven)";
  if (!IsS3Spec(spec))
    return InvalidArgument("not an object-store location" + form);
  std::string rest(spec.substr(3));
  S3Location loc;
  size_t q = rest.find('?');
  std::string query;
  if (q != std::string::npos) {
    query = rest.substr(q + 1);
    rest.resize(q);
  }
  size_t sep = rest.find("://");
  if (sep == std::string::npos)
    return InvalidArgument(
        "the object-store location has no http:// or "
        "https:// endpoint" +
        form);
  loc.scheme = Lower(rest.substr(0, sep));
  if (loc.scheme != "http" && loc.scheme != "https")
    return InvalidArgument(
        "the object-store endpoint must be http or https, "
        "not '" +
        loc.scheme + "'" + form);
  rest = rest.substr(sep + 3);
  size_t slash = rest.find('/');
  loc.host = rest.substr(0, slash);
  if (loc.host.empty() || loc.host.find('@') != std::string::npos)
    return InvalidArgument(
        "the object-store endpoint has no host (credentials never go into "
        "the location: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)" +
        form);
  for (char c : loc.host)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' ||
          c == ':' || c == '[' || c == ']'))
      return InvalidArgument("the object-store host '" + loc.host +
                             "' has a character hosts do not have" + form);
  std::string path = slash == std::string::npos ? "" : rest.substr(slash + 1);
  while (!path.empty() && path.back() == '/') path.pop_back();
  size_t bslash = path.find('/');
  loc.bucket = path.substr(0, bslash);
  if (!ValidBucket(loc.bucket))
    return InvalidArgument(
        loc.bucket.empty()
            ? "the object-store location names no bucket" + form
            : "'" + loc.bucket +
                  "' is not a valid bucket name (3 to 63 of a-z, 0-9, '.' "
                  "and '-')" +
                  form);
  if (bslash != std::string::npos) {
    loc.prefix = path.substr(bslash + 1);
    size_t start = 0;
    while (start <= loc.prefix.size()) {
      size_t end = loc.prefix.find('/', start);
      if (end == std::string::npos) end = loc.prefix.size();
      if (!ValidPrefixSegment(loc.prefix.substr(start, end - start)))
        return InvalidArgument("the prefix '" + loc.prefix +
                               "' must be '/'-separated names of A-Z, a-z, "
                               "0-9, '.', '_' and '-'" +
                               form);
      start = end + 1;
    }
  }
  if (const char* r = std::getenv("AWS_REGION"); r && *r)
    loc.region = r;
  else if (const char* d = std::getenv("AWS_DEFAULT_REGION"); d && *d)
    loc.region = d;
  size_t pos = 0;
  while (pos < query.size()) {
    size_t amp = query.find('&', pos);
    if (amp == std::string::npos) amp = query.size();
    std::string kv = query.substr(pos, amp - pos);
    pos = amp + 1;
    size_t eq = kv.find('=');
    std::string k = kv.substr(0, eq),
                v = eq == std::string::npos ? "" : kv.substr(eq + 1);
    if (k == "region" && !v.empty()) {
      loc.region = v;
    } else if (k == "style" && (v == "path" || v == "virtual")) {
      loc.virtual_host = v == "virtual";
    } else {
      // Only the name: a value may be something secret put there by mistake.
      std::string name = k.substr(0, 40);
      for (char& ch : name)
        if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_')
          ch = '?';
      return InvalidArgument("unknown object-store option '" + name +
                             "' (known: region=NAME, style=path|virtual)");
    }
  }
  for (char c : loc.region)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'))
      return InvalidArgument("the region '" + loc.region +
                             "' has characters regions do not have");
  return loc;
}

Result<S3Credentials> S3CredentialsFromEnvironment() {
  S3Credentials c;
  const char* id = std::getenv("AWS_ACCESS_KEY_ID");
  const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY");
  if (id && *id && secret && *secret) {
    c.key_id = id;
    c.secret = secret;
    if (const char* t = std::getenv("AWS_SESSION_TOKEN")) c.session_token = t;
    return c;
  }
  std::string file;
  if (const char* f = std::getenv("AWS_SHARED_CREDENTIALS_FILE"); f && *f)
    file = f;
  else if (const char* home = std::getenv("HOME"); home && *home)
    file = std::string(home) + "/.aws/credentials";
  std::string profile = "default";
  if (const char* p = std::getenv("AWS_PROFILE"); p && *p) profile = p;
  std::string text = file.empty() ? "" : ReadFileText(file);
  std::string section;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = Trim(std::string_view(text).substr(pos, nl - pos));
    pos = nl + 1;
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[' && line.back() == ']') {
      section = Trim(std::string_view(line).substr(1, line.size() - 2));
      continue;
    }
    if (section != profile) continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string k = Trim(std::string_view(line).substr(0, eq));
    std::string v = Trim(std::string_view(line).substr(eq + 1));
    if (k == "aws_access_key_id") c.key_id = v;
    if (k == "aws_secret_access_key") c.secret = v;
    if (k == "aws_session_token") c.session_token = v;
  }
  if (!c.key_id.empty() && !c.secret.empty()) return c;
  return FailedPrecondition(
      "no object-store credentials: set AWS_ACCESS_KEY_ID and "
      "AWS_SECRET_ACCESS_KEY, or put them under [" +
      profile + "] in " +
      (file.empty() ? std::string("~/.aws/credentials") : file) +
      " (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE)");
}

// ------------------------------------------------------------- helpers

std::string S3Response::Header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

std::string Base64(ByteSpan data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          data.data(), static_cast<int>(data.size()));
  out.resize(n);
  return out;
}

std::string Md5Base64(ByteSpan data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_md5(), nullptr);
  return Base64(ByteSpan(md, len));
}

std::string Sha256Hex(ByteSpan data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return HexEncode(ByteSpan(md, len));
}

std::vector<std::string> XmlAll(std::string_view xml, std::string_view tag) {
  std::vector<std::string> out;
  std::string open = "<" + std::string(tag) + ">",
              close = "</" + std::string(tag) + ">";
  size_t pos = 0;
  while (true) {
    size_t a = xml.find(open, pos);
    if (a == std::string_view::npos) break;
    a += open.size();
    size_t b = xml.find(close, a);
    if (b == std::string_view::npos) break;
    std::string_view raw = xml.substr(a, b - a);
    std::string v;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '&') {
        v += raw[i];
        continue;
      }
      static const std::pair<const char*, char> kEnt[] = {{"&amp;", '&'},
                                                          {"&lt;", '<'},
                                                          {"&gt;", '>'},
                                                          {"&quot;", '"'},
                                                          {"&apos;", '\''}};
      bool done = false;
      for (auto& [e, c] : kEnt)
        if (raw.substr(i).rfind(e, 0) == 0) {
          v += c;
          i += std::strlen(e) - 1;
          done = true;
          break;
        }
      if (!done) v += '&';
    }
    out.push_back(std::move(v));
    pos = b + close.size();
  }
  return out;
}

std::string XmlFirst(std::string_view xml, std::string_view tag) {
  auto all = XmlAll(xml, tag);
  return all.empty() ? "" : all.front();
}

// -------------------------------------------------------------- client

struct S3Client::Handle {
  CURL* curl = nullptr;
  Handle() : curl(curl_easy_init()) {}
  ~Handle() {
    if (curl) curl_easy_cleanup(curl);
  }
};

S3Client::S3Client(S3Location location, S3Credentials credentials,
                   S3ClientOptions options)
    : location_(std::move(location)),
      credentials_(std::move(credentials)),
      options_(std::move(options)) {
  std::call_once(curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  sigv4_param_ = "aws:amz:" + location_.region + ":s3";
  userpwd_ = credentials_.key_id + ":" + credentials_.secret;
}

S3Client::~S3Client() = default;

std::unique_ptr<S3Client::Handle> S3Client::TakeHandle() const {
  std::lock_guard lock(handles_mu_);
  if (handles_.empty()) return std::make_unique<Handle>();
  auto h = std::move(handles_.back());
  handles_.pop_back();
  return h;
}

void S3Client::ReturnHandle(std::unique_ptr<Handle> h) const {
  std::lock_guard lock(handles_mu_);
  if (handles_.size() < 32) handles_.push_back(std::move(h));
}

std::string S3Client::UrlFor(const S3Request& r) const {
  std::string url = location_.scheme + "://";
  std::string path;
  if (location_.virtual_host) {
    url += location_.bucket + "." + location_.host;
    path = "/" + UriEncode(r.key, true);
  } else {
    url += location_.host;
    path = "/" + location_.bucket;
    if (!r.key.empty()) path += "/" + UriEncode(r.key, true);
  }
  url += path;
  auto query = r.query;
  std::sort(query.begin(), query.end());
  for (size_t i = 0; i < query.size(); ++i) {
    url += i == 0 ? "?" : "&";
    url += UriEncode(query[i].first, false) + "=" +
           UriEncode(query[i].second, false);
  }
  return url;
}

Result<S3Response> S3Client::SendOnce(const S3Request& r, Handle& h,
                                      bool* retry) const {
  *retry = false;
  CURL* c = h.curl;
  curl_easy_reset(c);
  S3Response response;
  Transfer t{&response, r.max_body, c};
  std::string url = UrlFor(r);
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4_param_.c_str());
  curl_easy_setopt(c, CURLOPT_USERPWD, userpwd_.c_str());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, options_.connect_timeout_seconds);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, options_.stall_seconds);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  if (!options_.ca_file.empty())
    curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  struct curl_slist* headers = nullptr;
  auto add = [&](const std::string& line) {
    headers = curl_slist_append(headers, line.c_str());
  };
  for (const auto& line : r.headers) add(line);
  add("x-amz-content-sha256: " + Sha256Hex(r.body));
  if (!credentials_.session_token.empty())
    add("x-amz-security-token: " + credentials_.session_token);
  if (r.range)
    add("Range: bytes=" + std::to_string(r.range->first) + "-" +
        std::to_string(r.range->first + r.range->second - 1));
  if (r.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (r.method == "PUT" || r.method == "POST") {
    add("Content-Type: application/octet-stream");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS,
                     reinterpret_cast<const char*>(r.body.data()));
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(r.body.size()));
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r.method.c_str());
  } else if (r.method != "GET") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r.method.c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  stats_.requests++;
  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  std::string what = r.method + " " + location_.bucket + "/" + r.key;
  if (rc != CURLE_OK) {
    if (t.too_large)
      return DataLoss("the object store answered " + what + " with more than " +
                      std::to_string(r.max_body) + " bytes");
    *retry = RetryableCurlError(rc);
    return Unavailable("object store " + location_.host + ": " + what + ": " +
                       curl_easy_strerror(rc));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  stats_.bytes_sent += r.body.size();
  stats_.bytes_received += response.body.size();
  long s = response.status;
  if (s >= 200 && s < 300) {
    if (r.range) {
      // A store that ignored the range answers 200 with the whole object:
      // right only if the range was the whole object from byte 0.
      bool whole = s == 200 && r.range->first == 0;
      if ((s != 206 && !whole) || response.body.size() != r.range->second)
        return DataLoss(what + ": asked for " +
                        std::to_string(r.range->second) + " bytes at " +
                        std::to_string(r.range->first) + ", got " +
                        std::to_string(response.body.size()) + " (HTTP " +
                        std::to_string(s) + ")");
    }
    return response;
  }
  if (std::find(r.accept.begin(), r.accept.end(), s) != r.accept.end())
    return response;
  std::string text = what + ": " + ErrorText(response);
  if (s >= 500 || s == 429 || s == 408) {
    *retry = true;
    return Unavailable("object store " + location_.host + ": " + text);
  }
  switch (s) {
    case 404:
      return NotFound(text);
    case 403:
      return PermissionDenied(text);
    case 412:
      return AlreadyExists(text);
    case 409:
      return FailedPrecondition(text);
    case 416:
      return DataLoss(text);
    default:
      return IoError("object store " + location_.host + ": " + text);
  }
}

Result<S3Response> S3Client::Send(const S3Request& request) const {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  auto h = TakeHandle();
  if (!h->curl) return Internal("curl_easy_init failed");
  Status last;
  for (int attempt = 0; attempt < options_.max_attempts; ++attempt) {
    if (attempt > 0) {
      stats_.retries++;
      // Full jitter: uniformly in [0, min(cap, base * 2^attempt)).
      double ceiling =
          std::min(options_.backoff_cap_seconds,
                   options_.backoff_base_seconds *
                       static_cast<double>(1 << std::min(attempt, 16)));
      std::uniform_real_distribution<double> d(0, ceiling);
      std::this_thread::sleep_for(std::chrono::duration<double>(d(rng)));
    }
    bool retry = false;
    auto r = SendOnce(request, *h, &retry);
    if (r.ok()) {
      ReturnHandle(std::move(h));
      return r;
    }
    last = r.status();
    if (!retry) break;
    // A connection that failed is not reused.
    h = std::make_unique<Handle>();
    if (!h->curl) return Internal("curl_easy_init failed");
  }
  ReturnHandle(std::move(h));
  if (last.code() == Code::kUnavailable && options_.max_attempts > 1)
    return Unavailable(last.message() + " (gave up after " +
                       std::to_string(options_.max_attempts) + " attempts)");
  return last;
}

}  // namespace haven::repository::s3
