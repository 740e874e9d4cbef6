// A remote appliance as either side of a copy: the client
// (agent/appliance_copy.h) against the real copy routes
// (appliance/routes_copy.cc) behind the real HTTPS server, dispatcher and
// role check, on loopback, with two repositories that share their chunk-id
// keys (B made as `haven init --copy-params-from A` makes it). A point pushed
// through the routes lands and a second push sends nothing; reads come back
// whole across shortened answers; a chunk under a wrong id is refused naming
// it; an operator's token gets 403.
#include "agent/appliance_copy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "agent/copy_wire.h"
#include "agent/image_backup.h"
#include "appliance/api.h"
#include "appliance/certificate.h"
#include "appliance/https_server.h"
#include "appliance/repositories.h"
#include "appliance/repository_cache.h"
#include "appliance/routes.h"
#include "appliance/writable_repositories.h"
#include "base/file.h"
#include "repository/repository.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using repository::ChunkId;
using repository::ChunkType;
using repository::CopyChunk;
using ::testing::HasSubstr;
using testing_util::IsOk;
using testing_util::StatusIs;

constexpr char kAdminToken[] = "haven_admin_for_test";
constexpr char kOperatorToken[] = "haven_operator_for_test";

Bytes RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes b(n);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  return b;
}

class ApplianceCopyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(testing_util::CloneFreshRepository(dir_.Sub("a")), IsOk());
    {
      // B shares A's chunk-id keys, as `haven init --copy-params-from`
      // makes it.
      auto a = OpenA(false);
      ASSERT_NE(a, nullptr);
      repository::InitOptions o = testing_util::FastInitOptions();
      o.shared_ids = true;
      o.chunk_id_key = a->secret().ChunkIdKey();
      o.tree_id_key = a->secret().TreeIdKey();
      ASSERT_THAT(repository::Repository::Init(
                      dir_.Sub("b"), testing_util::kTestPassphrase, o),
                  IsOk());
    }
    ASSERT_THAT(
        WriteFileAtomic(
            dir_.Sub("pw"),
            AsBytes(std::string(testing_util::kTestPassphrase) + "\n"), 0600),
        IsOk());
    config_.repositories.push_back({"default", dir_.Sub("b"), dir_.Sub("pw")});
    catalog_ = std::make_unique<RepositoryCatalog>(config_);
    cache_ = std::make_unique<RepositoryCache>(*catalog_);
    writable_ = std::make_unique<WritableRepositories>(*catalog_);
    s_.config = &config_;
    s_.repositories = catalog_.get();
    s_.open_repositories = cache_.get();
    s_.writable_repositories = writable_.get();
    ApiOptions api;
    api.authenticate =
        [](const Request& req, bool,
           const std::string*) -> std::variant<Caller, Response> {
      const std::string* h = req.Header("authorization");
      if (h && *h == std::string("Bearer ") + kAdminToken)
        return Caller{"token:admin", Role::kAdmin, false, ""};
      if (h && *h == std::string("Bearer ") + kOperatorToken)
        return Caller{"token:op", Role::kOperator, false, ""};
      return ErrorJson(401, "authentication required");
    };
    auto handler = MakeApiHandler(CopyRoutes(s_), api);
    ASSERT_THAT(handler, IsOk());
    auto cert = LoadOrCreateCertificate(dir_.path(), "localhost");
    ASSERT_THAT(cert, IsOk());
    fingerprint_ = cert->fingerprint;
    HttpsServerOptions so;
    so.listen = {"127.0.0.1", 0};
    so.log = [](std::string_view) {};
    so.limits.large_bodies = {{"/api/v1/copy/", 64 << 20}};
    so.admit_large_body = [](std::string_view, const std::string*)
        -> std::optional<std::pair<int, std::string>> { return std::nullopt; };
    auto server = HttpsServer::Start(so, *cert, *handler);
    ASSERT_THAT(server, IsOk());
    server_ = std::move(server).value();
    url_ = "https://127.0.0.1:" + std::to_string(server_->port());
  }

  agent::RemoteAppliance Remote(const char* token = kAdminToken) {
    return {url_, fingerprint_, token};
  }
  std::unique_ptr<repository::CopyTarget> Target() {
    auto t = agent::OpenApplianceTarget(Remote());
    EXPECT_THAT(t, IsOk());
    return std::move(t).value();
  }
  std::unique_ptr<repository::CopySource> Source() {
    auto t = agent::OpenApplianceSource(Remote());
    EXPECT_THAT(t, IsOk());
    return std::move(t).value();
  }
  std::unique_ptr<repository::Repository> OpenA(bool write) {
    auto r = repository::Repository::Open(
        dir_.Sub("a"), testing_util::kTestPassphrase,
        write ? testing_util::WriteOptions() : testing_util::ReadOptions());
    EXPECT_THAT(r, IsOk());
    return std::move(r).value();
  }

  testing_util::TempDir dir_;
  ApplianceConfig config_;
  std::unique_ptr<RepositoryCatalog> catalog_;
  std::unique_ptr<RepositoryCache> cache_;
  std::unique_ptr<WritableRepositories> writable_;
  Services s_;
  std::unique_ptr<HttpsServer> server_;
  std::string url_, fingerprint_;
};

