// BackupFilesToAppliance against an in-process HTTPS server whose handler
// speaks the agent protocol (docs/agents.md) minimally: it checks every
// frame's SHA-256, answers /chunks/missing from what it holds, and commits
// points that name only chunks it has. Real files (a slice of
// /usr/share/doc) are backed up.
#include "agent/upload_sink.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "appliance/https_server.h"
#include "repository/compression.h"
#include "repository/file_tree.h"
#include "tests/unit/test_util.h"

namespace haven::agent {
namespace {

using ::testing::HasSubstr;
using testing_util::IsOk;
using testing_util::Sh;
using testing_util::StatusIs;

std::string Sha(std::string_view data) {
  uint8_t md[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), 32);
}

uint32_t U32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<uint32_t>(static_cast<uint8_t>(s[at + i])) << (8 * i);
  return v;
}

// The appliance's side, as little of it as the agent needs.
class FakeAppliance {
 public:
  appliance::Response Handle(const appliance::Request& req) {
    std::lock_guard<std::mutex> l(mu_);
    if (req.path == "/api/v1/agent/hello")
      return appliance::Response::Json(
          200, R"({"agent_id":"a1","name":"web1","repository":"main"})");
    if (req.path == "/api/v1/agent/chunks/missing") {
      ++missing_calls;
      std::string out;
      for (size_t off = 0; off + 32 <= req.body.size(); off += 32)
        out += store.count(req.body.substr(off, 32)) ? '\0' : '\1';
      appliance::Response r;
      r.body = out;
      return r;
    }
    if (req.path == "/api/v1/agent/chunks") return Chunks(req.body);
    if (req.path == "/api/v1/agent/points" && req.method == "POST")
      return Commit(req.body);
    if (req.path == "/api/v1/agent/points") {
      nlohmann::json j;
      j["points"] = nlohmann::json::array();
      for (const auto& [upload, id] : points)
        if (!unlisted.count(id)) j["points"].push_back({{"id", id}});
      return appliance::Response::Json(200, j.dump());
    }
    return appliance::Response::Json(404, R"({"error":"no such route"})");
  }

  std::mutex mu_;
  std::map<std::string, std::string> store;   // upload id -> raw bytes
  std::map<std::string, int> received;        // upload id -> frames received
  std::set<std::string> last_run;             // ids uploaded since Reset
  std::map<std::string, std::string> points;  // upload_id -> point id
  std::set<std::string> unlisted;
  std::set<std::string> last_catalog_ids;  // of the last point committed
  int missing_calls = 0, chunk_posts = 0, point_posts = 0;
  int fail_chunks_after_store = 0;  // store, then answer 503 (lost answer)
  int fail_points_after_store = 0;
  nlohmann::json last_point;
  uint64_t last_catalog_records = 0;

 private:
  appliance::Response Chunks(const std::string& body) {
    ++chunk_posts;
    std::map<std::string, std::string> batch;
    repository::Decompressor dec;
    for (size_t off = 0; off < body.size();) {
      if (body.size() - off < 41)
        return appliance::Response::Json(422, R"({"error":"short frame"})");
      std::string id = body.substr(off, 32);
      uint32_t raw_len = U32(body, off + 32);
      uint8_t codec = static_cast<uint8_t>(body[off + 36]);
      uint32_t data_len = U32(body, off + 37);
      off += 41;
      if (body.size() - off < data_len)
        return appliance::Response::Json(422, R"({"error":"short data"})");
      std::string data = body.substr(off, data_len);
      off += data_len;
      std::string raw;
      if (codec == 1) {
        raw.resize(raw_len);
        Status s = dec.Decompress(
            ByteSpan(reinterpret_cast<const uint8_t*>(data.data()),
                     data.size()),
            raw_len, reinterpret_cast<uint8_t*>(raw.data()), "frame");
        if (!s.ok())
          return appliance::Response::Json(422, R"({"error":"bad zstd"})");
      } else if (codec == 0) {
        raw = data;
      } else {
        return appliance::Response::Json(422, R"({"error":"codec"})");
      }
      if (raw.size() != raw_len || Sha(raw) != id)
        return appliance::Response::Json(422, R"({"error":"bad sha"})");
      batch[id] = raw;
    }
    for (auto& [id, raw] : batch) {
      ++received[id];
      last_run.insert(id);
      store[id] = raw;
    }
    if (fail_chunks_after_store > 0) {
      --fail_chunks_after_store;
      return appliance::Response::Json(503, R"({"error":"answer lost"})");
    }
    return appliance::Response::Json(
        200, "{\"received\":" + std::to_string(batch.size()) + "}");
  }

