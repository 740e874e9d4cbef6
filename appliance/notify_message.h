// What havend's notifications say, as pure functions: the webhook's JSON
// body and its signature, and the e-mail message (RFC 5322). Sending them
// is appliance/notifier.h's.
//
// Webhook (docs/appliance.md, "Notifications"):
//
//   POST <webhook_url>
//   Content-Type: application/json
//   X-Haven-Event: job.failed
//   X-Haven-Timestamp: 1796962800                  (Unix seconds)
//   X-Haven-Signature: sha256=<64 lower-case hex>
//
// where the signature is HMAC-SHA256, keyed with the webhook secret, over
// the bytes  <timestamp> "." <body>  exactly as sent. A receiver recomputes
// it, compares in constant time, refuses a timestamp far from its clock and
// remembers the body's "id" to refuse a replay.
#ifndef HAVEN_APPLIANCE_NOTIFY_MESSAGE_H_
#define HAVEN_APPLIANCE_NOTIFY_MESSAGE_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "appliance/jobs.h"

namespace haven::appliance {

// A VM with no successful backup within its schedule's expected interval
// (appliance/overdue.h finds them).
struct OverdueVm {
  std::string vm;                       // untrusted: a libvirt domain name
  std::string repository;               // configured repository name
  std::string schedule;                 // the schedule that expects it
  std::optional<int64_t> last_success;  // Unix seconds; none: never
  int64_t expected_interval_seconds = 0;
  int64_t overdue_since = 0;  // Unix seconds: when it became overdue
  bool operator==(const OverdueVm&) const = default;
};

// One thing to tell: a job that ended, or a VM that became overdue.
struct NotifyEvent {
  std::string id;         // unique (random), for receivers to drop replays
  std::string type;       // "job.failed", "job.partial", "job.interrupted",
                          // "job.succeeded", "vm.overdue"
  int64_t time = 0;       // Unix seconds, when it was made
  std::string appliance;  // havend's host name
  std::optional<JobRecord> job;      // job.*
  std::optional<OverdueVm> overdue;  // vm.overdue
};

// The event for a job that ended, or nullopt when its state is not one to
// tell: failed, partial and interrupted always; succeeded with
// `on_success`; cancelled (somebody asked for it), queued and running never.
std::optional<NotifyEvent> JobEndEvent(const JobRecord& job, bool on_success,
                                       int64_t now, std::string appliance);
NotifyEvent OverdueEvent(const OverdueVm& vm, int64_t now,
                         std::string appliance);

// One paragraph for people, with no links (a notification cannot be used
// to lure anyone to a URL): "Backup job 42 into repository main failed: 1
// of 3 VMs failed (web1: ...)". Untrusted names are quoted and shortened.
std::string EventSummary(const NotifyEvent& event);

// The webhook's JSON body (see docs/appliance.md for its fields).
nlohmann::json WebhookBody(const NotifyEvent& event);

// "sha256=" + lower-case hex HMAC-SHA256(secret, timestamp "." body).
std::string WebhookSignature(std::string_view secret, int64_t timestamp,
                             std::string_view body);
// Lower-case hex HMAC-SHA256 of `data` under `key`.
std::string HmacSha256Hex(std::string_view key, std::string_view data);

// An e-mail ready for SMTP: the header fields and a plain-text body.
struct MailMessage {
  std::string from;             // "haven@example.org"
  std::vector<std::string> to;  // addresses
  std::string subject;
  std::string body;  // UTF-8 text, '\n' line ends
};

// Subject "[haven] backup job 42 failed (repository main)" and the text of
// an event's mail.
MailMessage EventMail(const NotifyEvent& event, const std::string& from,
                      const std::vector<std::string>& to);

// OK for a bare address "local@domain" (printable ASCII, no spaces, no
// <>()"',;\ or control bytes): addresses go into SMTP commands and headers.
Status ValidateMailAddress(std::string_view address);

// The message as sent: Date, Message-ID, From, To, Subject, MIME-Version,
// Content-Type text/plain UTF-8, quoted-printable body, CRLF line ends.
// Header values are stripped of control bytes and non-ASCII (replaced by
// '?'), so untrusted text cannot add a header. `now` is Unix seconds;
// `unique` makes the Message-ID (random hex from the caller).
std::string FormatMail(const MailMessage& mail, int64_t now,
                       std::string_view unique, std::string_view host);

// RFC 5322 date-time in UTC: "Mon, 07 Dec 2026 04:20:00 +0000".
std::string MailDate(int64_t unix_seconds);
// Quoted-printable (RFC 2045) of UTF-8 text with '\n' line ends: CRLF
// line ends, lines of at most 76 characters, '=' and bytes outside
// printable ASCII escaped, trailing space escaped.
std::string QuotedPrintable(std::string_view text);

// Untrusted text (VM names, errors from guests) for a notification: bytes
// below 0x20 and 0x7f become '?', and it is cut at `max` bytes (then "..."),
// so it cannot forge lines.
std::string CleanText(std::string_view text, size_t max = 200);

// An item that did not fail: "ok", or "skipped" on purpose (excluded).
inline bool ItemOk(const JobItem& item) {
  return item.outcome == "ok" || item.outcome == "skipped";
}

// "45s", "12m 03s", "2h 05m 00s".
std::string HumanDuration(double seconds);

// `n` random bytes as lower-case hex (OpenSSL's RAND_bytes).
std::string RandomHex(size_t n);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_NOTIFY_MESSAGE_H_
