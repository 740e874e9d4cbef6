// Garbage collection on real repositories (packs, RocksDB index, manifests):
// what gc deletes, rewrites and keeps after a recovery point is forgotten,
// how it treats packs the index does not name and packs it cannot read, that
// a dry run changes nothing, that it refuses to run when a manifest cannot be
// read, and that its scratch set (ChunkSet) never outlives it.
#include "repository/gc.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/check.h"
#include "repository/chunk_index.h"
#include "repository/chunk_tree.h"
#include "repository/local_backend.h"
#include "repository/pack_file.h"
#include "tests/unit/image_test_util.h"
#include "tests/unit/repository_test_util.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

namespace fs = std::filesystem;
using ::haven::testing_util::FlipByte;
using ::haven::testing_util::ImageRoundTripTest;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::kImagePass;
using ::haven::testing_util::kMiB;
using ::haven::testing_util::PackFiles;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::ReadOptions;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::SnapshotTree;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteOptions;
using ::haven::testing_util::WriteWholeFile;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;

using IdSet = std::set<std::string>;  // chunk ids, hex
using Headers = std::map<std::string, std::vector<PackEntry>>;

std::string Describe(const ChunkLocation& l) {
  return l.pack + "@" + std::to_string(l.offset) + "+" +
         std::to_string(l.stored_len) + " raw " + std::to_string(l.raw_len) +
         " type " + std::to_string(static_cast<int>(l.type));
}

// Every index entry: chunk id -> where it lives.
std::map<std::string, std::string> IndexDump(const Repository& repo) {
  std::map<std::string, std::string> out;
  EXPECT_THAT(repo.index().ForEach(
                  [&](const ChunkId& id, const ChunkLocation& l) {
                    out[id.Hex()] = Describe(l);
                    return OkStatus();
                  },
                  [](const Status& bad) { ADD_FAILURE() << bad.ToString(); }),
              IsOk());
  return out;
}

// Headers of every pack that can be read.
Headers ReadHeaders(const Repository& repo) {
  Headers out;
  for (const std::string& name : ListPackNames(repo.dir())) {
    auto entries =
        ReadPackHeader(PackPath(repo.dir(), name), name, repo.data_key());
    EXPECT_THAT(entries, IsOk());
    if (entries.ok()) out[name] = *entries;
  }
  return out;
}

uint64_t PackBytes(const std::string& dir) {
  uint64_t n = 0;
  for (const std::string& name : ListPackNames(dir))
    n += testing_util::FileSize(PackPath(dir, name));
  return n;
}

std::set<std::string> PackSet(const std::string& dir) {
  auto v = PackFiles(dir);
  return {v.begin(), v.end()};
}

// Chunk-list nodes and data chunks a recovery point names.
IdSet ReferencedIds(const Repository& repo, const Manifest& m) {
  IdSet out;
  ReadContext ctx;
  for (const auto& d : m.disks) {
    EXPECT_THAT(WalkTree(
                    d.tree,
                    [&](const ChunkId& id) -> Result<Bytes> {
                      out.insert(id.Hex());
                      Bytes node;
                      HAVEN_RETURN_IF_ERROR(repo.LoadTreeNode(id, node, ctx));
                      return node;
                    },
                    [&](uint64_t, const ChunkId& id) {
                      out.insert(id.Hex());
                      return OkStatus();
                    }),
                IsOk());
  }
  return out;
}

std::vector<std::string> GcScratchDirs(const std::string& repo_dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(repo_dir + "/tmp"))
    if (e.path().filename().string().rfind("gc-", 0) == 0)
      out.push_back(e.path().filename().string());
  return out;
}

// What gc should do, worked out from the pack headers and the live set
// (valid when no chunk has two copies).
struct Plan {
  std::set<std::string> deleted, repacked, kept;
  IdSet moved;      // live chunks of repacked packs
  IdSet index_ids;  // what the index holds afterwards
  uint64_t chunks_removed = 0, chunks_moved = 0, bytes_moved = 0;
};

Plan Predict(const Headers& headers, const IdSet& live, double repack_below) {
  Plan p;
  for (const auto& [name, entries] : headers) {
    uint64_t all = 0, live_bytes = 0;
    std::vector<const PackEntry*> here;
    for (const auto& e : entries) {
      all += e.stored_len;
      if (live.count(e.id.Hex())) {
        here.push_back(&e);
        live_bytes += e.stored_len;
      }
    }
    if (here.empty()) {
      p.deleted.insert(name);
      p.chunks_removed += entries.size();
    } else if (static_cast<double>(live_bytes) <
               repack_below * static_cast<double>(all)) {
      p.repacked.insert(name);
      p.chunks_removed += entries.size() - here.size();
      p.chunks_moved += here.size();
      for (const PackEntry* e : here) {
        p.bytes_moved += e->stored_len;
        p.moved.insert(e->id.Hex());
        p.index_ids.insert(e->id.Hex());
      }
    } else {
      p.kept.insert(name);
      for (const auto& e : entries) p.index_ids.insert(e.id.Hex());
    }
  }
  return p;
}

