// The appliance's certificate (appliance/certificate.h): made once, kept
// 0600, reloaded unchanged, mismatches and garbage refused by file name, and
// fingerprints equal to what the openssl command computes.
#include "appliance/certificate.h"

#include <sys/stat.h>

#include <array>
#include <cstdio>
#include <memory>
#include <string>

#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::testing::HasSubstr;
using testing_util::IsOk;
using testing_util::ReadWholeFile;
using testing_util::StatusIs;
using testing_util::TempDir;
using testing_util::WriteWholeFile;

// stdout of a shell command; the test fails when it exits non-zero.
std::string Shell(const std::string& cmd) {
  std::unique_ptr<FILE, int (*)(FILE*)> p(::popen(cmd.c_str(), "r"), ::pclose);
  if (!p) {
    ADD_FAILURE() << "popen " << cmd;
    return "";
  }
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p.get())) > 0)
    out.append(buf.data(), n);
  int rc = ::pclose(p.release());
  EXPECT_EQ(rc, 0) << cmd;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

int ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

void Write(const std::string& path, const std::string& text) {
  WriteWholeFile(path, AsBytes(text));
}

TEST(Certificate, MadeOnceKept0600AndReloadedUnchanged) {
  TempDir dir;
  std::string state = dir.Sub("state");
  auto made = LoadOrCreateCertificate(state, "backup1.example.org");
  ASSERT_THAT(made, IsOk());
  EXPECT_TRUE(made->created);
  EXPECT_EQ(ModeOf(state), 0700);
  EXPECT_EQ(ModeOf(state + "/key.pem"), 0600);
  EXPECT_EQ(ModeOf(state + "/cert.pem"), 0600);
  EXPECT_THAT(made->fingerprint,
              ::testing::MatchesRegex("SHA256(:[0-9A-F]{2}){32}"));

  auto again = LoadOrCreateCertificate(state, "other-name");
  ASSERT_THAT(again, IsOk());
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->fingerprint, made->fingerprint);
  EXPECT_EQ(again->public_key_pin, made->public_key_pin);
  EXPECT_EQ(again->cert_pem, made->cert_pem);
}

TEST(Certificate, FingerprintsEqualTheOpensslCommands) {
  TempDir dir;
  auto made = LoadOrCreateCertificate(dir.path(), "backup1");
  ASSERT_THAT(made, IsOk());
  std::string cert = dir.Sub("cert.pem");
  std::string printed =
      Shell("openssl x509 -noout -fingerprint -sha256 -in " + cert);
  ASSERT_EQ(printed.rfind("sha256 Fingerprint=", 0), 0u) << printed;
  EXPECT_EQ("SHA256:" + printed.substr(printed.find('=') + 1),
            made->fingerprint);
  // curl --pinnedpubkey's form: base64 of SHA-256 over the SPKI DER.
  std::string pin = Shell("openssl x509 -noout -pubkey -in " + cert +
                          " | openssl pkey -pubin -outform der"
                          " | openssl dgst -sha256 -binary | base64");
  EXPECT_EQ("sha256//" + pin, made->public_key_pin);
}

TEST(Certificate, NamesTheHostAndLoopbackEcP256TenYears) {
  TempDir dir;
  ASSERT_THAT(LoadOrCreateCertificate(dir.path(), "backup1.example.org"),
              IsOk());
  std::string cert = dir.Sub("cert.pem");
  std::string text = Shell("openssl x509 -noout -text -in " + cert);
  EXPECT_THAT(text, HasSubstr("Subject: CN = backup1.example.org"));
  EXPECT_THAT(text, HasSubstr("DNS:backup1.example.org, DNS:localhost, "
                              "IP Address:127.0.0.1"));
  EXPECT_THAT(text, HasSubstr("NIST CURVE: P-256"));
  EXPECT_THAT(text, HasSubstr("CA:FALSE"));
  EXPECT_THAT(text, HasSubstr("TLS Web Server Authentication"));
  // Valid for 9.9 years from now, not for 10.1.
  Shell("openssl x509 -noout -checkend " + std::to_string(3615LL * 86400) +
        " -in " + cert + " >/dev/null");
  EXPECT_NE(std::system(("openssl x509 -noout -checkend " +
                         std::to_string(3660LL * 86400) + " -in " + cert +
                         " >/dev/null")
                            .c_str()),
            0);
  // The key is the PKCS#8 PEM openssl reads, and it matches the certificate.
  EXPECT_EQ(Shell("openssl pkey -in " + dir.Sub("key.pem") + " -pubout"),
            Shell("openssl x509 -noout -pubkey -in " + cert));
}

