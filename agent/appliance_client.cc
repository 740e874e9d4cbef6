#include "agent/appliance_client.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "agent/image_backup.h"  // HostName
#include "base/file.h"

namespace haven::agent {
namespace {

constexpr char kIdentityFile[] = "agent.json";
constexpr size_t kMaxReplyBytes = 64u << 20;  // JSON listings, not archives
constexpr long kConnectTimeoutSeconds = 15;
// A transfer that moves less than 1 byte/s for this long is cut off.
constexpr long kStallSeconds = 120;

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
  void operator()(char* s) const { curl_free(s); }
};
using CurlHandle = std::unique_ptr<CURL, CurlFree>;
using CurlList = std::unique_ptr<curl_slist, CurlFree>;
using CurlUrl = std::unique_ptr<CURLU, CurlFree>;
using CurlString = std::unique_ptr<char, CurlFree>;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// What one request's TLS handshake saw: the pin it checks against and the
// certificate the peer presented.
struct PinState {
  const std::string* pinned = nullptr;
  std::string seen;  // the peer's fingerprint, when it did not match
};

std::string FingerprintOf(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (cert == nullptr || X509_digest(cert, EVP_sha256(), md, &len) != 1)
    return "";
  static const char kHex[] = "0123456789ABCDEF";
  std::string out = "SHA256:";
  for (unsigned int i = 0; i < len; ++i) {
    if (i > 0) out += ':';
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

// Replaces OpenSSL's chain verification: the leaf must be the pinned
// certificate, whoever signed it.
int VerifyPinned(X509_STORE_CTX* ctx, void* arg) {
  auto* state = static_cast<PinState*>(arg);
  std::string fp = FingerprintOf(X509_STORE_CTX_get0_cert(ctx));
  if (!fp.empty() && fp == *state->pinned) {
    X509_STORE_CTX_set_error(ctx, X509_V_OK);
    return 1;
  }
  state->seen = fp.empty() ? "(none)" : fp;
  X509_STORE_CTX_set_error(ctx, X509_V_ERR_CERT_REJECTED);
  return 0;
}

CURLcode InstallPin(CURL*, void* ssl_ctx, void* arg) {
  SSL_CTX_set_cert_verify_callback(static_cast<SSL_CTX*>(ssl_ctx), VerifyPinned,
                                   arg);
  return CURLE_OK;
}

struct Sink {
  CURL* curl = nullptr;
  std::string* text = nullptr;                                  // replies
  const std::function<Status(std::string_view)>* fn = nullptr;  // downloads
  Status error;
  bool too_big = false;
};

size_t OnData(char* data, size_t size, size_t n, void* arg) {
  auto* sink = static_cast<Sink*>(arg);
  size_t len = size * n;
  long status = 0;
  if (sink->fn != nullptr)
    curl_easy_getinfo(sink->curl, CURLINFO_RESPONSE_CODE, &status);
  if (sink->fn != nullptr && status >= 200 && status < 300) {
    sink->error = (*sink->fn)(std::string_view(data, len));
    return sink->error.ok() ? len : 0;
  }
  if (sink->text->size() + len > kMaxReplyBytes) {
    sink->too_big = true;
    return 0;
  }
  sink->text->append(data, len);
  return len;
}

int OnProgress(void* arg, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const CancelToken*>(arg)->cancelled() ? 1 : 0;
}

// Control characters out of a reply's text before it reaches a terminal.
std::string Printable(std::string_view text, size_t max) {
  std::string out;
  for (char c : text.substr(0, max))
    out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  if (text.size() > max) out += "...";
  return out;
}

}  // namespace

std::string DefaultAgentStateDir() {
  const char* dir = std::getenv("HAVEN_AGENT_DIR");
  if (dir != nullptr && *dir != '\0') return dir;
  return "/var/lib/haven-agent";
}

Result<std::string> NormalizeFingerprint(std::string_view text) {
  std::string_view s = text;
  if (s.size() >= 7) {
    std::string head(s.substr(0, 7));
    for (char& c : head) c = static_cast<char>(std::toupper(c));
    if (head == "SHA256:") s.remove_prefix(7);
  }
  std::string hex;
  for (char c : s) {
    if (c == ':') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) {
      hex.clear();
      break;
    }
    hex += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  if (hex.size() != 64)
    return InvalidArgument(
        "the fingerprint " + QuoteUntrusted(text) +
        " is not a SHA-256 certificate fingerprint (SHA256:AB:CD:... with 32 "
        "hex pairs, as havend prints it at start and in the enrollment "
        "command)");
  std::string out = "SHA256:";
  for (size_t i = 0; i < hex.size(); i += 2) {
    if (i > 0) out += ':';
    out += hex.substr(i, 2);
  }
  return out;
}

Status BackoffSleep(const RetryPolicy& retry, int attempt) {
  double delay = retry.first_delay * std::pow(2.0, std::min(attempt, 30));
  delay = std::min(delay, retry.max_delay);
  thread_local std::mt19937 rng(std::random_device{}());
  // Jitter: agents cut off together do not all come back at once.
  delay *= std::uniform_real_distribution<double>(0.5, 1.0)(rng);
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::duration<double>(std::max(0.0, delay));
  while (std::chrono::steady_clock::now() < until) {
    HAVEN_RETURN_IF_ERROR(retry.cancel.Check("the request to the appliance"));
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    std::this_thread::sleep_for(std::clamp(left, std::chrono::milliseconds(1),
                                           std::chrono::milliseconds(100)));
  }
  return retry.cancel.Check("the request to the appliance");
}

// --- identity ---

Result<AgentIdentity> LoadIdentity(const std::string& state_dir) {
  const std::string path = state_dir + "/" + kIdentityFile;
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return NotFound("this machine is not enrolled with an appliance (no " +
                      path +
                      "): run `haven agent enroll https://APPLIANCE:8421 "
                      "--token ... --fingerprint SHA256:...` first");
    return ErrnoStatus("stat " + path, errno);
  }
  if (!S_ISREG(st.st_mode))
    return FailedPrecondition(path + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    return PermissionDenied(
        path + " holds the agent's credential but others may read it (mode " +
        mode + "): run `chmod 600 " + path +
        "`, and if someone else may have read it, revoke the agent on the "
        "appliance and enroll again");
  }
  if (st.st_uid != geteuid())
    return PermissionDenied(path + " belongs to uid " +
                            std::to_string(st.st_uid) +
                            ", not to this user: run haven agent as its owner");
  HAVEN_ASSIGN_OR_RETURN(Bytes data, ReadFile(path, 1 << 20));
  auto j = nlohmann::json::parse(data.begin(), data.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return DataLoss(path + " is not valid JSON; enroll the agent again");
  AgentIdentity id;
  auto field = [&](const char* name, std::string& out) -> Status {
    auto it = j.find(name);
    if (it == j.end() || !it->is_string())
      return DataLoss(path + " has no \"" + name +
                      "\"; enroll the agent again");
    out = it->get<std::string>();
    return OkStatus();
  };
  HAVEN_RETURN_IF_ERROR(field("url", id.url));
  HAVEN_RETURN_IF_ERROR(field("fingerprint", id.fingerprint));
  HAVEN_RETURN_IF_ERROR(field("agent_id", id.agent_id));
  HAVEN_RETURN_IF_ERROR(field("name", id.name));
  HAVEN_RETURN_IF_ERROR(field("credential", id.credential));
  if (j.contains("kind") && j["kind"].is_string()) id.kind = j["kind"];
  if (j.contains("repository") && j["repository"].is_string())
    id.repository = j["repository"];
  auto fp = NormalizeFingerprint(id.fingerprint);
  if (!fp.ok()) return fp.status().WithContext(path);
  id.fingerprint = *fp;
  return id;
}

Status SaveIdentity(const std::string& state_dir, const AgentIdentity& id) {
  HAVEN_RETURN_IF_ERROR(MakeDirs(state_dir, 0700));
  // An existing directory keeps its owner's choice of place but not of
  // mode: the credential's directory is nobody else's business.
  if (chmod(state_dir.c_str(), 0700) != 0)
    return ErrnoStatus("chmod 0700 " + state_dir, errno);
  nlohmann::ordered_json j;
  j["url"] = id.url;
  j["fingerprint"] = id.fingerprint;
  j["agent_id"] = id.agent_id;
  j["name"] = id.name;
  j["kind"] = id.kind;
  j["repository"] = id.repository;
  j["credential"] = id.credential;
  std::string text = j.dump(2) + "\n";
  const std::string path = state_dir + "/" + kIdentityFile;
  HAVEN_RETURN_IF_ERROR(WriteFileAtomic(
      path,
      ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
      0600));
  // The mode of the new file is 0600 whatever umask said, since umask can
  // only take bits away; say so if something else gave it more.
  if (chmod(path.c_str(), 0600) != 0)
    return ErrnoStatus("chmod 0600 " + path, errno);
  return OkStatus();
}

// --- replies ---

std::string HttpReply::ErrorText() const {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    auto it = j.find("error");
    if (it != j.end() && it->is_string())
      return Printable(it->get<std::string>(), 2000);
    if (it != j.end() && it->is_object() && it->contains("message") &&
        (*it)["message"].is_string())
      return Printable((*it)["message"].get<std::string>(), 2000);
  }
  return "HTTP " + std::to_string(status) +
         (body.empty() || content_type.find("json") != std::string::npos
              ? ""
              : ": " + Printable(body, 200));
}

// --- the client ---

struct ApplianceClient::Impl {
  std::string url;  // "https://host:port", no trailing '/'
  std::string fingerprint;
  std::string credential;
  std::mutex mu;
  std::vector<CurlHandle> idle;  // kept for their open connections