class GcTest : public ImageRoundTripTest {
 protected:
  void SetUp() override {
    ImageRoundTripTest::SetUp();
    ASSERT_NO_FATAL_FAILURE(InitRepo());
    cs_ = repo_->config().chunk_size;
  }

  // Opens repo_ for writing if gc closed it.
  void Reopen() {
    if (repo_) return;
    auto r = Repository::Open(repo_dir_, kImagePass, WriteOptions());
    ASSERT_THAT(r, IsOk());
    repo_ = std::move(r).value();
  }

  void BackupData(const Bytes& data, const std::string& name, Manifest* out) {
    ASSERT_NO_FATAL_FAILURE(Reopen());
    const std::string image = tmp_.Sub(name + ".raw");
    WriteWholeFile(image, data);
    auto m = Backup(image, name);
    ASSERT_THAT(m, IsOk());
    *out = *m;
  }

  // gc needs the repository to itself: our handle is closed first.
  Result<GcReport> RunGc(GcOptions o = {}) {
    repo_.reset();
    o.open.lock_wait_seconds = 5;
    return CollectGarbage(repo_dir_, kImagePass, o);
  }

  std::unique_ptr<Repository> OpenRead() {
    auto r = Repository::Open(repo_dir_, kImagePass, ReadOptions());
    EXPECT_THAT(r, IsOk());
    return r.ok() ? std::move(r).value() : nullptr;
  }

  void ExpectRestores(const Manifest& m, const Bytes& expected) {
    auto reader = OpenRead();
    ASSERT_NE(reader, nullptr);
    const std::string target = tmp_.Sub("restored-" + m.id + ".raw");
    ASSERT_THAT(Restore(m, target, reader.get()), IsOk());
    EXPECT_TRUE(ReadWholeFile(target) == expected)
        << "restored image of " << m.name << " differs";
    fs::remove(target);
  }

  void ExpectSound() {
    auto reader = OpenRead();
    ASSERT_NE(reader, nullptr);
    CheckOptions co;
    co.read_data_percent = 100;
    co.threads = 2;
    auto check = CheckRepository(*reader, co);
    ASSERT_THAT(check, IsOk());
    EXPECT_THAT(check->findings, IsEmpty());
    EXPECT_EQ(check->packs_read, check->packs);
  }

  // X (`size` bytes of random chunks) and Y = X with every odd chunk replaced,
  // then X is forgotten: X's data packs are about half live, its tree pack is
  // dead.
  void SetUpHalfLive(uint64_t size = 3 * kMiB) {
    const Bytes x = RandomData(size, 1);
    y_data_ = x;
    for (uint64_t i = 1; i * cs_ < y_data_.size(); i += 2) {
      Bytes fresh = RandomData(cs_, 1000 + static_cast<uint32_t>(i));
      std::copy(fresh.begin(), fresh.end(), y_data_.begin() + i * cs_);
    }
    ASSERT_NO_FATAL_FAILURE(BackupData(x, "x", &x_));
    x_packs_ = PackSet(repo_dir_);
    ASSERT_NO_FATAL_FAILURE(BackupData(y_data_, "y", &y_));
    ASSERT_THAT(repo_->DeleteSnapshot(x_.id), IsOk());
    live_ = ReferencedIds(*repo_, y_);
    headers_ = ReadHeaders(*repo_);
    index_before_ = IndexDump(*repo_);
    packs_before_ = PackSet(repo_dir_);
  }

  uint64_t cs_ = 0;
  Manifest x_, y_;
  Bytes y_data_;
  IdSet live_;
  Headers headers_;
  std::map<std::string, std::string> index_before_;
  std::set<std::string> x_packs_, packs_before_;
};