TEST(Certificate, HostNameThatIsNoDnsNameIsLeftOut) {
  auto made = GenerateSelfSigned("bad,name=DNS:evil.example");
  ASSERT_THAT(made, IsOk());
  EXPECT_EQ(made->subject, "CN = localhost");
}

TEST(Certificate, KeyOfAnotherCertificateIsRefusedNamingBothFiles) {
  TempDir dir;
  auto a = GenerateSelfSigned("a");
  auto b = GenerateSelfSigned("b");
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_NE(a->fingerprint, b->fingerprint);
  Write(dir.Sub("key.pem"), a->key_pem);
  Write(dir.Sub("cert.pem"), b->cert_pem);
  EXPECT_THAT(LoadOrCreateCertificate(dir.path(), "a"),
              StatusIs(Code::kInvalidArgument,
                       ::testing::AllOf(HasSubstr(dir.Sub("key.pem")),
                                        HasSubstr("does not belong"),
                                        HasSubstr(dir.Sub("cert.pem")))));
  // Nothing was replaced.
  EXPECT_EQ(ReadWholeFile(dir.Sub("cert.pem")),
            Bytes(b->cert_pem.begin(), b->cert_pem.end()));
}

TEST(Certificate, GarbageIsRefusedNamingTheFile) {
  TempDir dir;
  auto a = GenerateSelfSigned("a");
  ASSERT_THAT(a, IsOk());
  Write(dir.Sub("key.pem"), a->key_pem);
  Write(dir.Sub("cert.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64 !!\n"
        "-----END CERTIFICATE-----\n");
  EXPECT_THAT(LoadCertificate(dir.Sub("key.pem"), dir.Sub("cert.pem")),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr(dir.Sub("cert.pem") + ": not a PEM X.509")));
  Write(dir.Sub("cert.pem"), a->cert_pem);
  Write(dir.Sub("key.pem"), "garbage");
  EXPECT_THAT(
      LoadCertificate(dir.Sub("key.pem"), dir.Sub("cert.pem")),
      StatusIs(Code::kInvalidArgument,
               HasSubstr(dir.Sub("key.pem") + ": not an unencrypted PEM")));
  // An encrypted key is refused, never prompted for.
  Shell("openssl pkey -in /dev/stdin -aes256 -passout pass:x -out " +
        dir.Sub("key.pem") + " <<'EOF'\n" + a->key_pem + "EOF");
  EXPECT_THAT(LoadCertificate(dir.Sub("key.pem"), dir.Sub("cert.pem")),
              StatusIs(Code::kInvalidArgument, HasSubstr(dir.Sub("key.pem"))));
  EXPECT_THAT(LoadCertificate(dir.Sub("nope.pem"), dir.Sub("cert.pem")),
              StatusIs(Code::kNotFound, HasSubstr(dir.Sub("nope.pem"))));
}

TEST(Certificate, CertificateWithoutKeyIsAnErrorKeyWithoutCertificateIsRemade) {
  TempDir dir;
  auto a = GenerateSelfSigned("a");
  ASSERT_THAT(a, IsOk());
  Write(dir.Sub("cert.pem"), a->cert_pem);
  EXPECT_THAT(LoadOrCreateCertificate(dir.path(), "a"),
              StatusIs(Code::kFailedPrecondition,
                       HasSubstr(dir.Sub("key.pem") + " does not")));
  ASSERT_EQ(::unlink(dir.Sub("cert.pem").c_str()), 0);
  // A key alone is what a first start killed between the two writes leaves.
  Write(dir.Sub("key.pem"), a->key_pem);
  auto made = LoadOrCreateCertificate(dir.path(), "a");
  ASSERT_THAT(made, IsOk());
  EXPECT_TRUE(made->created);
  EXPECT_NE(made->key_pem, a->key_pem);
}

}  // namespace
}  // namespace haven::appliance
