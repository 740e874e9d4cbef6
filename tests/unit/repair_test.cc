// RepairSnapshots on real repositories: a missing pack, a damaged chunk and a
// damaged chunk-list node turn into listed holes in a replacement recovery
// point; everything still readable restores; dry runs change nothing;
// protection moves; a second repair finds nothing.
#include "repository/repair.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/check.h"
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
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::SnapshotTree;
using ::haven::testing_util::WriteWholeFile;
using ::testing::Contains;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAre;

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;  // offset, length
using LostList = std::vector<std::tuple<std::string, uint64_t, uint64_t>>;

std::set<std::string> PackSet(const std::string& dir) {
  auto v = PackFiles(dir);
  return {v.begin(), v.end()};
}

std::map<std::string, std::string> IndexDump(const Repository& repo) {
  std::map<std::string, std::string> out;
  EXPECT_THAT(repo.index().ForEach(
                  [&](const ChunkId& id, const ChunkLocation& l) {
                    out[id.Hex()] = l.pack + "@" + std::to_string(l.offset);
                    return OkStatus();
                  },
                  [](const Status& bad) { ADD_FAILURE() << bad.ToString(); }),
              IsOk());
  return out;
}

// Byte ranges of `content` whose data chunks are in `gone`, merged.
Ranges RangesOf(const Repository& repo, const Bytes& content, uint64_t cs,
                const std::set<std::string>& gone) {
  Ranges out;
  for (uint64_t off = 0; off < content.size(); off += cs) {
    const uint64_t len = std::min<uint64_t>(cs, content.size() - off);
    if (IsAllZero(content.data() + off, len)) continue;
    ChunkId id =
        repo.IdFor(ChunkType::kData, ByteSpan(content.data() + off, len));
    if (!gone.count(id.Hex())) continue;
    if (!out.empty() && out.back().first + out.back().second == off)
      out.back().second += len;
    else
      out.push_back({off, len});
  }
  return out;
}

LostList AsLostList(const std::vector<RepairedPoint::Lost>& lost) {
  LostList out;
  for (const auto& l : lost) out.emplace_back(l.disk, l.offset, l.length);
  return out;
}

LostList OnDisk0(const Ranges& ranges) {
  LostList out;
  for (const auto& [offset, length] : ranges)
    out.emplace_back("disk0", offset, length);
  return out;
}

// `ranges` sorted by offset, with touching ranges joined.
Ranges Merged(Ranges ranges) {
  std::sort(ranges.begin(), ranges.end());
  Ranges out;
  for (const auto& [offset, length] : ranges) {
    if (!out.empty() && out.back().first + out.back().second == offset)
      out.back().second += length;
    else
      out.push_back({offset, length});
  }
  return out;
}

Bytes WithZeros(Bytes content, const Ranges& ranges) {
  for (const auto& [offset, length] : ranges)
    std::fill(content.begin() + offset, content.begin() + offset + length, 0);
  return content;
}

