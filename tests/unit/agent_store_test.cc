// The appliance's side of agents' uploads (appliance/agent_store.h,
// routes_agent_points.cc) through the real route table and dispatcher,
// a real repository, a real state database and the read-side repository
// cache: two agents A and B upload chunks and commit points of real file
// catalogs; what one agent stores never changes what the other learns.
#include "appliance/agent_store.h"

#include <openssl/evp.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "appliance/api.h"
#include "appliance/repository_cache.h"
#include "appliance/routes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/chunk_tree.h"
#include "repository/compression.h"
#include "repository/file_tree.h"
#include "repository/repository.h"
#include "tests/unit/repository_test_util.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::haven::testing_util::CloneFreshRepository;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::kTestPassphrase;
using ::haven::testing_util::PackFiles;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::ReadOptions;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteWholeFile;
using nlohmann::json;
using repository::FileRecord;
using repository::FileType;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Sha(ByteSpan data) {
  std::string out(32, '\0');
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(),
             reinterpret_cast<unsigned char*>(out.data()), &len, EVP_sha256(),
             nullptr);
  return out;
}

std::string Str(ByteSpan b) { return std::string(b.begin(), b.end()); }

void PutU32To(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

// One frame of POST /agent/chunks; `id` replaces the true upload id.
void AppendFrame(std::string& body, const Bytes& raw, bool zstd,
                 const std::string& id = "") {
  body += id.empty() ? Sha(raw) : id;
  PutU32To(body, static_cast<uint32_t>(raw.size()));
  Bytes data = raw;
  if (zstd) {
    repository::Compressor c(3);
    data.clear();
    EXPECT_THAT(c.Compress(raw, data), IsOk());
  }
  body.push_back(zstd ? 1 : 0);
  PutU32To(body, static_cast<uint32_t>(data.size()));
  body += Str(data);
}

// A point as an agent sends it: its catalog and content chunks.
struct AgentPoint {
  std::vector<Bytes> catalog, content;
  Bytes hosts;  // the content of /etc/hosts
  uint64_t catalog_bytes = 0, content_bytes = 0;
};

AgentPoint MakePoint(uint32_t seed) {
  AgentPoint p;
  p.hosts = RandomData(3000, seed);
  const std::string motd_text = "hello from the guest\n";
  Bytes motd(motd_text.begin(), motd_text.end());
  auto record = [](FileType type, const std::string& path) {
    FileRecord r;
    r.type = type;
    r.path = path;
    r.mode = type == FileType::kDir ? 0755 : 0644;
    r.mtime_ns = r.ctime_ns = r.atime_ns = 1600000000000000000;
    return r;
  };
  Bytes cat;
  repository::AppendCatalogHeader(cat);
  EXPECT_THAT(repository::AppendRecord(record(FileType::kDir, "/"), cat),
              IsOk());
  EXPECT_THAT(repository::AppendRecord(record(FileType::kDir, "/etc"), cat),
              IsOk());
  FileRecord hosts = record(FileType::kFile, "/etc/hosts");
  hosts.size = p.hosts.size();
  hosts.extents = {{0, p.hosts.size()}};
  hosts.content_first = 0;
  hosts.content_count = 2;  // cut in two
  EXPECT_THAT(repository::AppendRecord(hosts, cat), IsOk());
  FileRecord m = record(FileType::kFile, "/etc/motd");
  m.size = motd.size();
  m.extents = {{0, motd.size()}};
  m.content_first = 2;
  m.content_count = 1;
  EXPECT_THAT(repository::AppendRecord(m, cat), IsOk());
  p.content = {Bytes(p.hosts.begin(), p.hosts.begin() + 1000),
               Bytes(p.hosts.begin() + 1000, p.hosts.end()), motd};
  const size_t half = cat.size() / 2;
  p.catalog = {Bytes(cat.begin(), cat.begin() + half),
               Bytes(cat.begin() + half, cat.end())};
  p.catalog_bytes = cat.size();
  p.content_bytes = p.hosts.size() + motd.size();
  return p;
}

std::string CommitBody(const AgentPoint& p, const std::string& upload_id,
                       const std::string& name = "web1",
                       int64_t content_bytes = -1) {
  json j = {
      {"upload_id", upload_id},
      {"name", name},
      {"time", "2026-12-01T02:00:00.000000Z"},
      {"hostname", "guest1"},
      {"consistency", "file-level"},
      {"consistency_reason", "each file read on its own"},
      {"paths", {"/etc"}},
      {"entries", 4},
      {"partial", false},
      {"notes", json::array()},
      {"stats", {{"logical_bytes", p.content_bytes}, {"new_chunks", 5}}},
      {"catalog", {{"count", p.catalog.size()}, {"bytes", p.catalog_bytes}}},
      {"content",
       {{"count", p.content.size()},
        {"bytes",
         content_bytes >= 0 ? uint64_t(content_bytes) : p.content_bytes}}}};
  std::string text = j.dump(), body;
  PutU32To(body, static_cast<uint32_t>(text.size()));
  body += text;
  for (const Bytes& c : p.catalog) body += Sha(c);
  for (const Bytes& c : p.content) body += Sha(c);
  return body;
}

class AgentStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    repo_dir_ = tmp_.Sub("repo");
    ASSERT_THAT(CloneFreshRepository(repo_dir_), IsOk());
    const std::string pass = tmp_.Sub("pass");
    WriteWholeFile(pass, Bytes(kTestPassphrase,
                               kTestPassphrase + strlen(kTestPassphrase)));
    config_.state_dir = tmp_.Sub("state");
    std::filesystem::create_directories(config_.state_dir);
    config_.repositories.push_back({"main", repo_dir_, pass});
    auto db = StateDb::Open(config_.state_dir + "/havend.db");
    ASSERT_THAT(db, IsOk());
    db_ = std::move(db).value();
    catalog_ = std::make_unique<RepositoryCatalog>(config_);
    cache_ = std::make_unique<RepositoryCache>(*catalog_);
    AgentStore::Options o;
    o.lock_wait_seconds = 5;
    o.tool = "havend test";
    auto store = AgentStore::Create(
        *db_, *catalog_,
        [](const std::string& agent) -> Result<std::string> {
          if (agent == "A" || agent == "B") return std::string("main");
          return PermissionDenied("no such agent");
        },
        o);
    ASSERT_THAT(store, IsOk());
    store_ = std::move(store).value();
    services_.config = &config_;
    services_.db = db_.get();
    services_.repositories = catalog_.get();
    services_.open_repositories = cache_.get();
    services_.agent_store = store_.get();
    ApiOptions api;
    api.authenticate = [](const Request& r, bool, const std::string*) {
      Caller c;
      if (const std::string* agent = r.Header("x-test-agent")) {
        c = Caller{"agent:" + *agent, Role::kAgent, false, *agent};
      } else {
        c.name = "admin";
        c.role = Role::kAdmin;
      }
      return std::variant<Caller, Response>(c);
    };
    std::vector<Route> routes = AgentPointRoutes(services_);
    for (auto more : {PointRoutes(services_), FileRoutes(services_),
                      JobRoutes(services_, 1), ScheduleRoutes(services_)})
      for (Route& r : more) routes.push_back(std::move(r));
    auto handler = MakeApiHandler(std::move(routes), api);
    ASSERT_THAT(handler, IsOk());
    handler_ = std::move(handler).value();
  }

  Response Call(const std::string& method, const std::string& target,
                const std::string& agent, std::string body = "") {
    Request r;
    r.method = method;
    r.target = target;
    size_t q = target.find('?');
    r.path = target.substr(0, q);
    if (q != std::string::npos) r.query = target.substr(q + 1);
    if (!agent.empty()) r.headers.push_back({"x-test-agent", agent});
    r.body = std::move(body);
    return handler_(r);
  }
  static json Body(const Response& r) {
    return json::parse(r.body, nullptr, false);
  }
  // The whole body of a streamed answer.
  static std::string Streamed(const Response& r) {
    std::string out;
    if (!r.stream) return r.body;
    Status s = r.stream([&](std::string_view piece) {
      out.append(piece);
      return OkStatus();
    });
    EXPECT_THAT(s, IsOk());
    return out;
  }

  std::string Ids(const std::vector<Bytes>& chunks) {
    std::string out;
    for (const Bytes& c : chunks) out += Sha(c);
    return out;
  }
  // Uploads every chunk of `p` for `agent`: the catalog plain, the content
  // zstd.
  void Upload(const AgentPoint& p, const std::string& agent) {
    std::string body;
    for (const Bytes& c : p.catalog) AppendFrame(body, c, false);
    for (const Bytes& c : p.content) AppendFrame(body, c, true);
    Response r = Call("POST", "/api/v1/agent/chunks", agent, body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(Body(r)["received"], 5);
  }
  uint64_t IndexedChunks() {
    auto repo =
        repository::Repository::Open(repo_dir_, kTestPassphrase, ReadOptions());
    EXPECT_THAT(repo, IsOk());
    auto n = (*repo)->index().CountChunks();
    EXPECT_THAT(n, IsOk());
    return n.ok() ? *n : 0;
  }

  TempDir tmp_;
  std::string repo_dir_;
  ApplianceConfig config_;
  std::unique_ptr<StateDb> db_;
  std::unique_ptr<RepositoryCatalog> catalog_;
  std::unique_ptr<RepositoryCache> cache_;
  std::unique_ptr<AgentStore> store_;
  Services services_;
  Handler handler_;
};

