// BackupFilesToAppliance against an in-process HTTPS server whose handler
// speaks the agent protocol (docs/agents.md) minimally: it checks every
// frame's SHA-256, answers /chunks/missing from what it holds, and commits
// points that name only chunks it has. Real files (a slice of
// /usr/share/doc) are backed up.
//
// VM points (image mode): tree-node frames are checked as the appliance
// does (every id they name held, else 409 "missing"), and the fake notes a
// node that arrived while a batch with one of its children was still
// being answered; /agent/vm-points commits manifests whose roots it holds.
#include "agent/upload_sink.h"

#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

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
    // Without the lock: it waits while a batch is "being stored".
    if (req.path == "/api/v1/agent/chunks") return Chunks(req.body);
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
    if (req.path == "/api/v1/agent/points" && req.method == "POST")
      return Commit(req.body);
    if (req.path == "/api/v1/agent/vm-points" && req.method == "POST")
      return CommitVm(req.body);
    if (req.path == "/api/v1/agent/points") {
      nlohmann::json j;
      j["points"] = nlohmann::json::array();
      for (const auto& [upload, id] : points)
        if (!unlisted.count(id))
          j["points"].push_back({{"id", id}, {"kind", "files"}});
      for (const auto& [upload, id] : vm_points)
        if (!unlisted.count(id))
          j["points"].push_back({{"id", id}, {"kind", "vm"}});
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
  // VM points.
  std::set<std::string> trees;          // upload ids held as tree nodes
  std::vector<std::string> tree_order;  // tree frames, as they arrived
  std::set<std::string> in_flight;      // data of requests being stored
  int early_nodes = 0;    // a node sent while a child's batch was unanswered
  int refused_nodes = 0;  // 409s for tree frames
  std::map<std::string, std::string> vm_points;  // upload_id -> point id
  std::vector<std::string> vm_upload_ids;        // of every vm-points POST
  nlohmann::json last_vm_manifest;
  int fail_vm_after_store = 0;
  bool vm_commit_missing = false;  // answer the next commit 409 "missing"

 private:
  static std::string Hex(const std::string& id) {
    return HexEncode(
        ByteSpan(reinterpret_cast<const uint8_t*>(id.data()), id.size()));
  }

  appliance::Response Chunks(const std::string& body) {
    {
      std::lock_guard<std::mutex> l(mu_);
      ++chunk_posts;
    }
    std::map<std::string, std::string> batch;
    std::vector<std::pair<std::string, bool>> frames;  // id, tree
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
      const bool tree = (codec & 0x10) != 0;
      codec &= 0x0f;
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
      if (tree && (raw.empty() || raw.size() % 32 != 0))
        return appliance::Response::Json(400, R"({"error":"node size"})");
      batch[id] = raw;
      frames.emplace_back(id, tree);
    }
    std::unique_lock<std::mutex> l(mu_);
    // Every id a node names is held, or an earlier frame of this request.
    std::set<std::string> earlier;
    nlohmann::json missing = nlohmann::json::array();
    bool early = false;
    for (const auto& [id, tree] : frames) {
      if (tree) {
        const std::string& raw = batch[id];
        for (size_t off = 0; off < raw.size(); off += 32) {
          std::string child = raw.substr(off, 32);
          if (child == std::string(32, '\0') || earlier.count(child) ||
              store.count(child))
            continue;
          if (in_flight.count(child)) early = true;
          missing.push_back(Hex(child));
        }
      }
      earlier.insert(id);
    }
    if (!missing.empty()) {
      if (early) ++early_nodes;
      ++refused_nodes;
      return appliance::Response::Json(
          409, nlohmann::json{{"error",
                               "a tree node names chunks this agent "
                               "does not hold"},
                              {"missing", missing}}
                   .dump());
    }
    // Stored a little later than received: a node sent before this batch
    // was answered finds its children in flight.
    bool data = false;
    for (const auto& [id, tree] : frames)
      if (!tree) {
        in_flight.insert(id);
        data = true;
      }
    if (data) {
      l.unlock();
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      l.lock();
    }
    for (const auto& [id, tree] : frames) {
      ++received[id];
      last_run.insert(id);
      store[id] = batch[id];
      in_flight.erase(id);
      if (tree) {
        trees.insert(id);
        tree_order.push_back(id);
      }
    }
    if (fail_chunks_after_store > 0) {
      --fail_chunks_after_store;
      return appliance::Response::Json(503, R"({"error":"answer lost"})");
    }
    return appliance::Response::Json(
        200, "{\"received\":" + std::to_string(batch.size()) + "}");
  }

  appliance::Response CommitVm(const std::string& body) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.contains("upload_id") ||
        !j.contains("manifest") || !j["manifest"].is_object())
      return appliance::Response::Json(400, R"({"error":"body"})");
    const std::string upload = j["upload_id"];
    vm_upload_ids.push_back(upload);
    auto m = repository::Manifest::FromJson(j["manifest"].dump(), "manifest");
    if (!m.ok() || m->kind != "vm")
      return appliance::Response::Json(400, R"({"error":"manifest"})");
    nlohmann::json missing = nlohmann::json::array();
    for (const auto& d : m->disks) {
      std::string root(reinterpret_cast<const char*>(d.tree.root.bytes.data()),
                       32);
      if (!d.tree.root.IsZero() && !trees.count(root))
        missing.push_back(Hex(root));
    }
    if (vm_commit_missing) {
      vm_commit_missing = false;
      missing.push_back(std::string(64, 'a'));
    }
    if (!missing.empty())
      return appliance::Response::Json(
          409, nlohmann::json{{"error", "roots not held"}, {"missing", missing}}
                   .dump());
    last_vm_manifest = j["manifest"];
    auto [it, fresh] = vm_points.emplace(
        upload,
        std::string(24, '0') + std::to_string(20000000 + vm_points.size()));
    const std::string time =
        "2026-12-07T10:00:0" + std::to_string(vm_points.size()) + "Z";
    if (fail_vm_after_store > 0) {
      --fail_vm_after_store;
      return appliance::Response::Json(503, R"({"error":"answer lost"})");
    }
    return appliance::Response::Json(fresh ? 201 : 200,
                                     nlohmann::json{{"id", it->second},
                                                    {"name", m->name},
                                                    {"time", time},
                                                    {"created", fresh}}
                                         .dump());
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

