// havend.conf (appliance/config.h): every section and key parsed into
// ApplianceConfig, defaults kept for what is not set, and every mistake an
// admin makes refused with FILE:LINE and what is wrong — unknown sections
// and keys (typos), keys set twice, relative paths, bad numbers, credentials
// in URLs, missing companions; secret files that others may read refused.
#include "appliance/config.h"

#include <sys/stat.h>

#include <cstdlib>
#include <string>

#include "appliance/setup.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using testing_util::IsOk;
using testing_util::StatusIs;
using testing_util::TempDir;
using testing_util::WriteWholeFile;

constexpr char kFull[] = R"(# a complete configuration
[Server]
Listen = 127.0.0.1:9443
StateDirectory=/srv/haven-state
Certificate=/etc/haven/cert.pem
Key=/etc/haven/key.pem
Threads=16
MaxBodySize=2097152

; a second comment style
[Repository default]
Path=/var/lib/haven/repository
PasswordFile=/var/lib/haven/repository.pass

[Repository offsite-1]
Path=/srv/offsite
PasswordFile=/etc/haven/offsite.pass

[Libvirt]
URI=qemu+ssh://root@kvm2/system

[Jobs]
MaxJobs=4
MaxJobsPerRepository=2

[Notify]
WebhookURL=https://hooks.example.org/haven
WebhookSecretFile=/etc/haven/webhook.key
SMTPURL=smtps://mail.example.org:465
SMTPUser=haven
SMTPPasswordFile=/etc/haven/smtp.pass
From=haven@example.org
To=ops@example.org, ann@example.org
To=bob@example.org
OnSuccess=yes
DailyReport=Mon..Fri 07:30
)";

TEST(ConfigTest, ParsesEverySectionAndKey) {
  HAVEN_ASSERT_OK_AND_ASSIGN(ApplianceConfig c, ParseConfig(kFull, "h.conf"));
  EXPECT_EQ(c.listen, "127.0.0.1:9443");
  EXPECT_EQ(c.state_dir, "/srv/haven-state");
  EXPECT_EQ(c.cert_file, "/etc/haven/cert.pem");
  EXPECT_EQ(c.key_file, "/etc/haven/key.pem");
  EXPECT_EQ(c.threads, 16);
  EXPECT_EQ(c.max_body_bytes, 2097152u);
  ASSERT_EQ(c.repositories.size(), 2u);
  EXPECT_EQ(c.repositories[0].name, "default");
  EXPECT_EQ(c.repositories[0].path, "/var/lib/haven/repository");
  EXPECT_EQ(c.repositories[0].password_file, "/var/lib/haven/repository.pass");
  EXPECT_EQ(c.repositories[1].name, "offsite-1");
  ASSERT_NE(c.FindRepository("offsite-1"), nullptr);
  EXPECT_EQ(c.FindRepository("offsite-1")->path, "/srv/offsite");
  EXPECT_EQ(c.libvirt_uri, "qemu+ssh://root@kvm2/system");
  EXPECT_EQ(c.max_jobs, 4);
  EXPECT_EQ(c.max_jobs_per_repository, 2);
  EXPECT_EQ(c.notify.webhook_url, "https://hooks.example.org/haven");
  EXPECT_EQ(c.notify.webhook_secret_file, "/etc/haven/webhook.key");
  EXPECT_EQ(c.notify.smtp_url, "smtps://mail.example.org:465");
  EXPECT_EQ(c.notify.smtp_user, "haven");
  EXPECT_EQ(c.notify.smtp_password_file, "/etc/haven/smtp.pass");
  EXPECT_EQ(c.notify.smtp_from, "haven@example.org");
  EXPECT_THAT(
      c.notify.smtp_to,
      ElementsAre("ops@example.org", "ann@example.org", "bob@example.org"));
  EXPECT_TRUE(c.notify.on_success);
  EXPECT_EQ(c.notify.daily_report, "Mon..Fri 07:30");
  // Every secret file, with the line that named it.
  ASSERT_EQ(c.secret_files.size(), 4u);
  EXPECT_EQ(c.secret_files[0].path, "/var/lib/haven/repository.pass");
  EXPECT_EQ(c.secret_files[0].where,
            "h.conf:13: [Repository default] PasswordFile");
  EXPECT_EQ(c.secret_files[3].path, "/etc/haven/smtp.pass");
}