  CurlHandle Acquire() {
    {
      std::lock_guard<std::mutex> l(mu);
      if (!idle.empty()) {
        CurlHandle h = std::move(idle.back());
        idle.pop_back();
        curl_easy_reset(h.get());
        return h;
      }
    }
    GlobalInit();
    return CurlHandle(curl_easy_init());
  }
  void Release(CurlHandle h) {
    std::lock_guard<std::mutex> l(mu);
    if (idle.size() < 4) idle.push_back(std::move(h));
  }

  // One attempt. Unavailable for a transport failure, PermissionDenied for
  // a certificate that is not the pinned one.
  Result<HttpReply> Once(const char* method, std::string_view path,
                         std::string_view content_type, std::string_view body,
                         double timeout, const CancelToken& cancel,
                         const std::function<Status(std::string_view)>* sink);
};

Result<HttpReply> ApplianceClient::Impl::Once(
    const char* method, std::string_view path, std::string_view content_type,
    std::string_view body, double timeout, const CancelToken& cancel,
    const std::function<Status(std::string_view)>* download) {
  HAVEN_RETURN_IF_ERROR(cancel.Check("the request to the appliance"));
  CurlHandle h = Acquire();
  if (!h) return Internal("curl_easy_init failed");
  CURL* c = h.get();
  char error[CURL_ERROR_SIZE] = {};
  PinState pin;
  pin.pinned = &fingerprint;
  HttpReply reply;
  Sink sink;
  sink.curl = c;
  sink.text = &reply.body;
  sink.fn = download;
  const std::string full = url + std::string(path);
  CurlList headers;
  auto add = [&](const std::string& line) {
    curl_slist* next = curl_slist_append(headers.get(), line.c_str());
    if (next != nullptr) {
      (void)headers.release();
      headers.reset(next);
    }
    return next != nullptr;
  };
  bool ok = add("User-Agent: haven-agent/0.1.0") &&
            add("Accept: application/json") && add("Expect:");
  if (ok && !credential.empty())
    ok = add("Authorization: Bearer " + credential);
  if (ok && std::string_view(method) == "POST")
    ok = add("Content-Type: " + std::string(content_type));
  if (!ok) return Internal("out of memory for the request headers");

  curl_easy_setopt(c, CURLOPT_URL, full.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT,
                   std::min<long>(kConnectTimeoutSeconds,
                                  std::max<long>(1, std::lround(timeout))));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(std::max(1.0, timeout) * 1000));
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, kStallSeconds);
  // The pinned certificate, not names or a CA, says who the peer is: the
  // verify callback replaces the chain check, and peer verification stays
  // on so that its refusal ends the handshake before a byte is sent.
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  curl_easy_setopt(c, CURLOPT_CAINFO, nullptr);
  curl_easy_setopt(c, CURLOPT_CAPATH, nullptr);
  curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, InstallPin);
  curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, &pin);
  // A connection made for another pin state must not be reused unchecked:
  // sessions are not shared between handles, and each handle's
  // connections were verified against this same fingerprint.
  curl_easy_setopt(c, CURLOPT_SSL_SESSIONID_CACHE, 0L);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, const_cast<CancelToken*>(&cancel));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnData);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  if (std::string_view(method) == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(body.size()));
  } else {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  }
  CURLcode rc = curl_easy_perform(c);
  // Handles are reused only after a clean transfer: a failed one may hold
  // a connection in an unknown state.
  if (rc != CURLE_OK) {
    if (!pin.seen.empty())
      return PermissionDenied(
          "the appliance at " + url + " presented certificate " + pin.seen +
          ", not the pinned " + fingerprint +
          ": someone may be in between, or the appliance's certificate was "
          "replaced (then enroll this agent again with the new fingerprint)");
    if (rc == CURLE_ABORTED_BY_CALLBACK && cancel.cancelled())
      return cancel.Check("the request to the appliance");
    if (sink.too_big)
      return DataLoss("the appliance at " + url + " answered " +
                      std::string(path) + " with more than " +
                      std::to_string(kMaxReplyBytes >> 20) + " MiB");
    if (download != nullptr && !sink.error.ok()) return sink.error;
    std::string why = error[0] ? std::string(error) : curl_easy_strerror(rc);
    return Unavailable("cannot reach the appliance at " + url + " (" + method +
                       " " + std::string(path) + "): " + why);
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
  char* type = nullptr;
  curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type);
  if (type != nullptr) reply.content_type = type;
  Release(std::move(h));
  return reply;
}