// --- VM points (image mode) ---

using repository::ChunkId;
using repository::ChunkType;
using repository::Manifest;

constexpr uint32_t kChunk = 4096;
constexpr size_t kChunks = 2500;  // three leaf nodes and a root

std::string Str(const ChunkId& id) {
  return std::string(reinterpret_cast<const char*>(id.bytes.data()), 32);
}

// Chunk i of a disk; every 7th repeats one chunk, so workers Put one id at
// once (the second Put returns before the first queued it).
std::vector<Bytes> MakeDisk() {
  std::vector<Bytes> d;
  for (size_t i = 0; i < kChunks; ++i)
    d.push_back(testing_util::RandomData(
        kChunk, static_cast<uint32_t>(i % 7 == 3 ? 3 : 1000 + i)));
  return d;
}

struct Captured {
  Manifest m;
  ChunkId root;
  std::vector<std::string> put_nodes;  // tree nodes Put, in order
};

// Stands in for CaptureDisk: three workers Put a block of chunks, then the
// tree gets the block's ids in order (TreeWriter Puts nodes as it fills
// them). With a parent, chunks not in `changed` are the parent's ids, read
// through the sink's NodeLoader, and not Put. A config file follows.
Result<Captured> Capture(PointSink& sink, const std::vector<Bytes>& disk,
                         const std::optional<Manifest>& parent,
                         const std::set<size_t>& changed) {
  Captured c;
  repository::ReadContext rctx;
  std::optional<repository::TreeReader> reader;
  if (parent) reader.emplace(parent->disks[0].tree, sink.NodeLoader(rctx));
  repository::WriteContext tree_ctx(3);
  auto store = [&](ByteSpan node) -> Result<ChunkId> {
    ChunkId id = sink.IdFor(ChunkType::kTree, node);
    HAVEN_ASSIGN_OR_RETURN(bool fresh,
                           sink.Put(ChunkType::kTree, id, node, tree_ctx));
    if (fresh) c.put_nodes.push_back(Str(id));
    return id;
  };
  repository::TreeWriter tree(store);
  constexpr size_t kBlock = 512;
  for (size_t first = 0; first < disk.size(); first += kBlock) {
    const size_t end = std::min(disk.size(), first + kBlock);
    std::vector<ChunkId> ids(end - first);
    std::vector<Status> errors(3);
    std::vector<std::thread> workers;
    for (size_t w = 0; w < 3; ++w)
      workers.emplace_back([&, w] {
        repository::WriteContext ctx(3);
        for (size_t i = first + w; i < end; i += 3) {
          if (reader && !changed.count(i)) continue;
          ids[i - first] = sink.IdFor(ChunkType::kData, disk[i]);
          auto r = sink.Put(ChunkType::kData, ids[i - first], disk[i], ctx);
          if (!r.ok()) {
            errors[w] = r.status();
            return;
          }
        }
      });
    for (auto& t : workers) t.join();
    for (const Status& e : errors) HAVEN_RETURN_IF_ERROR(e);
    for (size_t i = first; i < end; ++i) {
      if (reader && !changed.count(i)) {
        HAVEN_ASSIGN_OR_RETURN(ids[i - first], reader->Get(i));
      }
      HAVEN_RETURN_IF_ERROR(tree.Add(ids[i - first]));
    }
  }
  HAVEN_ASSIGN_OR_RETURN(repository::TreeRoot root, tree.Finish());
  c.root = root.root;

  const std::string xml = "<domain><name>web</name></domain>";
  ByteSpan xml_bytes(reinterpret_cast<const uint8_t*>(xml.data()), xml.size());
  repository::WriteContext ctx(3);
  ChunkId xml_id = sink.IdFor(ChunkType::kData, xml_bytes);
  HAVEN_RETURN_IF_ERROR(
      sink.Put(ChunkType::kData, xml_id, xml_bytes, ctx).status());
  repository::TreeWriter xml_tree(store);
  HAVEN_RETURN_IF_ERROR(xml_tree.Add(xml_id));
  HAVEN_ASSIGN_OR_RETURN(repository::TreeRoot xml_root, xml_tree.Finish());

  Manifest& m = c.m;
  m.name = "web";
  m.kind = "vm";
  m.time = "2026-12-07T09:00:00Z";
  m.hostname = "kvm1";
  m.consistency = "crash";
  m.vm_uuid = "6f1c6a0e-5d1b-4a53-9d0e-0c3f5b2d9a11";
  m.checkpoint = "haven-1";
  if (parent) m.parent = parent->id;
  repository::DiskManifest d;
  d.name = "vda";
  d.source = "/var/lib/libvirt/images/web.qcow2";
  d.size = uint64_t{kChunks} * kChunk;
  d.chunk_size = kChunk;
  d.tree = root;
  m.disks.push_back(d);
  repository::DiskManifest x;
  x.name = "domain.xml";
  x.kind = "config";
  x.size = xml.size();
  x.chunk_size = kChunk;
  x.tree = xml_root;
  m.disks.push_back(x);
  HAVEN_RETURN_IF_ERROR(sink.Commit(m));
  return c;
}

