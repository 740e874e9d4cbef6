// Notification settings an admin changes from the API (GET/PUT
// /api/v1/settings/notifications, routes_notify_settings.cc), taking effect
// without a restart.
//
// Where the settings come from: havend.conf's [Notify] until an admin
// saves settings through the API; from then on the saved ones, whole (a
// saved setting never mixes with the file's). They are kept in the state
// database:
//
//   notify_settings  id (always 1), settings (JSON: webhook_url,
//                    webhook_secret_file, smtp_url, smtp_from, smtp_to,
//                    smtp_user, smtp_password_file, daily_report,
//                    on_success), changed (seconds since the epoch),
//                    changed_by
//
// Secrets (the webhook's HMAC key, the SMTP password) are never in the
// database, in an answer or in a log: a secret given to the API is written
// to its own file in the state directory, mode 0600
// (kWebhookSecretFile, kSmtpPasswordFile), and the settings name the file.
// A secret the API is not given keeps the file it had (also a file that
// havend.conf named).
//
// The notifier in use lives in a NotifierHolder: NotifyMonitor asks it for
// the current Notifier at each use, so a PUT swaps it at once. A Notifier
// replaced while it still had deliveries queued drops them (logged).
//
// Thread-safe.
#ifndef HAVEN_APPLIANCE_NOTIFY_SETTINGS_H_
#define HAVEN_APPLIANCE_NOTIFY_SETTINGS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "appliance/config.h"
#include "appliance/notifier.h"
#include "appliance/state_db.h"

namespace haven::appliance {

inline constexpr char kWebhookSecretFile[] = "notify-webhook-secret";
inline constexpr char kSmtpPasswordFile[] = "notify-smtp-password";

// The Notifier in use (null: no channel set up) and the daily report's
// calendar event ("" : none), swapped as a pair.
class NotifierHolder {
 public:
  std::shared_ptr<Notifier> Get() const;
  std::string daily_report() const;
  void Set(std::shared_ptr<Notifier> notifier, std::string daily_report);

 private:
  mutable std::mutex mu_;
  std::shared_ptr<Notifier> notifier_;
  std::string daily_report_;
};

// The settings in effect, as GET shows them.
struct NotifySettingsView {
  NotifyConfig config;             // secret *_file fields name the files
  bool from_api = false;           // false: havend.conf's [Notify]
  std::optional<int64_t> changed;  // with from_api
  std::string changed_by;          // with from_api
  bool webhook_secret_set = false, smtp_password_set = false;
};

// A PUT: each field that is set replaces the current value; the others
// stay. A secret set to "" is removed.
struct NotifySettingsUpdate {
  std::optional<std::string> webhook_url, webhook_secret;
  std::optional<std::string> smtp_url, smtp_from, smtp_user, smtp_password;
  std::optional<std::vector<std::string>> smtp_to;
  std::optional<std::string> daily_report;
  std::optional<bool> on_success;
};

// One channel's answer to a test notification.
struct NotifyTestResult {
  std::string channel;   // "webhook" or "mail"
  std::string receiver;  // "host:port" (never the URL's path or user)
  bool sent = false;
  std::string error;  // in words, when not sent
};

class NotifySettings {
 public:
  // Makes the table when missing and the notifier of the settings in
  // effect. `from_config` is havend.conf's [Notify]; `state_dir` holds the
  // secret files; `appliance` is this host's name for the messages.
  // Saved settings that no longer make a notifier (a secret file gone) are
  // logged and leave notifications off; havend.conf's that do not fail here
  // as they would at start.
  static Result<std::unique_ptr<NotifySettings>> Open(
      StateDb& db, NotifyConfig from_config, std::string state_dir,
      std::string appliance, std::function<void(const std::string&)> log);

  Result<NotifySettingsView> Get();
  // Checks the result (InvalidArgument naming the field, never a secret's
  // value), writes the secrets given, saves, and swaps the notifier.
  Status Update(const NotifySettingsUpdate& update, std::string_view by);
  // Sends a test notification through each channel of the settings in
  // effect, now, once, and waits for the answers (at most about 20 s
  // each). FailedPrecondition when no channel is set up.
  Result<std::vector<NotifyTestResult>> SendTest(std::string_view by);

  NotifierHolder& holder() { return holder_; }

 private:
  NotifySettings(StateDb& db, NotifyConfig from_config, std::string state_dir,
                 std::string appliance,
                 std::function<void(const std::string&)> log);
  Result<NotifySettingsView> Current();
  Result<NotifierOptions> OptionsOf(const NotifyConfig& config) const;
  void Log(const std::string& line) const {
    if (log_) log_(line);
  }

  StateDb& db_;
  const NotifyConfig from_config_;
  const std::string state_dir_, appliance_;
  std::function<void(const std::string&)> log_;
  std::mutex update_mu_;  // one Update at a time (files, row, swap)
  NotifierHolder holder_;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_NOTIFY_SETTINGS_H_