// A and B share all but 24 chunks; B is forgotten.
TEST_F(GcTest, ForgettingAPointFreesExactlyItsOwnPacks) {
  const Bytes a = RandomData(4 * kMiB, 1);
  Bytes b = a;
  const Bytes changed = RandomData(3 * kMiB / 2, 2);
  std::copy(changed.begin(), changed.end(), b.begin() + kMiB);
  Manifest ma, mb;
  ASSERT_NO_FATAL_FAILURE(BackupData(a, "a", &ma));
  const auto packs_a = PackSet(repo_dir_);
  const auto index_a = IndexDump(*repo_);
  ASSERT_NO_FATAL_FAILURE(BackupData(b, "b", &mb));

  const IdSet ids_a = ReferencedIds(*repo_, ma);
  IdSet only_b;
  for (const auto& id : ReferencedIds(*repo_, mb))
    if (!ids_a.count(id)) only_b.insert(id);
  ASSERT_EQ(only_b.size(), 24u + 1u);  // changed chunks and B's root
  std::set<std::string> b_packs;
  for (const auto& p : PackSet(repo_dir_))
    if (!packs_a.count(p)) b_packs.insert(p);
  ASSERT_THAT(b_packs, SizeIs(2));
  uint64_t b_entries = 0;
  const Headers headers = ReadHeaders(*repo_);
  for (const auto& p : b_packs) {
    for (const auto& e : headers.at(p)) {
      EXPECT_TRUE(only_b.count(e.id.Hex())) << "B's pack holds a shared chunk";
      ++b_entries;
    }
  }
  const uint64_t bytes_before = PackBytes(repo_dir_);

  ASSERT_THAT(repo_->DeleteSnapshot(mb.id), IsOk());
  auto report = RunGc();
  ASSERT_THAT(report, IsOk());

  EXPECT_EQ(PackSet(repo_dir_), packs_a);
  for (const auto& p : b_packs)
    EXPECT_FALSE(PathExists(PackPath(repo_dir_, p))) << p;
  auto reader = OpenRead();
  ASSERT_NE(reader, nullptr);
  const auto index_after = IndexDump(*reader);
  EXPECT_EQ(index_after, index_a);  // shared chunks stay where they were
  for (const auto& id : only_b) EXPECT_FALSE(index_after.count(id)) << id;
  for (const auto& id : ids_a) EXPECT_TRUE(index_after.count(id)) << id;
  reader.reset();

  EXPECT_EQ(report->snapshots, 1u);
  EXPECT_EQ(report->packs, packs_a.size() + b_packs.size());
  EXPECT_EQ(report->packs_deleted, b_packs.size());
  EXPECT_EQ(report->chunks_removed, b_entries);
  EXPECT_EQ(report->packs_repacked, 0u);
  EXPECT_EQ(report->packs_written, 0u);
  EXPECT_EQ(report->chunks_moved, 0u);
  EXPECT_GE(report->live_chunks, ids_a.size());
  EXPECT_THAT(report->skipped, IsEmpty());
  EXPECT_EQ(report->bytes_before, bytes_before);
  EXPECT_EQ(report->bytes_after, PackBytes(repo_dir_));
  EXPECT_LT(report->bytes_after, report->bytes_before);

  ExpectRestores(ma, a);
  ExpectSound();
}

TEST_F(GcTest, PartlyLivePacksAreRewritten) {
  ASSERT_NO_FATAL_FAILURE(SetUpHalfLive());
  const Plan plan = Predict(headers_, live_, 0.8);
  ASSERT_FALSE(plan.repacked.empty());
  ASSERT_FALSE(plan.deleted.empty());  // X's tree pack
  for (const auto& p : plan.repacked) ASSERT_TRUE(x_packs_.count(p)) << p;

  auto report = RunGc();
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->packs_repacked, plan.repacked.size());
  EXPECT_EQ(report->packs_deleted, plan.deleted.size());
  EXPECT_EQ(report->chunks_moved, plan.chunks_moved);
  EXPECT_EQ(report->bytes_moved, plan.bytes_moved);
  EXPECT_EQ(report->chunks_removed, plan.chunks_removed);
  EXPECT_THAT(report->skipped, IsEmpty());

  const auto packs_after = PackSet(repo_dir_);
  for (const auto& p : plan.repacked) EXPECT_FALSE(packs_after.count(p)) << p;
  for (const auto& p : plan.deleted) EXPECT_FALSE(packs_after.count(p)) << p;
  for (const auto& p : plan.kept) EXPECT_TRUE(packs_after.count(p)) << p;
  std::set<std::string> fresh;
  for (const auto& p : packs_after)
    if (!packs_before_.count(p)) fresh.insert(p);
  EXPECT_EQ(report->packs_written, fresh.size());
  EXPECT_EQ(packs_after.size(), plan.kept.size() + fresh.size());

  auto reader = OpenRead();
  ASSERT_NE(reader, nullptr);
  const Headers headers = ReadHeaders(*reader);
  // The new packs hold each moved chunk once, and nothing else.
  std::multiset<std::string> in_fresh;
  for (const auto& p : fresh)
    for (const auto& e : headers.at(p)) in_fresh.insert(e.id.Hex());
  EXPECT_EQ(in_fresh,
            std::multiset<std::string>(plan.moved.begin(), plan.moved.end()));
  // Every index entry names a pack that holds the chunk at that offset.
  const auto index = IndexDump(*reader);
  IdSet index_ids;
  for (const auto& [id, where] : index) index_ids.insert(id);
  EXPECT_EQ(index_ids, plan.index_ids);
  for (const auto& [name, entries] : headers) {
    for (const auto& e : entries) {
      auto loc = reader->index().Get(e.id);
      ASSERT_THAT(loc, IsOk());
      ASSERT_TRUE(loc->has_value()) << e.id.Hex();
      if (plan.moved.count(e.id.Hex())) {
        EXPECT_TRUE(fresh.count((*loc)->pack)) << e.id.Hex();
      }
      if ((*loc)->pack == name) {
        EXPECT_EQ((*loc)->offset, e.offset);
      }
    }
  }
  reader.reset();
  EXPECT_EQ(report->bytes_after, PackBytes(repo_dir_));
  EXPECT_LT(report->bytes_after, report->bytes_before);

  ExpectRestores(y_, y_data_);
  ExpectSound();
}