class VmUploadTest : public UploadTest {
 protected:
  std::unique_ptr<UploadPointSink> Sink() {
    {
      std::lock_guard<std::mutex> l(fake_.mu_);
      fake_.last_run.clear();
      fake_.tree_order.clear();
    }
    return NewVmUploadSink(*client_, state_, "web", CancelToken());
  }
  std::string CacheDir() const {
    const std::string name = "web";
    return state_ + "/cache/vm-" +
           HexEncode(ByteSpan(reinterpret_cast<const uint8_t*>(name.data()),
                              name.size()));
  }
  bool Exists(const std::string& path) const {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
  }
  std::vector<Bytes> disk_ = MakeDisk();
};

TEST_F(VmUploadTest, NodesFollowTheirDataAndTheCommitCarriesUploadIds) {
  auto sink = Sink();
  auto parent = sink->LatestPoint("web", "vm");
  ASSERT_THAT(parent, IsOk());
  EXPECT_FALSE(parent->has_value());
  EXPECT_EQ(sink->chunk_size(), repository::kDefaultChunkSize);
  auto c = Capture(*sink, disk_, std::nullopt, {});
  ASSERT_THAT(c, IsOk());
  // Every node arrived after the batches of the chunks it names were
  // answered, in the order it was Put: three leaves, the disk's root, the
  // config file's node.
  EXPECT_EQ(fake_.early_nodes, 0);
  EXPECT_EQ(fake_.refused_nodes, 0);
  EXPECT_EQ(c->put_nodes.size(), 5u);
  EXPECT_EQ(fake_.tree_order, c->put_nodes);
  for (const auto& [id, n] : fake_.received) EXPECT_EQ(n, 1);
  // The committed manifest names the upload ids of the roots.
  ASSERT_EQ(fake_.vm_upload_ids.size(), 1u);
  EXPECT_EQ(fake_.vm_upload_ids[0].size(), 32u);
  EXPECT_EQ(fake_.last_vm_manifest["kind"], "vm");
  EXPECT_EQ(fake_.last_vm_manifest["disks"][0]["name"], "vda");
  EXPECT_EQ(fake_.last_vm_manifest["disks"][0]["tree"]["root"], c->root.Hex());
  EXPECT_EQ(fake_.last_vm_manifest["vm"]["checkpoint"], "haven-1");
  // The point's id and time are the appliance's.
  EXPECT_EQ(c->m.id, fake_.vm_points.begin()->second);
  EXPECT_EQ(c->m.time, "2026-12-07T10:00:01Z");
  EXPECT_GT(sink->uploaded_chunks(), kChunks * 6 / 7);
  // The cache: manifest and nodes, no temp file left.
  EXPECT_TRUE(Exists(CacheDir() + "/manifest.json"));
  EXPECT_TRUE(Exists(CacheDir() + "/nodes.bin"));
  EXPECT_EQ(Sh("test $(ls " + CacheDir() + " | wc -l) = 2"), 0);
}

