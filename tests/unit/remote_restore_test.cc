// Restores that read a recovery point through something other than a
// Repository (repository/point_reader.h): RestoreImage through a plain
// forwarding reader; the appliance's membership set of a point
// (appliance/agent_restore_reads.h); AgentDispatch::TaskOf, which
// authorizes an agent's reads; and the two agent routes
// (routes_agent_restore.cc) served over HTTPS to an agent's
// RemotePointReader (agent/remote_point_reader.h), restoring an image
// byte for byte and refusing what is not the job's.
#include <atomic>
#include <chrono>
#include <string>

#include "agent/remote_point_reader.h"
#include "appliance/agent_jobs.h"
#include "appliance/agent_restore_reads.h"
#include "appliance/certificate.h"
#include "appliance/https_server.h"
#include "appliance/repositories.h"
#include "appliance/repository_cache.h"
#include "appliance/routes.h"
#include "appliance/services.h"
#include "restore/image_restore.h"
#include "restore/vm_restore.h"
#include "snapshot/libvirt_host.h"
#include "tests/unit/image_test_util.h"
#include "tests/unit/test_util.h"

namespace haven {
namespace {

using namespace ::haven::testing_util;  // NOLINT: test helpers
using appliance::AgentDispatch;
using appliance::AgentTask;
using repository::ChunkId;
using repository::ChunkType;
using repository::Manifest;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

// A PointReader that is not a Repository: forwards to one, counts reads,
// and (like a restore through the appliance) cannot compute keyed ids.
class ForwardingReader : public repository::PointReader {
 public:
  explicit ForwardingReader(const repository::Repository& repo) : repo_(repo) {}
  Status ReadChunk(ChunkType type, const ChunkId& id, Bytes& out,
                   repository::ReadContext& ctx) const override {
    ++reads;
    return repo_.ReadChunk(type, id, out, ctx);
  }
  repository::LoadNodeFn TreeNodeLoader(
      repository::ReadContext& ctx) const override {
    return [this, &ctx](const ChunkId& id) -> Result<Bytes> {
      Bytes node;
      HAVEN_RETURN_IF_ERROR(ReadChunk(ChunkType::kTree, id, node, ctx));
      return node;
    };
  }
  Result<Manifest> FindSnapshot(const std::string& ref) const override {
    return repo_.FindSnapshot(ref);
  }
  bool CanComputeIds() const override { return false; }
  ChunkId IdFor(ChunkType, ByteSpan) const override { return {}; }

  mutable std::atomic<int> reads{0};

 private:
  const repository::Repository& repo_;
};

class RemoteRestoreTest : public ImageRoundTripTest {
 protected:
  // An image of data, zeros and holes, backed up; its bytes in `content`.
  Manifest BackedUp(const std::string& name, uint64_t seed, Bytes* content) {
    const std::string image = tmp_.Sub(name + ".raw");
    ImageBuilder b(image, 3 * kMiB + 777);
    b.Write(0, RandomData(kMiB, seed));
    b.Write(2 * kMiB, Text(300000));
    b.Write(3 * kMiB, RandomData(777, seed + 1));
    b.Close();
    if (content) *content = b.content();
    auto m = Backup(image, name);
    EXPECT_THAT(m, IsOk());
    return m.ok() ? *m : Manifest{};
  }