TEST_F(GcTest, RepackBelowZeroOnlyDeletesWhollyDeadPacks) {
  ASSERT_NO_FATAL_FAILURE(SetUpHalfLive());
  const Plan plan = Predict(headers_, live_, 0);
  ASSERT_TRUE(plan.repacked.empty());
  ASSERT_THAT(plan.deleted, SizeIs(1));  // X's tree pack
  // With the default threshold the same repository would be repacked.
  ASSERT_FALSE(Predict(headers_, live_, 0.8).repacked.empty());

  GcOptions o;
  o.repack_below = 0;
  o.max_unused = 1;  // and no rewrite to meet an unused-space target
  auto report = RunGc(o);
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->packs_deleted, 1u);
  EXPECT_EQ(report->packs_repacked, 0u);
  EXPECT_EQ(report->packs_written, 0u);
  EXPECT_EQ(report->chunks_moved, 0u);
  EXPECT_EQ(report->chunks_removed, plan.chunks_removed);

  std::set<std::string> expected_packs = packs_before_;
  for (const auto& p : plan.deleted) expected_packs.erase(p);
  EXPECT_EQ(PackSet(repo_dir_), expected_packs);
  auto expected_index = index_before_;
  for (const auto& p : plan.deleted)
    for (const auto& e : headers_.at(p)) expected_index.erase(e.id.Hex());
  auto reader = OpenRead();
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(IndexDump(*reader), expected_index);
  reader.reset();
  EXPECT_EQ(report->bytes_after, PackBytes(repo_dir_));

  ExpectRestores(y_, y_data_);
  ExpectSound();
}

// With no per-pack threshold, --max-unused alone rewrites the packs with the
// most unused space until little enough is left.
TEST_F(GcTest, MaxUnusedRewritesUntilTheTargetIsMet) {
  ASSERT_NO_FATAL_FAILURE(SetUpHalfLive());
  GcOptions o;
  o.repack_below = 0;
  o.max_unused = 0.2;
  auto report = RunGc(o);
  ASSERT_THAT(report, IsOk());
  EXPECT_GT(report->packs_repacked, 0u);
  EXPECT_LE(static_cast<double>(report->unused_bytes_after),
            0.2 * static_cast<double>(report->bytes_before));
  EXPECT_EQ(report->bytes_after, PackBytes(repo_dir_));
  ExpectRestores(y_, y_data_);
  ExpectSound();

  // And 0 leaves no unused byte at all.
  GcOptions all;
  all.repack_below = 0;
  all.max_unused = 0;
  auto second = RunGc(all);
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->unused_bytes_after, 0u);
  ExpectRestores(y_, y_data_);
  ExpectSound();
}

TEST_F(GcTest, DryRunChangesNothingAndReportsWhatTheRealRunDoes) {
  ASSERT_NO_FATAL_FAILURE(SetUpHalfLive());
  repo_.reset();
  const auto packs_tree = SnapshotTree(repo_dir_ + "/packs");
  const auto snapshots_tree = SnapshotTree(repo_dir_ + "/snapshots");

  GcOptions dry_options;
  dry_options.dry_run = true;
  auto dry = RunGc(dry_options);
  ASSERT_THAT(dry, IsOk());
  EXPECT_EQ(SnapshotTree(repo_dir_ + "/packs"), packs_tree);
  EXPECT_EQ(SnapshotTree(repo_dir_ + "/snapshots"), snapshots_tree);
  {
    auto reader = OpenRead();
    ASSERT_NE(reader, nullptr);
    EXPECT_EQ(IndexDump(*reader), index_before_);
  }
  EXPECT_THAT(GcScratchDirs(repo_dir_), IsEmpty());
  EXPECT_GT(dry->packs_repacked, 0u);

  auto real = RunGc();
  ASSERT_THAT(real, IsOk());
  EXPECT_NE(SnapshotTree(repo_dir_ + "/packs"), packs_tree);
  EXPECT_EQ(dry->snapshots, real->snapshots);
  EXPECT_EQ(dry->live_chunks, real->live_chunks);
  EXPECT_EQ(dry->packs, real->packs);
  EXPECT_EQ(dry->packs_deleted, real->packs_deleted);
  EXPECT_EQ(dry->packs_repacked, real->packs_repacked);
  EXPECT_EQ(dry->packs_written, real->packs_written);
  EXPECT_EQ(dry->chunks_moved, real->chunks_moved);
  EXPECT_EQ(dry->chunks_removed, real->chunks_removed);
  EXPECT_EQ(dry->bytes_moved, real->bytes_moved);
  EXPECT_EQ(dry->bytes_before, real->bytes_before);
  EXPECT_EQ(dry->skipped, real->skipped);
  // The dry run cannot know the exact size of headers it does not write.
  EXPECT_NEAR(static_cast<double>(dry->bytes_after),
              static_cast<double>(real->bytes_after),
              4096.0 * static_cast<double>(real->packs_written + 1));
}

// 16 chunks are moved: exactly what one new pack takes before it is sealed.
TEST_F(GcTest, DryRunCountsThePacksTheRealRunWrites) {
  ASSERT_NO_FATAL_FAILURE(SetUpHalfLive(2 * kMiB));
  ASSERT_EQ(Predict(headers_, live_, 0.8).chunks_moved, 16u);
  GcOptions dry_options;
  dry_options.dry_run = true;
  auto dry = RunGc(dry_options);
  ASSERT_THAT(dry, IsOk());
  EXPECT_EQ(PackSet(repo_dir_), packs_before_);
  auto real = RunGc();
  ASSERT_THAT(real, IsOk());
  EXPECT_EQ(dry->chunks_moved, real->chunks_moved);
  EXPECT_EQ(dry->packs_repacked, real->packs_repacked);
  EXPECT_EQ(dry->packs_written, real->packs_written);
}

