// havend's restores, plan then run (appliance/routes_restores.cc,
// restore_jobs.cc, restore_plans.cc), over the real parts below the job
// service: the route table and its role checks, SQLite, a real repository
// with real recovery points, libvirt's test driver (test:///default, as in
// vm_restore_test.cc) as the host, an ext4 image for file restores. The
// job service is a fake that runs the executor at once (the real one is
// appliance/job_service.cc's).
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/image_backup.h"
#include "appliance/api.h"
#include "appliance/restore_jobs.h"
#include "appliance/routes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/repository.h"
#include "snapshot/domain_xml.h"
#include "snapshot/image_source.h"
#include "snapshot/libvirt_host.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::haven::testing_util::CloneFreshRepository;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::kTestPassphrase;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteOptions;
using ::haven::testing_util::WriteWholeFile;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kHostUri[] = "test:///default";

// Runs each job as it is submitted, on the caller's thread.
class FakeJobs : public JobService {
 public:
  void RegisterKind(std::string kind, JobValidator validate,
                    JobExecutor execute) override {
    kinds_[kind] = {std::move(validate), std::move(execute)};
  }
  Result<int64_t> Submit(JobSpec spec) override {
    auto it = kinds_.find(spec.kind);
    if (it == kinds_.end()) return NotFound("no job kind " + spec.kind);
    HAVEN_RETURN_IF_ERROR(it->second.first(spec));
    JobRecord rec;
    rec.id = static_cast<int64_t>(jobs_.size()) + 1;
    rec.spec = spec;
    JobContext ctx;
    ctx.job_id = rec.id;
    ctx.log = [&rec](const std::string& line) { log[rec.id].push_back(line); };
    rec.outcome = it->second.second(spec, ctx);
    rec.state = rec.outcome.state;
    jobs_.push_back(rec);
    return rec.id;
  }
  Status Cancel(int64_t, const std::string&) override { return OkStatus(); }
  Result<JobRecord> Get(int64_t id) override {
    if (id < 1 || id > static_cast<int64_t>(jobs_.size()))
      return NotFound("no job");
    return jobs_[id - 1];
  }
  Result<std::vector<JobRecord>> List(const JobFilter&) override {
    return jobs_;
  }
  Result<std::vector<std::pair<int64_t, std::string>>> Log(int64_t,
                                                           int64_t) override {
    return std::vector<std::pair<int64_t, std::string>>{};
  }
  std::unique_ptr<Subscription> Subscribe(
      std::function<void(const Event&)>) override {
    return nullptr;
  }
  void OnJobEnd(std::function<void(const JobRecord&)>) override {}

  static inline std::map<int64_t, std::vector<std::string>> log;

 private:
  std::map<std::string, std::pair<JobValidator, JobExecutor>> kinds_;
  std::vector<JobRecord> jobs_;
};

std::string DomainXml() {
  return R"(<domain type='test'>
  <name>web1</name>
  <uuid>6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b</uuid>
  <memory unit='KiB'>262144</memory>
  <os><type arch='i686'>hvm</type><boot dev='hd'/></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web1.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:12:34:56'/>
      <source network='netx'/>
    </interface>
  </devices>
</domain>
)";
}

std::string NetworkXml() {
  return "<network><name>netx</name><forward mode='nat'/><bridge "
         "name='hvrst0'/><ip address='192.168.151.1' "
         "netmask='255.255.255.0'/></network>";
}

class RestoreRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    auto h = snapshot::LibvirtHost::Connect(kHostUri);
    ASSERT_THAT(h, IsOk());
    host_ = std::move(h).value();  // held: the test driver keeps its state
    const std::string repo_dir = tmp_.Sub("repo");
    ASSERT_THAT(CloneFreshRepository(repo_dir), IsOk());
    const std::string pass = tmp_.Sub("pass");
    WriteWholeFile(pass, Bytes(kTestPassphrase,
                               kTestPassphrase + strlen(kTestPassphrase)));
    config_.state_dir = tmp_.Sub("state");
    std::filesystem::create_directories(config_.state_dir);
    config_.libvirt_uri = kHostUri;
    config_.repositories.push_back({"main", repo_dir, pass});
    auto db = StateDb::Open(config_.state_dir + "/havend.db");
    ASSERT_THAT(db, IsOk());
    db_ = std::move(db).value();
    catalog_ = std::make_unique<RepositoryCatalog>(config_);
    services_.config = &config_;
    services_.db = db_.get();
    services_.repositories = catalog_.get();
    services_.jobs = &jobs_;
    ASSERT_THAT(RegisterRestoreKinds(services_), IsOk());
    ApiOptions api;
    api.authenticate = [](const Request& r, bool, const std::string*) {
      const std::string* role = r.Header("x-test-role");
      Caller c;
      c.name = "token:" + (role ? *role : std::string("operator"));
      c.role = ParseRole(role ? *role : "operator").value_or(Role::kNone);
      return std::variant<Caller, Response>(c);
    };
    auto handler = MakeApiHandler(RestoreRoutes(services_), api);
    ASSERT_THAT(handler, IsOk());
    handler_ = std::move(handler).value();
    disk_data_ = RandomData(1 << 20, 11);
    images_ = tmp_.Sub("images");
  }

  // Commits a point of `kind` with one disk "vda" holding `source`'s bytes
  // (and, for a VM point, its domain and network XML); its id.
  std::string MakePoint(const std::string& kind, const std::string& source,
                        const std::string& name) {
    auto repo = catalog_->Open("main", WriteOptions());
    EXPECT_THAT(repo, IsOk());
    agent::LocalPointSink sink(**repo);
    auto src = snapshot::ImageSource::Open(source);
    EXPECT_THAT(src, IsOk());
    agent::CaptureOptions co;
    agent::DiskCapture capture;
    auto disk = agent::CaptureDisk(sink, **src, nullptr, co, capture);
    EXPECT_THAT(disk, IsOk());
    disk->name = "vda";
    repository::Manifest m;
    m.name = name;
    m.kind = kind;
    m.time = "2026-12-01T02:00:00Z";
    m.hostname = "old-host";
    m.tool = "haven test";
    m.consistency = "crash-consistent";
    m.disks.push_back(*disk);
    if (kind == "vm") {
      m.vm_uuid = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b";
      std::vector<snapshot::ConfigFile> files = {
          {"domain-inactive.xml", DomainXml()},
          {"networks/netx.xml", NetworkXml()}};
      EXPECT_THAT(agent::StoreConfigFiles(sink, files, m), IsOk());
    }
    EXPECT_THAT(sink.Flush(), IsOk());
    EXPECT_THAT((*repo)->CommitSnapshot(m), IsOk());
    return m.id;
  }

  std::string MakeVmPoint() {
    const std::string source = tmp_.Sub("web1-vda.raw");
    WriteWholeFile(source, disk_data_);
    return MakePoint("vm", source, "web1");
  }

  Response Call(const std::string& method, const std::string& path,
                const json& body = nullptr,
                const std::string& role = "operator") {
    Request r;
    r.method = method;
    r.path = r.target = path;
    r.headers.push_back({"x-test-role", role});
    if (!body.is_null()) r.body = body.dump();
    return handler_(r);
  }
  static json Body(const Response& r) {
    return json::parse(r.body, nullptr, false);
  }

  json VmPlanRequest(const std::string& name) {
    return {{"repository", "main"}, {"point", "web1:latest"},
            {"name", name},         {"new_identity", true},
            {"format", "raw"},      {"storage_dir", images_}};
  }

  TempDir tmp_;
  std::unique_ptr<snapshot::LibvirtHost> host_;
  ApplianceConfig config_;
  std::unique_ptr<StateDb> db_;
  std::unique_ptr<RepositoryCatalog> catalog_;
  FakeJobs jobs_;
  Services services_;
  Handler handler_;
  Bytes disk_data_;
  std::string images_;
};

