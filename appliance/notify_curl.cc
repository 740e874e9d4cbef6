#include "appliance/notify_curl.h"

#include <curl/curl.h>

#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>

namespace haven::appliance {
namespace {

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

// A header list that frees itself.
class HeaderList {
 public:
  bool Add(const std::string& line) {
    curl_slist* next = curl_slist_append(list_.get(), line.c_str());
    if (next == nullptr) return false;
    list_.release();
    list_.reset(next);
    return true;
  }
  curl_slist* get() const { return list_.get(); }

 private:
  CurlList list_;
};

// A transfer with what every attempt shares: no signals (threads), the
// timeouts, only the protocols the channel allows, the abort on `stop`.
struct Transfer {
  CurlHandle curl;
  char error[CURL_ERROR_SIZE] = {};
};

int OnProgress(void* stop, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(stop)->load() ? 1 : 0;
}

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

Result<std::unique_ptr<Transfer>> NewTransfer(const NotifierOptions& o,
                                              const char* protocols,
                                              const std::atomic<bool>& stop) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  auto t = std::make_unique<Transfer>();
  t->curl.reset(curl_easy_init());
  if (!t->curl) return Internal("curl_easy_init failed");
  CURL* c = t->curl.get();
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t->error);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, o.connect_timeout_seconds);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, o.timeout_seconds);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, protocols);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA,
                   const_cast<std::atomic<bool>*>(&stop));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
  if (!o.ca_file.empty())
    curl_easy_setopt(c, CURLOPT_CAINFO, o.ca_file.c_str());
  return t;
}

std::string CurlError(const Transfer& t, CURLcode rc) {
  return t.error[0] ? std::string(t.error) : curl_easy_strerror(rc);
}

struct MailSource {
  const std::string* text;
  size_t offset = 0;
};

size_t ReadMail(char* buffer, size_t size, size_t n, void* data) {
  auto* src = static_cast<MailSource*>(data);
  size_t len = std::min(size * n, src->text->size() - src->offset);
  std::memcpy(buffer, src->text->data() + src->offset, len);
  src->offset += len;
  return len;
}

}  // namespace

std::string ReceiverHost(const std::string& url) {
  CurlUrl u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK)
    return "";
  char* host = nullptr;
  char* port = nullptr;
  curl_url_get(u.get(), CURLUPART_HOST, &host, 0);
  curl_url_get(u.get(), CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
  CurlString h(host), p(port);
  if (!h) return "";
  return std::string(h.get()) + (p ? ":" + std::string(p.get()) : "");
}

std::string UrlScheme(const std::string& url) {
  CurlUrl u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK)
    return "";
  char* scheme = nullptr;
  curl_url_get(u.get(), CURLUPART_SCHEME, &scheme, 0);
  CurlString s(scheme);
  return s ? std::string(s.get()) : "";
}

Attempt PostWebhook(const NotifierOptions& o, const std::string& event,
                    const std::string& body, const std::atomic<bool>& stop) {
  auto t = NewTransfer(o, "http,https", stop);
  if (!t.ok()) return {Attempt::kRetry, t.status().message()};
  CURL* c = t.value()->curl.get();
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  HeaderList headers;
  bool ok = headers.Add("Content-Type: application/json") &&
            headers.Add("User-Agent: havend") &&
            headers.Add("X-Haven-Event: " + CleanText(event, 64)) &&
            headers.Add("X-Haven-Timestamp: " + std::to_string(now)) &&
            headers.Add("Expect:");
  if (ok && !o.webhook_secret.empty())
    ok = headers.Add("X-Haven-Signature: " +
                     WebhookSignature(o.webhook_secret, now, body));
  if (!ok) return {Attempt::kRetry, "out of memory for the headers"};
  curl_easy_setopt(c, CURLOPT_URL, o.webhook_url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(body.size()));
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) return {Attempt::kRetry, CurlError(*t.value(), rc)};
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (code >= 200 && code < 300) return {Attempt::kSent, ""};
  std::string why = "HTTP " + std::to_string(code);
  if (code == 408 || code == 429 || code >= 500) return {Attempt::kRetry, why};
  return {Attempt::kFinal, why};
}

Attempt SendSmtp(const NotifierOptions& o, const std::vector<std::string>& to,
                 const std::string& from, const std::string& message,
                 const std::atomic<bool>& stop) {
  auto t = NewTransfer(o, "smtp,smtps", stop);
  if (!t.ok()) return {Attempt::kRetry, t.status().message()};
  CURL* c = t.value()->curl.get();
  HeaderList rcpt;
  for (const std::string& addr : to)
    if (!rcpt.Add("<" + addr + ">"))
      return {Attempt::kRetry, "out of memory for the recipients"};
  std::string mail_from = "<" + from + ">";
  MailSource src{&message};
  curl_easy_setopt(c, CURLOPT_URL, o.smtp_url.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, mail_from.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt.get());
  curl_easy_setopt(c, CURLOPT_READFUNCTION, ReadMail);
  curl_easy_setopt(c, CURLOPT_READDATA, &src);
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE,
                   static_cast<curl_off_t>(message.size()));
  // A password never goes over a connection without TLS: with a login,
  // STARTTLS is required; without one it is used when offered.
  curl_easy_setopt(c, CURLOPT_USE_SSL,
                   o.smtp_user.empty() ? static_cast<long>(CURLUSESSL_TRY)
                                       : static_cast<long>(CURLUSESSL_ALL));
  if (!o.smtp_user.empty()) {
    curl_easy_setopt(c, CURLOPT_USERNAME, o.smtp_user.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, o.smtp_password.c_str());
  }
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OK) return {Attempt::kSent, ""};
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  std::string why = CurlError(*t.value(), rc);
  if (code > 0) why += " (SMTP " + std::to_string(code) + ")";
  if (rc == CURLE_LOGIN_DENIED || code >= 500) return {Attempt::kFinal, why};
  return {Attempt::kRetry, why};
}

}  // namespace haven::appliance