  appliance::Response Commit(const std::string& body) {
    ++point_posts;
    if (body.size() < 4) return appliance::Response::Json(400, "{}");
    uint32_t n = U32(body, 0);
    if (body.size() < 4 + n) return appliance::Response::Json(400, "{}");
    auto j = nlohmann::json::parse(body.substr(4, n));
    size_t c = j["catalog"]["count"], k = j["content"]["count"];
    if (body.size() != 4 + n + 32 * (c + k))
      return appliance::Response::Json(400, R"({"error":"counts"})");
    nlohmann::json missing = nlohmann::json::array();
    std::string catalog;
    for (size_t i = 0; i < c + k; ++i) {
      std::string id = body.substr(4 + n + 32 * i, 32);
      auto it = store.find(id);
      if (it == store.end())
        missing.push_back(i);
      else if (i < c)
        catalog += it->second;
    }
    last_catalog_ids.clear();
    for (size_t i = 0; i < c; ++i)
      last_catalog_ids.insert(body.substr(4 + n + 32 * i, 32));
    if (!missing.empty())
      return appliance::Response::Json(
          409,
          nlohmann::json{{"error", "chunks are missing"}, {"missing", missing}}
              .dump());
    if (catalog.size() != j["catalog"]["bytes"].get<uint64_t>())
      return appliance::Response::Json(400, R"({"error":"catalog bytes"})");
    repository::CatalogParser parser(k);
    uint64_t records = 0;
    Status s =
        parser.Feed(ByteSpan(reinterpret_cast<const uint8_t*>(catalog.data()),
                             catalog.size()),
                    [&](repository::FileRecord&&) {
                      ++records;
                      return OkStatus();
                    });
    if (!s.ok() || !parser.Finish().ok())
      return appliance::Response::Json(400, R"({"error":"catalog"})");
    last_catalog_records = records;
    last_point = j;
    std::string upload = j["upload_id"];
    auto [it, fresh] =
        points.emplace(upload, std::string(24, '0') +
                                   std::to_string(10000000 + points.size()));
    if (fail_points_after_store > 0) {
      --fail_points_after_store;
      return appliance::Response::Json(503, R"({"error":"answer lost"})");
    }
    return appliance::Response::Json(
        fresh ? 201 : 200,
        nlohmann::json{
            {"id", it->second}, {"name", j["name"]}, {"time", j["time"]}}
            .dump());
  }
};

class UploadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cert = appliance::GenerateSelfSigned("localhost");
    ASSERT_THAT(cert, IsOk());
    appliance::HttpsServerOptions o;
    o.listen.host = "127.0.0.1";
    o.listen.port = 0;
    o.log = [](std::string_view) {};
    o.limits.large_bodies = {{"/api/v1/agent/", 64u << 20}};
    // havend admits a large body for an agent's valid credential only; this
    // appliance admits the test's agent.
    o.admit_large_body = [](std::string_view, const std::string* auth)
        -> std::optional<std::pair<int, std::string>> {
      if (auth == nullptr) return std::pair(401, std::string("no credential"));
      return std::nullopt;
    };
    auto server = appliance::HttpsServer::Start(
        o, *cert,
        [this](const appliance::Request& r) { return fake_.Handle(r); });
    ASSERT_THAT(server, IsOk());
    server_ = std::move(server.value());
    auto client = ApplianceClient::Create(
        "https://127.0.0.1:" + std::to_string(server_->port()),
        cert->fingerprint, "havenagent_test");
    ASSERT_THAT(client, IsOk());
    client_ = std::move(client.value());
    src_ = tmp_.Sub("src");
    state_ = tmp_.Sub("state");
    // Real files: a slice of the system's documentation, and one larger
    // file that is several chunks.
    ASSERT_EQ(Sh("mkdir -p " + src_ +
                 " && cd /usr/share/doc && cp -rL $(ls "
                 "| head -25) " +
                 src_ + "/ 2>/dev/null; true"),
              0);
    testing_util::WriteWholeFile(src_ + "/big.bin",
                                 testing_util::RandomData(3 << 20, 5));
    testing_util::WriteWholeFile(
        src_ + "/small.txt",
        ByteSpan(reinterpret_cast<const uint8_t*>("first version\n"), 14));
    // Access times settle (relatime updates them once after a change):
    // the catalog records them, and an unchanged tree must be unchanged.
    ASSERT_EQ(Sh("ls -R " + src_ + " >/dev/null && find " + src_ +
                 " -type f -exec cat {} + >/dev/null"),
              0);
  }

  Result<AgentBackupResult> Backup() {
    {
      std::lock_guard<std::mutex> l(fake_.mu_);
      fake_.last_run.clear();
    }
    FileBackupOptions o;
    o.name = "docs";
    o.paths = {src_};
    o.threads = 3;
    return BackupFilesToAppliance(*client_, state_, o);
  }

  FakeAppliance fake_;
  testing_util::TempDir tmp_;
  std::string src_, state_;
  std::unique_ptr<appliance::HttpsServer> server_;
  std::unique_ptr<ApplianceClient> client_;
};

TEST_F(UploadTest, SecondBackupOfAnUnchangedTreeUploadsNothing) {
  auto first = Backup();
  ASSERT_THAT(first, IsOk());
  EXPECT_GT(first->uploaded_chunks, 5u);
  EXPECT_GT(first->uploaded_bytes, 1u << 20);
  EXPECT_EQ(first->files.manifest.id, fake_.points.begin()->second);
  EXPECT_EQ(fake_.last_catalog_records, first->files.entries);
  EXPECT_EQ(fake_.last_point["entries"], first->files.entries);
  EXPECT_EQ(fake_.last_point["name"], "docs");
  const uint64_t files = first->files.files;
  EXPECT_GT(files, 20u);
  EXPECT_EQ(first->files.files_read, files);
  for (const auto& [id, n] : fake_.received) EXPECT_EQ(n, 1);

  auto second = Backup();
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->files.files_read, 0u);
  EXPECT_EQ(second->files.files_unchanged, files);
  // No file content went again. The catalog records the directories above
  // the tree too (/tmp changes all the time), so the catalog chunk that
  // holds them may be new; nothing else is.
  EXPECT_LE(second->uploaded_chunks, 1u);
  for (const auto& id : fake_.last_run)
    EXPECT_TRUE(fake_.last_catalog_ids.count(id)) << "a content chunk re-sent";
  EXPECT_EQ(fake_.points.size(), 2u);
  EXPECT_EQ(second->files.manifest.parent, first->files.manifest.id);
  EXPECT_NE(second->files.manifest.id, first->files.manifest.id);
}

TEST_F(UploadTest, ChangedFileUploadsOnlyItsChunks) {
  ASSERT_THAT(Backup(), IsOk());
  const std::string text = "second version, longer\n";
  testing_util::WriteWholeFile(
      src_ + "/small.txt",
      ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  auto again = Backup();
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->files.files_read, 1u);
  EXPECT_TRUE(fake_.last_run.count(Sha(text)));
  // The file's one chunk and the catalog chunks around its record.
  EXPECT_GE(again->uploaded_chunks, 2u);
  EXPECT_LE(again->uploaded_chunks, 4u);
  EXPECT_EQ(again->uploaded_chunks, fake_.last_run.size());
}

