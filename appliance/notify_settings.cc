#include "appliance/notify_settings.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <ctime>
#include <nlohmann/json.hpp>

#include "appliance/notify_curl.h"
#include "appliance/notify_message.h"
#include "base/bytes.h"
#include "base/calendar.h"
#include "base/file.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

using json = nlohmann::json;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS notify_settings (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  settings TEXT NOT NULL,
  changed INTEGER NOT NULL,
  changed_by TEXT NOT NULL);
)sql";

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

json ToJson(const NotifyConfig& c) {
  return {{"webhook_url", c.webhook_url},
          {"webhook_secret_file", c.webhook_secret_file},
          {"smtp_url", c.smtp_url},
          {"smtp_from", c.smtp_from},
          {"smtp_to", c.smtp_to},
          {"smtp_user", c.smtp_user},
          {"smtp_password_file", c.smtp_password_file},
          {"daily_report", c.daily_report},
          {"on_success", c.on_success}};
}

NotifyConfig FromJson(const json& j) {
  NotifyConfig c;
  c.webhook_url = j.value("webhook_url", "");
  c.webhook_secret_file = j.value("webhook_secret_file", "");
  c.smtp_url = j.value("smtp_url", "");
  c.smtp_from = j.value("smtp_from", "");
  c.smtp_to = j.value("smtp_to", std::vector<std::string>());
  c.smtp_user = j.value("smtp_user", "");
  c.smtp_password_file = j.value("smtp_password_file", "");
  c.daily_report = j.value("daily_report", "");
  c.on_success = j.value("on_success", false);
  return c;
}

// What NotifierOptionsFromConfig checks, without reading the secret files
// (a secret being replaced is not written until the rest is known good).
Status Validate(const NotifyConfig& c, bool smtp_password_set) {
  if (!c.webhook_url.empty()) {
    std::string scheme = UrlScheme(c.webhook_url);
    if (scheme != "http" && scheme != "https")
      return InvalidArgument("webhook_url must be an http:// or https:// URL");
  }
  if (!c.smtp_url.empty()) {
    std::string scheme = UrlScheme(c.smtp_url);
    if (scheme != "smtp" && scheme != "smtps")
      return InvalidArgument(
          "smtp_url must be an smtp:// or smtps:// URL, e.g. "
          "smtp://mail.example.org:587");
    HAVEN_RETURN_IF_ERROR(
        ValidateMailAddress(c.smtp_from).WithContext("smtp_from"));
    if (c.smtp_to.empty())
      return InvalidArgument("smtp_to: give at least one address to mail");
    for (const std::string& to : c.smtp_to)
      HAVEN_RETURN_IF_ERROR(ValidateMailAddress(to).WithContext("smtp_to"));
    if (!c.smtp_user.empty() && !smtp_password_set)
      return InvalidArgument("smtp_user needs smtp_password");
  }
  if (!c.daily_report.empty()) {
    auto event = ParseCalendar(c.daily_report);
    if (!event.ok())
      return InvalidArgument("daily_report: " + event.status().message());
  }
  return OkStatus();
}

Status CheckSecret(const std::string& value, std::string_view field) {
  if (value.find_first_of("\r\n") != std::string::npos)
    return InvalidArgument(std::string(field) + " must be one line");
  if (value.size() > 4096)
    return InvalidArgument(std::string(field) + " is longer than 4096 bytes");
  return OkStatus();
}

}  // namespace

std::shared_ptr<Notifier> NotifierHolder::Get() const {
  std::lock_guard lock(mu_);
  return notifier_;
}

std::string NotifierHolder::daily_report() const {
  std::lock_guard lock(mu_);
  return daily_report_;
}

void NotifierHolder::Set(std::shared_ptr<Notifier> notifier,
                         std::string daily_report) {
  std::shared_ptr<Notifier> old;
  {
    std::lock_guard lock(mu_);
    old = std::move(notifier_);
    notifier_ = std::move(notifier);
    daily_report_ = std::move(daily_report);
  }
  // `old` stops its channels here, outside the lock, unless a caller still
  // holds it for a send in progress (then when that ends).
}