  std::vector<ChunkId> DataIds(const Manifest& m) {
    std::vector<ChunkId> ids;
    repository::ReadContext ctx;
    EXPECT_THAT(
        repository::WalkTree(m.disks[0].tree, repo_->TreeNodeLoader(ctx),
                             [&](uint64_t, const ChunkId& id) {
                               ids.push_back(id);
                               return OkStatus();
                             }),
        IsOk());
    return ids;
  }
};

TEST_F(RemoteRestoreTest, RestoreImageReadsThroughAnyPointReader) {
  InitRepo();
  Bytes content;
  Manifest m = BackedUp("img", 1, &content);
  ForwardingReader reader(*repo_);
  auto found = reader.FindSnapshot(m.id);
  ASSERT_THAT(found, IsOk());
  const std::string target = tmp_.Sub("out.raw");
  restore::ImageRestoreOptions o;
  o.threads = 2;
  auto stats = restore::RestoreImage(reader, *found, target, o);
  ASSERT_THAT(stats, IsOk());
  EXPECT_TRUE(ReadWholeFile(target) == content);
  EXPECT_GT(reader.reads.load(), 16);
  auto bytes = restore::DiskDataBytes(reader, found->disks[0]);
  ASSERT_THAT(bytes, IsOk());
  EXPECT_EQ(*bytes, stats->data_bytes);

  // --verify-ids needs the key: refused in words, before anything is read.
  o.verify_ids = true;
  const int before = reader.reads.load();
  auto refused = restore::RestoreImage(reader, *found, tmp_.Sub("v.raw"), o);
  EXPECT_THAT(refused, StatusIs(Code::kInvalidArgument,
                                HasSubstr("--verify-ids needs the "
                                          "repository's key")));
  EXPECT_EQ(reader.reads.load(), before);
  EXPECT_FALSE(PathExists(tmp_.Sub("v.raw")));
  // A Repository computes ids: the same restore with verify_ids works.
  EXPECT_THAT(restore::RestoreImage(*repo_, *found, tmp_.Sub("v.raw"), o),
              IsOk());
}

TEST_F(RemoteRestoreTest, AVmRestoreWithVerifyIdsIsRefusedAtPlanTime) {
  InitRepo();
  ForwardingReader reader(*repo_);
  auto host = snapshot::LibvirtHost::Connect("test:///default");
  ASSERT_THAT(host, IsOk());
  Manifest m;
  m.id = std::string(32, 'a');
  m.kind = "vm";
  m.name = "vm1";
  restore::VmRestoreOptions o;
  o.verify_ids = true;
  restore::PlanContext context;
  auto plan = restore::PlanVmRestore(reader, m, **host, o, context);
  EXPECT_THAT(plan, StatusIs(Code::kInvalidArgument,
                             HasSubstr("a restore through the appliance is "
                                       "checked by the appliance")));
  EXPECT_EQ(reader.reads.load(), 0);
  restore::VmPlan empty;
  EXPECT_THAT(restore::ExecuteVmRestore(reader, **host, empty, o),
              StatusIs(Code::kInvalidArgument, HasSubstr("--verify-ids")));
}

TEST_F(RemoteRestoreTest, ThePointsChunkSetHoldsExactlyItsChunks) {
  InitRepo();
  Manifest m = BackedUp("img", 1, nullptr);
  Manifest other = BackedUp("other", 50, nullptr);
  auto set = appliance::PointChunkSet::Build(*repo_, m);
  ASSERT_THAT(set, IsOk());
  EXPECT_EQ(set->point_id(), m.id);
  EXPECT_EQ(set->Find(m.disks[0].tree.root), ChunkType::kTree);
  std::vector<ChunkId> mine = DataIds(m);
  ASSERT_FALSE(mine.empty());
  for (const ChunkId& id : mine) EXPECT_EQ(set->Find(id), ChunkType::kData);
  // Planning reads the trees and config files, never a disk's data.
  EXPECT_EQ(set->Find(m.disks[0].tree.root, true), ChunkType::kTree);
  for (const ChunkId& id : mine) EXPECT_FALSE(set->Find(id, true)) << id.Hex();
  // Another point's chunks and made-up ids are not in it.
  EXPECT_FALSE(set->Find(other.disks[0].tree.root));
  int foreign = 0;
  for (const ChunkId& id : DataIds(other))
    if (std::find(mine.begin(), mine.end(), id) == mine.end()) {
      ++foreign;
      EXPECT_FALSE(set->Find(id)) << id.Hex();
    }
  EXPECT_GT(foreign, 0);
  ChunkId made_up;
  made_up.bytes.fill(0xab);
  EXPECT_FALSE(set->Find(made_up));

  // The cache builds once per job and drops ended jobs.
  appliance::AgentRestoreReads reads(2);
  auto a = reads.ChunksOf(1, "a1", *repo_, m);
  ASSERT_THAT(a, IsOk());
  auto again = reads.ChunksOf(1, "a1", *repo_, m);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(a->get(), again->get());
  ASSERT_THAT(reads.ChunksOf(2, "a1", *repo_, other), IsOk());
  ASSERT_THAT(reads.ChunksOf(3, "a2", *repo_, other), IsOk());
  EXPECT_EQ(reads.cached_jobs(), 2u);  // at most 2: job 1 went first
  reads.Prune([](int64_t job, const std::string&) { return job == 3; });
  EXPECT_EQ(reads.cached_jobs(), 1u);
}

appliance::AgentInfo Agent(const std::string& id) {
  appliance::AgentInfo a;
  a.id = id;
  a.name = "host-" + id;
  a.kind = "host";
  return a;
}

TEST(AgentTaskOfTest, OnlyTheAgentRunningTheJobHasIt) {
  appliance::AgentDispatchOptions o;
  o.cancel_check = 10ms;
  AgentDispatch d(o);
  AgentTask t{5, "vm-restore", {{"repository", "r"}, {"point", "ab"}}};
  ASSERT_THAT(d.Offer(Agent("a1"), t), IsOk());
  EXPECT_FALSE(d.TaskOf("a1", 5));  // queued, not taken
  ASSERT_TRUE(d.NextFor("a1", 100ms).task);
  auto mine = d.TaskOf("a1", 5);
  ASSERT_TRUE(mine);
  EXPECT_EQ(mine->kind, "vm-restore");
  EXPECT_EQ(mine->params["point"], "ab");
  EXPECT_FALSE(d.TaskOf("a2", 5));  // another agent's job
  EXPECT_FALSE(d.TaskOf("a1", 6));  // no such job
  appliance::AgentResult r;
  r.outcome = "failed";
  r.error = "test";
  ASSERT_THAT(d.Finish("a1", 5, r), IsOk());
  EXPECT_FALSE(d.TaskOf("a1", 5));  // finished

  // A task the agent lost (it asked for new work) is not its any more.
  ASSERT_THAT(d.Offer(Agent("a1"), {7, "vm-restore-plan", {}}), IsOk());
  ASSERT_TRUE(d.NextFor("a1", 100ms).task);
  ASSERT_TRUE(d.TaskOf("a1", 7));
  EXPECT_FALSE(d.NextFor("a1", 10ms).task);
  EXPECT_FALSE(d.TaskOf("a1", 7));
  d.Shutdown();
}

std::variant<appliance::Caller, appliance::Response> TestAuth(
    const appliance::Request& req, bool, const std::string*) {
  const std::string* h = req.Header("authorization");
  if (h && *h == "Bearer agentA")
    return appliance::Caller{"agent:h1", appliance::Role::kAgent, false, "a1"};
  if (h && *h == "Bearer agentB")
    return appliance::Caller{"agent:h2", appliance::Role::kAgent, false, "a2"};
  return appliance::ErrorJson(401, "authentication required");
}

// The routes served for real, an agent's RemotePointReader reading them.
class RemoteReadRoutesTest : public RemoteRestoreTest {
 protected:
  void Serve() {
    const std::string pw = tmp_.Sub("pw");
    std::string text = std::string(kTestPassphrase) + "\n";
    WriteWholeFile(pw, AsBytes(text));
    config_.repositories.push_back({"r", repo_dir_, pw});
    catalog_ = std::make_unique<appliance::RepositoryCatalog>(config_);
    cache_ = std::make_unique<appliance::RepositoryCache>(*catalog_);
    appliance::AgentDispatchOptions o;
    o.cancel_check = 10ms;
    dispatch_ = std::make_unique<AgentDispatch>(o);
    services_.config = &config_;
    services_.repositories = catalog_.get();
    services_.open_repositories = cache_.get();
    services_.agent_dispatch = dispatch_.get();
    appliance::ApiOptions api;
    api.authenticate = TestAuth;
    auto handler =
        appliance::MakeApiHandler(AgentRestoreRoutes(services_), api);
    ASSERT_THAT(handler, IsOk());
    auto cert = appliance::GenerateSelfSigned("localhost");
    ASSERT_THAT(cert, IsOk());
    fingerprint_ = cert->fingerprint;
    appliance::HttpsServerOptions so;
    so.listen.host = "127.0.0.1";
    so.listen.port = 0;
    so.log = [](std::string_view) {};
    auto server = appliance::HttpsServer::Start(so, *cert, *handler);
    ASSERT_THAT(server, IsOk());
    server_ = std::move(*server);
  }
  void TearDown() override {
    if (dispatch_) dispatch_->Shutdown();
    server_.reset();
  }
  std::unique_ptr<agent::ApplianceClient> Client(const std::string& token) {
    auto c = agent::ApplianceClient::Create(
        "https://127.0.0.1:" + std::to_string(server_->port()), fingerprint_,
        token);
    EXPECT_THAT(c, IsOk());
    return c.ok() ? std::move(*c) : nullptr;
  }
  // Job `job` handed to agent a1: a restore of `point`.
  void Running(int64_t job, const std::string& kind, const std::string& point) {
    ASSERT_THAT(
        dispatch_->Offer(Agent("a1"),
                         {job, kind, {{"repository", "r"}, {"point", point}}}),
        IsOk());
    ASSERT_TRUE(dispatch_->NextFor("a1", 1s).task);
  }