Result<std::unique_ptr<ApplianceClient>> ApplianceClient::Create(
    const std::string& url, const std::string& fingerprint,
    const std::string& credential) {
  GlobalInit();
  HAVEN_ASSIGN_OR_RETURN(std::string fp, NormalizeFingerprint(fingerprint));
  const std::string bad =
      "the appliance's URL " + QuoteUntrusted(url) +
      " is not https://HOST[:PORT] (e.g. https://10.0.0.1:8421)";
  CurlUrl u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK)
    return InvalidArgument(bad);
  auto part = [&](CURLUPart which) {
    char* s = nullptr;
    curl_url_get(u.get(), which, &s, 0);
    CurlString owned(s);
    return owned ? std::string(owned.get()) : std::string();
  };
  if (part(CURLUPART_SCHEME) != "https" || part(CURLUPART_HOST).empty() ||
      !part(CURLUPART_USER).empty() || !part(CURLUPART_QUERY).empty() ||
      !part(CURLUPART_FRAGMENT).empty() ||
      (part(CURLUPART_PATH) != "/" && !part(CURLUPART_PATH).empty()))
    return InvalidArgument(bad);
  std::string base = "https://" + part(CURLUPART_HOST);
  if (std::string port = part(CURLUPART_PORT); !port.empty())
    base += ":" + port;
  std::unique_ptr<ApplianceClient> client(new ApplianceClient());
  client->impl_ = std::make_unique<Impl>();
  client->impl_->url = base;
  client->impl_->fingerprint = fp;
  client->impl_->credential = credential;
  return client;
}