NotifySettings::NotifySettings(StateDb& db, NotifyConfig from_config,
                               std::string state_dir, std::string appliance,
                               std::function<void(const std::string&)> log)
    : db_(db),
      from_config_(std::move(from_config)),
      state_dir_(std::move(state_dir)),
      appliance_(std::move(appliance)),
      log_(std::move(log)) {}

Result<std::unique_ptr<NotifySettings>> NotifySettings::Open(
    StateDb& db, NotifyConfig from_config, std::string state_dir,
    std::string appliance, std::function<void(const std::string&)> log) {
  HAVEN_RETURN_IF_ERROR(db.EnsureTable(kSchema));
  std::unique_ptr<NotifySettings> s(
      new NotifySettings(db, std::move(from_config), std::move(state_dir),
                         std::move(appliance), std::move(log)));
  HAVEN_ASSIGN_OR_RETURN(NotifySettingsView now, s->Current());
  if (!now.from_api && !now.config.daily_report.empty()) {
    auto event = ParseCalendar(now.config.daily_report);
    if (!event.ok()) return event.status().WithContext("notify daily_report");
  }
  auto options = s->OptionsOf(now.config);
  if (!options.ok()) {
    if (!now.from_api) return options.status();
    s->Log(
        "notifications are off: the settings saved through the API do "
        "not work: " +
        options.status().message());
    return s;
  }
  std::shared_ptr<Notifier> notifier;
  if (!options->webhook_url.empty() || !options->smtp_url.empty())
    notifier = std::make_shared<Notifier>(std::move(options.value()));
  s->holder_.Set(std::move(notifier), now.config.daily_report);
  return s;
}

Result<NotifierOptions> NotifySettings::OptionsOf(
    const NotifyConfig& config) const {
  HAVEN_ASSIGN_OR_RETURN(NotifierOptions o,
                         NotifierOptionsFromConfig(config, appliance_));
  o.log = log_;
  return o;
}

