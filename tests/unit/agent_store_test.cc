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
#include <string>
#include <vector>

#include "appliance/api.h"
#include "appliance/repository_cache.h"
#include "appliance/routes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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

}  // namespace
}  // namespace haven::appliance