const std::string kUpload1(32, 'a');

TEST_F(AgentStoreTest, UploadCommitAndReadBack) {
  AgentPoint p = MakePoint(1);
  std::string ids = Ids(p.catalog) + Ids(p.content);
  Response before = Call("POST", "/api/v1/agent/chunks/missing", "A", ids);
  ASSERT_EQ(before.status, 200) << before.body;
  EXPECT_EQ(before.body, std::string(5, '\1'));

  std::string body;
  for (const Bytes& c : p.catalog) AppendFrame(body, c, false);
  for (const Bytes& c : p.content) AppendFrame(body, c, true);
  Response up = Call("POST", "/api/v1/agent/chunks", "A", body);
  ASSERT_EQ(up.status, 200) << up.body;
  EXPECT_EQ(Body(up)["received"], 5);
  EXPECT_EQ(Body(up)["new"], 5);
  EXPECT_GT(Body(up)["new_stored_bytes"].get<uint64_t>(), 0u);
  // The same chunks again: nothing new for A.
  Response again = Call("POST", "/api/v1/agent/chunks", "A", body);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_EQ(Body(again)["new"], 0);
  EXPECT_EQ(Call("POST", "/api/v1/agent/chunks/missing", "A", ids).body,
            std::string(5, '\0'));

  Response commit =
      Call("POST", "/api/v1/agent/points", "A", CommitBody(p, kUpload1));
  ASSERT_EQ(commit.status, 201) << commit.body;
  const std::string id = Body(commit)["id"];
  EXPECT_EQ(Body(commit)["name"], "web1");

  // The point in the repository: A's, with the catalog and content the
  // agent sent, read back by the ordinary readers.
  auto repo =
      repository::Repository::Open(repo_dir_, kTestPassphrase, ReadOptions());
  ASSERT_THAT(repo, IsOk());
  auto m = (*repo)->LoadSnapshot(id);
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(m->agent_id, "A");
  EXPECT_EQ(m->kind, "files");
  EXPECT_EQ(m->file_paths, std::vector<std::string>{"/etc"});
  EXPECT_EQ(m->parent, "");
  std::vector<std::string> paths;
  ASSERT_THAT(repository::ForEachRecord(**repo, *m,
                                        [&](FileRecord&& r) {
                                          paths.push_back(r.path);
                                          return OkStatus();
                                        }),
              IsOk());
  EXPECT_THAT(paths, ElementsAre("/", "/etc", "/etc/hosts", "/etc/motd"));

  // Through the agent's routes.
  Response list = Call("GET", "/api/v1/agent/points", "A");
  ASSERT_EQ(list.status, 200) << list.body;
  ASSERT_EQ(Body(list)["points"].size(), 1u);
  EXPECT_EQ(Body(list)["points"][0]["id"], id);
  EXPECT_EQ(Body(list)["points"][0]["agent_id"], "A");
  Response show = Call("GET", "/api/v1/agent/points/" + id, "A");
  ASSERT_EQ(show.status, 200) << show.body;
  EXPECT_EQ(Body(show)["agent_id"], "A");
  Response files =
      Call("GET", "/api/v1/agent/points/" + id + "/files?path=/etc", "A");
  ASSERT_EQ(files.status, 200) << files.body;
  ASSERT_EQ(Body(files)["entries"].size(), 2u);
  EXPECT_EQ(Body(files)["entries"][0]["name"], "hosts");
  EXPECT_EQ(Body(files)["entries"][0]["size"], 3000);
  Response tar = Call(
      "GET", "/api/v1/agent/points/" + id + "/archive?path=/etc/hosts", "A");
  ASSERT_EQ(tar.status, 200) << tar.body;
  EXPECT_NE(Streamed(tar).find(Str(p.hosts)), std::string::npos)
      << "the tar holds /etc/hosts' bytes";

  // The admin sees whose point it is.
  Response admin = Call("GET", "/api/v1/points", "");
  ASSERT_EQ(admin.status, 200) << admin.body;
  EXPECT_EQ(Body(admin)["points"][0]["agent_id"], "A");

  // A retried commit answers with the same point and makes no other.
  Response retry =
      Call("POST", "/api/v1/agent/points", "A", CommitBody(p, kUpload1));
  ASSERT_EQ(retry.status, 200) << retry.body;
  EXPECT_EQ(Body(retry)["id"], id);
  // The next commit of the name has this one as its parent.
  Response next = Call("POST", "/api/v1/agent/points", "A",
                       CommitBody(p, std::string(32, 'b')));
  ASSERT_EQ(next.status, 201) << next.body;
  auto m2 = (*repo)->LoadSnapshot(Body(next)["id"].get<std::string>());
  ASSERT_THAT(m2, IsOk());
  EXPECT_EQ(m2->parent, id);
  EXPECT_EQ(Body(Call("GET", "/api/v1/agent/points", "A"))["points"].size(),
            2u);
}