ApplianceClient::~ApplianceClient() = default;

const std::string& ApplianceClient::url() const { return impl_->url; }

namespace {

bool Retryable(long status) {
  return status == 502 || status == 503 || status == 504;
}

}  // namespace

Result<HttpReply> ApplianceClient::Get(std::string_view path,
                                       double timeout_seconds,
                                       const RetryPolicy& retry) {
  return Post(path, "", std::string_view(nullptr, 0), timeout_seconds, retry,
              "GET");
}

Result<HttpReply> ApplianceClient::Post(std::string_view path,
                                        std::string_view content_type,
                                        std::string_view body,
                                        double timeout_seconds,
                                        const RetryPolicy& retry) {
  return Post(path, content_type, body, timeout_seconds, retry, "POST");
}

Result<HttpReply> ApplianceClient::Post(
    std::string_view path, std::string_view content_type, std::string_view body,
    double timeout_seconds, const RetryPolicy& retry, const char* method) {
  const int attempts = std::max(1, retry.attempts);
  for (int attempt = 0;; ++attempt) {
    Result<HttpReply> r = impl_->Once(method, path, content_type, body,
                                      timeout_seconds, retry.cancel, nullptr);
    const bool again =
        r.ok() ? Retryable(r->status) : r.status().code() == Code::kUnavailable;
    if (!again || attempt + 1 >= attempts) {
      if (!r.ok() && attempts > 1 && r.status().code() == Code::kUnavailable)
        return Unavailable(r.status().message() + " (tried " +
                           std::to_string(attempts) + " times)");
      return r;
    }
    HAVEN_RETURN_IF_ERROR(BackoffSleep(retry, attempt));
  }
}