TEST_F(RestoreRoutesTest, AVmPlanRunsAsTheJobThatDefinesExactlyThatVm) {
  const std::string point = MakeVmPoint();
  Response r =
      Call("POST", "/api/v1/restores/vm/plan", VmPlanRequest("web1-api"));
  ASSERT_EQ(r.status, 201) << r.body;
  json plan = Body(r);
  const std::string id = plan["id"];
  EXPECT_EQ(plan["kind"], "vm");
  EXPECT_EQ(plan["created_by"], "token:operator");
  EXPECT_EQ(plan["conflicts"], 0);
  EXPECT_EQ(plan["runnable"], true);
  const json& vm = plan["plan"]["vms"][0];
  EXPECT_EQ(vm["name"], "web1-api");
  EXPECT_EQ(vm["snapshot"], point);
  EXPECT_EQ(vm["disks"][0]["path"], images_ + "/web1-api-vda.img");
  EXPECT_EQ(vm["networks"][0]["name"], "netx");
  EXPECT_EQ(vm["networks"][0]["action"], "create");
  const std::string uuid = vm["uuid"], mac = vm["macs"][0]["new"];
  EXPECT_NE(uuid, "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b");
  EXPECT_FALSE(host_->Lookup("web1-api").ok());  // a plan changes nothing
  EXPECT_FALSE(std::filesystem::exists(images_));

  // An auditor reads it; only an operator runs it.
  Response shown =
      Call("GET", "/api/v1/restores/plans/" + id, nullptr, "auditor");
  ASSERT_EQ(shown.status, 200) << shown.body;
  EXPECT_EQ(Body(shown)["plan"], plan["plan"]);
  EXPECT_EQ(
      Call("POST", "/api/v1/restores/vm", {{"plan", id}}, "auditor").status,
      403);

  Response run = Call("POST", "/api/v1/restores/vm", {{"plan", id}});
  ASSERT_EQ(run.status, 202) << run.body;
  const int64_t job = Body(run)["job"];
  auto rec = jobs_.Get(job);
  ASSERT_THAT(rec, IsOk());
  EXPECT_EQ(rec->spec.kind, "restore-vm");
  EXPECT_EQ(rec->spec.repository, "main");
  EXPECT_EQ(rec->state, JobState::kSucceeded) << rec->outcome.error;
  ASSERT_EQ(rec->outcome.items.size(), 1u);
  EXPECT_EQ(rec->outcome.items[0].name, "web1-api");
  EXPECT_EQ(rec->outcome.items[0].outcome, "ok");
  auto defined = host_->Lookup("web1-api");
  ASSERT_THAT(defined, IsOk());
  auto info = snapshot::ParseDomainXml(*(*defined)->Xml(true));
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->uuid, uuid);
  EXPECT_EQ(info->interfaces[0].mac, mac);
  EXPECT_TRUE(ReadWholeFile(images_ + "/web1-api-vda.img") == disk_data_);

  // A plan runs once.
  Response again = Call("POST", "/api/v1/restores/vm", {{"plan", id}});
  EXPECT_EQ(again.status, 409);
  EXPECT_THAT(again.body,
              HasSubstr("already ran as job " + std::to_string(job)));
  EXPECT_EQ(Body(Call("GET", "/api/v1/restores/plans/" + id))["job"], job);
}

TEST_F(RestoreRoutesTest, ARunFailsNamingWhatChangedSinceThePlan) {
  MakeVmPoint();
  Response r =
      Call("POST", "/api/v1/restores/vm/plan", VmPlanRequest("web1-taken"));
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = Body(r)["id"];
  ASSERT_THAT(host_->DefineDomain(
                  "<domain type='test'><name>web1-taken</name><memory "
                  "unit='KiB'>131072</memory><os><type arch='i686'>hvm</type>"
                  "</os></domain>"),
              IsOk());
  Response run = Call("POST", "/api/v1/restores/vm", {{"plan", id}});
  ASSERT_EQ(run.status, 202) << run.body;
  auto rec = jobs_.Get(Body(run)["job"]);
  ASSERT_THAT(rec, IsOk());
  EXPECT_EQ(rec->state, JobState::kFailed);
  EXPECT_THAT(rec->outcome.error,
              HasSubstr("a domain named web1-taken appeared"));
  EXPECT_FALSE(std::filesystem::exists(images_ + "/web1-taken-vda.img"));
}

