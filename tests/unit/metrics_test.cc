// /metrics: the exposition text from a snapshot, checked by a small parser
// of the Prometheus text format 0.0.4 (families typed before their
// samples, label values escaped and round-tripping, histograms cumulative),
// and the snapshot read from a real state database filled by the real
// SqlJobService.
#include "appliance/metrics.h"

#include <chrono>
#include <map>
#include <thread>

#include "appliance/history_queries.h"
#include "appliance/job_service.h"
#include "base/time.h"
#include "test_util.h"

namespace haven::appliance {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::TempDir;
using ::testing::HasSubstr;

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;  // unescaped
  double value = 0;
};

// Parses exposition text; fails the test on anything the format forbids.
std::vector<Sample> Parse(const std::string& text) {
  std::vector<Sample> out;
  std::map<std::string, std::string> types;
  EXPECT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.rfind("# HELP ", 0) == 0) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string rest = line.substr(7);
      std::string name = rest.substr(0, rest.find(' '));
      std::string type = rest.substr(rest.find(' ') + 1);
      EXPECT_TRUE(type == "gauge" || type == "counter" || type == "histogram")
          << line;
      EXPECT_EQ(types.count(name), 0u) << "family typed twice: " << name;
      types[name] = type;
      continue;
    }
    EXPECT_NE(line[0], '#') << line;
    Sample s;
    size_t i = 0;
    while (i < line.size() &&
           (std::isalnum(static_cast<unsigned char>(line[i])) ||
            line[i] == '_' || line[i] == ':'))
      ++i;
    s.name = line.substr(0, i);
    EXPECT_FALSE(s.name.empty()) << line;
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find('=', i);
        std::string label = line.substr(i, eq - i);
        EXPECT_EQ(line[eq + 1], '"') << line;
        std::string value;
        size_t k = eq + 2;
        for (; k < line.size() && line[k] != '"'; ++k) {
          if (line[k] == '\\') {
            char e = line[++k];
            EXPECT_TRUE(e == '\\' || e == '"' || e == 'n') << line;
            value += e == 'n' ? '\n' : e;
          } else {
            value += line[k];
          }
        }
        EXPECT_LT(k, line.size()) << "unterminated label value: " << line;
        s.labels[label] = value;
        i = k + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      ++i;
    }
    EXPECT_EQ(line[i], ' ') << line;
    std::string value = line.substr(i + 1);
    s.value = value == "+Inf" ? INFINITY : std::stod(value);
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!types.count(family) && family.size() > strlen(suffix) &&
          family.compare(family.size() - strlen(suffix), std::string::npos,
                         suffix) == 0)
        family.resize(family.size() - strlen(suffix));
    EXPECT_EQ(types.count(family), 1u) << "sample before its TYPE: " << line;
    out.push_back(std::move(s));
  }
  return out;
}

const Sample* Find(const std::vector<Sample>& all, const std::string& name,
                   const std::map<std::string, std::string>& labels) {
  for (const Sample& s : all)
    if (s.name == name && s.labels == labels) return &s;
  return nullptr;
}