TEST_F(AgentStoreTest, AnotherAgentLearnsNothingAndReadsNothing) {
  AgentPoint p = MakePoint(2);
  Upload(p, "A");
  Response commit =
      Call("POST", "/api/v1/agent/points", "A", CommitBody(p, kUpload1));
  ASSERT_EQ(commit.status, 201) << commit.body;
  const std::string id = Body(commit)["id"];

  // B's question about A's chunks is answered byte for byte as for bytes
  // no one ever stored.
  const std::string ids = Ids(p.catalog) + Ids(p.content);
  AgentPoint never = MakePoint(99);
  const std::string unseen = Ids(never.catalog) + Ids(never.content);
  Response b_known = Call("POST", "/api/v1/agent/chunks/missing", "B", ids);
  Response b_unseen = Call("POST", "/api/v1/agent/chunks/missing", "B", unseen);
  ASSERT_EQ(b_known.status, 200);
  EXPECT_EQ(b_known.body, std::string(5, '\1'));
  EXPECT_EQ(b_known.body, b_unseen.body);
  EXPECT_EQ(b_known.headers, b_unseen.headers);

  // B cannot commit a point from A's chunks.
  Response b_commit =
      Call("POST", "/api/v1/agent/points", "B", CommitBody(p, kUpload1));
  ASSERT_EQ(b_commit.status, 409) << b_commit.body;
  EXPECT_EQ(Body(b_commit)["missing"].size(), 5u);

  // B's upload of the same bytes: the answer is as if they were new.
  std::string body;
  for (const Bytes& c : p.catalog) AppendFrame(body, c, false);
  for (const Bytes& c : p.content) AppendFrame(body, c, true);
  Response a_first = Call("POST", "/api/v1/agent/chunks", "A", "");
  EXPECT_EQ(a_first.status, 400);
  Response b_up = Call("POST", "/api/v1/agent/chunks", "B", body);
  ASSERT_EQ(b_up.status, 200) << b_up.body;
  EXPECT_EQ(Body(b_up)["new"], 5);
  EXPECT_GT(Body(b_up)["new_stored_bytes"].get<uint64_t>(), 0u);

  // A's point is not B's to see, list or read.
  Response show = Call("GET", "/api/v1/agent/points/" + id, "B");
  EXPECT_EQ(show.status, 403);
  EXPECT_EQ(Body(show)["error"], "point " + id + " belongs to another agent");
  EXPECT_EQ(
      Call("GET", "/api/v1/agent/points/" + id + "/files?path=/", "B").status,
      403);
  EXPECT_EQ(
      Call("GET", "/api/v1/agent/points/" + id + "/archive?path=/", "B").status,
      403);
  EXPECT_TRUE(Body(Call("GET", "/api/v1/agent/points", "B"))["points"].empty());
  EXPECT_EQ(
      Call("GET", "/api/v1/agent/points/" + std::string(32, 'c'), "B").status,
      404);

  // An agent's credential calls no admin route.
  EXPECT_EQ(Call("POST", "/api/v1/repositories/main/forget", "A",
                 R"({"keep_last": 1})")
                .status,
            403);
  EXPECT_EQ(Call("DELETE", "/api/v1/schedules/1", "A").status, 403);
  EXPECT_EQ(Call("GET", "/api/v1/points", "A").status, 403);
  EXPECT_EQ(Call("GET", "/api/v1/points/main/" + id + "/files", "A").status,
            403);
  // And an admin calls no agent route.
  EXPECT_EQ(Call("GET", "/api/v1/agent/points", "").status, 403);
}