std::vector<std::string> SnapshotIds(const Repository& repo) {
  std::vector<std::string> errors, ids;
  auto all = repo.ListSnapshots(&errors);
  EXPECT_THAT(all, IsOk());
  EXPECT_THAT(errors, IsEmpty());
  if (all.ok())
    for (const auto& m : *all) ids.push_back(m.id);
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

class RepairTest : public ImageRoundTripTest {
 protected:
  void BackupData(const Bytes& data, const std::string& name, Manifest* out) {
    const std::string image = tmp_.Sub(name + ".raw");
    WriteWholeFile(image, data);
    auto m = Backup(image, name);
    ASSERT_THAT(m, IsOk());
    *out = *m;
  }

  // Two unrelated points: A, then B (whose last chunk is partial).
  void SetUpTwoPoints() {
    ASSERT_NO_FATAL_FAILURE(InitRepo());
    cs_ = repo_->config().chunk_size;
    a_data_ = RandomData(3 * kMiB, 11);
    b_data_ = RandomData(3 * kMiB + 4321, 22);
    ASSERT_NO_FATAL_FAILURE(BackupData(a_data_, "a", &a_));
    const auto packs_a = PackSet(repo_dir_);
    ASSERT_NO_FATAL_FAILURE(BackupData(b_data_, "b", &b_));
    a_manifest_file_ = ReadWholeFile(repo_dir_ + "/snapshots/" + a_.id);
    // A pack of B's data chunks that does not hold B's chunk list.
    for (const auto& p : PackSet(repo_dir_)) {
      if (packs_a.count(p)) continue;
      auto entries =
          ReadPackHeader(PackPath(repo_dir_, p), p, repo_->data_key());
      ASSERT_THAT(entries, IsOk());
      bool has_tree = false;
      for (const auto& e : *entries)
        has_tree = has_tree || e.type == ChunkType::kTree;
      if (has_tree || entries->size() < 2 || !victim_.empty()) continue;
      victim_ = p;
      victim_entries_ = *entries;
    }
    ASSERT_FALSE(victim_.empty());
    std::set<std::string> gone;
    for (const auto& e : victim_entries_) gone.insert(e.id.Hex());
    expected_lost_ = RangesOf(*repo_, b_data_, cs_, gone);
    ASSERT_FALSE(expected_lost_.empty());
  }

  void RemoveVictim() {
    ASSERT_EQ(::unlink(PackPath(repo_dir_, victim_).c_str()), 0);
  }

  void ExpectRestores(const Manifest& m, const Bytes& expected) {
    const std::string target = tmp_.Sub("restored-" + m.id + ".raw");
    ASSERT_THAT(Restore(m, target), IsOk());
    EXPECT_TRUE(ReadWholeFile(target) == expected)
        << "restored image of " << m.name << " differs";
    fs::remove(target);
  }

  std::vector<std::string> Findings(double read_data_percent) {
    CheckOptions co;
    co.read_data_percent = read_data_percent;
    co.threads = 2;
    auto check = CheckRepository(*repo_, co);
    EXPECT_THAT(check, IsOk());
    return check.ok() ? check->findings : std::vector<std::string>{"failed"};
  }

  uint64_t cs_ = 0;
  Bytes a_data_, b_data_, a_manifest_file_;
  Manifest a_, b_;
  std::string victim_;
  std::vector<PackEntry> victim_entries_;
  Ranges expected_lost_;
};

TEST_F(RepairTest, MissingPackBecomesListedHolesInAReplacementPoint) {
  ASSERT_NO_FATAL_FAILURE(SetUpTwoPoints());
  ASSERT_NO_FATAL_FAILURE(RemoveVictim());

  auto report = RepairSnapshots(*repo_, {});
  ASSERT_THAT(report, IsOk());
  EXPECT_EQ(report->snapshots, 2u);
  EXPECT_THAT(report->unreadable, IsEmpty());
  EXPECT_THAT(report->findings, Contains(HasSubstr(victim_)));
  EXPECT_EQ(report->index_entries_dropped, victim_entries_.size());
  ASSERT_THAT(report->repaired, SizeIs(1));
  const RepairedPoint& point = report->repaired[0];
  EXPECT_EQ(point.old_id, b_.id);
  EXPECT_THAT(point.new_id, MatchesRegex("[0-9a-f]{32}"));
  EXPECT_NE(point.new_id, b_.id);
  EXPECT_EQ(point.name, "b");
  EXPECT_EQ(point.time, b_.time);
  EXPECT_EQ(AsLostList(point.lost), OnDisk0(expected_lost_));

  EXPECT_FALSE(PathExists(repo_dir_ + "/snapshots/" + b_.id));
  EXPECT_TRUE(ReadWholeFile(repo_dir_ + "/snapshots/" + a_.id) ==
              a_manifest_file_);
  EXPECT_EQ(SnapshotIds(*repo_), Sorted({a_.id, point.new_id}));
  auto fixed = repo_->LoadSnapshot(point.new_id);
  ASSERT_THAT(fixed, IsOk());
  EXPECT_EQ(fixed->repaired_from, b_.id);
  EXPECT_FALSE(fixed->repaired_time.empty());
  EXPECT_EQ(fixed->name, "b");
  EXPECT_EQ(fixed->time, b_.time);
  ASSERT_THAT(fixed->disks, SizeIs(1));
  EXPECT_EQ(fixed->disks[0].lost, expected_lost_);
  EXPECT_EQ(fixed->disks[0].size, b_data_.size());

  ExpectRestores(*fixed, WithZeros(b_data_, expected_lost_));
  ExpectRestores(a_, a_data_);
  for (const auto& [id, where] : IndexDump(*repo_))
    EXPECT_THAT(where, Not(HasSubstr(victim_))) << id;
  EXPECT_THAT(Findings(100), IsEmpty());
}

TEST_F(RepairTest, DamagedChunkIsRepairedOnlyWhenDataIsRead) {
  ASSERT_NO_FATAL_FAILURE(SetUpTwoPoints());
  const uint64_t index = 7;
  const ChunkId id = repo_->IdFor(ChunkType::kData,
                                  ByteSpan(b_data_.data() + index * cs_, cs_));
  auto loc = repo_->index().Get(id);
  ASSERT_THAT(loc, IsOk());
  ASSERT_TRUE(loc->has_value());
  FlipByte(PackPath(repo_dir_, (*loc)->pack),
           (*loc)->offset + (*loc)->stored_len / 2);
  const auto snapshots_tree = SnapshotTree(repo_dir_ + "/snapshots");
  const auto index_before = IndexDump(*repo_);

  RepairOptions structure_only;
  auto first = RepairSnapshots(*repo_, structure_only);
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(first->repaired, IsEmpty());
  EXPECT_THAT(first->findings, IsEmpty());
  EXPECT_EQ(first->index_entries_dropped, 0u);
  EXPECT_EQ(SnapshotTree(repo_dir_ + "/snapshots"), snapshots_tree);
  EXPECT_EQ(IndexDump(*repo_), index_before);

  RepairOptions read_data;
  read_data.read_data = true;
  auto second = RepairSnapshots(*repo_, read_data);
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->damaged_chunks, 1u);
  EXPECT_EQ(second->index_entries_dropped, 1u);
  EXPECT_THAT(second->findings, Contains(HasSubstr(id.Hex())));
  ASSERT_THAT(second->repaired, SizeIs(1));
  EXPECT_EQ(second->repaired[0].old_id, b_.id);
  const Ranges lost = {{index * cs_, cs_}};
  EXPECT_EQ(AsLostList(second->repaired[0].lost), OnDisk0(lost));
  auto gone = repo_->index().Get(id);
  ASSERT_THAT(gone, IsOk());
  EXPECT_FALSE(gone->has_value());  // the next backup stores it again

  auto fixed = repo_->LoadSnapshot(second->repaired[0].new_id);
  ASSERT_THAT(fixed, IsOk());
  EXPECT_EQ(fixed->repaired_from, b_.id);
  EXPECT_EQ(fixed->disks[0].lost, lost);
  ExpectRestores(*fixed, WithZeros(b_data_, lost));
  ExpectRestores(a_, a_data_);
  EXPECT_THAT(Findings(0), IsEmpty());
  // The damaged blob stays in its pack until gc; nothing else is wrong.
  EXPECT_THAT(Findings(100), Each(HasSubstr(id.Hex())));
}