// A backup that commits while gc marks (here: from the phase callback, when
// gc waits for the exclusive lock) and reuses chunks of the forgotten point
// must keep them.
TEST_F(GcTest, PointCommittedDuringTheMarkKeepsItsChunks) {
  ASSERT_NO_FATAL_FAILURE(SetUpHalfLive());
  const Bytes x = RandomData(3 * kMiB, 1);  // the forgotten point's image
  Manifest z;
  GcOptions o;
  o.on_phase = [&](const std::string& phase) {
    if (phase.rfind("waiting for running backups", 0) != 0) return;
    ASSERT_NO_FATAL_FAILURE(BackupData(x, "z", &z));
    EXPECT_EQ(z.stats.new_chunks, 0u);  // every chunk, list too, is X's
    repo_.reset();
  };
  auto report = RunGc(o);
  ASSERT_THAT(report, IsOk());
  ASSERT_FALSE(z.id.empty());
  EXPECT_EQ(report->snapshots, 2u);
  EXPECT_EQ(report->packs_repacked, 0u);
  EXPECT_EQ(report->packs_deleted, 0u);
  EXPECT_EQ(PackSet(repo_dir_), packs_before_);
  ExpectRestores(z, x);
  ExpectRestores(y_, y_data_);
  ExpectSound();
}

TEST_F(GcTest, UnindexedPackIsKeptAndIndexedAgain) {
  const Bytes a = RandomData(3 * kMiB, 3);
  Manifest ma;
  ASSERT_NO_FATAL_FAILURE(BackupData(a, "a", &ma));
  const auto index_before = IndexDump(*repo_);
  const auto packs_before = PackSet(repo_dir_);
  const Headers headers = ReadHeaders(*repo_);
  // A data pack whose index entries were never written (a crash between
  // sealing a pack and indexing it).
  std::string victim;
  for (const auto& [name, entries] : headers)
    if (entries.size() > 1) victim = name;
  ASSERT_FALSE(victim.empty());
  std::vector<ChunkId> ids;
  for (const auto& e : headers.at(victim)) ids.push_back(e.id);
  ASSERT_THAT(repo_->index().Delete(ids, /*sync=*/true), IsOk());
  {
    CheckOptions co;
    auto check = CheckRepository(*repo_, co);
    ASSERT_THAT(check, IsOk());
    ASSERT_THAT(check->findings, Contains(HasSubstr("is not in the index")));
  }

  auto report = RunGc();
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->packs_deleted, 0u);
  EXPECT_EQ(report->packs_repacked, 0u);
  EXPECT_EQ(report->packs_written, 0u);
  EXPECT_EQ(report->chunks_removed, 0u);
  EXPECT_EQ(PackSet(repo_dir_), packs_before);
  {
    auto reader = OpenRead();
    ASSERT_NE(reader, nullptr);
    EXPECT_EQ(IndexDump(*reader), index_before);
  }
  ExpectRestores(ma, a);
  ExpectSound();
}

TEST_F(GcTest, UnindexedDuplicateCopyIsSurplus) {
  const Bytes a = RandomData(3 * kMiB, 4);
  Manifest ma;
  ASSERT_NO_FATAL_FAILURE(BackupData(a, "a", &ma));
  const auto index_before = IndexDump(*repo_);
  const auto packs_before = PackSet(repo_dir_);
  const Headers headers = ReadHeaders(*repo_);
  // Copy two live chunks of one pack into a second pack the index does not
  // name (two backups raced, or a killed gc left the copy).
  std::string source;
  for (const auto& [name, entries] : headers)
    if (entries.size() >= 2) source = name;
  ASSERT_FALSE(source.empty());
  const auto& entries = headers.at(source);
  std::string dup;
  {
    LocalBackend backend(repo_dir_);
    auto writer = PackWriter::Create(backend);
    ASSERT_THAT(writer, IsOk());
    const Bytes file = ReadWholeFile(PackPath(repo_dir_, source));
    for (size_t i = 0; i < 2; ++i) {
      const PackEntry& e = entries[i];
      ASSERT_THAT(
          (*writer)->Append(e.type, e.id, e.raw_len,
                            ByteSpan(file.data() + e.offset, e.stored_len)),
          IsOk());
    }
    ASSERT_THAT((*writer)->Finish(repo_->data_key()), IsOk());
    dup = (*writer)->name();
  }
  ASSERT_TRUE(PathExists(PackPath(repo_dir_, dup)));

  auto report = RunGc();
  ASSERT_THAT(report, IsOk());
  EXPECT_FALSE(PathExists(PackPath(repo_dir_, dup)));
  EXPECT_EQ(PackSet(repo_dir_), packs_before);
  EXPECT_EQ(report->packs_deleted, 1u);
  EXPECT_EQ(report->chunks_removed, 2u);
  EXPECT_EQ(report->packs_repacked, 0u);
  EXPECT_EQ(report->packs_written, 0u);
  {
    auto reader = OpenRead();
    ASSERT_NE(reader, nullptr);
    EXPECT_EQ(IndexDump(*reader), index_before);  // still the original copy
  }
  ExpectRestores(ma, a);
  ExpectSound();
}