TEST_F(VmUploadTest, RetriedCommitReusesTheUploadId) {
  fake_.fail_vm_after_store = 1;
  auto sink = Sink();
  auto c = Capture(*sink, disk_, std::nullopt, {});
  ASSERT_THAT(c, IsOk());
  ASSERT_EQ(fake_.vm_upload_ids.size(), 2u);
  EXPECT_EQ(fake_.vm_upload_ids[0], fake_.vm_upload_ids[1]);
  EXPECT_EQ(fake_.vm_points.size(), 1u);
  EXPECT_EQ(c->m.id, fake_.vm_points.begin()->second);
}

TEST_F(VmUploadTest, CachedNodesAreTheParentWhileThePointIsListed) {
  auto first_sink = Sink();
  auto first = Capture(*first_sink, disk_, std::nullopt, {});
  ASSERT_THAT(first, IsOk());

  auto sink = Sink();
  EXPECT_FALSE(sink->LatestPoint("web", "files")->has_value());
  auto parent = sink->LatestPoint("web", "vm");
  ASSERT_THAT(parent, IsOk());
  ASSERT_TRUE(parent->has_value());
  EXPECT_EQ((*parent)->id, first->m.id);
  EXPECT_EQ((*parent)->disks[0].tree.root, first->root);
  repository::ReadContext rctx;
  auto node = sink->NodeLoader(rctx)(first->root);
  ASSERT_THAT(node, IsOk());
  EXPECT_EQ(sink->IdFor(ChunkType::kTree, *node), first->root);

  // Three chunks change: only they go, with the nodes above them.
  const std::set<size_t> changed = {10, 1500, 2499};
  std::set<std::string> changed_ids;
  for (size_t i : changed) {
    disk_[i] =
        testing_util::RandomData(kChunk, static_cast<uint32_t>(9000 + i));
    changed_ids.insert(Str(sink->IdFor(ChunkType::kData, disk_[i])));
  }
  auto second = Capture(*sink, disk_, *parent, changed);
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->m.parent, first->m.id);
  EXPECT_NE(second->m.id, first->m.id);
  std::set<std::string> data_sent;
  for (const auto& id : fake_.last_run)
    if (!fake_.trees.count(id)) data_sent.insert(id);
  EXPECT_EQ(data_sent, changed_ids);
  EXPECT_EQ(fake_.early_nodes, 0);
  EXPECT_EQ(fake_.refused_nodes, 0);

  // The second point is the parent now; once the appliance no longer lists
  // it, there is none.
  auto third = Sink();
  auto p3 = third->LatestPoint("web", "vm");
  ASSERT_THAT(p3, IsOk());
  ASSERT_TRUE(p3->has_value());
  EXPECT_EQ((*p3)->id, second->m.id);
  fake_.unlisted.insert(second->m.id);
  auto fourth = Sink();
  auto p4 = fourth->LatestPoint("web", "vm");
  ASSERT_THAT(p4, IsOk());
  EXPECT_FALSE(p4->has_value());
}