TEST_F(UploadTest, LostAnswerIsRetriedWithoutResendingWhatArrived) {
  fake_.fail_chunks_after_store = 1;
  fake_.fail_points_after_store = 1;
  auto r = Backup();
  ASSERT_THAT(r, IsOk());
  // The retry asked again first, and every chunk arrived exactly once.
  EXPECT_GE(fake_.missing_calls, 2);
  EXPECT_FALSE(fake_.received.empty());
  for (const auto& [id, n] : fake_.received) EXPECT_EQ(n, 1);
  // The point's answer was lost once: the retry with the same upload_id
  // got the same point, not a second one.
  EXPECT_EQ(fake_.point_posts, 2);
  EXPECT_EQ(fake_.points.size(), 1u);
  EXPECT_EQ(r->files.manifest.id, fake_.points.begin()->second);
}

TEST_F(UploadTest, PointTheApplianceNoLongerListsIsNoParent) {
  auto first = Backup();
  ASSERT_THAT(first, IsOk());
  fake_.unlisted.insert(first->files.manifest.id);
  auto second = Backup();
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->files.manifest.parent, "");
  EXPECT_EQ(second->files.files_read, first->files.files);
  // Read again, but the appliance had every chunk of content.
  for (const auto& id : fake_.last_run)
    EXPECT_TRUE(fake_.last_catalog_ids.count(id)) << "a content chunk re-sent";
  EXPECT_LE(second->uploaded_chunks, 1u);
  EXPECT_GE(second->skipped_chunks, first->uploaded_chunks - 2);
}

TEST_F(UploadTest, ChunksTheApplianceLostAreSentAgain) {
  auto first = Backup();
  ASSERT_THAT(first, IsOk());
  // The appliance lost a chunk of the big file (say, a repair dropped it):
  // the next run's point names it, the appliance answers 409, and the run
  // is made again without a parent.
  Bytes big = testing_util::ReadWholeFile(src_ + "/big.bin");
  std::string lost;
  {
    std::lock_guard<std::mutex> l(fake_.mu_);
    for (const auto& [id, raw] : fake_.store)
      if (raw.size() > 200000 &&
          std::string(big.begin(), big.end()).find(raw) != std::string::npos) {
        lost = id;
        break;
      }
    ASSERT_FALSE(lost.empty());
    fake_.store.erase(lost);
  }
  auto second = Backup();
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->files.manifest.parent, "");
  EXPECT_EQ(fake_.received[lost], 2);
  EXPECT_EQ(fake_.points.size(), 2u);
}

TEST_F(UploadTest, RevokedAgentIsRefusedWithTheAppliancesSentence) {
  auto cert = appliance::GenerateSelfSigned("localhost");
  ASSERT_THAT(cert, IsOk());
  appliance::HttpsServerOptions o;
  o.listen.host = "127.0.0.1";
  o.listen.port = 0;
  o.log = [](std::string_view) {};
  auto server =
      appliance::HttpsServer::Start(o, *cert, [](const appliance::Request&) {
        return appliance::Response::Json(
            401, R"({"error":"this agent was revoked on 2026-12-01; enroll )"
                 R"(it again with a new token"})");
      });
  ASSERT_THAT(server, IsOk());
  auto client = ApplianceClient::Create(
      "https://127.0.0.1:" + std::to_string((*server)->port()),
      cert->fingerprint, "havenagent_x");
  ASSERT_THAT(client, IsOk());
  FileBackupOptions opt;
  opt.name = "docs";
  opt.paths = {src_};
  EXPECT_THAT(BackupFilesToAppliance(**client, state_, opt),
              StatusIs(Code::kPermissionDenied, HasSubstr("revoked")));
}

}  // namespace
}  // namespace haven::agent
