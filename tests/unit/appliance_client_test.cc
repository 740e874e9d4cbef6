// The agent's HTTPS client against a real HttpsServer on loopback: the
// pinned certificate, retries, and the identity file's permissions.
#include "agent/appliance_client.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <string>

#include "appliance/https_server.h"
#include "base/time.h"
#include "tests/unit/test_util.h"

namespace haven::agent {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using testing_util::IsOk;
using testing_util::StatusIs;

constexpr char kSecret[] = "havenagent_unit_test_secret";

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cert = appliance::GenerateSelfSigned("localhost");
    ASSERT_THAT(cert, IsOk());
    cert_ = *cert;
    appliance::HttpsServerOptions o;
    o.listen.host = "127.0.0.1";
    o.listen.port = 0;
    o.log = [](std::string_view) {};
    auto server = appliance::HttpsServer::Start(
        o, cert_, [this](const appliance::Request& req) {
          ++calls_;
          const std::string* auth = req.Header("authorization");
          last_auth_ = auth ? *auth : "";
          if (fail_first_ > 0) {
            --fail_first_;
            return appliance::Response::Json(503, R"({"error":"busy"})");
          }
          if (req.path == "/refuse")
            return appliance::Response::Json(
                403, R"({"error":"this agent was revoked on 2026-12-01"})");
          return appliance::Response::Json(
              200,
              "{\"path\":\"" + req.path + "\",\"body\":\"" + req.body + "\"}");
        });
    ASSERT_THAT(server, IsOk());
    server_ = std::move(server.value());
    url_ = "https://127.0.0.1:" + std::to_string(server_->port());
  }

  appliance::ServerCertificate cert_;
  std::unique_ptr<appliance::HttpsServer> server_;
  std::string url_;
  std::atomic<int> calls_{0}, fail_first_{0};
  std::string last_auth_;
};

TEST_F(ClientTest, PinnedCertificateIsAcceptedAndTheCredentialSent) {
  auto client = ApplianceClient::Create(url_, cert_.fingerprint, kSecret);
  ASSERT_THAT(client, IsOk());
  auto r = (*client)->Post("/api/v1/agent/hello", "application/json", "hi");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"path":"/api/v1/agent/hello","body":"hi"})");
  EXPECT_EQ(last_auth_, std::string("Bearer ") + kSecret);
  // A second request on the same client (a kept connection) works too.
  auto g = (*client)->Get("/x");
  ASSERT_THAT(g, IsOk());
  EXPECT_EQ(g->status, 200);
  EXPECT_EQ(calls_.load(), 2);
}

TEST_F(ClientTest, FingerprintInOtherSpellingsIsTheSame) {
  std::string plain;
  for (char c : cert_.fingerprint.substr(7))
    if (c != ':') plain += static_cast<char>(std::tolower(c));
  auto client = ApplianceClient::Create(url_, plain, kSecret);
  ASSERT_THAT(client, IsOk());
  auto r = (*client)->Get("/x");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 200);
  auto norm = NormalizeFingerprint("sha256:" + plain);
  ASSERT_THAT(norm, IsOk());
  EXPECT_EQ(*norm, cert_.fingerprint);
}

TEST_F(ClientTest, WrongFingerprintIsRefusedBeforeAnyRequest) {
  auto other = appliance::GenerateSelfSigned("localhost");
  ASSERT_THAT(other, IsOk());
  auto client = ApplianceClient::Create(url_, other->fingerprint, kSecret);
  ASSERT_THAT(client, IsOk());
  RetryPolicy retry;
  retry.attempts = 3;
  retry.first_delay = 0.01;
  auto r = (*client)->Post("/api/v1/agent/hello", "application/json", "{}", 10,
                           retry);
  EXPECT_THAT(r, StatusIs(Code::kPermissionDenied,
                          AllOf(HasSubstr(cert_.fingerprint),
                                HasSubstr(other->fingerprint), HasSubstr(url_),
                                Not(HasSubstr(kSecret)))));
  EXPECT_EQ(calls_.load(), 0) << "the handler must never see the request";
  auto d =
      (*client)->Download("/x", [](std::string_view) { return OkStatus(); });
  EXPECT_THAT(d, StatusIs(Code::kPermissionDenied, HasSubstr("pinned")));
  EXPECT_EQ(calls_.load(), 0);
}

TEST_F(ClientTest, ServerDownIsUnavailableAfterTheRetries) {
  auto client = ApplianceClient::Create(url_, cert_.fingerprint, kSecret);
  ASSERT_THAT(client, IsOk());
  server_->Stop();
  RetryPolicy retry;
  retry.attempts = 3;
  retry.first_delay = 0.05;
  double start = MonotonicSeconds();
  auto r = (*client)->Get("/x", 5, retry);
  EXPECT_THAT(r, StatusIs(Code::kUnavailable,
                          AllOf(HasSubstr(url_), HasSubstr("tried 3 times"),
                                Not(HasSubstr(kSecret)))));
  // Two waits of at least half of 0.05 s and 0.1 s.
  EXPECT_GE(MonotonicSeconds() - start, 0.07);
}