  appliance::ApplianceConfig config_;
  std::unique_ptr<appliance::RepositoryCatalog> catalog_;
  std::unique_ptr<appliance::RepositoryCache> cache_;
  std::unique_ptr<AgentDispatch> dispatch_;
  appliance::Services services_;
  std::unique_ptr<appliance::HttpsServer> server_;
  std::string fingerprint_;
};

TEST_F(RemoteReadRoutesTest, AnAgentRestoresItsJobsPointThroughTheAppliance) {
  InitRepo();
  Bytes content;
  Manifest m = BackedUp("img", 7, &content);
  ASSERT_NO_FATAL_FAILURE(Serve());
  Running(9, "vm-restore", m.id);
  auto client = Client("agentA");
  ASSERT_TRUE(client);
  agent::RemotePointReader reader(*client, 9);
  EXPECT_FALSE(reader.CanComputeIds());
  EXPECT_THAT(reader.FindSnapshot("00000000"),
              StatusIs(Code::kNotFound, HasSubstr(m.id)));
  auto point = reader.FindSnapshot(m.id);
  ASSERT_THAT(point, IsOk());
  EXPECT_EQ(point->disks[0].tree.root, m.disks[0].tree.root);

  const std::string target = tmp_.Sub("remote.raw");
  restore::ImageRestoreOptions o;
  o.threads = 3;
  auto stats = restore::RestoreImage(reader, *point, target, o);
  ASSERT_THAT(stats, IsOk());
  EXPECT_TRUE(ReadWholeFile(target) == content);
  // Read ahead: far fewer requests than chunks.
  const size_t chunks = DataIds(m).size();
  EXPECT_LT(reader.requests(), chunks / 2) << chunks << " chunks";

  o.verify_ids = true;
  EXPECT_THAT(restore::RestoreImage(reader, *point, tmp_.Sub("v.raw"), o),
              StatusIs(Code::kInvalidArgument, HasSubstr("--verify-ids")));
}

TEST_F(RemoteReadRoutesTest, PlanningReadsTreesNotTheDisksData) {
  InitRepo();
  Manifest m = BackedUp("img", 8, nullptr);
  ASSERT_NO_FATAL_FAILURE(Serve());
  Running(10, "vm-restore-plan", m.id);
  auto a = Client("agentA");
  ASSERT_TRUE(a);
  auto Ids = [](const std::vector<ChunkId>& ids) {
    std::string body;
    for (const ChunkId& id : ids)
      body.append(reinterpret_cast<const char*>(id.bytes.data()), 32);
    return body;
  };
  auto tree = a->Post("/api/v1/agent/jobs/10/chunks",
                      "application/octet-stream", Ids({m.disks[0].tree.root}));
  ASSERT_THAT(tree, IsOk());
  EXPECT_EQ(tree->status, 200) << tree->body;
  auto data = a->Post("/api/v1/agent/jobs/10/chunks",
                      "application/octet-stream", Ids({DataIds(m).front()}));
  ASSERT_THAT(data, IsOk());
  EXPECT_EQ(data->status, 403);
  EXPECT_THAT(data->body, HasSubstr("that planning reads"));
}

TEST_F(RemoteReadRoutesTest, WhatIsNotTheJobsPointIsRefused) {
  InitRepo();
  Manifest m = BackedUp("img", 7, nullptr);
  Manifest other = BackedUp("other", 70, nullptr);
  ASSERT_NO_FATAL_FAILURE(Serve());
  Running(9, "vm-restore", m.id);
  auto a = Client("agentA");
  auto b = Client("agentB");
  ASSERT_TRUE(a && b);
  const std::string chunks = "/api/v1/agent/jobs/9/chunks";
  auto Ids = [](const std::vector<ChunkId>& ids) {
    std::string body;
    for (const ChunkId& id : ids)
      body.append(reinterpret_cast<const char*>(id.bytes.data()), 32);
    return body;
  };

  // Its own chunks: frames type id len bytes, in order.
  const ChunkId root = m.disks[0].tree.root;
  const ChunkId first = DataIds(m).front();
  auto ok = a->Post(chunks, "application/octet-stream", Ids({root, first}));
  ASSERT_THAT(ok, IsOk());
  ASSERT_EQ(ok->status, 200) << ok->body;
  ASSERT_GT(ok->body.size(), 2 * 37u);
  EXPECT_EQ(ok->body[0], 1);  // tree
  EXPECT_EQ(ok->body.compare(1, 32, Ids({root})), 0);
  // An id asked for twice: 400.
  auto twice = a->Post(chunks, "application/octet-stream", Ids({first, first}));
  ASSERT_THAT(twice, IsOk());
  EXPECT_EQ(twice->status, 400);

  // A chunk of another point, anywhere in the request: 403 naming it.
  ChunkId foreign;
  for (const ChunkId& id : DataIds(other)) {
    auto mine = DataIds(m);
    if (std::find(mine.begin(), mine.end(), id) == mine.end()) {
      foreign = id;
      break;
    }
  }
  ASSERT_FALSE(foreign.IsZero());
  auto refused =
      a->Post(chunks, "application/octet-stream", Ids({first, foreign}));
  ASSERT_THAT(refused, IsOk());
  EXPECT_EQ(refused->status, 403);
  EXPECT_THAT(refused->body, HasSubstr(foreign.Hex()));
  auto root2 = a->Post(chunks, "application/octet-stream",
                       Ids({other.disks[0].tree.root}));
  ASSERT_THAT(root2, IsOk());
  EXPECT_EQ(root2->status, 403);

  // Malformed bodies.
  EXPECT_EQ(a->Post(chunks, "application/octet-stream", "short")->status, 400);
  EXPECT_EQ(a->Post(chunks, "application/octet-stream",
                    Ids(std::vector<ChunkId>(257, first)))
                ->status,
            400);

  // Another agent, another job, and the job once ended: 403.
  agent::RemotePointReader theirs(*b, 9);
  EXPECT_THAT(theirs.Point(), StatusIs(Code::kPermissionDenied, HasSubstr("")));
  EXPECT_EQ(b->Post(chunks, "application/octet-stream", Ids({first}))->status,
            403);
  EXPECT_EQ(a->Get("/api/v1/agent/jobs/10/point")->status, 403);
  // A job that is not a restore.
  ASSERT_THAT(dispatch_->Offer(Agent("a2"), {11, "vm-backup", {}}), IsOk());
  ASSERT_TRUE(dispatch_->NextFor("a2", 1s).task);
  auto backup = b->Get("/api/v1/agent/jobs/11/point");
  EXPECT_EQ(backup->status, 403);
  EXPECT_THAT(backup->body, HasSubstr("not a restore"));

  appliance::AgentResult r;
  r.outcome = "failed";
  r.error = "done";
  ASSERT_THAT(dispatch_->Finish("a1", 9, r), IsOk());
  EXPECT_EQ(a->Get("/api/v1/agent/jobs/9/point")->status, 403);
  EXPECT_EQ(a->Post(chunks, "application/octet-stream", Ids({first}))->status,
            403);
}

// The agent's side against a made-up appliance: an answer of fewer frames
// than asked is asked again for the rest; a frame of another chunk, of the
// wrong type or running past the answer is refused.
TEST(RemotePointReaderTest, ChecksEveryFrameAndAsksAgainForTheRest) {
  auto cert = appliance::GenerateSelfSigned("localhost");
  ASSERT_THAT(cert, IsOk());
  ChunkId node_id, a, b, c, d;
  node_id.bytes.fill(9);
  a.bytes.fill(1);
  b.bytes.fill(2);
  c.bytes.fill(3);
  d.bytes.fill(4);
  // The node: a, a hole, b, c.
  std::string node;
  for (const ChunkId* id : {&a, &d, &b, &c})
    node.append(reinterpret_cast<const char*>(id->bytes.data()), 32);
  std::memset(node.data() + 32, 0, 32);
  std::atomic<int> requests{0};
  // 0: one frame per answer; 1: another chunk's id; 2: the wrong type;
  // 3: a length past the end of the answer.
  std::atomic<int> mode{0};
  appliance::HttpsServerOptions so;
  so.listen.host = "127.0.0.1";
  so.listen.port = 0;
  so.log = [](std::string_view) {};
  auto server = appliance::HttpsServer::Start(
      so, *cert, [&](const appliance::Request& req) {
        ++requests;
        appliance::Response r;
        r.status = 200;
        // Answers only the first id asked; a data chunk is 100 copies of
        // its id's first byte.
        std::string id = req.body.substr(0, 32);
        const bool is_node = id[0] == 9;
        std::string bytes = is_node ? node : std::string(100, id[0]);
        if (mode == 1) id[5] ^= 1;
        r.body.push_back((mode == 2) != is_node ? 1 : 0);
        r.body += id;
        const uint32_t len = mode == 3 ? 1000 : bytes.size();
        for (int i = 0; i < 4; ++i)
          r.body.push_back(static_cast<char>(len >> (8 * i)));
        r.body += bytes;
        return r;
      });
  ASSERT_THAT(server, IsOk());
  auto client = agent::ApplianceClient::Create(
      "https://127.0.0.1:" + std::to_string((*server)->port()),
      cert->fingerprint, "agentA");
  ASSERT_THAT(client, IsOk());
  agent::RemotePointReader reader(**client, 1);
  repository::ReadContext ctx;
  Bytes out;
  ASSERT_THAT(reader.ReadChunk(ChunkType::kTree, node_id, out, ctx), IsOk());
  EXPECT_EQ(out.size(), 128u);
  // a's read asks for a, b and c (read ahead in the node); each answer
  // holds one frame, so it asks again for the rest: 3 requests.
  ASSERT_THAT(reader.ReadChunk(ChunkType::kData, a, out, ctx), IsOk());
  EXPECT_EQ(out, Bytes(100, 1));
  EXPECT_EQ(requests.load(), 4);
  ASSERT_THAT(reader.ReadChunk(ChunkType::kData, c, out, ctx), IsOk());
  EXPECT_EQ(out, Bytes(100, 3));
  ASSERT_THAT(reader.ReadChunk(ChunkType::kData, b, out, ctx), IsOk());
  EXPECT_EQ(out, Bytes(100, 2));
  EXPECT_EQ(requests.load(), 4);  // from what was read ahead
  // The node again: from the cache.
  ASSERT_THAT(reader.TreeNodeLoader(ctx)(node_id), IsOk());
  EXPECT_EQ(requests.load(), 4);

  mode = 1;
  EXPECT_THAT(reader.ReadChunk(ChunkType::kData, d, out, ctx),
              StatusIs(Code::kDataLoss, HasSubstr("another chunk")));
  mode = 2;
  EXPECT_THAT(reader.ReadChunk(ChunkType::kData, d, out, ctx),
              StatusIs(Code::kDataLoss, HasSubstr("type 1")));
  mode = 3;
  EXPECT_THAT(reader.ReadChunk(ChunkType::kData, d, out, ctx),
              StatusIs(Code::kDataLoss, HasSubstr("1000 bytes")));
  EXPECT_TRUE(reader.IdFor(ChunkType::kData, out).IsZero());
}

}  // namespace
}  // namespace haven
