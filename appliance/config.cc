// havend.conf: systemd-style "[Section]" headers and "Key=Value" lines.
//
//   # comment            (also "; comment"); blank lines are skipped
//   [Server]             Listen= StateDirectory= Certificate= Key= Threads=
//                        MaxBodySize= ConsoleDirectory=
//   [Repository NAME]    Path= PasswordFile=        (one section per
//   repository) [Libvirt]            URI= [Jobs]               MaxJobs=
//   MaxJobsPerRepository= [Notify]             WebhookURL= WebhookSecretFile=
//   SMTPURL= SMTPUser=
//                        SMTPPasswordFile= From= To= OnSuccess= DailyReport=
//
// Whitespace around keys and values is dropped; values are taken as they
// are (no quotes, no escapes, no line continuation). Every key may appear
// once per section except To=, which adds addresses. Anything else — an
// unknown section or key, a key set twice, a relative path — is an error:
// a typo must not silently leave a default in force.
#include "appliance/config.h"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <functional>
#include <map>

#include "appliance/config_values.h"
#include "appliance/https_server.h"
#include "base/calendar.h"
#include "base/file.h"
#include "repository/s3/s3_client.h"

namespace haven::appliance {
namespace {

using config_internal::Bad;
using config_internal::Line;
using config_internal::SetBool;
using config_internal::SetNumber;
using config_internal::SetPath;
using config_internal::SetSecretPath;
using config_internal::Setter;
using config_internal::SetUrl;
using config_internal::Trim;
using config_internal::ValidName;

constexpr size_t kMaxConfigBytes = 1 << 20;

class Parser {
 public:
  Parser(std::string_view file) : file_(file) {}
  Result<ApplianceConfig> Run(std::string_view text);

 private:
  Status Section(std::string_view header, int line);
  Status Assign(std::string_view key, std::string_view value, int line);
  Status Finish();
  std::string At(int line) const {
    return file_ + ":" + std::to_string(line) + ": ";
  }
  std::map<std::string, Setter> KeysOf(const std::string& section);