TEST_F(AgentStoreTest, ABadFrameStoresNothing) {
  AgentPoint p = MakePoint(3);
  const uint64_t chunks_before = IndexedChunks();
  const size_t packs_before = PackFiles(repo_dir_).size();
  std::string body;
  AppendFrame(body, p.content[0], true);
  AppendFrame(body, p.content[1], false, Sha(p.content[2]));  // wrong id
  Response r = Call("POST", "/api/v1/agent/chunks", "A", body);
  ASSERT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(Body(r)["error"],
            "chunk 1 (" + HexEncode(AsBytes(Sha(p.content[2]))) +
                "): its bytes do not match its id; nothing of this batch "
                "was stored");
  EXPECT_EQ(IndexedChunks(), chunks_before);
  EXPECT_EQ(PackFiles(repo_dir_).size(), packs_before);
  // The good frame of the batch was not recorded either.
  EXPECT_EQ(
      Call("POST", "/api/v1/agent/chunks/missing", "A", Sha(p.content[0])).body,
      std::string(1, '\1'));

  // Malformed frames are named.
  std::string cut = body.substr(0, 20);
  Response short_frame = Call("POST", "/api/v1/agent/chunks", "A", cut);
  EXPECT_EQ(short_frame.status, 400);
  EXPECT_THAT(Body(short_frame)["error"].get<std::string>(),
              HasSubstr("chunk 0"));
  std::string zstd_lie;
  AppendFrame(zstd_lie, p.content[0], false);
  zstd_lie[32 + 4] = 1;  // says zstd, holds plain bytes
  EXPECT_EQ(Call("POST", "/api/v1/agent/chunks", "A", zstd_lie).status, 422);
  EXPECT_EQ(
      Call("POST", "/api/v1/agent/chunks/missing", "A", std::string(33, 'x'))
          .status,
      400);
}

TEST_F(AgentStoreTest, CommitNeedsEveryChunkAndMatchingSizes) {
  AgentPoint p = MakePoint(4);
  // Upload all but the last content chunk.
  std::string body;
  for (const Bytes& c : p.catalog) AppendFrame(body, c, false);
  AppendFrame(body, p.content[0], true);
  AppendFrame(body, p.content[1], true);
  ASSERT_EQ(Call("POST", "/api/v1/agent/chunks", "A", body).status, 200);
  Response r =
      Call("POST", "/api/v1/agent/points", "A", CommitBody(p, kUpload1));
  ASSERT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(Body(r)["missing"],
            json::array({HexEncode(AsBytes(Sha(p.content[2])))}));
  EXPECT_THAT(Body(r)["error"].get<std::string>(),
              HasSubstr("nothing was committed"));

  std::string last;
  AppendFrame(last, p.content[2], false);
  ASSERT_EQ(Call("POST", "/api/v1/agent/chunks", "A", last).status, 200);
  Response lie = Call("POST", "/api/v1/agent/points", "A",
                      CommitBody(p, kUpload1, "web1", 5));
  EXPECT_EQ(lie.status, 400) << lie.body;
  EXPECT_THAT(Body(lie)["error"].get<std::string>(),
              HasSubstr("must be the sizes of their chunks"));
  // A body whose ids do not match the counts.
  std::string extra = CommitBody(p, kUpload1) + std::string(32, 'z');
  EXPECT_EQ(Call("POST", "/api/v1/agent/points", "A", extra).status, 400);
  EXPECT_EQ(Call("POST", "/api/v1/agent/points", "A", CommitBody(p, "not-hex"))
                .status,
            400);
  EXPECT_TRUE(Body(Call("GET", "/api/v1/agent/points", "A"))["points"].empty());
  // After all that, the good commit works.
  EXPECT_EQ(
      Call("POST", "/api/v1/agent/points", "A", CommitBody(p, kUpload1)).status,
      201);
}

TEST_F(AgentStoreTest, AChunkGoneFromTheIndexIsAskedForAgain) {
  AgentPoint p = MakePoint(5);
  Upload(p, "A");
  const std::string id0 = Sha(p.content[0]);
  ASSERT_EQ(Call("POST", "/api/v1/agent/chunks/missing", "A", id0).body,
            std::string(1, '\0'));
  // As gc's sweep does to a chunk no point names: its index entry goes.
  // The store closes its idle repository first, as it does for gc.
  store_->Release("main");
  {
    repository::OpenOptions o = ::haven::testing_util::WriteOptions();
    o.hold_index = true;
    auto repo = repository::Repository::Open(repo_dir_, kTestPassphrase, o);
    ASSERT_THAT(repo, IsOk());
    ASSERT_THAT(
        (*repo)->index().Delete(
            {(*repo)->IdFor(repository::ChunkType::kData, p.content[0])}, true),
        IsOk());
  }
  EXPECT_EQ(Call("POST", "/api/v1/agent/chunks/missing", "A", id0).body,
            std::string(1, '\1'));
  Response r =
      Call("POST", "/api/v1/agent/points", "A", CommitBody(p, kUpload1));
  ASSERT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(Body(r)["missing"], json::array({HexEncode(AsBytes(id0))}));
  // Sent again, it is stored again and the commit goes through.
  std::string again;
  AppendFrame(again, p.content[0], true);
  Response up = Call("POST", "/api/v1/agent/chunks", "A", again);
  ASSERT_EQ(up.status, 200) << up.body;
  EXPECT_EQ(Body(up)["new"], 1);
  EXPECT_EQ(
      Call("POST", "/api/v1/agent/points", "A", CommitBody(p, kUpload1)).status,
      201);
}

// ------------------------------------------------------------ VM points

// A VM point as a host agent uploads it: its data chunks, the tree nodes
// TreeWriter made over their upload ids (children before parents), and
// the manifest whose roots are upload ids.
struct AgentVm {
  std::vector<Bytes> data;   // distinct data chunks
  std::vector<Bytes> nodes;  // tree nodes of upload ids, in TreeWriter order
  Bytes disk;                // the disk's bytes
  std::string xml;           // domain.xml
  repository::Manifest m;
};

repository::ChunkId IdOf(const std::string& raw) {
  repository::ChunkId id;
  std::copy(raw.begin(), raw.end(), id.bytes.begin());
  return id;
}

