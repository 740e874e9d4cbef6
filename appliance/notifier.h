// Notifier: sends havend's notifications — a signed webhook POST and an
// e-mail over SMTP (libcurl) — from background queues, so a slow or dead
// receiver never holds up a job.
//
//   Notify(event) -> one delivery per configured channel, queued at once
//   each channel (webhook, mail) has its own queue and thread:
//     take the delivery whose time has come -> send (timeouts) ->
//     sent | retry after the next backoff delay | give up (logged)
//
// A webhook is retried after a connection failure, a timeout, HTTP 408,
// 429 or 5xx; any other answer is final. Each attempt is signed afresh
// with the time of that attempt (X-Haven-Timestamp); the body and its "id"
// stay the same, so a receiver drops a repeat it already took. A mail is
// retried unless the server refused it for good (an SMTP 5xx reply, or the
// login was denied). Failures are logged naming the channel and the
// receiver's host — never the URL (a webhook URL may hold a token), a
// secret, a password or the message.
#ifndef HAVEN_APPLIANCE_NOTIFIER_H_
#define HAVEN_APPLIANCE_NOTIFIER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "appliance/config.h"
#include "appliance/notify_message.h"
#include "base/status.h"

namespace haven::appliance {

struct NotifierOptions {
  // Webhook: POST the JSON to this http:// or https:// URL ("" : none),
  // signed with `webhook_secret` (may be empty: then unsigned).
  std::string webhook_url;
  std::string webhook_secret;
  // Mail: smtp:// (STARTTLS when the server offers it, required when
  // logging in) or smtps:// ("" : none).
  std::string smtp_url;
  std::string smtp_from;
  std::vector<std::string> smtp_to;
  std::string smtp_user, smtp_password;  // user "" : no login
  // A PEM CA file for https/smtps receivers instead of the system's ("" :
  // the system's trust store).
  std::string ca_file;

  bool on_success = false;  // also tell of jobs that succeeded
  std::string appliance;    // this host's name, in every message
  // Delays before the 2nd, 3rd, ... attempt, in seconds; after the last
  // one the delivery is given up.
  std::vector<double> retry_delays = {10, 60, 300, 1800, 7200};
  long connect_timeout_seconds = 10;
  long timeout_seconds = 30;  // a whole attempt
  size_t max_queue = 1000;    // per channel; more are dropped (logged)
  std::function<void(const std::string&)> log;  // may be unset
};

// Options from havend's configuration: reads the webhook secret and the
// SMTP password from their files (first line), checks the URLs' schemes
// and the addresses. InvalidArgument naming the field (never its secret).
Result<NotifierOptions> NotifierOptionsFromConfig(const NotifyConfig& config,
                                                  std::string appliance);

class Notifier {
 public:
  explicit Notifier(NotifierOptions options);
  // Stops the channels: an attempt in flight is aborted, queued deliveries
  // are dropped (their number logged).
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Queues `event` on every configured channel; returns at once.
  void Notify(const NotifyEvent& event);
  // Notifies a job that ended if its state calls for it (JobEndEvent); the
  // JobService's OnJobEnd callback.
  void NotifyJobEnd(const JobRecord& job);
  // Queues a mail of its own (the daily report) when mail is configured;
  // `mail.from` and `mail.to` empty take the configured ones.
  void SendMail(MailMessage mail);

  bool has_webhook() const { return webhook_ != nullptr; }
  bool has_mail() const { return mail_ != nullptr; }
  const NotifierOptions& options() const { return options_; }

  struct Counts {
    uint64_t sent = 0;      // deliveries that arrived
    uint64_t retried = 0;   // attempts that failed and were retried
    uint64_t given_up = 0;  // deliveries dropped: final refusal, no retry
                            // left, full queue
  };
  Counts counts() const;
  // Waits until both queues are empty and nothing is in flight; false at
  // the timeout. For tests and an orderly stop.
  bool WaitIdle(double timeout_seconds);

  class Channel;  // notifier.cc

 private:
  NotifierOptions options_;
  std::unique_ptr<Channel> webhook_, mail_;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_NOTIFIER_H_