TEST_F(ClientTest, BusyAnswersAreRetriedAndOtherStatusesAreReplies) {
  auto client = ApplianceClient::Create(url_, cert_.fingerprint, kSecret);
  ASSERT_THAT(client, IsOk());
  fail_first_ = 2;
  RetryPolicy retry;
  retry.attempts = 4;
  retry.first_delay = 0.01;
  auto r = (*client)->Get("/x", 10, retry);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(calls_.load(), 3);

  // Without retries a 503 is a reply, as is a refusal with its sentence.
  fail_first_ = 1;
  auto busy = (*client)->Get("/x");
  ASSERT_THAT(busy, IsOk());
  EXPECT_EQ(busy->status, 503);
  auto refused = (*client)->Get("/refuse", 10, retry);
  ASSERT_THAT(refused, IsOk());
  EXPECT_EQ(refused->status, 403);
  EXPECT_EQ(refused->ErrorText(), "this agent was revoked on 2026-12-01");
  EXPECT_THAT(ReplyStatus(*refused, "hello"),
              StatusIs(Code::kPermissionDenied, HasSubstr("revoked")));
}

TEST_F(ClientTest, CancelStopsTheRetries) {
  auto client = ApplianceClient::Create(url_, cert_.fingerprint, kSecret);
  ASSERT_THAT(client, IsOk());
  server_->Stop();
  RetryPolicy retry;
  retry.attempts = 50;
  retry.first_delay = 10;
  retry.cancel.Cancel();
  auto r = (*client)->Get("/x", 5, retry);
  EXPECT_THAT(r, StatusIs(Code::kCancelled, HasSubstr("cancelled")));
}

TEST_F(ClientTest, DownloadStreamsTheBody) {
  auto client = ApplianceClient::Create(url_, cert_.fingerprint, kSecret);
  ASSERT_THAT(client, IsOk());
  std::string got;
  auto r = (*client)->Download("/dl", [&](std::string_view piece) {
    got.append(piece);
    return OkStatus();
  });
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(got, R"({"path":"/dl","body":""})");
  got.clear();
  auto refused = (*client)->Download("/refuse", [&](std::string_view piece) {
    got.append(piece);
    return OkStatus();
  });
  ASSERT_THAT(refused, IsOk());
  EXPECT_EQ(refused->status, 403);
  EXPECT_EQ(got, "") << "an error body is not archive bytes";
  EXPECT_THAT(refused->ErrorText(), HasSubstr("revoked"));
}

TEST(ClientCreate, RefusesBadUrlsAndFingerprints) {
  EXPECT_THAT(ApplianceClient::Create("https://h:1", "SHA256:AB", ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("fingerprint")));
  std::string good = "sha256:";
  for (int i = 0; i < 32; ++i) good += "ab";
  EXPECT_THAT(ApplianceClient::Create("http://h:1", good, ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("https://HOST")));
  EXPECT_THAT(ApplianceClient::Create("https://h:1/api?x=1", good, ""),
              StatusIs(Code::kInvalidArgument, HasSubstr("https://HOST")));
  auto ok = ApplianceClient::Create("https://10.0.0.1:8421/", good, "");
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ((*ok)->url(), "https://10.0.0.1:8421");
}

TEST(Identity, SavedPrivateAndOthersReadableRefused) {
  testing_util::TempDir tmp;
  const std::string dir = tmp.Sub("agent");
  AgentIdentity id;
  id.url = "https://10.0.0.1:8421";
  id.fingerprint = "SHA256:" + std::string("AB");
  for (int i = 1; i < 32; ++i) id.fingerprint += ":AB";
  id.agent_id = "a1";
  id.name = "web1";
  id.kind = "guest";
  id.repository = "main";
  id.credential = kSecret;
  EXPECT_THAT(LoadIdentity(dir),
              StatusIs(Code::kNotFound, HasSubstr("haven agent enroll")));
  ASSERT_THAT(SaveIdentity(dir, id), IsOk());
  struct stat st;
  ASSERT_EQ(stat((dir + "/agent.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto back = LoadIdentity(dir);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->credential, kSecret);
  EXPECT_EQ(back->fingerprint, id.fingerprint);
  EXPECT_EQ(back->name, "web1");

  ASSERT_EQ(chmod((dir + "/agent.json").c_str(), 0644), 0);
  EXPECT_THAT(LoadIdentity(dir),
              StatusIs(Code::kPermissionDenied,
                       AllOf(HasSubstr("0644"), HasSubstr("chmod 600"),
                             Not(HasSubstr(kSecret)))));
}

}  // namespace
}  // namespace haven::agent