TEST(ConfigTest, EmptyFileKeepsTheDefaults) {
  HAVEN_ASSERT_OK_AND_ASSIGN(ApplianceConfig c,
                             ParseConfig("\n# nothing\n  \n", "h.conf"));
  ApplianceConfig d;
  EXPECT_EQ(c.state_dir, kDefaultStateDir);
  EXPECT_EQ(c.listen, d.listen);
  EXPECT_EQ(c.libvirt_uri, "qemu:///system");
  EXPECT_EQ(c.max_jobs, d.max_jobs);
  EXPECT_EQ(c.threads, d.threads);
  EXPECT_TRUE(c.repositories.empty());
  EXPECT_EQ(c.notify.daily_report, "08:00");
  // An empty DailyReport= turns the report off; an empty To= resets the list.
  HAVEN_ASSERT_OK_AND_ASSIGN(
      c, ParseConfig("[Notify]\nTo=a@x\nTo=\nTo=b@x\nDailyReport=\n", "h"));
  EXPECT_THAT(c.notify.smtp_to, ElementsAre("b@x"));
  EXPECT_EQ(c.notify.daily_report, "");
}

// Each case: the text, then what the error must say.
struct BadCase {
  const char* text;
  const char* message;
};

TEST(ConfigTest, MistakesNameTheLineAndWhatIsWrong) {
  const BadCase kCases[] = {
      {"[Server]\nListn=1.2.3.4\n",
       "h.conf:2: unknown key \"Listn\" in [Server] (known keys: Certificate, "
       "ConsoleDirectory, Key, Listen, MaxBodySize, StateDirectory, Threads)"},
      {"[Sever]\n", "h.conf:1: unknown section \"[Sever]\""},
      {"Listen=1.2.3.4\n", "h.conf:1: Listen= comes before any [Section]"},
      {"[Server]\nListen=1.2.3.4\n\nListen=5.6.7.8\n",
       "h.conf:4: [Server] Listen= is set twice (first at line 2)"},
      {"[Server]\nListen=localhost:80\n", "h.conf:2: [Server] Listen="},
      {"[Server]\nStateDirectory=var/lib/haven\n",
       "h.conf:2: [Server] StateDirectory=\"var/lib/haven\": must be an "
       "absolute path"},
      {"[Server]\nThreads=0\n",
       "h.conf:2: [Server] Threads=\"0\": must be a whole number from 1 to "
       "256"},
      {"[Server]\nThreads=8x\n", "must be a whole number"},
      {"[Server]\nCertificate=/c.pem\n",
       "h.conf: [Server] Certificate= and Key= go together"},
      {"[Server]\nbroken line\n",
       "h.conf:2: expected Key=Value or [Section], found \"broken line\""},
      {"[Server\n", "h.conf:1: a section header must end in ']'"},
      {"[Repository]\n", "h.conf:1: [Repository NAME] needs a name"},
      {"[Repository a/b]\n", "[Repository NAME] needs a name"},
      {"[Repository r]\nPath=/r\nPasswordFile=/p\n[Repository r]\n",
       "h.conf:4: repository r is defined twice (first at line 1)"},
      {"[Repository r]\nPasswordFile=/p\n",
       "h.conf:1: [Repository r] has "
       "no Path="},
      {"[Repository r]\nPath=/r\n", "[Repository r] has no PasswordFile="},
      {"[Repository r]\nPath=/r\nPassword=hunter2\n",
       "h.conf:3: unknown key \"Password\" in [Repository r]"},
      {"[Jobs]\nMaxJobs=65\n", "h.conf:2: [Jobs] MaxJobs=\"65\""},
      {"[Libvirt]\nURI=\n", "h.conf:2: [Libvirt] URI=\"\": must not be empty"},
      {"[Libvirt x]\n", "h.conf:1: [Libvirt] takes no name"},
      {"[Notify]\nWebhookURL=ftp://x/\n",
       "must start with https:// or http://"},
      {"[Notify]\nWebhookURL=https://u:s3cret@x/\nWebhookSecretFile=/k\n",
       "h.conf:2: [Notify] WebhookURL: a URL must not hold a user or password"},
      {"[Notify]\nWebhookURL=https://x/\n",
       "WebhookURL= needs WebhookSecretFile="},
      {"[Notify]\nSMTPURL=smtp://m\nFrom=a@b\n",
       "SMTPURL= needs From= and To="},
      {"[Notify]\nSMTPUser=u\n", "SMTPUser= and SMTPPasswordFile= go together"},
      {"[Notify]\nTo=ops\n",
       "h.conf:2: [Notify] To=\"ops\": \"ops\" is not an "
       "e-mail address"},
      {"[Notify]\nOnSuccess=maybe\n",
       "h.conf:2: [Notify] OnSuccess=\"maybe\": "
       "must be yes or no"},
      {"[Notify]\nDailyReport=every day\n", "h.conf:2: [Notify] DailyReport="},
  };
  for (const BadCase& b : kCases) {
    SCOPED_TRACE(b.text);
    EXPECT_THAT(ParseConfig(b.text, "h.conf").status(),
                StatusIs(Code::kInvalidArgument, HasSubstr(b.message)));
  }
}