TEST_F(RepairTest, LostChunkListNodeLosesTheWholeRangeItCovered) {
  ASSERT_NO_FATAL_FAILURE(InitRepo(kMinChunkSize));
  const uint64_t cs = kMinChunkSize;
  const Bytes data = RandomData(6 * kMiB, 33);  // 1536 chunks: two leaves
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(BackupData(data, "c", &m));
  ASSERT_EQ(m.disks[0].tree.height, 2);
  Bytes root;
  ReadContext ctx;
  ASSERT_THAT(repo_->LoadTreeNode(m.disks[0].tree.root, root, ctx), IsOk());
  ASSERT_EQ(root.size(), 2u * 32);
  ChunkId leaf;
  std::copy(root.begin(), root.begin() + 32, leaf.bytes.begin());
  auto loc = repo_->index().Get(leaf);
  ASSERT_THAT(loc, IsOk());
  ASSERT_TRUE(loc->has_value());
  FlipByte(PackPath(repo_dir_, (*loc)->pack), (*loc)->offset + 40);

  auto report = RepairSnapshots(*repo_, {});
  ASSERT_THAT(report, IsOk());
  ASSERT_THAT(report->repaired, SizeIs(1));
  const Ranges lost = {{0, kTreeFanout * cs}};
  EXPECT_EQ(AsLostList(report->repaired[0].lost), OnDisk0(lost));
  auto fixed = repo_->LoadSnapshot(report->repaired[0].new_id);
  ASSERT_THAT(fixed, IsOk());
  EXPECT_EQ(fixed->disks[0].lost, lost);
  EXPECT_EQ(fixed->disks[0].tree.count, m.disks[0].tree.count);
  ExpectRestores(*fixed, WithZeros(data, lost));
  EXPECT_THAT(Findings(0), IsEmpty());
}