TEST_F(RestoreRoutesTest, APlanWithConflictsIsShownButNeverRuns) {
  MakeVmPoint();
  // "test" is the test driver's own running domain.
  json req = VmPlanRequest("test");
  req["new_identity"] = false;
  Response r = Call("POST", "/api/v1/restores/vm/plan", req);
  ASSERT_EQ(r.status, 201) << r.body;
  json plan = Body(r);
  EXPECT_GT(plan["conflicts"], 0);
  EXPECT_EQ(plan["runnable"], false);
  EXPECT_THAT(plan["plan"]["vms"][0]["conflicts"][0].get<std::string>(),
              HasSubstr("domain test already exists"));
  Response run = Call("POST", "/api/v1/restores/vm", {{"plan", plan["id"]}});
  EXPECT_EQ(run.status, 409);
  EXPECT_THAT(run.body, HasSubstr("conflict"));
  // A VM plan does not run as a host or files restore.
  EXPECT_EQ(
      Call("POST", "/api/v1/restores/host", {{"plan", plan["id"]}}).status,
      404);
}

TEST_F(RestoreRoutesTest, BadRequestsAreRefusedNamingTheField) {
  MakeVmPoint();
  json req = VmPlanRequest("x");
  req["colour"] = "blue";
  Response r = Call("POST", "/api/v1/restores/vm/plan", req);
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("unknown field \\\"colour\\\""));
  req = VmPlanRequest("x");
  req.erase("repository");
  r = Call("POST", "/api/v1/restores/vm/plan", req);
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body, HasSubstr("repository is required"));
  req = VmPlanRequest("x");
  req["format"] = "vhdx";
  EXPECT_THAT(Call("POST", "/api/v1/restores/vm/plan", req).body,
              HasSubstr("format must be qcow2 or raw"));
  req = VmPlanRequest("x");
  req["start"] = "yes";
  EXPECT_THAT(Call("POST", "/api/v1/restores/vm/plan", req).body,
              HasSubstr("start must be true or false"));
  req = VmPlanRequest("x");
  req["repository"] = "other";
  EXPECT_EQ(Call("POST", "/api/v1/restores/vm/plan", req).status, 404);
  req = VmPlanRequest("x");
  req["point"] = "nosuchvm:latest";
  EXPECT_EQ(Call("POST", "/api/v1/restores/vm/plan", req).status, 404);
  EXPECT_EQ(Call("POST", "/api/v1/restores/vm/plan", req, "auditor").status,
            403);
  EXPECT_EQ(Call("POST", "/api/v1/restores/host/plan",
                 {{"repository", "main"}, {"all", true}, {"points", {"a"}}})
                .status,
            400);
  EXPECT_EQ(Call("GET", "/api/v1/restores/plans/0123").status, 404);
  EXPECT_EQ(Call("POST", "/api/v1/restores/vm",
                 {{"plan", "0123456789abcdef0123456789abcdef"}})
                .status,
            404);
  EXPECT_EQ(Call("POST", "/api/v1/restores/files/plan",
                 {{"repository", "main"},
                  {"point", "web1:latest"},
                  {"paths", {"/etc"}},
                  {"target", "/tmp/../etc"}})
                .status,
            400);
}