TEST(ConfigTest, ARepositoryPathMayBeABucket) {
  HAVEN_ASSERT_OK_AND_ASSIGN(
      ApplianceConfig c,
      ParseConfig("[Repository main]\nPath=s3:https://rgw.example.net/b-1/x\n"
                  "PasswordFile=/etc/haven/main.password\n",
                  "h.conf"));
  ASSERT_EQ(c.repositories.size(), 1u);
  EXPECT_EQ(c.repositories[0].path, "s3:https://rgw.example.net/b-1/x");
  auto bad =
      ParseConfig("[Repository main]\nPath=s3:https://rgw/B_1\n", "h.conf");
  EXPECT_THAT(bad.status(), StatusIs(Code::kInvalidArgument,
                                     HasSubstr("not a valid bucket name")));
}

TEST(ConfigTest, ErrorsNeverRepeatACredentialFromAUrl) {
  Status s =
      ParseConfig("[Notify]\nSMTPURL=smtp://me:hunter2@mail/\n", "h.conf")
          .status();
  EXPECT_THAT(s, StatusIs(Code::kInvalidArgument,
                          AllOf(HasSubstr("must not hold a user or password"),
                                Not(HasSubstr("hunter2")))));
}

TEST(ConfigTest, SecretFilesMustBeClosedToOthers) {
  TempDir dir;
  std::string secret = dir.path() + "/repo.pass";
  WriteWholeFile(secret, AsBytes(std::string("pass\n")));
  std::string conf = dir.path() + "/havend.conf";
  WriteWholeFile(
      conf, AsBytes("[Repository r]\nPath=/r\nPasswordFile=" + secret + "\n"));

  ASSERT_EQ(::chmod(secret.c_str(), 0600), 0);
  HAVEN_ASSERT_OK_AND_ASSIGN(ApplianceConfig c, LoadConfig(conf));
  EXPECT_EQ(c.repositories.at(0).password_file, secret);
  ASSERT_EQ(::chmod(secret.c_str(), 0400), 0);
  EXPECT_THAT(LoadConfig(conf).status(), IsOk());

  ASSERT_EQ(::chmod(secret.c_str(), 0644), 0);
  EXPECT_THAT(
      LoadConfig(conf).status(),
      StatusIs(Code::kPermissionDenied,
               AllOf(HasSubstr(conf +
                               ":3: [Repository r] PasswordFile: the "
                               "secret file " +
                               secret + " has mode 0644"),
                     HasSubstr("chmod 600"), Not(HasSubstr("pass\n")))));
  ASSERT_EQ(::chmod(secret.c_str(), 0640), 0);
  EXPECT_THAT(LoadConfig(conf).status(),
              StatusIs(Code::kPermissionDenied, HasSubstr("mode 0640")));

  ASSERT_EQ(::unlink(secret.c_str()), 0);
  EXPECT_THAT(LoadConfig(conf).status(),
              StatusIs(Code::kNotFound, HasSubstr("the secret file " + secret +
                                                  " does not exist")));
  ASSERT_EQ(::mkdir(secret.c_str(), 0700), 0);
  EXPECT_THAT(
      LoadConfig(conf).status(),
      StatusIs(Code::kInvalidArgument, HasSubstr("not a regular file")));

  EXPECT_THAT(
      LoadConfig(dir.path() + "/missing.conf").status(),
      StatusIs(Code::kNotFound, HasSubstr("missing.conf does not exist")));
}