TEST_F(GcTest, PackWithDamagedHeaderIsKeptAndReported) {
  ASSERT_NO_FATAL_FAILURE(SetUpHalfLive());
  const Plan plan = Predict(headers_, live_, 0.8);
  ASSERT_THAT(plan.deleted, SizeIs(1));
  const std::string victim = *plan.deleted.begin();  // dead: gc would delete
  const std::string path = PackPath(repo_dir_, victim);
  const uint64_t size = testing_util::FileSize(path);
  FlipByte(path, size - kPackTrailerSize - 1);

  auto report = RunGc();
  ASSERT_THAT(report, IsOk());
  EXPECT_TRUE(PathExists(path));
  EXPECT_EQ(testing_util::FileSize(path), size);
  EXPECT_THAT(report->skipped, ElementsAre(HasSubstr(victim)));
  EXPECT_EQ(report->packs_deleted, 0u);
  EXPECT_EQ(report->packs_repacked, plan.repacked.size());
  // The kept pack is still a pack file after gc.
  EXPECT_EQ(report->bytes_after, PackBytes(repo_dir_));
  {
    auto reader = OpenRead();
    ASSERT_NE(reader, nullptr);
    const auto index = IndexDump(*reader);
    for (const auto& e : headers_.at(victim)) {
      ASSERT_TRUE(index.count(e.id.Hex())) << e.id.Hex();
      EXPECT_THAT(index.at(e.id.Hex()), HasSubstr(victim));
    }
  }
  ExpectRestores(y_, y_data_);
}

TEST_F(GcTest, DamagedLiveChunkKeepsItsPackFromBeingRepacked) {
  ASSERT_NO_FATAL_FAILURE(SetUpHalfLive());
  const Plan plan = Predict(headers_, live_, 0.8);
  ASSERT_GE(plan.repacked.size(), 2u);
  const std::string victim = *plan.repacked.begin();
  PackEntry damaged;
  for (const auto& e : headers_.at(victim))
    if (live_.count(e.id.Hex())) damaged = e;
  ASSERT_FALSE(damaged.id.IsZero());
  const std::string path = PackPath(repo_dir_, victim);
  const Bytes original = ReadWholeFile(path);
  FlipByte(path, damaged.offset + damaged.stored_len / 2);

  auto report = RunGc();
  ASSERT_THAT(report, IsOk());
  EXPECT_TRUE(PathExists(path));
  EXPECT_EQ(testing_util::FileSize(path), original.size());
  EXPECT_THAT(report->skipped,
              ElementsAre(AllOf(HasSubstr(victim), HasSubstr("kept"))));
  EXPECT_EQ(report->packs_repacked, plan.repacked.size() - 1);

  auto reader = OpenRead();
  ASSERT_NE(reader, nullptr);
  // Every live chunk is still indexed, and all but the damaged one read
  // back intact.
  std::map<std::string, ChunkType> type_of;
  for (const auto& [name, entries] : headers_)
    for (const auto& e : entries) type_of[e.id.Hex()] = e.type;
  ReadContext ctx;
  Bytes out;
  for (const auto& hex : live_) {
    ChunkId id;
    auto raw = HexDecode(hex);
    ASSERT_TRUE(raw.has_value());
    std::copy(raw->begin(), raw->end(), id.bytes.begin());
    auto loc = reader->index().Get(id);
    ASSERT_THAT(loc, IsOk());
    ASSERT_TRUE(loc->has_value()) << hex;
    if (id == damaged.id) {
      EXPECT_EQ((*loc)->pack, victim);
      continue;
    }
    EXPECT_THAT(reader->ReadChunk(type_of.at(hex), id, out, ctx), IsOk());
    EXPECT_EQ(reader->IdFor(type_of.at(hex), out), id);
  }
  for (const auto& e : headers_.at(victim)) {
    if (!live_.count(e.id.Hex())) continue;
    auto loc = reader->index().Get(e.id);
    ASSERT_THAT(loc, IsOk());
    ASSERT_TRUE(loc->has_value());
    EXPECT_EQ((*loc)->pack, victim);
    EXPECT_EQ((*loc)->offset, e.offset);
  }
  CheckOptions co;
  auto structure = CheckRepository(*reader, co);
  ASSERT_THAT(structure, IsOk());
  EXPECT_THAT(structure->findings, IsEmpty());
  co.read_data_percent = 100;
  auto data = CheckRepository(*reader, co);
  ASSERT_THAT(data, IsOk());
  EXPECT_THAT(data->findings, Not(IsEmpty()));
  EXPECT_THAT(data->findings, Each(HasSubstr(damaged.id.Hex())));
}

