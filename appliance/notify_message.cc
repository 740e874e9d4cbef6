#include "appliance/notify_message.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdio>
#include <ctime>

#include "base/bytes.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

std::string Clean(std::string_view text, size_t max = 200) {
  return CleanText(text, max);
}

std::string IsoUtc(int64_t unix_seconds) {
  return FormatTime(unix_seconds * 1000000000, TimeStyle::kRfc3339Utc);
}

}  // namespace

std::string HumanDuration(double seconds) {
  auto s = static_cast<int64_t>(seconds + 0.5);
  char buf[48];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh %02lldm %02llds",
                  static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60),
                  static_cast<long long>(s % 60));
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%lldm %02llds",
                  static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  return buf;
}

namespace {

std::string Duration(double seconds) { return HumanDuration(seconds); }

std::string Capitalized(std::string text) {
  if (!text.empty() && text[0] >= 'a' && text[0] <= 'z') text[0] -= 32;
  return text;
}

size_t FailedItems(const JobOutcome& o) {
  size_t n = 0;
  for (const JobItem& item : o.items) n += !ItemOk(item);
  return n;
}

std::string JobSummary(const JobRecord& job) {
  std::string text =
      Capitalized(Clean(job.spec.kind, 40)) + " job " + std::to_string(job.id);
  if (!job.spec.repository.empty())
    text += " (repository " + Clean(job.spec.repository, 64) + ")";
  text += " " + std::string(JobStateName(job.state));
  if (job.duration_seconds > 0)
    text += " after " + Duration(job.duration_seconds);
  if (!job.outcome.error.empty()) text += ": " + Clean(job.outcome.error);
  text += ".";
  const auto& items = job.outcome.items;
  if (size_t failed = FailedItems(job.outcome); failed > 0) {
    text += " Failed VMs (" + std::to_string(failed) + " of " +
            std::to_string(items.size()) + "):";
    size_t shown = 0;
    for (const JobItem& item : items) {
      if (ItemOk(item)) continue;
      if (++shown > 5) {
        text += " ...";
        break;
      }
      text += " " + QuoteUntrusted(item.name) + " (" + Clean(item.outcome, 20);
      if (!item.error.empty()) text += ": " + Clean(item.error, 120);
      text += ")";
    }
    text += ".";
  } else if (!items.empty()) {
    text += " " + std::to_string(items.size()) + " VMs ok.";
  }
  return text;
}

std::string OverdueSummary(const OverdueVm& o) {
  std::string text =
      "VM " + QuoteUntrusted(o.vm) +
      " has no successful backup into repository " + Clean(o.repository, 64) +
      " within the expected " +
      Duration(static_cast<double>(o.expected_interval_seconds)) +
      " of schedule " + QuoteUntrusted(o.schedule) + "; ";
  text += o.last_success
              ? "the last one was at " + IsoUtc(*o.last_success) + "."
              : "it has never been backed up.";
  return text;
}

nlohmann::json ItemJson(const JobItem& item) {
  return {{"name", item.name},           {"outcome", item.outcome},
          {"error", item.error},         {"read_bytes", item.read_bytes},
          {"new_bytes", item.new_bytes}, {"stored_bytes", item.stored_bytes}};
}

nlohmann::json JobJson(const JobRecord& job) {
  nlohmann::json items = nlohmann::json::array();
  for (const JobItem& item : job.outcome.items) items.push_back(ItemJson(item));
  return {{"id", job.id},
          {"kind", job.spec.kind},
          {"repository", job.spec.repository},
          {"state", JobStateName(job.state)},
          {"requested_by", job.spec.requested_by},
          {"queued_at", job.queued_at},
          {"started_at", job.started_at},
          {"ended_at", job.ended_at},
          {"duration_seconds", job.duration_seconds},
          {"error", job.outcome.error},
          {"read_bytes", job.outcome.read_bytes},
          {"new_bytes", job.outcome.new_bytes},
          {"stored_bytes", job.outcome.stored_bytes},
          {"items", items}};
}

}  // namespace

std::optional<NotifyEvent> JobEndEvent(const JobRecord& job, bool on_success,
                                       int64_t now, std::string appliance) {
  switch (job.state) {
    case JobState::kFailed:
    case JobState::kPartial:
    case JobState::kInterrupted:
      break;
    case JobState::kSucceeded:
      if (on_success) break;
      return std::nullopt;
    default:
      return std::nullopt;
  }
  NotifyEvent e;
  e.id = RandomHex(16);
  e.type = "job." + std::string(JobStateName(job.state));
  e.time = now;
  e.appliance = std::move(appliance);
  e.job = job;
  return e;
}

NotifyEvent OverdueEvent(const OverdueVm& vm, int64_t now,
                         std::string appliance) {
  NotifyEvent e;
  e.id = RandomHex(16);
  e.type = "vm.overdue";
  e.time = now;
  e.appliance = std::move(appliance);
  e.overdue = vm;
  return e;
}

std::string EventSummary(const NotifyEvent& event) {
  if (event.job) return JobSummary(*event.job);
  if (event.overdue) return OverdueSummary(*event.overdue);
  return Clean(event.type);
}

nlohmann::json WebhookBody(const NotifyEvent& event) {
  nlohmann::json body = {{"id", event.id},
                         {"event", event.type},
                         {"time", IsoUtc(event.time)},
                         {"appliance", event.appliance},
                         {"summary", EventSummary(event)}};
  if (event.job) body["job"] = JobJson(*event.job);
  if (event.overdue) {
    const OverdueVm& o = *event.overdue;
    body["vm"] = {{"name", o.vm},
                  {"repository", o.repository},
                  {"schedule", o.schedule},
                  {"last_success", o.last_success
                                       ? nlohmann::json(IsoUtc(*o.last_success))
                                       : nlohmann::json(nullptr)},
                  {"expected_interval_seconds", o.expected_interval_seconds},
                  {"overdue_since", IsoUtc(o.overdue_since)}};
  }
  return body;
}

std::string HmacSha256Hex(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac,
       &len);
  return HexEncode(ByteSpan(mac, len));
}

std::string WebhookSignature(std::string_view secret, int64_t timestamp,
                             std::string_view body) {
  std::string signed_bytes = std::to_string(timestamp) + ".";
  signed_bytes.append(body);
  return "sha256=" + HmacSha256Hex(secret, signed_bytes);
}

std::string CleanText(std::string_view text, size_t max) {
  std::string out;
  for (unsigned char c : text.substr(0, max))
    out += (c < 0x20 || c == 0x7f) ? '?' : static_cast<char>(c);
  if (text.size() > max) out += "...";
  return out;
}

std::string RandomHex(size_t n) {
  Bytes bytes(n);
  if (RAND_bytes(bytes.data(), static_cast<int>(n)) != 1) {
    // Not secret, only unique: fall back to the clock.
    auto t = static_cast<uint64_t>(MonotonicSeconds() * 1e9);
    for (size_t i = 0; i < n; ++i)
      bytes[i] = static_cast<uint8_t>(t >> (i % 8 * 8));
  }
  return HexEncode(ByteSpan(bytes.data(), bytes.size()));
}

}  // namespace haven::appliance
