#include "appliance/notifier.h"

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <mutex>
#include <thread>

#include "appliance/notify_curl.h"
#include "appliance/repositories.h"
#include "base/time.h"

namespace haven::appliance {

// One channel's queue and the thread that works through it.
class Notifier::Channel {
 public:
  // An attempt to deliver one thing; `what` names it in the log.
  struct Delivery {
    std::string what;
    std::function<Attempt(const std::atomic<bool>& stop)> send;
    size_t attempts = 0;
    double due = 0;  // MonotonicSeconds
  };

  Channel(std::string name, const NotifierOptions& options)
      : name_(std::move(name)), options_(options) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Channel() {
    size_t dropped;
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      dropped = queue_.size();
    }
    cv_.notify_all();
    thread_.join();
    if (dropped > 0)
      Log(std::to_string(dropped) + " undelivered at stop, dropped");
  }

  void Add(Delivery d) {
    {
      std::lock_guard lock(mu_);
      if (queue_.size() >= options_.max_queue) {
        ++counts_.given_up;
        Log(d.what + ": queue full (" + std::to_string(queue_.size()) +
            "), dropped");
        return;
      }
      d.due = MonotonicSeconds();
      queue_.push_back(std::move(d));
    }
    cv_.notify_all();
  }

  bool WaitIdle(double timeout) {
    std::unique_lock lock(mu_);
    return idle_cv_.wait_for(lock, std::chrono::duration<double>(timeout),
                             [this] { return queue_.empty() && !busy_; });
  }

  Counts counts() const {
    std::lock_guard lock(mu_);
    return counts_;
  }

 private:
  void Log(const std::string& line) const {
    if (options_.log) options_.log("notify " + name_ + ": " + line);
  }

  // The first delivery that is due, in the order they came; or the time
  // to wait for the next one.
  void Run() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      auto next = queue_.end();
      for (auto it = queue_.begin(); it != queue_.end(); ++it)
        if (next == queue_.end() || it->due < next->due) next = it;
      if (next == queue_.end()) {
        idle_cv_.notify_all();
        cv_.wait(lock);
        continue;
      }
      double wait = next->due - MonotonicSeconds();
      if (wait > 0) {
        cv_.wait_for(lock, std::chrono::duration<double>(wait));
        continue;
      }
      Delivery d = std::move(*next);
      queue_.erase(next);
      busy_ = true;
      lock.unlock();
      Attempt a = d.send(stopping_);
      lock.lock();
      busy_ = false;
      Finish(std::move(d), a);
    }
    idle_cv_.notify_all();
  }

  // Called with mu_ held.
  void Finish(Delivery d, const Attempt& a) {
    ++d.attempts;
    if (a.result == Attempt::kSent) {
      ++counts_.sent;
      if (d.attempts > 1)
        Log(d.what + ": delivered at attempt " + std::to_string(d.attempts));
      return;
    }
    if (stop_) {
      ++counts_.given_up;
      Log(d.what + ": attempt " + std::to_string(d.attempts) +
          " aborted at stop, dropped");
      return;
    }
    std::string failed = d.what + ": attempt " + std::to_string(d.attempts) +
                         " failed: " + a.error;
    if (a.result == Attempt::kFinal ||
        d.attempts > options_.retry_delays.size()) {
      ++counts_.given_up;
      Log(failed + "; given up");
      return;
    }
    double delay = options_.retry_delays[d.attempts - 1];
    ++counts_.retried;
    char in[32];
    std::snprintf(in, sizeof in, "%g", delay);
    Log(failed + "; next attempt in " + in + " s");
    d.due = MonotonicSeconds() + delay;
    queue_.push_back(std::move(d));
  }

  const std::string name_;
  const NotifierOptions& options_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<Delivery> queue_;
  bool stop_ = false, busy_ = false;
  Counts counts_;
  std::thread thread_;

 public:
  // Set by ~Notifier before the channels go, so a transfer in flight is
  // aborted instead of running to its timeout.
  std::atomic<bool> stopping_{false};
};