// A disk of `count` chunks of 512 bytes (the last one shorter; every tenth
// a hole): above 1024 chunks its tree has two levels.
AgentVm MakeVm(uint32_t seed, uint64_t count = 1100) {
  AgentVm v;
  constexpr uint32_t kChunk = 512;
  const uint64_t size = count * kChunk - 100;
  std::set<std::string> have;
  auto store = [&](ByteSpan node) -> Result<repository::ChunkId> {
    v.nodes.emplace_back(node.begin(), node.end());
    return IdOf(Sha(node));
  };
  repository::TreeWriter tree(store);
  for (uint64_t i = 0; i < count; ++i) {
    const size_t len = std::min<uint64_t>(kChunk, size - i * kChunk);
    if (i % 10 == 3) {
      v.disk.resize(v.disk.size() + len, 0);
      EXPECT_THAT(tree.Add(repository::ChunkId{}), IsOk());
      continue;
    }
    Bytes chunk = RandomData(len, seed * 100 + (len == kChunk ? i % 7 : 99));
    v.disk.insert(v.disk.end(), chunk.begin(), chunk.end());
    if (have.insert(Sha(chunk)).second) v.data.push_back(chunk);
    EXPECT_THAT(tree.Add(IdOf(Sha(chunk))), IsOk());
  }
  auto root = tree.Finish();
  EXPECT_THAT(root, IsOk());
  v.xml = "<domain><name>vm" + std::to_string(seed) + "</name></domain>";
  Bytes xml(v.xml.begin(), v.xml.end());
  v.data.push_back(xml);
  repository::TreeWriter config(store);
  EXPECT_THAT(config.Add(IdOf(Sha(xml))), IsOk());
  auto config_root = config.Finish();
  EXPECT_THAT(config_root, IsOk());

  repository::Manifest& m = v.m;
  m.id = std::string(32, 'f');  // the agent's values: all ignored
  m.time = "2099-01-01T00:00:00Z";
  m.tool = "evil";
  m.parent = std::string(32, 'e');
  m.agent_id = "B";
  m.name = "vm1";
  m.kind = "vm";
  m.hostname = "host1";
  m.consistency = "crash-consistent";
  m.consistency_reason = "no guest agent";
  m.vm_uuid = "8f1c6a57-3c1e-4b55-9d5a-1a2b3c4d5e6f";
  m.checkpoint = "haven-1";
  m.notes = {"vdb skipped: cdrom"};
  repository::DiskManifest d;
  d.name = "vda";
  d.source = "/var/lib/libvirt/images/vm1.qcow2";
  d.capture = "full: first run";
  d.size = size;
  d.chunk_size = kChunk;
  d.tree = *root;
  repository::DiskManifest c;
  c.name = "domain.xml";
  c.kind = "config";
  c.size = xml.size();
  c.chunk_size = 65536;
  c.tree = *config_root;
  m.disks = {d, c};
  m.stats.logical_bytes = size;
  return v;
}

std::string VmBody(const repository::Manifest& m,
                   const std::string& upload_id) {
  return json{{"upload_id", upload_id}, {"manifest", json::parse(m.ToJson())}}
      .dump();
}

// One tree-node frame (codec byte | 0x10).
void AppendNode(std::string& body, const Bytes& raw, bool zstd,
                const std::string& id = "") {
  const size_t at = body.size();
  AppendFrame(body, raw, zstd, id);
  body[at + 32 + 4] |= 0x10;
}

class AgentVmTest : public AgentStoreTest {
 protected:
  std::string DataBody(const AgentVm& v) {
    std::string body;
    for (const Bytes& c : v.data) AppendFrame(body, c, true);
    return body;
  }
  std::string NodeBody(const AgentVm& v) {
    std::string body;
    for (size_t i = 0; i < v.nodes.size(); ++i)
      AppendNode(body, v.nodes[i], i % 2 == 0);
    return body;
  }
  void UploadVm(const AgentVm& v, const std::string& agent) {
    Response data = Call("POST", "/api/v1/agent/chunks", agent, DataBody(v));
    ASSERT_EQ(data.status, 200) << data.body;
    Response nodes = Call("POST", "/api/v1/agent/chunks", agent, NodeBody(v));
    ASSERT_EQ(nodes.status, 200) << nodes.body;
    EXPECT_EQ(Body(nodes)["received"], v.nodes.size());
  }
  // The bytes of a point's disk or config file, read through its tree.
  Bytes ReadBack(const repository::Repository& repo,
                 const repository::DiskManifest& d) {
    repository::ReadContext ctx;
    repository::TreeReader reader(d.tree, repo.TreeNodeLoader(ctx));
    Bytes out;
    for (uint64_t i = 0; i < d.tree.count; ++i) {
      const size_t len = std::min<uint64_t>(d.chunk_size, d.size - out.size());
      auto id = reader.Get(i);
      EXPECT_THAT(id, IsOk());
      if (!id.ok()) return out;
      if (id->IsZero()) {
        out.resize(out.size() + len, 0);
        continue;
      }
      Bytes chunk;
      EXPECT_THAT(repo.ReadChunk(repository::ChunkType::kData, *id, chunk, ctx),
                  IsOk());
      EXPECT_EQ(chunk.size(), len);
      out.insert(out.end(), chunk.begin(), chunk.end());
    }
    return out;
  }
  static std::string Error(const Response& r) {
    return Body(r).value("error", "");
  }
};

