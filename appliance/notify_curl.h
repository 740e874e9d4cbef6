// libcurl for the notifier (internal to appliance/notifier.cc): one attempt
// to POST a webhook or to send one mail over SMTP. Every CURL handle and
// header list lives in an RAII holder; libcurl is initialised once.
#ifndef HAVEN_APPLIANCE_NOTIFY_CURL_H_
#define HAVEN_APPLIANCE_NOTIFY_CURL_H_

#include <atomic>
#include <string>
#include <vector>

#include "appliance/notifier.h"

namespace haven::appliance {

struct Attempt {
  enum Result { kSent, kRetry, kFinal } result = kSent;
  std::string error;  // for the log: no URL path, secret or message text
};

// POSTs `body` to options.webhook_url with the event and signature headers
// (notify_message.h) made for the time of this attempt. `stop` set aborts
// the transfer.
Attempt PostWebhook(const NotifierOptions& options, const std::string& event,
                    const std::string& body, const std::atomic<bool>& stop);

// Sends `message` (FormatMail's) from options.smtp_from to options.smtp_to
// through options.smtp_url.
Attempt SendSmtp(const NotifierOptions& options,
                 const std::vector<std::string>& to, const std::string& from,
                 const std::string& message, const std::atomic<bool>& stop);

// "host:port" of a URL for messages ("" when it does not parse): never the
// user, password, path or query.
std::string ReceiverHost(const std::string& url);
// The URL's scheme in lower case ("" when it does not parse).
std::string UrlScheme(const std::string& url);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_NOTIFY_CURL_H_
