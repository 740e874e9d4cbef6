// bench/catalog.sh's setup: makes a repository hold many recovery points
// quickly. Opens REPO once as a writer and commits COUNT copies of its
// newest point's manifest, each under a new id with its own name
// (bench-vm-000 .. bench-vm-NNN, NAMES of them) and time (one minute apart,
// all older than the copied point, so NAME:latest stays the real backup).
// The copies reference the real point's chunks, so each is restorable.
// Then, as the next backup would, waits out the catalog's racy window
// (repository/catalog.h) and lists the points once as a writer.
//
// Usage: HAVEN_PASSWORD=... fill_points REPO COUNT NAMES
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "base/time.h"
#include "repository/repository.h"

namespace {

int Fail(const haven::Status& s) {
  std::fprintf(stderr, "fill_points: %s\n", s.message().c_str());
  return 1;
}

// 2025-01-01T00:00:00Z plus `minutes`, as RFC 3339 UTC.
std::string Minute(long minutes) {
  time_t t = 1735689600 + minutes * 60;
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  using haven::repository::Repository;
  const char* pass = std::getenv("HAVEN_PASSWORD");
  if (argc != 4 || !pass) {
    std::fprintf(stderr, "usage: HAVEN_PASSWORD=... fill_points REPO COUNT NAMES\n");
    return 2;
  }
  long count = std::atol(argv[2]), names = std::atol(argv[3]);
  if (count < 1 || names < 1) return 2;
  haven::repository::OpenOptions o;
  o.write = true;
  auto repo = Repository::Open(argv[1], pass, o);
  if (!repo.ok()) return Fail(repo.status());
  auto model = (*repo)->FindSnapshot("latest");
  if (!model.ok()) return Fail(model.status());
  double start = haven::MonotonicSeconds();
  for (long i = 0; i < count; ++i) {
    haven::repository::Manifest m = *model;
    char name[32];
    std::snprintf(name, sizeof name, "bench-vm-%03ld", i % names);
    m.name = name;
    m.time = Minute(i);
    m.parent.clear();
    haven::Status s = (*repo)->CommitSnapshot(m);
    if (!s.ok()) return Fail(s);
  }
  double committed = haven::MonotonicSeconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  std::vector<std::string> errors;
  double list_start = haven::MonotonicSeconds();
  auto all = (*repo)->ListSnapshots(&errors);
  if (!all.ok()) return Fail(all.status());
  if (!errors.empty()) return Fail(haven::DataLoss(errors.front()));
  std::printf("committed %ld points in %.2f s; %zu points listed by the writer in %.2f s\n",
              count, committed - start, all->size(),
              haven::MonotonicSeconds() - list_start);
  return 0;
}