TEST_F(ApplianceCopyTest, PushLandsAndASecondPushSendsNothing) {
  // A 3 MiB image: random data, a hole, more data.
  {
    std::ofstream f(dir_.Sub("disk.img"), std::ios::binary);
    Bytes data = RandomBytes(1 << 20, 1);
    f.write(reinterpret_cast<const char*>(data.data()), data.size());
    std::string zeros(1 << 20, '\0');
    f.write(zeros.data(), zeros.size());
    data = RandomBytes(1 << 20, 2);
    f.write(reinterpret_cast<const char*>(data.data()), data.size());
  }
  std::string id;
  {
    auto a = OpenA(true);
    agent::ImageBackupOptions o;
    o.name = "disk";
    o.format = "raw";
    auto m = agent::BackupImage(*a, dir_.Sub("disk.img"), o);
    ASSERT_THAT(m, IsOk());
    id = m->id;
  }
  auto a = OpenA(false);
  repository::LocalCopySource from(*a);
  auto to = Target();
  EXPECT_EQ(to->Describe(), "appliance " + url_);
  repository::CopyOptions o;
  auto r = repository::CopyPoints(from, *to, o);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->copied(), 1);
  EXPECT_GE(r->bytes_sent, 2u << 20);
  auto again = repository::CopyPoints(from, *to, o);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->copied(), 0);
  EXPECT_EQ(again->chunks_sent, 0u);
  // The point as the remote serves it: listed, and its manifest.
  auto source = Source();
  auto points = source->Points(nullptr);
  ASSERT_THAT(points, IsOk());
  ASSERT_EQ(points->size(), 1u);
  EXPECT_EQ((*points)[0].id, id);
  auto m = source->LoadPoint(id);
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(m->name, "disk");
  EXPECT_THAT(source->LoadPoint("0123456789abcdef0123456789abcdef"),
              StatusIs(Code::kNotFound, HasSubstr("answered")));
  auto params = source->Params();
  ASSERT_THAT(params, IsOk());
  EXPECT_EQ(params->id_check, repository::IdKeyCheck(*a));
}

TEST_F(ApplianceCopyTest, ChunksRoundTripAcrossShortenedAnswers) {
  auto a = OpenA(false);
  // 24 chunks of 1 MiB: more than one read answer holds.
  std::vector<CopyChunk> chunks;
  std::vector<ChunkId> ids;
  for (uint32_t i = 0; i < 24; ++i) {
    CopyChunk c;
    c.raw = RandomBytes(1 << 20, 100 + i);
    c.id = a->IdFor(ChunkType::kData, c.raw);
    ids.push_back(c.id);
    chunks.push_back(std::move(c));
  }
  auto to = Target();
  auto before = to->HasChunks(ChunkType::kData, ids);
  ASSERT_THAT(before, IsOk());
  EXPECT_EQ(std::count(before->begin(), before->end(), true), 0);
  ASSERT_THAT(to->PutChunks(ChunkType::kData, chunks), IsOk());
  auto after = to->HasChunks(ChunkType::kData, ids);
  ASSERT_THAT(after, IsOk());
  EXPECT_EQ(std::count(after->begin(), after->end(), true), 24);
  // The same id twice in one call: a request asks each once.
  ids.push_back(ids[0]);
  std::vector<CopyChunk> got;
  ASSERT_THAT(Source()->ReadChunks(ChunkType::kData, ids, got), IsOk());
  ASSERT_EQ(got.size(), 25u);
  for (size_t i = 0; i < 24; ++i) {
    EXPECT_THAT(got[i].status, IsOk());
    EXPECT_EQ(got[i].raw, chunks[i].raw) << i;
  }
  EXPECT_EQ(got[24].raw, chunks[0].raw);
  // An id nobody stored: damaged, the others still answered.
  std::vector<ChunkId> unknown = {ids[1],
                                  a->IdFor(ChunkType::kData, AsBytes("x"))};
  ASSERT_THAT(Source()->ReadChunks(ChunkType::kData, unknown, got), IsOk());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_THAT(got[0].status, IsOk());
  EXPECT_THAT(got[1].status,
              StatusIs(Code::kDataLoss, HasSubstr(unknown[1].Hex())));
  // Their sizes, from the remote's index.
  std::vector<int64_t> sizes;
  ASSERT_THAT(Source()->ChunkSizes(ChunkType::kData, unknown, sizes), IsOk());
  EXPECT_EQ(sizes, (std::vector<int64_t>{1 << 20, -1}));
}