TEST_F(AgentVmTest, TreeNodesUploadedAfterTheirDataCommitAndReadBack) {
  AgentVm v = MakeVm(1);
  ASSERT_EQ(v.m.disks[0].tree.height, 2);
  std::string node_ids = Ids(v.nodes);
  EXPECT_EQ(Call("POST", "/api/v1/agent/chunks/missing", "A", node_ids).body,
            std::string(v.nodes.size(), '\1'));
  UploadVm(v, "A");
  EXPECT_EQ(Call("POST", "/api/v1/agent/chunks/missing", "A", node_ids).body,
            std::string(v.nodes.size(), '\0'));

  Response commit =
      Call("POST", "/api/v1/agent/vm-points", "A", VmBody(v.m, kUpload1));
  ASSERT_EQ(commit.status, 201) << commit.body;
  EXPECT_EQ(Body(commit)["created"], true);
  EXPECT_EQ(Body(commit)["name"], "vm1");
  const std::string id = Body(commit)["id"];
  EXPECT_NE(id, std::string(32, 'f'));

  auto repo =
      repository::Repository::Open(repo_dir_, kTestPassphrase, ReadOptions());
  ASSERT_THAT(repo, IsOk());
  auto m = (*repo)->LoadSnapshot(id);
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(m->kind, "vm");
  EXPECT_EQ(m->agent_id, "A");
  EXPECT_EQ(m->tool, "havend test");
  EXPECT_EQ(m->parent, "");
  EXPECT_NE(m->time, "2099-01-01T00:00:00Z");
  EXPECT_EQ(m->time, Body(commit)["time"]);
  EXPECT_EQ(m->vm_uuid, v.m.vm_uuid);
  EXPECT_EQ(m->checkpoint, "haven-1");
  EXPECT_EQ(m->consistency, "crash-consistent");
  EXPECT_EQ(m->notes, v.m.notes);
  const repository::DiskManifest* disk = m->FindDisk("vda");
  ASSERT_NE(disk, nullptr);
  EXPECT_EQ(disk->source, v.m.disks[0].source);
  EXPECT_EQ(disk->capture, "full: first run");
  EXPECT_NE(disk->tree.root, v.m.disks[0].tree.root) << "a keyed id now";
  EXPECT_TRUE(ReadBack(**repo, *disk) == v.disk) << "the disk reads back";
  const repository::DiskManifest* xml = m->FindConfig("domain.xml");
  ASSERT_NE(xml, nullptr);
  EXPECT_EQ(Str(ReadBack(**repo, *xml)), v.xml);

  // The agent's routes list and show it; files and archive refuse it.
  Response list = Call("GET", "/api/v1/agent/points", "A");
  ASSERT_EQ(list.status, 200) << list.body;
  ASSERT_EQ(Body(list)["points"].size(), 1u);
  EXPECT_EQ(Body(list)["points"][0]["kind"], "vm");
  EXPECT_EQ(
      Body(Call("GET", "/api/v1/agent/points?kind=vm", "A"))["points"].size(),
      1u);
  EXPECT_TRUE(
      Body(Call("GET", "/api/v1/agent/points?kind=files", "A"))["points"]
          .empty());
  EXPECT_EQ(Call("GET", "/api/v1/agent/points?kind=x", "A").status, 400);
  Response show = Call("GET", "/api/v1/agent/points/" + id, "A");
  ASSERT_EQ(show.status, 200) << show.body;
  EXPECT_EQ(Body(show)["kind"], "vm");
  Response files =
      Call("GET", "/api/v1/agent/points/" + id + "/files?path=/", "A");
  EXPECT_EQ(files.status, 409) << files.body;
  EXPECT_THAT(Error(files), HasSubstr("file backups only"));
  EXPECT_EQ(
      Call("GET", "/api/v1/agent/points/" + id + "/archive?path=/etc", "A")
          .status,
      409);
  EXPECT_EQ(Call("GET", "/api/v1/agent/points/" + id, "B").status, 403);

  // A retry answers the same point; the next commit of the name has it as
  // its parent.
  Response retry =
      Call("POST", "/api/v1/agent/vm-points", "A", VmBody(v.m, kUpload1));
  ASSERT_EQ(retry.status, 200) << retry.body;
  EXPECT_EQ(Body(retry)["id"], id);
  EXPECT_EQ(Body(retry)["created"], false);
  Response next = Call("POST", "/api/v1/agent/vm-points", "A",
                       VmBody(v.m, std::string(32, 'b')));
  ASSERT_EQ(next.status, 201) << next.body;
  auto m2 = (*repo)->LoadSnapshot(Body(next)["id"].get<std::string>());
  ASSERT_THAT(m2, IsOk());
  EXPECT_EQ(m2->parent, id);
  EXPECT_EQ(m2->FindDisk("vda")->tree.root, disk->tree.root);
}

TEST_F(AgentVmTest, NodesAndDataInOneBodyAndAnEmptyDisk) {
  AgentVm v = MakeVm(2, 5);  // one level
  ASSERT_EQ(v.m.disks[0].tree.height, 1);
  repository::DiskManifest empty;
  empty.name = "vdb";
  empty.size = 0;
  empty.chunk_size = 65536;
  v.m.disks.insert(v.m.disks.begin() + 1, empty);
  Response up =
      Call("POST", "/api/v1/agent/chunks", "A", DataBody(v) + NodeBody(v));
  ASSERT_EQ(up.status, 200) << up.body;
  EXPECT_EQ(Body(up)["new"], v.data.size() + v.nodes.size());
  Response commit =
      Call("POST", "/api/v1/agent/vm-points", "A", VmBody(v.m, kUpload1));
  ASSERT_EQ(commit.status, 201) << commit.body;
  auto repo =
      repository::Repository::Open(repo_dir_, kTestPassphrase, ReadOptions());
  ASSERT_THAT(repo, IsOk());
  auto m = (*repo)->LoadSnapshot(Body(commit)["id"].get<std::string>());
  ASSERT_THAT(m, IsOk());
  EXPECT_TRUE(ReadBack(**repo, *m->FindDisk("vda")) == v.disk);
  EXPECT_TRUE(m->FindDisk("vdb")->tree.root.IsZero());
}

TEST_F(AgentVmTest, ANodeNamingChunksNotHeldStoresNothing) {
  AgentVm v = MakeVm(3);
  // B holds the data; A does not.
  ASSERT_EQ(Call("POST", "/api/v1/agent/chunks", "B", DataBody(v)).status, 200);
  const uint64_t chunks_before = IndexedChunks();
  Response r = Call("POST", "/api/v1/agent/chunks", "A", NodeBody(v));
  ASSERT_EQ(r.status, 409) << r.body;
  EXPECT_THAT(Error(r), HasSubstr("nothing of this batch was stored"));
  ASSERT_FALSE(Body(r)["missing"].empty());
  EXPECT_LE(Body(r)["missing"].size(), 100u);
  EXPECT_EQ(Body(r)["missing"][0], HexEncode(AsBytes(Sha(v.data[0]))));
  EXPECT_EQ(IndexedChunks(), chunks_before);
  EXPECT_EQ(
      Call("POST", "/api/v1/agent/chunks/missing", "A", Ids(v.nodes)).body,
      std::string(v.nodes.size(), '\1'));

  // A chunk never uploaded by anyone.
  Bytes node(32, 0);
  const std::string ghost = Sha(RandomData(100, 77));
  std::copy(ghost.begin(), ghost.end(), node.begin());
  std::string body;
  AppendNode(body, node, false);
  Response never = Call("POST", "/api/v1/agent/chunks", "A", body);
  ASSERT_EQ(never.status, 409) << never.body;
  EXPECT_EQ(Body(never)["missing"], json::array({HexEncode(AsBytes(ghost))}));

  // A node naming a frame after it in the same body.
  Bytes later = RandomData(300, 78);
  std::string ordered;
  Bytes parent(32, 0);
  const std::string later_id = Sha(later);
  std::copy(later_id.begin(), later_id.end(), parent.begin());
  AppendNode(ordered, parent, false);
  AppendFrame(ordered, later, false);
  EXPECT_EQ(Call("POST", "/api/v1/agent/chunks", "A", ordered).status, 409);
  EXPECT_EQ(IndexedChunks(), chunks_before);
}