TEST_F(GcTest, UnreadableManifestStopsGcBeforeAnyDeletion) {
  ASSERT_NO_FATAL_FAILURE(SetUpHalfLive());
  ASSERT_FALSE(Predict(headers_, live_, 0.8).deleted.empty());
  const std::string manifest = repo_dir_ + "/snapshots/" + y_.id;
  FlipByte(manifest, testing_util::FileSize(manifest) / 2);
  repo_.reset();
  const auto packs_tree = SnapshotTree(repo_dir_ + "/packs");

  auto report = RunGc();
  EXPECT_THAT(report, StatusIs(Code::kFailedPrecondition,
                               AllOf(HasSubstr("nothing was deleted"),
                                     HasSubstr(y_.id))));
  EXPECT_EQ(PackSet(repo_dir_), packs_before_);
  EXPECT_EQ(SnapshotTree(repo_dir_ + "/packs"), packs_tree);
  auto reader = OpenRead();
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(IndexDump(*reader), index_before_);
  EXPECT_THAT(GcScratchDirs(repo_dir_), IsEmpty());
}

TEST_F(GcTest, CancelledBeforeTheSweepChangesNothing) {
  Manifest ma, mb;
  ASSERT_NO_FATAL_FAILURE(BackupData(RandomData(2 * kMiB, 5), "a", &ma));
  ASSERT_NO_FATAL_FAILURE(BackupData(RandomData(2 * kMiB, 6), "b", &mb));
  ASSERT_THAT(repo_->DeleteSnapshot(mb.id), IsOk());
  const auto packs = PackSet(repo_dir_);
  GcOptions o;
  o.cancel.Cancel();
  EXPECT_THAT(RunGc(o), StatusIs(Code::kCancelled, HasSubstr("gc")));
  EXPECT_EQ(PackSet(repo_dir_), packs);  // b's packs are still there
  auto report = RunGc();  // and the next gc frees them
  ASSERT_THAT(report, IsOk());
  EXPECT_GT(report->packs_deleted + report->packs_repacked, 0u);
}

TEST_F(GcTest, SecondRunFindsNothingToDo) {
  ASSERT_NO_FATAL_FAILURE(SetUpHalfLive());
  auto first = RunGc();
  ASSERT_THAT(first, IsOk());
  ASSERT_GT(first->packs_deleted + first->packs_repacked, 0u);
  const auto packs_tree = SnapshotTree(repo_dir_ + "/packs");
  std::map<std::string, std::string> index;
  {
    auto reader = OpenRead();
    ASSERT_NE(reader, nullptr);
    index = IndexDump(*reader);
  }

  auto second = RunGc();
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->packs_deleted, 0u);
  EXPECT_EQ(second->packs_repacked, 0u);
  EXPECT_EQ(second->packs_written, 0u);
  EXPECT_EQ(second->chunks_moved, 0u);
  EXPECT_EQ(second->chunks_removed, 0u);
  EXPECT_THAT(second->skipped, IsEmpty());
  EXPECT_EQ(second->bytes_before, first->bytes_after);
  EXPECT_EQ(second->bytes_after, second->bytes_before);
  EXPECT_EQ(SnapshotTree(repo_dir_ + "/packs"), packs_tree);
  auto reader = OpenRead();
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(IndexDump(*reader), index);
}

// Packs whose unused shares differ (one chunk of 16 to eight of 16): for
// every --max-unused from 1% to 30%, a gc that rewrote to meet the target
// leaves a repository the same target is met by, measured against what the
// packs hold after the sweep, so a second gc rewrites nothing.
TEST_F(GcTest, SecondRunWithTheSameMaxUnusedRewritesNothing) {
  constexpr int kPacks = 8, kChunks = 16;
  Bytes y;
  std::vector<Manifest> sources(kPacks);
  for (int b = 0; b < kPacks; ++b) {
    const Bytes data = RandomData(kChunks * cs_, 500 + b);
    ASSERT_NO_FATAL_FAILURE(
        BackupData(data, "src" + std::to_string(b), &sources[b]));
    const uint64_t live = kChunks - 1 - b;  // 15 of 16 down to 8 of 16
    y.insert(y.end(), data.begin(), data.begin() + live * cs_);
  }
  Manifest ym;
  ASSERT_NO_FATAL_FAILURE(BackupData(y, "y", &ym));
  for (const Manifest& m : sources)
    ASSERT_THAT(repo_->DeleteSnapshot(m.id), IsOk());
  repo_.reset();
  const std::string saved = tmp_.Sub("saved-repo");
  fs::copy(repo_dir_, saved, fs::copy_options::recursive);

  int rewrote = 0;
  for (int percent = 1; percent <= 30; ++percent) {
    SCOPED_TRACE("--max-unused " + std::to_string(percent));
    fs::remove_all(repo_dir_);
    fs::copy(saved, repo_dir_, fs::copy_options::recursive);
    GcOptions o;
    o.repack_below = 0;
    o.max_unused = percent / 100.0;
    auto first = RunGc(o);
    ASSERT_THAT(first, IsOk());
    EXPECT_LE(static_cast<double>(first->unused_bytes_after),
              o.max_unused * static_cast<double>(first->bytes_after));
    if (first->packs_repacked > 0) ++rewrote;
    const auto packs_tree = SnapshotTree(repo_dir_ + "/packs");
    auto second = RunGc(o);
    ASSERT_THAT(second, IsOk());
    EXPECT_EQ(second->packs_repacked, 0u);
    EXPECT_EQ(second->packs_deleted, 0u);
    EXPECT_EQ(second->chunks_moved, 0u);
    EXPECT_EQ(SnapshotTree(repo_dir_ + "/packs"), packs_tree);
  }
  EXPECT_GT(rewrote, 20);  // the targets were below the repository's share
  ExpectRestores(ym, y);
  ExpectSound();
}