TEST_F(RestoreRoutesTest, AHostPlanOfEveryVmRuns) {
  MakeVmPoint();
  Response r = Call("POST", "/api/v1/restores/host/plan",
                    {{"repository", "main"},
                     {"all", true},
                     {"storage_dir", images_},
                     {"network_map", {{"netx", "default"}}}});
  ASSERT_EQ(r.status, 201) << r.body;
  json plan = Body(r);
  ASSERT_EQ(plan["plan"]["vms"].size(), 1u);
  EXPECT_EQ(plan["plan"]["vms"][0]["name"], "web1");
  EXPECT_EQ(plan["plan"]["vms"][0]["networks"][0]["action"], "mapped");
  Response run = Call("POST", "/api/v1/restores/host", {{"plan", plan["id"]}});
  ASSERT_EQ(run.status, 202) << run.body;
  auto rec = jobs_.Get(Body(run)["job"]);
  ASSERT_THAT(rec, IsOk());
  EXPECT_EQ(rec->state, JobState::kSucceeded) << rec->outcome.error;
  EXPECT_TRUE(host_->Lookup("web1").ok());
}

TEST_F(RestoreRoutesTest, AFilePlanListsWhatARunWritesAndItsConflicts) {
  if (std::system("command -v mke2fs >/dev/null") != 0)
    GTEST_SKIP() << "mke2fs not installed (e2fsprogs)";
  const std::string src = tmp_.Sub("src");
  std::filesystem::create_directories(src + "/etc/ssh");
  WriteWholeFile(src + "/etc/hostname", Bytes{'w', 'e', 'b', '1', '\n'});
  const Bytes config = RandomData(70000, 3);
  WriteWholeFile(src + "/etc/ssh/sshd_config", config);
  const std::string img = tmp_.Sub("disk.img");
  ASSERT_EQ(
      std::system(("truncate -s 16M '" + img +
                   "' && mke2fs -q -F -t ext4 -d '" + src + "' '" + img + "'")
                      .c_str()),
      0);
  const std::string point = MakePoint("image", img, "disk1");
  const std::string target = tmp_.Sub("restored");
  std::filesystem::create_directories(target + "/etc");
  WriteWholeFile(target + "/etc/hostname", Bytes{'o', 'l', 'd'});
  json req = {{"repository", "main"},
              {"point", point.substr(0, 12)},
              {"paths", {"/etc"}},
              {"target", target}};
  Response r = Call("POST", "/api/v1/restores/files/plan", req);
  ASSERT_EQ(r.status, 201) << r.body;
  json plan = Body(r);
  EXPECT_EQ(plan["conflicts"], 1);
  EXPECT_EQ(plan["plan"]["problems"][0]["path"], "/etc/hostname");
  EXPECT_FALSE(std::filesystem::exists(target + "/etc/ssh"));  // no write

  req["overwrite"] = "always";
  r = Call("POST", "/api/v1/restores/files/plan", req);
  ASSERT_EQ(r.status, 201) << r.body;
  plan = Body(r);
  EXPECT_EQ(plan["conflicts"], 0);
  std::map<std::string, std::string> actions;
  for (const auto& e : plan["plan"]["planned"])
    actions[e["path"]] = e["action"];
  EXPECT_EQ(actions["etc/hostname"], "replace");
  EXPECT_EQ(actions["etc/ssh/sshd_config"], "create");
  EXPECT_EQ(actions["etc/ssh"], "create");
  EXPECT_FALSE(std::filesystem::exists(target + "/etc/ssh"));

  Response run = Call("POST", "/api/v1/restores/files", {{"plan", plan["id"]}});
  ASSERT_EQ(run.status, 202) << run.body;
  auto rec = jobs_.Get(Body(run)["job"]);
  ASSERT_THAT(rec, IsOk());
  EXPECT_EQ(rec->spec.kind, "restore-files");
  EXPECT_EQ(rec->state, JobState::kSucceeded) << rec->outcome.error;
  EXPECT_TRUE(ReadWholeFile(target + "/etc/ssh/sshd_config") == config);
  EXPECT_TRUE(ReadWholeFile(target + "/etc/hostname") ==
              (Bytes{'w', 'e', 'b', '1', '\n'}));
  EXPECT_EQ(rec->outcome.result["files"], 2);
}

}  // namespace
}  // namespace haven::appliance