TEST_F(AgentVmTest, BadNodesAreRefused) {
  AgentVm v = MakeVm(4, 5);
  ASSERT_EQ(Call("POST", "/api/v1/agent/chunks", "A", DataBody(v)).status, 200);
  // Bytes that do not hash to the id.
  std::string body;
  AppendNode(body, v.nodes[0], false, Sha(v.data[0]));
  Response wrong = Call("POST", "/api/v1/agent/chunks", "A", body);
  ASSERT_EQ(wrong.status, 422) << wrong.body;
  EXPECT_THAT(Error(wrong), HasSubstr("tree node 0"));
  // Not a whole number of ids.
  std::string ragged;
  AppendNode(ragged, Bytes(v.nodes[0].begin(), v.nodes[0].end() - 1), false);
  Response r = Call("POST", "/api/v1/agent/chunks", "A", ragged);
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_THAT(Error(r), HasSubstr("ids of 32 bytes"));
  // Unknown bits in the codec byte.
  std::string odd;
  AppendFrame(odd, v.data[0], false);
  odd[32 + 4] = 0x20;
  EXPECT_EQ(Call("POST", "/api/v1/agent/chunks", "A", odd).status, 400);
  // A node of a data chunk and a tree node.
  ASSERT_EQ(Call("POST", "/api/v1/agent/chunks", "A", NodeBody(v)).status, 200);
  Bytes mixed;
  const std::string d = Sha(v.data[0]), t = Sha(v.nodes[0]);
  mixed.insert(mixed.end(), d.begin(), d.end());
  mixed.insert(mixed.end(), t.begin(), t.end());
  std::string mixed_body;
  AppendNode(mixed_body, mixed, false);
  Response m = Call("POST", "/api/v1/agent/chunks", "A", mixed_body);
  EXPECT_EQ(m.status, 400) << m.body;
  EXPECT_THAT(Error(m), HasSubstr("different levels"));
  // A node over a partial node that is not its last child: no reader (and
  // not gc) could walk that tree.
  Bytes two_partial;
  for (int i = 0; i < 2; ++i)
    two_partial.insert(two_partial.end(), t.begin(), t.end());
  std::string partial_body;
  AppendNode(partial_body, two_partial, false);
  Response p = Call("POST", "/api/v1/agent/chunks", "A", partial_body);
  EXPECT_EQ(p.status, 400) << p.body;
  EXPECT_THAT(Error(p), HasSubstr("not a full subtree"));
  // Holes only.
  std::string holes;
  AppendNode(holes, Bytes(64, 0), false);
  Response h = Call("POST", "/api/v1/agent/chunks", "A", holes);
  EXPECT_EQ(h.status, 400) << h.body;
  EXPECT_THAT(Error(h), HasSubstr("holes only"));
  // The node over the partial one as the last child is fine.
  Bytes over_last(32, 0);
  over_last.insert(over_last.end(), t.begin(), t.end());
  std::string fine;
  AppendNode(fine, over_last, false);
  EXPECT_EQ(Call("POST", "/api/v1/agent/chunks", "A", fine).status, 200);
}

TEST_F(AgentVmTest, CommitNeedsHeldTreeRoots) {
  AgentVm v = MakeVm(5, 5);
  ASSERT_EQ(Call("POST", "/api/v1/agent/chunks", "A", DataBody(v)).status, 200);
  // The nodes were not uploaded.
  Response r =
      Call("POST", "/api/v1/agent/vm-points", "A", VmBody(v.m, kUpload1));
  ASSERT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(Body(r)["missing"].size(), 2u);
  EXPECT_THAT(Error(r), HasSubstr("nothing was committed"));
  // A data chunk's id as a root is no tree node.
  AgentVm data_root = v;
  data_root.m.disks[1].tree.root = IdOf(Sha(v.data.back()));
  Response d = Call("POST", "/api/v1/agent/vm-points", "A",
                    VmBody(data_root.m, kUpload1));
  ASSERT_EQ(d.status, 409) << d.body;
  // B's nodes are not A's.
  ASSERT_EQ(Call("POST", "/api/v1/agent/chunks", "B", DataBody(v)).status, 200);
  ASSERT_EQ(Call("POST", "/api/v1/agent/chunks", "B", NodeBody(v)).status, 200);
  EXPECT_EQ(Call("POST", "/api/v1/agent/vm-points", "A", VmBody(v.m, kUpload1))
                .status,
            409);
  EXPECT_TRUE(Body(Call("GET", "/api/v1/agent/points", "A"))["points"].empty());

  // A tree node removed from the index (gc) is missing again.
  ASSERT_EQ(Call("POST", "/api/v1/agent/chunks", "A", NodeBody(v)).status, 200);
  const std::string root = Sha(v.nodes[0]);
  ASSERT_EQ(Call("POST", "/api/v1/agent/chunks/missing", "A", root).body,
            std::string(1, '\0'));
  store_->Release("main");
  {
    repository::OpenOptions o = ::haven::testing_util::WriteOptions();
    o.hold_index = true;
    auto repo = repository::Repository::Open(repo_dir_, kTestPassphrase, o);
    ASSERT_THAT(repo, IsOk());
    // As gc's sweep: every tree chunk goes (A's nodes, also B's).
    std::vector<repository::ChunkId> trees;
    ASSERT_THAT((*repo)->index().ForEach(
                    [&](const repository::ChunkId& id,
                        const repository::ChunkLocation& loc) {
                      if (loc.type == repository::ChunkType::kTree)
                        trees.push_back(id);
                      return OkStatus();
                    },
                    [](const Status&) {}),
                IsOk());
    ASSERT_FALSE(trees.empty());
    ASSERT_THAT((*repo)->index().Delete(trees, true), IsOk());
  }
  EXPECT_EQ(Call("POST", "/api/v1/agent/chunks/missing", "A", root).body,
            std::string(1, '\1'));
  EXPECT_EQ(Call("POST", "/api/v1/agent/vm-points", "A", VmBody(v.m, kUpload1))
                .status,
            409);
  // Sent again, the commit goes through.
  ASSERT_EQ(Call("POST", "/api/v1/agent/chunks", "A", NodeBody(v)).status, 200);
  EXPECT_EQ(Call("POST", "/api/v1/agent/vm-points", "A", VmBody(v.m, kUpload1))
                .status,
            201);
}

