// The e-mail half of notify_message.h: the text of an event's mail and the
// RFC 5322 message it is sent as.
#include <cstdio>
#include <ctime>

#include "appliance/notify_message.h"
#include "base/bytes.h"
#include "base/time.h"

namespace haven::appliance {
namespace {

std::string IsoUtc(int64_t unix_seconds) {
  return FormatTime(unix_seconds * 1000000000, TimeStyle::kRfc3339Utc);
}

// A header field's value: printable ASCII only, so untrusted text can
// neither end the field nor start another.
std::string HeaderValue(std::string_view text, size_t max = 200) {
  std::string out;
  for (unsigned char c : text.substr(0, max))
    out += (c < 0x20 || c >= 0x7f) ? '?' : static_cast<char>(c);
  return out;
}

void Row(std::string& out, std::string_view name, std::string_view value) {
  if (value.empty()) return;
  out += std::string(name) + ":";
  out.append(name.size() < 14 ? 14 - name.size() : 1, ' ');
  out += std::string(value) + "\n";
}

std::string JobText(const JobRecord& job) {
  std::string out;
  Row(out, "Job",
      std::to_string(job.id) + " (" + CleanText(job.spec.kind, 40) + ")");
  Row(out, "Repository", CleanText(job.spec.repository, 64));
  Row(out, "State", JobStateName(job.state));
  Row(out, "Requested by", CleanText(job.spec.requested_by, 80));
  Row(out, "Queued", job.queued_at);
  Row(out, "Started", job.started_at);
  Row(out, "Ended", job.ended_at);
  if (job.duration_seconds > 0)
    Row(out, "Duration", HumanDuration(job.duration_seconds));
  Row(out, "Error", CleanText(job.outcome.error, 1000));
  const JobOutcome& o = job.outcome;
  if (o.read_bytes || o.new_bytes || o.stored_bytes)
    Row(out, "Data",
        "read " + HumanBytes(o.read_bytes) + ", new " +
            HumanBytes(o.new_bytes) + ", stored " + HumanBytes(o.stored_bytes));
  if (!o.items.empty()) {
    out += "\nVMs:\n";
    for (const JobItem& item : o.items) {
      char head[64];
      std::snprintf(head, sizeof head, "  %-10s ",
                    CleanText(item.outcome, 10).c_str());
      out += head + CleanText(item.name, 120);
      if (ItemOk(item))
        out += "  read " + HumanBytes(item.read_bytes) + ", new " +
               HumanBytes(item.new_bytes) + ", stored " +
               HumanBytes(item.stored_bytes);
      out += "\n";
      if (!item.error.empty())
        out += "               " + CleanText(item.error, 1000) + "\n";
    }
  }
  return out;
}

std::string OverdueText(const OverdueVm& o) {
  std::string out;
  Row(out, "VM", CleanText(o.vm, 120));
  Row(out, "Repository", CleanText(o.repository, 64));
  Row(out, "Schedule", CleanText(o.schedule, 120));
  Row(out, "Last success", o.last_success ? IsoUtc(*o.last_success) : "never");
  Row(out, "Expected",
      "every " +
          HumanDuration(static_cast<double>(o.expected_interval_seconds)));
  Row(out, "Overdue since", IsoUtc(o.overdue_since));
  return out;
}

std::string Subject(const NotifyEvent& e) {
  if (e.job) {
    std::string s = "[haven] " + CleanText(e.job->spec.kind, 40) + " job " +
                    std::to_string(e.job->id) + " " +
                    std::string(JobStateName(e.job->state));
    if (!e.job->spec.repository.empty())
      s += " (repository " + CleanText(e.job->spec.repository, 64) + ")";
    return s;
  }
  if (e.overdue)
    return "[haven] VM " + CleanText(e.overdue->vm, 80) +
           " overdue: no successful backup since " +
           (e.overdue->last_success ? IsoUtc(*e.overdue->last_success)
                                    : std::string("ever"));
  return "[haven] " + CleanText(e.type, 80);
}

}  // namespace

MailMessage EventMail(const NotifyEvent& event, const std::string& from,
                      const std::vector<std::string>& to) {
  MailMessage m;
  m.from = from;
  m.to = to;
  m.subject = Subject(event);
  m.body = EventSummary(event) + "\n\n";
  if (event.job) m.body += JobText(*event.job);
  if (event.overdue) m.body += OverdueText(*event.overdue);
  m.body += "\n-- \nhavend on " + CleanText(event.appliance, 80) + ", event " +
            event.id + " at " + IsoUtc(event.time) + "\n";
  return m;
}

Status ValidateMailAddress(std::string_view address) {
  size_t at = address.find('@');
  bool ok = !address.empty() && address.size() <= 254 &&
            at != std::string_view::npos && at > 0 && at + 1 < address.size() &&
            address.find('@', at + 1) == std::string_view::npos;
  for (unsigned char c : address)
    if (c <= 0x20 || c >= 0x7f ||
        std::string_view("<>()\"',;\\[]").find(static_cast<char>(c)) !=
            std::string_view::npos)
      ok = false;
  if (!ok)
    return InvalidArgument(
        "not a mail address (local@domain, printable ASCII): " +
        QuoteUntrusted(address));
  return OkStatus();
}

std::string MailDate(int64_t unix_seconds) {
  static const char* const kDays[] = {"Sun", "Mon", "Tue", "Wed",
                                      "Thu", "Fri", "Sat"};
  static const char* const kMonths[] = {"Jan", "Feb", "Mar", "Apr",
                                        "May", "Jun", "Jul", "Aug",
                                        "Sep", "Oct", "Nov", "Dec"};
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000",
                kDays[tm.tm_wday], tm.tm_mday, kMonths[tm.tm_mon],
                tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::string QuotedPrintable(std::string_view text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out, line;
  auto flush = [&](bool hard) {
    out += line;
    out += hard ? "\r\n" : "=\r\n";
    line.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      // Trailing white space would be dropped in transit: escape it.
      if (!line.empty() && (line.back() == ' ' || line.back() == '\t')) {
        char last = line.back();
        line.pop_back();
        line += std::string("=") + kHex[last >> 4] + kHex[last & 15];
      }
      flush(true);
      continue;
    }
    std::string enc;
    if ((c >= 33 && c <= 126 && c != '=') || c == ' ' || c == '\t')
      enc = std::string(1, static_cast<char>(c));
    else
      enc = std::string("=") + kHex[c >> 4] + kHex[c & 15];
    // A soft break leaves room for its '=' within 76 characters.
    if (line.size() + enc.size() > 75) flush(false);
    line += enc;
  }
  if (!line.empty()) flush(true);
  return out;
}

std::string FormatMail(const MailMessage& mail, int64_t now,
                       std::string_view unique, std::string_view host) {
  std::string to;
  for (const std::string& addr : mail.to)
    to += (to.empty() ? "" : ", ") + HeaderValue(addr, 254);
  std::string out;
  out += "Date: " + MailDate(now) + "\r\n";
  out += "Message-ID: <" + HeaderValue(unique, 64) + "." + std::to_string(now) +
         "@" + HeaderValue(host, 200) + ">\r\n";
  out += "From: " + HeaderValue(mail.from, 254) + "\r\n";
  out += "To: " + to + "\r\n";
  out += "Subject: " + HeaderValue(mail.subject, 400) + "\r\n";
  out += "MIME-Version: 1.0\r\n";
  out += "Content-Type: text/plain; charset=utf-8\r\n";
  out += "Content-Transfer-Encoding: quoted-printable\r\n";
  out += "Auto-Submitted: auto-generated\r\n";
  out += "\r\n";
  out += QuotedPrintable(mail.body);
  return out;
}

}  // namespace haven::appliance