Result<HttpReply> ApplianceClient::Download(
    std::string_view path, const std::function<Status(std::string_view)>& sink,
    double timeout_seconds, const CancelToken& cancel) {
  // Bytes already handed to `sink` cannot be taken back: no retry here.
  return impl_->Once("GET", path, "", std::string_view(nullptr, 0),
                     timeout_seconds, cancel, &sink);
}

std::string UrlEncode(std::string_view text, bool keep_slash) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char ch : text) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
        (keep_slash && c == '/')) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Status ReplyStatus(const HttpReply& reply, std::string_view what) {
  std::string msg =
      std::string(what) + ": the appliance answered: " + reply.ErrorText();
  if (reply.status == 401 || reply.status == 403)
    return PermissionDenied(std::move(msg));
  if (reply.status == 404) return NotFound(std::move(msg));
  if (reply.status >= 500) return Unavailable(std::move(msg));
  return FailedPrecondition(std::move(msg));
}

Result<HelloReply> SayHello(ApplianceClient& client,
                            const CancelToken& cancel) {
  nlohmann::json req;
  req["hostname"] = HostName();
  req["version"] = "haven 0.1.0";
  RetryPolicy retry;
  retry.attempts = 3;
  retry.cancel = cancel;
  HAVEN_ASSIGN_OR_RETURN(HttpReply r,
                         client.Post("/api/v1/agent/hello", "application/json",
                                     req.dump(), 60, retry));
  if (r.status != 200) return ReplyStatus(r, "hello");
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return DataLoss("the appliance's answer to hello is not JSON");
  HelloReply h;
  auto get = [&](const char* key, std::string& out) {
    if (j.contains(key) && j[key].is_string())
      out = Printable(j[key].get<std::string>(), 200);
  };
  get("agent_id", h.agent_id);
  get("name", h.name);
  get("repository", h.repository);
  get("server_version", h.server_version);
  return h;
}

}  // namespace haven::agent