Result<NotifySettingsView> NotifySettings::Current() {
  NotifySettingsView v;
  HAVEN_ASSIGN_OR_RETURN(
      auto row, db_.QueryOne("SELECT settings, changed, changed_by FROM"
                             " notify_settings WHERE id = 1"));
  if (row) {
    json j = json::parse(row->Text(0), nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return DataLoss("the saved notification settings in " + db_.path() +
                      " are not JSON; save them again");
    v.config = FromJson(j);
    v.from_api = true;
    v.changed = row->Int(1);
    v.changed_by = row->Text(2);
  } else {
    v.config = from_config_;
  }
  v.webhook_secret_set = !v.config.webhook_secret_file.empty();
  v.smtp_password_set = !v.config.smtp_password_file.empty();
  return v;
}

Result<NotifySettingsView> NotifySettings::Get() {
  std::lock_guard lock(update_mu_);
  return Current();
}

Status NotifySettings::Update(const NotifySettingsUpdate& u,
                              std::string_view by) {
  std::lock_guard lock(update_mu_);
  HAVEN_ASSIGN_OR_RETURN(NotifySettingsView now, Current());
  NotifyConfig c = now.config;
  auto set = [](std::string& field, const std::optional<std::string>& v) {
    if (v) field = *v;
  };
  set(c.webhook_url, u.webhook_url);
  set(c.smtp_url, u.smtp_url);
  set(c.smtp_from, u.smtp_from);
  set(c.smtp_user, u.smtp_user);
  set(c.daily_report, u.daily_report);
  if (u.smtp_to) c.smtp_to = *u.smtp_to;
  if (u.on_success) c.on_success = *u.on_success;
  if (u.webhook_secret)
    HAVEN_RETURN_IF_ERROR(CheckSecret(*u.webhook_secret, "webhook_secret"));
  if (u.smtp_password)
    HAVEN_RETURN_IF_ERROR(CheckSecret(*u.smtp_password, "smtp_password"));
  bool password_set = u.smtp_password ? !u.smtp_password->empty()
                                      : !c.smtp_password_file.empty();
  HAVEN_RETURN_IF_ERROR(Validate(c, password_set));

  // The secrets, each to its own file (0600, written whole or not at all).
  struct Secret {
    const std::optional<std::string>& value;
    std::string& file_field;
    const char* name;
  };
  for (Secret s :
       {Secret{u.webhook_secret, c.webhook_secret_file, kWebhookSecretFile},
        Secret{u.smtp_password, c.smtp_password_file, kSmtpPasswordFile}}) {
    if (!s.value) continue;
    std::string path = state_dir_ + "/" + s.name;
    if (s.value->empty()) {
      s.file_field.clear();
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        return ErrnoStatus("removing " + path, errno);
      continue;
    }
    HAVEN_RETURN_IF_ERROR(
        WriteFileAtomic(path, AsBytes(*s.value + "\n"), 0600));
    s.file_field = path;
  }
  // The notifier before the row: settings that cannot make one (a secret
  // file unreadable) are refused, not saved.
  HAVEN_ASSIGN_OR_RETURN(NotifierOptions options, OptionsOf(c));
  HAVEN_RETURN_IF_ERROR(
      db_.Query("INSERT INTO notify_settings (id, settings, changed,"
                " changed_by) VALUES (1, ?1, ?2, ?3) ON CONFLICT(id) DO UPDATE"
                " SET settings = ?1, changed = ?2, changed_by = ?3",
                {ToJson(c).dump(), Now(), std::string(by)})
          .status());
  std::shared_ptr<Notifier> notifier;
  if (!options.webhook_url.empty() || !options.smtp_url.empty())
    notifier = std::make_shared<Notifier>(std::move(options));
  holder_.Set(std::move(notifier), c.daily_report);
  Log("notification settings changed by " + std::string(by) + ": webhook " +
      (c.webhook_url.empty() ? "off" : "to " + ReceiverHost(c.webhook_url)) +
      ", mail " +
      (c.smtp_url.empty() ? "off" : "via " + ReceiverHost(c.smtp_url)));
  return OkStatus();
}

Result<std::vector<NotifyTestResult>> NotifySettings::SendTest(
    std::string_view by) {
  HAVEN_ASSIGN_OR_RETURN(NotifySettingsView now, Get());
  HAVEN_ASSIGN_OR_RETURN(NotifierOptions o, OptionsOf(now.config));
  if (o.webhook_url.empty() && o.smtp_url.empty())
    return FailedPrecondition(
        "there is nowhere to send a test: set a webhook URL or an SMTP "
        "server first, and save");
  // One attempt each, sooner given up than a real delivery's.
  o.connect_timeout_seconds = 10;
  o.timeout_seconds = 20;
  int64_t time = Now();
  std::string summary = "Test notification from havend on " + o.appliance +
                        ", sent by " + std::string(by) +
                        ". Notifications reach you.";
  std::atomic<bool> stop{false};
  std::vector<NotifyTestResult> out;
  if (!o.webhook_url.empty()) {
    json body = {
        {"id", RandomHex(16)},
        {"event", "test"},
        {"time", FormatTime(time * 1000000000, TimeStyle::kRfc3339Utc)},
        {"appliance", o.appliance},
        {"summary", summary}};
    Attempt a = PostWebhook(o, "test", body.dump(), stop);
    out.push_back({"webhook", ReceiverHost(o.webhook_url),
                   a.result == Attempt::kSent, a.error});
  }
  if (!o.smtp_url.empty()) {
    MailMessage mail;
    mail.from = o.smtp_from;
    mail.to = o.smtp_to;
    mail.subject = "[haven] test notification from " + o.appliance;
    mail.body = summary + "\n";
    std::string text = FormatMail(mail, time, RandomHex(16), o.appliance);
    Attempt a = SendSmtp(o, mail.to, mail.from, text, stop);
    out.push_back({"mail", ReceiverHost(o.smtp_url), a.result == Attempt::kSent,
                   a.error});
  }
  for (const NotifyTestResult& r : out)
    Log("test notification by " + std::string(by) + " via " + r.channel + " " +
        r.receiver + ": " + (r.sent ? "sent" : "failed: " + r.error));
  return out;
}

}  // namespace haven::appliance