TEST_F(AgentVmTest, BadManifestFieldsAreNamed) {
  AgentVm v = MakeVm(6, 5);
  UploadVm(v, "A");
  auto refused = [&](const std::string& body, const std::string& field) {
    auto r = store_->CommitVm("A", body);
    ASSERT_FALSE(r.ok()) << field;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << field;
    EXPECT_THAT(r.status().message(), HasSubstr(field));
  };
  auto with = [&](auto change) {
    json j = json::parse(VmBody(v.m, kUpload1));
    change(j);
    return j.dump();
  };
  refused(with([](json& j) { j["manifest"]["kind"] = "image"; }),
          "manifest.kind");
  refused(with([](json& j) {
            j["manifest"]["disks"][0]["chunk_size"] = 32 << 20;
            j["manifest"]["disks"][0]["chunks"] = 1;
          }),
          "manifest.disks[0].chunk_size");
  refused(with([](json& j) { j["manifest"]["disks"][0]["chunks"] = 4; }),
          "chunk count");
  refused(with([](json& j) {
            j["manifest"]["disks"][1]["name"] = "../etc/passwd";
          }),
          "config file name");
  refused(with([](json& j) { j["manifest"]["disks"][0]["name"] = "../vda"; }),
          "manifest.disks[0].name");
  refused(with([](json& j) { j["manifest"]["name"] = "a\nb"; }),
          "manifest.name");
  refused(with([](json& j) { j["manifest"]["consistency"] = "sure"; }),
          "manifest.consistency");
  refused(
      with([](json& j) { j["manifest"]["disks"][0]["tree"]["height"] = 2; }),
      "tree.height");
  refused(with([](json& j) {
            j["manifest"]["disks"][0]["lost"] = json::array({{0, 10}});
          }),
          "lost");
  refused(with([](json& j) { j["upload_id"] = "xyz"; }), "upload_id");
  refused(with([](json& j) { j["extra"] = 1; }), "extra");
  refused(with([](json& j) { j.erase("manifest"); }), "manifest");
  refused(std::string(2 << 20, ' '), "limit");
  refused("[1]", "JSON object");
  // A root of another size than its tree's.
  AgentVm other = MakeVm(7, 3);
  UploadVm(other, "A");
  refused(with([&](json& j) {
            j["manifest"]["disks"][0]["tree"]["root"] =
                other.m.disks[0].tree.root.Hex();
          }),
          "tree.root");
  EXPECT_TRUE(Body(Call("GET", "/api/v1/agent/points", "A"))["points"].empty());
  // Through the route: 400 with the sentence.
  Response r = Call("POST", "/api/v1/agent/vm-points", "A",
                    with([](json& j) { j["manifest"]["kind"] = "files"; }));
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Error(r), "manifest.kind must be \"vm\"");
}

TEST_F(AgentVmTest, ANameBelongsToOneAgent) {
  AgentVm v = MakeVm(8, 5);
  UploadVm(v, "A");
  ASSERT_EQ(Call("POST", "/api/v1/agent/vm-points", "A", VmBody(v.m, kUpload1))
                .status,
            201);
  UploadVm(v, "B");
  Response r =
      Call("POST", "/api/v1/agent/vm-points", "B", VmBody(v.m, kUpload1));
  ASSERT_EQ(r.status, 409) << r.body;
  EXPECT_THAT(Error(r), HasSubstr("taken by another agent"));
  // Under a name of its own, B's point goes through.
  v.m.name = "vm-b";
  EXPECT_EQ(Call("POST", "/api/v1/agent/vm-points", "B", VmBody(v.m, kUpload1))
                .status,
            201);
}

TEST_F(AgentVmTest, OldTablesGainTheKindColumn) {
  const std::string path = tmp_.Sub("old.db");
  {
    auto db = StateDb::Open(path);
    ASSERT_THAT(db, IsOk());
    ASSERT_THAT((*db)->Exec(R"sql(
CREATE TABLE agent_chunks (
  agent_id TEXT NOT NULL,
  upload_id BLOB NOT NULL,
  chunk_id BLOB NOT NULL,
  raw_size INTEGER NOT NULL,
  PRIMARY KEY (agent_id, upload_id)) WITHOUT ROWID;
INSERT INTO agent_chunks VALUES ('A', x'01', x'02', 5);
)sql"),
                IsOk());
  }
  auto db = StateDb::Open(path);
  ASSERT_THAT(db, IsOk());
  for (int i = 0; i < 2; ++i) {  // the second time: nothing to do
    auto store =
        AgentStore::Create(**db, *catalog_,
                           [](const std::string&) -> Result<std::string> {
                             return std::string("main");
                           },
                           {});
    ASSERT_THAT(store, IsOk());
  }
  auto row = (*db)->QueryOne(
      "SELECT kind + tree_height + tree_min + tree_max FROM agent_chunks");
  ASSERT_THAT(row, IsOk());
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ((*row)->Int(0), 0);
}

}  // namespace
}  // namespace haven::appliance