TEST_F(VmUploadTest, ChunkOfTheParentGoneDropsTheCache) {
  auto first_sink = Sink();
  auto first = Capture(*first_sink, disk_, std::nullopt, {});
  ASSERT_THAT(first, IsOk());
  {
    // A repair dropped chunk 100: the leaf naming it is refused.
    std::lock_guard<std::mutex> l(fake_.mu_);
    fake_.store.erase(Str(first_sink->IdFor(ChunkType::kData, disk_[100])));
  }
  auto sink = Sink();
  auto parent = sink->LatestPoint("web", "vm");
  ASSERT_THAT(parent, IsOk());
  ASSERT_TRUE(parent->has_value());
  disk_[10] = testing_util::RandomData(kChunk, 777);
  auto second = Capture(*sink, disk_, *parent, {10});
  EXPECT_THAT(second, StatusIs(Code::kFailedPrecondition,
                               HasSubstr("next run reads the VM fully")));
  EXPECT_TRUE(sink->lost_chunks());
  EXPECT_EQ(fake_.vm_points.size(), 1u);
  EXPECT_FALSE(Exists(CacheDir() + "/manifest.json"));
  auto again = Sink();
  auto none = again->LatestPoint("web", "vm");
  ASSERT_THAT(none, IsOk());
  EXPECT_FALSE(none->has_value());
}

TEST_F(VmUploadTest, CommitRefusedForMissingRootsDropsTheCache) {
  auto first_sink = Sink();
  ASSERT_THAT(Capture(*first_sink, disk_, std::nullopt, {}), IsOk());
  ASSERT_TRUE(Exists(CacheDir() + "/manifest.json"));
  fake_.vm_commit_missing = true;
  auto sink = Sink();
  auto parent = sink->LatestPoint("web", "vm");
  ASSERT_THAT(parent, IsOk());
  auto second = Capture(*sink, disk_, *parent, {});
  EXPECT_THAT(second, StatusIs(Code::kFailedPrecondition,
                               HasSubstr("no longer holds")));
  EXPECT_FALSE(Exists(CacheDir() + "/manifest.json"));
  EXPECT_FALSE(Exists(CacheDir() + "/nodes.bin"));
}

TEST_F(VmUploadTest, EightMiBOfNodesGoBeforeTheFlushAfterTheirData) {
  // 300 nodes of 1024 random ids (32 KiB each, incompressible): over 8 MiB
  // waits, so nodes go while Puts go on; the data they name sits in the
  // open batch and must be answered first.
  auto sink = Sink();
  std::vector<ChunkId> ids;
  std::vector<std::string> put_nodes;
  repository::WriteContext tree_ctx(3);
  uint32_t seed = 1;
  auto put_data = [&](size_t n) {
    std::vector<ChunkId> fresh(n);
    std::vector<std::thread> workers;
    for (size_t w = 0; w < 2; ++w)
      workers.emplace_back([&, w, base = seed] {
        repository::WriteContext ctx(3);
        for (size_t i = w; i < n; i += 2) {
          Bytes raw =
              testing_util::RandomData(64, base + static_cast<uint32_t>(i));
          fresh[i] = sink->IdFor(ChunkType::kData, raw);
          ASSERT_THAT(sink->Put(ChunkType::kData, fresh[i], raw, ctx), IsOk());
        }
      });
    for (auto& t : workers) t.join();
    seed += static_cast<uint32_t>(n);
    ids.insert(ids.end(), fresh.begin(), fresh.end());
  };
  put_data(repository::kTreeFanout);
  for (int round = 0; round < 300; ++round) {
    put_data(8);
    Bytes node;
    for (size_t i = ids.size() - repository::kTreeFanout; i < ids.size(); ++i)
      node.insert(node.end(), ids[i].bytes.begin(), ids[i].bytes.end());
    ChunkId id = sink->IdFor(ChunkType::kTree, node);
    auto fresh = sink->Put(ChunkType::kTree, id, node, tree_ctx);
    ASSERT_THAT(fresh, IsOk());
    EXPECT_TRUE(*fresh);
    put_nodes.push_back(Str(id));
  }
  size_t before_flush = 0;
  {
    std::lock_guard<std::mutex> l(fake_.mu_);
    before_flush = fake_.tree_order.size();
  }
  EXPECT_GT(before_flush, 200u);
  EXPECT_LT(before_flush, 300u);
  ASSERT_THAT(sink->Flush(), IsOk());
  EXPECT_EQ(fake_.refused_nodes, 0);
  EXPECT_EQ(fake_.early_nodes, 0);
  EXPECT_EQ(fake_.tree_order, put_nodes);
}

}  // namespace
}  // namespace haven::agent