  std::string file_;
  ApplianceConfig c_;
  std::string section_;       // "" before the first header
  std::string section_name_;  // "[Repository NAME]" as written
  RepositoryConfig* repo_ = nullptr;
  std::map<std::string, int> seen_;  // "section\nkey" -> line
  std::map<std::string, int> repo_lines_;
  bool to_cleared_ = false;
};

std::map<std::string, Setter> Parser::KeysOf(const std::string& section) {
  ApplianceConfig& c = c_;
  NotifyConfig& n = c_.notify;
  if (section == "Server")
    return {
        {"Listen",
         [&c](const Line& l) {
           auto a = ParseListenAddress(l.value);
           if (!a.ok()) return Bad(l, a.status().message());
           c.listen = std::string(l.value);
           return OkStatus();
         }},
        {"StateDirectory",
         [&c](const Line& l) { return SetPath(l, &c.state_dir); }},
        {"Certificate",
         [&c](const Line& l) { return SetPath(l, &c.cert_file); }},
        {"Key", [&c](const Line& l) { return SetPath(l, &c.key_file); }},
        {"Threads",
         [&c](const Line& l) { return SetNumber(l, &c.threads, 1, 256); }},
        {"ConsoleDirectory",
         [&c](const Line& l) { return SetPath(l, &c.console_dir); }},
        {"MaxBodySize",
         [&c](const Line& l) {
           return SetNumber<uint64_t>(l, &c.max_body_bytes, 1024, 1ull << 30);
         }},
    };
  if (section == "Repository") {
    RepositoryConfig* r = repo_;
    return {
        {"Path",
         [r](const Line& l) {
           // A directory, or a bucket (docs/object-storage.md): havend
           // then takes the store's credentials from its environment.
           if (repository::s3::IsS3Spec(l.value)) {
             auto loc = repository::s3::ParseS3Spec(l.value);
             if (!loc.ok()) return loc.status().WithContext(l.where);
             r->path = std::string(l.value);
             return OkStatus();
           }
           return SetPath(l, &r->path);
         }},
        {"PasswordFile",
         [r, &c](const Line& l) {
           return SetSecretPath(l, &r->password_file, c);
         }},
    };
  }
  if (section == "Libvirt")
    return {{"URI", [&c](const Line& l) {
               if (l.value.empty()) return Bad(l, "must not be empty");
               c.libvirt_uri = std::string(l.value);
               return OkStatus();
             }}};
  if (section == "Jobs")
    return {
        {"MaxJobs",
         [&c](const Line& l) { return SetNumber(l, &c.max_jobs, 1, 64); }},
        {"MaxJobsPerRepository",
         [&c](const Line& l) {
           return SetNumber(l, &c.max_jobs_per_repository, 1, 64);
         }},
    };
  if (section == "Notify")
    return {
        {"WebhookURL",
         [&n](const Line& l) {
           return SetUrl(l, &n.webhook_url, {"https", "http"});
         }},
        {"WebhookSecretFile",
         [&n, &c](const Line& l) {
           return SetSecretPath(l, &n.webhook_secret_file, c);
         }},
        {"SMTPURL",
         [&n](const Line& l) {
           return SetUrl(l, &n.smtp_url, {"smtp", "smtps"});
         }},
        {"SMTPUser",
         [&n](const Line& l) {
           n.smtp_user = std::string(l.value);
           return OkStatus();
         }},
        {"SMTPPasswordFile",
         [&n, &c](const Line& l) {
           return SetSecretPath(l, &n.smtp_password_file, c);
         }},
        {"From",
         [&n](const Line& l) {
           if (l.value.find('@') == std::string_view::npos)
             return Bad(l, "must be an e-mail address");
           n.smtp_from = std::string(l.value);
           return OkStatus();
         }},
        {"To",
         [&n](const Line& l) {
           // Space- or comma-separated; To= may be repeated.
           std::string v(l.value);
           for (char& ch : v)
             if (ch == ',') ch = ' ';
           size_t i = 0;
           while ((i = v.find_first_not_of(' ', i)) != std::string::npos) {
             size_t e = v.find(' ', i);
             std::string a = v.substr(i, e - i);
             if (a.find('@') == std::string::npos)
               return Bad(l, QuoteUntrusted(a) + " is not an e-mail address");
             n.smtp_to.push_back(a);
             i = e;
           }
           return OkStatus();
         }},
        {"OnSuccess",
         [&n](const Line& l) { return SetBool(l, &n.on_success); }},
        {"DailyReport",
         [&n](const Line& l) {
           if (!l.value.empty()) {
             auto e = ParseCalendar(l.value);
             if (!e.ok()) return Bad(l, e.status().message());
           }
           n.daily_report = std::string(l.value);
           return OkStatus();
         }},
    };
  return {};
}

Status Parser::Section(std::string_view header, int line) {
  std::string_view name = Trim(header);
  std::string_view arg;
  if (size_t sp = name.find_first_of(" \t"); sp != std::string_view::npos) {
    arg = Trim(name.substr(sp));
    name = name.substr(0, sp);
  }
  static const char* const kSections[] = {"Server", "Repository", "Libvirt",
                                          "Jobs", "Notify"};
  bool known = false;
  for (const char* s : kSections) known |= name == s;
  if (!known)
    return InvalidArgument(At(line) + "unknown section " +
                           QuoteUntrusted("[" + std::string(header) + "]") +
                           "; the sections are [Server], [Repository NAME], "
                           "[Libvirt], [Jobs] and [Notify]");
  if (name == "Repository") {
    if (!ValidName(arg))
      return InvalidArgument(
          At(line) +
          "[Repository NAME] needs a name of letters, digits, "
          "'.', '_' and '-' (at most 64), not " +
          QuoteUntrusted(arg));
    auto [it, fresh] = repo_lines_.emplace(std::string(arg), line);
    if (!fresh)
      return InvalidArgument(At(line) + "repository " + std::string(arg) +
                             " is defined twice (first at line " +
                             std::to_string(it->second) + ")");
    c_.repositories.push_back({std::string(arg), "", ""});
    repo_ = &c_.repositories.back();
  } else if (!arg.empty()) {
    return InvalidArgument(At(line) + "[" + std::string(name) +
                           "] takes no name, found " + QuoteUntrusted(arg));
  }
  section_ = std::string(name);
  section_name_ = "[" + std::string(name) +
                  (arg.empty() ? "" : " " + std::string(arg)) + "]";
  return OkStatus();
}

Status Parser::Assign(std::string_view key, std::string_view value, int line) {
  if (section_.empty())
    return InvalidArgument(At(line) + std::string(key) +
                           "= comes before any [Section] header");
  std::map<std::string, Setter> keys = KeysOf(section_);
  auto it = keys.find(std::string(key));
  if (it == keys.end()) {
    std::string known;
    for (const auto& [k, _] : keys) known += (known.empty() ? "" : ", ") + k;
    return InvalidArgument(At(line) + "unknown key " + QuoteUntrusted(key) +
                           " in " + section_name_ + " (known keys: " + known +
                           ")");
  }
  std::string id = section_name_ + "\n" + std::string(key);
  auto [prev, fresh] = seen_.emplace(id, line);
  if (!fresh && key != "To")
    return InvalidArgument(At(line) + section_name_ + " " + std::string(key) +
                           "= is set twice (first at line " +
                           std::to_string(prev->second) + ")");
  // An empty To= resets the list, as in systemd; later ones add to it.
  if (key == "To" && value.empty()) c_.notify.smtp_to.clear();
  return it->second(
      {value, At(line) + section_name_ + " " + std::string(key) + "="});
}

// Rules across keys, reported at the file (no single line is wrong).
Status Parser::Finish() {
  if (c_.cert_file.empty() != c_.key_file.empty())
    return InvalidArgument(file_ +
                           ": [Server] Certificate= and Key= go together: "
                           "give both or neither");
  for (const RepositoryConfig& r : c_.repositories) {
    int line = repo_lines_[r.name];
    if (r.path.empty())
      return InvalidArgument(At(line) + "[Repository " + r.name +
                             "] has no Path=");
    if (r.password_file.empty())
      return InvalidArgument(At(line) + "[Repository " + r.name +
                             "] has no PasswordFile= (the passphrase is "
                             "never written in this file)");
  }
  const NotifyConfig& n = c_.notify;
  if (!n.webhook_url.empty() && n.webhook_secret_file.empty())
    return InvalidArgument(file_ +
                           ": [Notify] WebhookURL= needs WebhookSecretFile= "
                           "(the key that signs each request)");
  if (!n.smtp_url.empty() && (n.smtp_from.empty() || n.smtp_to.empty()))
    return InvalidArgument(file_ + ": [Notify] SMTPURL= needs From= and To=");
  if (n.smtp_user.empty() != n.smtp_password_file.empty())
    return InvalidArgument(file_ +
                           ": [Notify] SMTPUser= and SMTPPasswordFile= go "
                           "together: give both or neither");
  return OkStatus();
}

Result<ApplianceConfig> Parser::Run(std::string_view text) {
  int line = 0;
  while (!text.empty()) {
    ++line;
    size_t nl = text.find('\n');
    std::string_view raw = text.substr(0, nl);
    text = nl == std::string_view::npos ? "" : text.substr(nl + 1);
    std::string_view l = Trim(raw);
    if (l.empty() || l[0] == '#' || l[0] == ';') continue;
    if (l.find('\0') != std::string_view::npos)
      return InvalidArgument(At(line) + "holds a NUL byte");
    if (l[0] == '[') {
      if (l.back() != ']')
        return InvalidArgument(At(line) + "a section header must end in ']'");
      HAVEN_RETURN_IF_ERROR(Section(l.substr(1, l.size() - 2), line));
      continue;
    }
    size_t eq = l.find('=');
    if (eq == std::string_view::npos)
      return InvalidArgument(At(line) +
                             "expected Key=Value or [Section], "
                             "found " +
                             QuoteUntrusted(l));
    std::string_view key = Trim(l.substr(0, eq));
    if (key.empty()) return InvalidArgument(At(line) + "a line has no key");
    HAVEN_RETURN_IF_ERROR(Assign(key, Trim(l.substr(eq + 1)), line));
  }
  HAVEN_RETURN_IF_ERROR(Finish());
  return std::move(c_);
}

}  // namespace

Result<ApplianceConfig> ParseConfig(std::string_view text,
                                    std::string_view file_name) {
  return Parser(file_name).Run(text);
}

Status CheckSecretFile(const std::string& path, std::string_view where) {
  struct stat st;
  std::string at = where.empty() ? "" : std::string(where) + ": ";
  if (::stat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOENT)
      return NotFound(at + "the secret file " + path + " does not exist");
    return ErrnoStatus(at + "the secret file " + path, err);
  }
  if (!S_ISREG(st.st_mode))
    return InvalidArgument(at + "the secret file " + path +
                           " is not a regular file");
  if (st.st_mode & 066) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    return PermissionDenied(at + "the secret file " + path + " has mode " +
                            mode +
                            ": others may read or change it; make it 0600 "
                            "(chmod 600 " +
                            path + ")");
  }
  return OkStatus();
}

Result<ApplianceConfig> LoadConfig(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT)
    return NotFound("the configuration file " + path + " does not exist");
  auto bytes = ReadFile(path, kMaxConfigBytes);
  if (!bytes.ok()) {
    return Status(bytes.status().code(), "cannot read the configuration " +
                                             path + ": " +
                                             bytes.status().message());
  }
  std::string text(bytes->begin(), bytes->end());
  HAVEN_ASSIGN_OR_RETURN(ApplianceConfig c, ParseConfig(text, path));
  for (const SecretFileRef& s : c.secret_files)
    HAVEN_RETURN_IF_ERROR(CheckSecretFile(s.path, s.where));
  return c;
}

}  // namespace haven::appliance