TEST_F(ApplianceCopyTest, AChunkUnderAWrongIdIsRefusedNamingIt) {
  auto a = OpenA(false);
  CopyChunk c;
  c.raw = RandomBytes(4096, 7);
  c.id = a->IdFor(ChunkType::kData, AsBytes("something else"));
  Status st = Target()->PutChunks(ChunkType::kData, {c});
  EXPECT_THAT(st, StatusIs(Code::kFailedPrecondition, HasSubstr(c.id.Hex())));
  auto has = Target()->HasChunks(ChunkType::kData, {c.id});
  ASSERT_THAT(has, IsOk());
  EXPECT_FALSE((*has)[0]);
}

TEST_F(ApplianceCopyTest, OnlyAdminsMayCopy) {
  auto source = agent::OpenApplianceSource(Remote(kOperatorToken));
  ASSERT_THAT(source, IsOk());
  EXPECT_THAT((*source)->Params(),
              StatusIs(Code::kPermissionDenied, HasSubstr("admin role")));
  EXPECT_THAT(agent::OpenApplianceSource({url_, fingerprint_, "bad token"}),
              StatusIs(Code::kInvalidArgument, HasSubstr("token")));
  auto wrong = agent::OpenApplianceSource(
      {url_,
       "SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:"
       "55:66:77:88:99:AA:BB:CC:DD:EE:FF",
       kAdminToken});
  ASSERT_THAT(wrong, IsOk());
  EXPECT_THAT((*wrong)->Params(),
              StatusIs(Code::kPermissionDenied, HasSubstr("not the pinned")));
}

TEST(RemoteFromEnvironmentTest, ReadsFingerprintAndTokenOfOneSide) {
  testing_util::TempDir dir;
  const std::string fp =
      "SHA256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:"
      "55:66:77:88:99:AA:BB:CC:DD:EE:FF";
  ::unsetenv("HAVEN_TO_FINGERPRINT");
  ::unsetenv("HAVEN_TO_TOKEN");
  ::unsetenv("HAVEN_TO_TOKEN_FILE");
  EXPECT_THAT(
      agent::RemoteFromEnvironment("https://h:1", "TO"),
      StatusIs(Code::kInvalidArgument, HasSubstr("HAVEN_TO_FINGERPRINT")));
  ::setenv("HAVEN_TO_FINGERPRINT", fp.c_str(), 1);
  EXPECT_THAT(agent::RemoteFromEnvironment("https://h:1", "TO"),
              StatusIs(Code::kInvalidArgument, HasSubstr("HAVEN_TO_TOKEN")));
  ASSERT_THAT(WriteFileAtomic(dir.Sub("t"), AsBytes("haven_fromfile\n"), 0600),
              IsOk());
  ::setenv("HAVEN_TO_TOKEN_FILE", dir.Sub("t").c_str(), 1);
  auto r = agent::RemoteFromEnvironment("https://h:1", "TO");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->token, "haven_fromfile");
  EXPECT_EQ(r->url, "https://h:1");
  ::setenv("HAVEN_TO_TOKEN", "haven_x", 1);
  auto both = agent::RemoteFromEnvironment("https://h:1", "TO");
  EXPECT_THAT(both, StatusIs(Code::kInvalidArgument, HasSubstr("not both")));
  EXPECT_THAT(both.status().message(), ::testing::Not(HasSubstr("haven_x")));
  EXPECT_THAT(agent::RemoteFromEnvironment("https://h:1", "SIDEWAYS"),
              StatusIs(Code::kInvalidArgument, HasSubstr("FROM or TO")));
  ::unsetenv("HAVEN_TO_FINGERPRINT");
  ::unsetenv("HAVEN_TO_TOKEN");
  ::unsetenv("HAVEN_TO_TOKEN_FILE");
}

}  // namespace
}  // namespace haven::appliance