TEST_F(RepairTest, DryRunChangesNothing) {
  ASSERT_NO_FATAL_FAILURE(SetUpTwoPoints());
  ASSERT_NO_FATAL_FAILURE(RemoveVictim());
  ASSERT_THAT(repo_->SetProtected(b_.id, true), IsOk());
  const auto snapshots_tree = SnapshotTree(repo_dir_ + "/snapshots");
  const auto packs_tree = SnapshotTree(repo_dir_ + "/packs");
  const auto protected_tree = SnapshotTree(repo_dir_ + "/protected");
  const auto index_before = IndexDump(*repo_);

  RepairOptions o;
  o.dry_run = true;
  auto report = RepairSnapshots(*repo_, o);
  ASSERT_THAT(report, IsOk());
  ASSERT_THAT(report->repaired, SizeIs(1));
  EXPECT_EQ(report->repaired[0].old_id, b_.id);
  EXPECT_THAT(report->repaired[0].new_id, IsEmpty());
  EXPECT_EQ(AsLostList(report->repaired[0].lost), OnDisk0(expected_lost_));
  EXPECT_EQ(report->index_entries_dropped, victim_entries_.size());

  EXPECT_EQ(SnapshotTree(repo_dir_ + "/snapshots"), snapshots_tree);
  EXPECT_EQ(SnapshotTree(repo_dir_ + "/packs"), packs_tree);
  EXPECT_EQ(SnapshotTree(repo_dir_ + "/protected"), protected_tree);
  EXPECT_EQ(IndexDump(*repo_), index_before);
  EXPECT_EQ(SnapshotIds(*repo_), Sorted({a_.id, b_.id}));
  EXPECT_TRUE(repo_->IsProtected(b_.id));
}

TEST_F(RepairTest, ProtectionMovesToTheReplacementPoint) {
  ASSERT_NO_FATAL_FAILURE(SetUpTwoPoints());
  ASSERT_THAT(repo_->SetProtected(b_.id, true), IsOk());
  ASSERT_NO_FATAL_FAILURE(RemoveVictim());

  auto report = RepairSnapshots(*repo_, {});
  ASSERT_THAT(report, IsOk());
  ASSERT_THAT(report->repaired, SizeIs(1));
  const std::string new_id = report->repaired[0].new_id;
  EXPECT_TRUE(repo_->IsProtected(new_id));
  EXPECT_FALSE(repo_->IsProtected(b_.id));
  EXPECT_FALSE(repo_->IsProtected(a_.id));
  EXPECT_FALSE(PathExists(repo_dir_ + "/protected/" + b_.id));
  EXPECT_FALSE(PathExists(repo_dir_ + "/snapshots/" + b_.id));
}

TEST_F(RepairTest, SecondRepairFindsNothing) {
  ASSERT_NO_FATAL_FAILURE(SetUpTwoPoints());
  ASSERT_NO_FATAL_FAILURE(RemoveVictim());
  auto first = RepairSnapshots(*repo_, {});
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(first->repaired, SizeIs(1));
  const auto snapshots_tree = SnapshotTree(repo_dir_ + "/snapshots");
  const auto packs_tree = SnapshotTree(repo_dir_ + "/packs");
  const auto index_before = IndexDump(*repo_);

  RepairOptions o;
  o.read_data = true;
  auto second = RepairSnapshots(*repo_, o);
  ASSERT_THAT(second, IsOk());
  EXPECT_THAT(second->repaired, IsEmpty());
  EXPECT_THAT(second->findings, IsEmpty());
  EXPECT_THAT(second->unreadable, IsEmpty());
  EXPECT_EQ(second->damaged_chunks, 0u);
  EXPECT_EQ(second->index_entries_dropped, 0u);
  EXPECT_EQ(SnapshotTree(repo_dir_ + "/snapshots"), snapshots_tree);
  EXPECT_EQ(SnapshotTree(repo_dir_ + "/packs"), packs_tree);
  EXPECT_EQ(IndexDump(*repo_), index_before);
  EXPECT_EQ(SnapshotIds(*repo_), Sorted({a_.id, first->repaired[0].new_id}));
}