// What `havend init` writes parses back to the same values.
TEST(ConfigTest, InitialConfigParsesBack) {
  ApplianceConfig c;
  c.state_dir = "/srv/state";
  c.listen = "[::1]:9000";
  c.repositories.push_back(
      {"default", "/srv/state/repository", "/srv/state/repository.pass"});
  std::string text = InitialConfigText(c);
  HAVEN_ASSERT_OK_AND_ASSIGN(ApplianceConfig back, ParseConfig(text, "init"));
  EXPECT_EQ(back.state_dir, "/srv/state");
  EXPECT_EQ(back.listen, "[::1]:9000");
  ASSERT_EQ(back.repositories.size(), 1u);
  EXPECT_EQ(back.repositories[0].path, "/srv/state/repository");
  EXPECT_EQ(back.repositories[0].password_file, "/srv/state/repository.pass");
  EXPECT_EQ(back.libvirt_uri, c.libvirt_uri);
  EXPECT_EQ(back.max_jobs, c.max_jobs);
  EXPECT_THAT(text, HasSubstr("# WebhookURL="));

  // The example shipped as /etc/haven/havend.conf.example parses too, and
  // names every key the parser knows.
  const char* src = std::getenv("HAVEN_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "HAVEN_SOURCE_DIR (set by CTest)";
  Bytes bytes = testing_util::ReadWholeFile(std::string(src) +
                                            "/appliance/havend.conf.example");
  std::string example(bytes.begin(), bytes.end());
  HAVEN_ASSERT_OK_AND_ASSIGN(ApplianceConfig ex,
                             ParseConfig(example, "havend.conf.example"));
  EXPECT_EQ(ex.state_dir, kDefaultStateDir);
  ASSERT_EQ(ex.repositories.size(), 1u);
  for (const char* key : {"Listen=",
                          "StateDirectory=",
                          "Certificate=",
                          "Key=",
                          "Threads=",
                          "MaxBodySize=",
                          "Path=",
                          "PasswordFile=",
                          "URI=",
                          "MaxJobs=",
                          "MaxJobsPerRepository=",
                          "WebhookURL=",
                          "WebhookSecretFile=",
                          "SMTPURL=",
                          "SMTPUser=",
                          "SMTPPasswordFile=",
                          "From=",
                          "To=",
                          "OnSuccess=",
                          "DailyReport="})
    EXPECT_THAT(example, HasSubstr(key));
}

TEST(ConfigTest, RandomSecretsUseTheAlphabetAndDiffer) {
  std::string a = RandomSecret(32), b = RandomSecret(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of(
                "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"),
            std::string::npos);
}

}  // namespace
}  // namespace haven::appliance