Result<NotifierOptions> NotifierOptionsFromConfig(const NotifyConfig& c,
                                                  std::string appliance) {
  NotifierOptions o;
  o.appliance = std::move(appliance);
  o.on_success = c.on_success;
  if (!c.webhook_url.empty()) {
    std::string scheme = UrlScheme(c.webhook_url);
    if (scheme != "http" && scheme != "https")
      return InvalidArgument(
          "notify webhook_url must be an http:// or https:// URL");
    o.webhook_url = c.webhook_url;
    if (!c.webhook_secret_file.empty()) {
      HAVEN_ASSIGN_OR_RETURN(o.webhook_secret,
                             ReadSecretFile(c.webhook_secret_file));
      if (o.webhook_secret.empty())
        return InvalidArgument("notify webhook_secret_file " +
                               c.webhook_secret_file + " is empty");
    }
  }
  if (!c.smtp_url.empty()) {
    std::string scheme = UrlScheme(c.smtp_url);
    if (scheme != "smtp" && scheme != "smtps")
      return InvalidArgument(
          "notify smtp_url must be an smtp:// or smtps:// URL");
    HAVEN_RETURN_IF_ERROR(
        ValidateMailAddress(c.smtp_from).WithContext("notify smtp_from"));
    if (c.smtp_to.empty())
      return InvalidArgument("notify smtp_to: no recipient for smtp_url");
    for (const std::string& to : c.smtp_to)
      HAVEN_RETURN_IF_ERROR(
          ValidateMailAddress(to).WithContext("notify smtp_to"));
    o.smtp_url = c.smtp_url;
    o.smtp_from = c.smtp_from;
    o.smtp_to = c.smtp_to;
    o.smtp_user = c.smtp_user;
    if (!c.smtp_user.empty()) {
      if (c.smtp_password_file.empty())
        return InvalidArgument("notify smtp_user needs smtp_password_file");
      HAVEN_ASSIGN_OR_RETURN(o.smtp_password,
                             ReadSecretFile(c.smtp_password_file));
    }
  }
  return o;
}

Notifier::Notifier(NotifierOptions options) : options_(std::move(options)) {
  if (!options_.webhook_url.empty())
    webhook_ = std::make_unique<Channel>(
        "webhook " + ReceiverHost(options_.webhook_url), options_);
  if (!options_.smtp_url.empty())
    mail_ = std::make_unique<Channel>("mail " + ReceiverHost(options_.smtp_url),
                                      options_);
}

Notifier::~Notifier() {
  for (Channel* c : {webhook_.get(), mail_.get()})
    if (c) c->stopping_ = true;
  webhook_.reset();
  mail_.reset();
}

void Notifier::Notify(const NotifyEvent& event) {
  std::string what = event.type + " " + event.id.substr(0, 8);
  if (webhook_) {
    auto body = std::make_shared<std::string>(WebhookBody(event).dump());
    webhook_->Add({what, [this, type = event.type, body](const auto& stop) {
                     return PostWebhook(options_, type, *body, stop);
                   }});
  }
  if (mail_) SendMail(EventMail(event, options_.smtp_from, options_.smtp_to));
}

void Notifier::NotifyJobEnd(const JobRecord& job) {
  auto event =
      JobEndEvent(job, options_.on_success,
                  static_cast<int64_t>(std::time(nullptr)), options_.appliance);
  if (event) Notify(*event);
}

void Notifier::SendMail(MailMessage mail) {
  if (!mail_) return;
  if (mail.from.empty()) mail.from = options_.smtp_from;
  if (mail.to.empty()) mail.to = options_.smtp_to;
  auto text = std::make_shared<std::string>(
      FormatMail(mail, static_cast<int64_t>(std::time(nullptr)), RandomHex(12),
                 options_.appliance.empty() ? "haven" : options_.appliance));
  std::string what = "mail \"" + CleanText(mail.subject, 60) + "\"";
  mail_->Add(
      {what, [this, text, to = mail.to, from = mail.from](const auto& stop) {
         return SendSmtp(options_, to, from, *text, stop);
       }});
}

Notifier::Counts Notifier::counts() const {
  Counts all;
  for (const Channel* c : {webhook_.get(), mail_.get()}) {
    if (!c) continue;
    Counts n = c->counts();
    all.sent += n.sent;
    all.retried += n.retried;
    all.given_up += n.given_up;
  }
  return all;
}

bool Notifier::WaitIdle(double timeout_seconds) {
  double end = MonotonicSeconds() + timeout_seconds;
  for (Channel* c : {webhook_.get(), mail_.get()})
    if (c && !c->WaitIdle(std::max(0.0, end - MonotonicSeconds())))
      return false;
  return true;
}

}  // namespace haven::appliance