TEST_F(GcTest, ScratchOfAKilledGcIsRemovedAndALiveOneIsNot) {
  const std::string stale = repo_dir_ + "/tmp/gc-0011223344556677";
  ASSERT_TRUE(fs::create_directories(stale + "/live"));
  WriteWholeFile(stale + "/live/000001.sst", AsBytes("left by a killed gc"));
  // One still held by a running gc (its flock is taken).
  const std::string busy = repo_dir_ + "/tmp/gc-8899aabbccddeeff";
  ASSERT_TRUE(fs::create_directories(busy));
  int fd = ::open(busy.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);

  std::vector<std::string> during;
  GcOptions o;
  o.on_phase = [&](const std::string& phase) {
    if (phase == "marking chunks in use") during = GcScratchDirs(repo_dir_);
  };
  auto report = RunGc(o);
  ::close(fd);
  ASSERT_THAT(report, IsOk());
  EXPECT_FALSE(PathExists(stale));
  EXPECT_TRUE(PathExists(busy));
  // This run's own scratch existed while it marked, and is gone now.
  EXPECT_THAT(during, SizeIs(2));
  EXPECT_THAT(GcScratchDirs(repo_dir_), ElementsAre("gc-8899aabbccddeeff"));
}

// ------------------------------------------------------------- ChunkSet

ChunkId RandomId(std::mt19937_64& rng) {
  ChunkId id;
  for (size_t i = 0; i < id.bytes.size(); i += 8) {
    uint64_t v = rng();
    for (int k = 0; k < 8; ++k)
      id.bytes[i + k] = static_cast<uint8_t>(v >> (8 * k));
  }
  return id;
}

TEST(ChunkSetTest, AddThenContains) {
  TempDir tmp;
  auto set = ChunkSet::Create(tmp.Sub("set"));
  ASSERT_THAT(set, IsOk());
  std::mt19937_64 rng(7);
  const ChunkId a = RandomId(rng), b = RandomId(rng), c = RandomId(rng);
  auto before = (*set)->Contains(a);
  ASSERT_THAT(before, IsOk());
  EXPECT_FALSE(*before);
  ASSERT_THAT((*set)->Add({a, b}), IsOk());
  ASSERT_THAT((*set)->Add({}), IsOk());
  auto has_a = (*set)->Contains(a);
  auto has_b = (*set)->Contains(b);
  auto has_c = (*set)->Contains(c);
  ASSERT_THAT(has_a, IsOk());
  ASSERT_THAT(has_b, IsOk());
  ASSERT_THAT(has_c, IsOk());
  EXPECT_TRUE(*has_a);
  EXPECT_TRUE(*has_b);
  EXPECT_FALSE(*has_c);
  EXPECT_EQ((*set)->added(), 2u);
}

TEST(ChunkSetTest, HoldsManyIds) {
  TempDir tmp;
  auto set = ChunkSet::Create(tmp.Sub("set"));
  ASSERT_THAT(set, IsOk());
  constexpr size_t kCount = 200000;
  std::mt19937_64 rng(11);
  std::vector<ChunkId> in, out;
  for (size_t i = 0; i < kCount; ++i) in.push_back(RandomId(rng));
  for (size_t i = 0; i < kCount; ++i) out.push_back(RandomId(rng));
  for (size_t i = 0; i < kCount; i += 10000)
    ASSERT_THAT((*set)->Add(std::vector<ChunkId>(in.begin() + i,
                                                 in.begin() + i + 10000)),
                IsOk());
  EXPECT_EQ((*set)->added(), kCount);
  size_t wrong = 0;
  for (const auto& id : in) {
    auto r = (*set)->Contains(id);
    ASSERT_THAT(r, IsOk());
    if (!*r) ++wrong;
  }
  for (const auto& id : out) {
    auto r = (*set)->Contains(id);
    ASSERT_THAT(r, IsOk());
    if (*r) ++wrong;
  }
  EXPECT_EQ(wrong, 0u);
}

TEST(ChunkSetTest, DirectoryGoesWithTheSet) {
  TempDir tmp;
  const std::string dir = tmp.Sub("set");
  {
    auto set = ChunkSet::Create(dir);
    ASSERT_THAT(set, IsOk());
    std::mt19937_64 rng(3);
    ASSERT_THAT((*set)->Add({RandomId(rng)}), IsOk());
    EXPECT_TRUE(PathExists(dir));
    EXPECT_THAT(ChunkSet::Create(dir),
                StatusIs(Code::kAlreadyExists, HasSubstr(dir)));
  }
  EXPECT_FALSE(PathExists(dir));
}

}  // namespace
}  // namespace haven::repository