// A repair killed after committing the new point but before removing the
// old one: the next repair finishes the replacement.
TEST_F(RepairTest, InterruptedReplacementIsFinished) {
  ASSERT_NO_FATAL_FAILURE(SetUpTwoPoints());
  const Bytes old_manifest = ReadWholeFile(repo_dir_ + "/snapshots/" + b_.id);
  ASSERT_THAT(repo_->SetProtected(b_.id, true), IsOk());
  ASSERT_NO_FATAL_FAILURE(RemoveVictim());
  auto first = RepairSnapshots(*repo_, {});
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(first->repaired, SizeIs(1));
  const std::string new_id = first->repaired[0].new_id;
  // Put back the state between CommitSnapshot and Replace.
  WriteWholeFile(repo_dir_ + "/snapshots/" + b_.id, old_manifest);
  ASSERT_THAT(repo_->SetProtected(new_id, false), IsOk());
  ASSERT_THAT(repo_->SetProtected(b_.id, true), IsOk());
  ASSERT_EQ(SnapshotIds(*repo_), Sorted({a_.id, b_.id, new_id}));

  auto second = RepairSnapshots(*repo_, {});
  ASSERT_THAT(second, IsOk());
  EXPECT_THAT(second->repaired, IsEmpty());  // nothing new was committed
  EXPECT_EQ(SnapshotIds(*repo_), Sorted({a_.id, new_id}));
  EXPECT_TRUE(repo_->IsProtected(new_id));
  EXPECT_FALSE(repo_->IsProtected(b_.id));
  EXPECT_THAT(Findings(100), IsEmpty());
}

// New damage in a point that was already repaired: the earlier holes stay
// listed, merged with the new ones.
TEST_F(RepairTest, RepairingARepairedPointKeepsItsEarlierHoles) {
  ASSERT_NO_FATAL_FAILURE(SetUpTwoPoints());
  ASSERT_NO_FATAL_FAILURE(RemoveVictim());
  auto first = RepairSnapshots(*repo_, {});
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(first->repaired, SizeIs(1));
  const std::string middle = first->repaired[0].new_id;

  // Damage the chunk right after the first lost range (or right before it,
  // if that range ends the image), so the two ranges touch.
  const auto& [off, len] = expected_lost_.front();
  const uint64_t index =
      off + len < b_data_.size() ? (off + len) / cs_ : off / cs_ - 1;
  const uint64_t chunk_len =
      std::min<uint64_t>(cs_, b_data_.size() - index * cs_);
  const ChunkId id = repo_->IdFor(
      ChunkType::kData, ByteSpan(b_data_.data() + index * cs_, chunk_len));
  auto loc = repo_->index().Get(id);
  ASSERT_THAT(loc, IsOk());
  ASSERT_TRUE(loc->has_value());
  FlipByte(PackPath(repo_dir_, (*loc)->pack), (*loc)->offset + 3);

  RepairOptions o;
  o.read_data = true;
  auto second = RepairSnapshots(*repo_, o);
  ASSERT_THAT(second, IsOk());
  ASSERT_THAT(second->repaired, SizeIs(1));
  EXPECT_EQ(second->repaired[0].old_id, middle);
  const Ranges added = {{index * cs_, chunk_len}};
  EXPECT_EQ(AsLostList(second->repaired[0].lost), OnDisk0(added));
  // The new chunk can also close the gap to the next earlier range.
  Ranges all = expected_lost_;
  all.insert(all.end(), added.begin(), added.end());
  all = Merged(std::move(all));
  auto fixed = repo_->LoadSnapshot(second->repaired[0].new_id);
  ASSERT_THAT(fixed, IsOk());
  EXPECT_EQ(fixed->repaired_from, middle);
  EXPECT_EQ(fixed->disks[0].lost, all);
  EXPECT_EQ(SnapshotIds(*repo_), Sorted({a_.id, fixed->id}));
  ExpectRestores(*fixed, WithZeros(b_data_, all));
}

}  // namespace
}  // namespace haven::repository