TEST(Metrics, LabelValuesEscaped) {
  EXPECT_EQ(EscapeLabelValue("plain-vm_1.x"), "plain-vm_1.x");
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(EscapeLabelValue("Grüße"), "Grüße");
  EXPECT_EQ(EscapeLabelValue("bad\xff\xc0\xafx"),
            "bad\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx");
  EXPECT_EQ(EscapeLabelValue("\xed\xa0\x80"),
            "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
}

TEST(Metrics, RenderedTextParsesAndUntrustedNamesRoundTrip) {
  const std::vector<std::string> names = {"web1",
                                          "evil\"} haven_jobs_running 99\n# x",
                                          "back\\slash", "Grüße", "a,b=c"};
  MetricsSnapshot s;
  for (size_t i = 0; i < names.size(); ++i)
    s.vms.push_back({names[i], "main", 1796637600 + static_cast<int64_t>(i),
                     1000 * (i + 1), 10 * (i + 1)});
  s.jobs = {{"backup", "succeeded", 7},
            {"backup", "failed", 2},
            {"gc", "succeeded", 1}};
  s.durations = {{"backup", {5, 70, 70, 4000, 100000}}, {"gc", {12.5}}};
  s.jobs_running = 1;
  s.jobs_queued = 3;
  s.repositories = {{"main", true, 5000, 40000, 12, 1796637600},
                    {"offsite", false, 0, 0, 0, 0}};
  s.rss_bytes = 12345678;
  s.start_time = 1796630000.25;
  std::string text = RenderMetrics(s);
  auto samples = Parse(text);
  EXPECT_THAT(text, HasSubstr("# TYPE haven_job_duration_seconds histogram\n"));
  for (size_t i = 0; i < names.size(); ++i) {
    const Sample* t = Find(samples, "haven_vm_last_success_timestamp_seconds",
                           {{"vm", names[i]}, {"repository", "main"}});
    ASSERT_NE(t, nullptr) << names[i];
    EXPECT_EQ(t->value, 1796637600 + static_cast<double>(i));
    const Sample* b = Find(samples, "haven_vm_last_backup_bytes",
                           {{"vm", names[i]}, {"repository", "main"}});
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(b->value, 1000.0 * (i + 1));
  }
  // The injected sample stayed inside its label.
  const Sample* running = Find(samples, "haven_jobs_running", {});
  ASSERT_NE(running, nullptr);
  EXPECT_EQ(running->value, 1);
  EXPECT_EQ(Find(samples, "haven_jobs_queued", {})->value, 3);
  EXPECT_EQ(Find(samples, "haven_jobs_total",
                 {{"kind", "backup"}, {"state", "failed"}})
                ->value,
            2);
  // Histogram: cumulative buckets, +Inf = count, sum.
  EXPECT_EQ(Find(samples, "haven_job_duration_seconds_bucket",
                 {{"kind", "backup"}, {"le", "10"}})
                ->value,
            1);
  EXPECT_EQ(Find(samples, "haven_job_duration_seconds_bucket",
                 {{"kind", "backup"}, {"le", "60"}})
                ->value,
            1);
  EXPECT_EQ(Find(samples, "haven_job_duration_seconds_bucket",
                 {{"kind", "backup"}, {"le", "300"}})
                ->value,
            3);
  EXPECT_EQ(Find(samples, "haven_job_duration_seconds_bucket",
                 {{"kind", "backup"}, {"le", "86400"}})
                ->value,
            4);
  EXPECT_EQ(Find(samples, "haven_job_duration_seconds_bucket",
                 {{"kind", "backup"}, {"le", "+Inf"}})
                ->value,
            5);
  EXPECT_EQ(
      Find(samples, "haven_job_duration_seconds_count", {{"kind", "backup"}})
          ->value,
      5);
  EXPECT_EQ(
      Find(samples, "haven_job_duration_seconds_sum", {{"kind", "backup"}})
          ->value,
      104145);
  EXPECT_EQ(
      Find(samples, "haven_job_duration_seconds_sum", {{"kind", "gc"}})->value,
      12.5);
  double previous = 0;
  for (const Sample& x : samples)
    if (x.name == "haven_job_duration_seconds_bucket" &&
        x.labels.at("kind") == "backup") {
      EXPECT_GE(x.value, previous);
      previous = x.value;
    }
  EXPECT_EQ(
      Find(samples, "haven_repository_stored_bytes", {{"repository", "main"}})
          ->value,
      5000);
  EXPECT_EQ(
      Find(samples, "haven_repository_logical_bytes", {{"repository", "main"}})
          ->value,
      40000);
  EXPECT_EQ(
      Find(samples, "haven_repository_points", {{"repository", "main"}})->value,
      12);
  EXPECT_EQ(
      Find(samples, "haven_repository_points", {{"repository", "offsite"}}),
      nullptr)
      << "a repository not measured yet has no figures (not zeros)";
  EXPECT_EQ(Find(samples, "process_resident_memory_bytes", {})->value,
            12345678);
  EXPECT_EQ(Find(samples, "process_start_time_seconds", {})->value,
            1796630000.25);
}

TEST(Metrics, ProcessFigures) {
  auto rss = ProcessRssBytes();
  ASSERT_TRUE(rss);
  EXPECT_GT(*rss, 1u << 20);
  auto start = ProcessStartTime();
  ASSERT_TRUE(start);
  double now = static_cast<double>(std::time(nullptr));
  EXPECT_LE(*start, now + 1);
  EXPECT_GT(*start, now - 3600);
}

// Jobs run through the real SqlJobService into a real state database;
// the snapshot is read back with history_queries' SQL.
TEST(Metrics, SnapshotFromJobHistory) {
  TempDir dir;
  auto db = StateDb::Open(dir.Sub("havend.db"));
  ASSERT_THAT(db.status(), IsOk());
  EXPECT_THAT(LoadVmLastBackups(*db.value()).status(), IsOk())
      << "no tables yet reads as empty";
  auto jobs = SqlJobService::Create(*db.value(), {});
  ASSERT_THAT(jobs.status(), IsOk());
  // A fake "backup" kind: params {"ok": [...], "fail": [...]}.
  jobs.value()->RegisterKind(
      "backup", [](const JobSpec&) { return OkStatus(); },
      [](const JobSpec& spec, JobContext&) {
        JobOutcome o;
        for (const auto& n : spec.params["ok"])
          o.items.push_back({n.get<std::string>(), "ok", "", 100, 10, 5, {}});
        for (const auto& n : spec.params["fail"])
          o.items.push_back(
              {n.get<std::string>(), "failed", "boom", 0, 0, 0, {}});
        o.state = spec.params["fail"].empty() ? JobState::kSucceeded
                                              : JobState::kPartial;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        return o;
      });
  std::vector<JobRecord> ended;
  std::mutex mu;
  jobs.value()->OnJobEnd([&](const JobRecord& r) {
    std::lock_guard lock(mu);
    ended.push_back(r);
  });
  jobs.value()->Start();
  auto submit = [&](const char* repo, nlohmann::json params) {
    JobSpec spec;
    spec.kind = "backup";
    spec.repository = repo;
    spec.params = std::move(params);
    auto id = jobs.value()->Submit(spec);
    EXPECT_THAT(id.status(), IsOk());
  };
  submit("main", {{"ok", {"web1", "db1"}}, {"fail", nlohmann::json::array()}});
  submit("main", {{"ok", {"web1"}}, {"fail", {"db1"}}});
  submit("offsite", {{"ok", {"web1"}}, {"fail", nlohmann::json::array()}});
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard lock(mu);
      if (ended.size() == 3) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(ended.size(), 3u);
  jobs.value()->Stop();

  auto snapshot = CollectMetrics(*db.value(), nullptr);
  ASSERT_THAT(snapshot.status(), IsOk());
  const MetricsSnapshot& s = snapshot.value();
  ASSERT_EQ(s.vms.size(), 3u);  // (db1, main), (web1, main), (web1, offsite)
  EXPECT_EQ(s.vms[0].vm, "db1");
  EXPECT_EQ(s.vms[0].repository, "main");
  auto db1_end = ParseIsoTime(ended[0].ended_at);
  ASSERT_THAT(db1_end.status(), IsOk());
  EXPECT_EQ(s.vms[0].last_success, *db1_end) << "db1's last success is job 1's";
  EXPECT_EQ(s.vms[0].read_bytes, 100u);
  EXPECT_EQ(s.vms[0].stored_bytes, 5u);
  EXPECT_EQ(s.vms[1].vm, "web1");
  EXPECT_EQ(s.vms[2].repository, "offsite");
  std::map<std::string, uint64_t> counts;
  for (const auto& j : s.jobs) counts[j.kind + "/" + j.state] = j.count;
  EXPECT_EQ(counts["backup/succeeded"], 2u);
  EXPECT_EQ(counts["backup/partial"], 1u);
  ASSERT_EQ(s.durations.size(), 1u);
  EXPECT_EQ(s.durations[0].seconds.size(), 3u);
  for (double d : s.durations[0].seconds) EXPECT_GE(d, 0.015);
  EXPECT_EQ(s.jobs_running, 0u);
  EXPECT_TRUE(s.rss_bytes.has_value());
  auto last = LastSuccesses(s.vms);
  ASSERT_EQ(last.size(), 3u);
  EXPECT_EQ(last[0].last_success, *db1_end);
  Parse(RenderMetrics(s));
}

}  // namespace
}  // namespace haven::appliance
