// Cancellation: a job whose CancelToken is cancelled half-way ends as a
// crash would — Code::kCancelled, no new recovery point, earlier points and
// the repository intact (check finds nothing), and the next run reuses the
// chunks the cancelled one stored.
#include <string>
#include <vector>

#include "agent/file_backup.h"
#include "agent/image_backup.h"
#include "base/progress.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/check.h"
#include "repository/repository.h"
#include "restore/image_restore.h"
#include "tests/unit/image_test_util.h"
#include "tests/unit/test_util.h"

namespace haven {
namespace {

using ::haven::testing_util::ImageRoundTripTest;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::kMiB;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::WriteWholeFile;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class CancelTest : public ImageRoundTripTest {
 protected:
  std::vector<repository::Manifest> Points() {
    std::vector<std::string> errors;
    auto all = repo_->ListSnapshots(&errors);
    EXPECT_THAT(all, IsOk());
    EXPECT_THAT(errors, IsEmpty());
    return all.ok() ? *all : std::vector<repository::Manifest>{};
  }
  void ExpectCleanCheck() {
    repository::CheckOptions o;
    o.read_data_percent = 100;
    auto r = repository::CheckRepository(*repo_, o);
    ASSERT_THAT(r, IsOk());
    EXPECT_THAT(r->findings, IsEmpty());
  }
  uint64_t IndexedChunks() {
    auto n = repo_->index().CountChunks();
    EXPECT_THAT(n, IsOk());
    return n.ok() ? *n : 0;
  }
};

TEST_F(CancelTest, ImageBackupCancelledPartWayLeavesNoPointAndIsResumed) {
  InitRepo();
  const std::string first = tmp_.Sub("first.raw");
  const Bytes first_data = RandomData(4 * kMiB, 1);
  WriteWholeFile(first, first_data);
  auto kept = Backup(first, "first");
  ASSERT_THAT(kept, IsOk());

  const std::string image = tmp_.Sub("big.raw");
  const uint64_t size = 48 * kMiB;
  WriteWholeFile(image, RandomData(size, 2));
  agent::ImageBackupOptions o;
  o.name = "big";
  o.threads = 2;
  o.progress_interval = 0;
  uint64_t seen_at_cancel = 0;
  std::vector<std::string> items;
  o.progress = [&](const Progress& p) {
    items.push_back(p.item);
    // Before the first pack (16 MiB) fills: only the cancel's own flush
    // can keep what was read.
    if (p.done_bytes >= size / 4 && !o.cancel.cancelled()) {
      seen_at_cancel = p.done_bytes;
      o.cancel.Cancel();
    }
  };
  const uint64_t chunks_before = IndexedChunks();
  auto cancelled = agent::BackupImage(*repo_, image, o);
  EXPECT_THAT(cancelled, StatusIs(Code::kCancelled, HasSubstr("cancelled")));
  ASSERT_GE(seen_at_cancel, size / 4);
  EXPECT_LT(seen_at_cancel, size / 3) << "the cancel came too late to test";
  ASSERT_FALSE(items.empty());
  EXPECT_EQ(items.front(), image);  // events name what is being read

  // No point; the earlier one is whole; the repository checks clean.
  auto points = Points();
  ASSERT_EQ(points.size(), 1u);
  EXPECT_EQ(points[0].id, kept->id);
  ExpectCleanCheck();
  const std::string back = tmp_.Sub("first-back.raw");
  ASSERT_THAT(Restore(*kept, back), IsOk());
  EXPECT_EQ(ReadWholeFile(back), first_data);

  // What was read before the cancel is stored and indexed, so the next run
  // stores only the rest.
  const uint64_t stored_by_cancelled = IndexedChunks() - chunks_before;
  EXPECT_GE(stored_by_cancelled * repo_->config().chunk_size, size / 4 - kMiB);
  agent::ImageBackupOptions again;
  again.name = "big";
  again.threads = 2;
  auto m = agent::BackupImage(*repo_, image, again);
  ASSERT_THAT(m, IsOk());
  EXPECT_LE(m->stats.new_raw_bytes, size - (size / 4 - kMiB));
  EXPECT_EQ(Points().size(), 2u);
  ExpectCleanCheck();
  const std::string big_back = tmp_.Sub("big-back.raw");
  ASSERT_THAT(Restore(*m, big_back), IsOk());
  EXPECT_EQ(ReadWholeFile(big_back), ReadWholeFile(image));
}

TEST_F(CancelTest, AJobCancelledBeforeItStartsStoresNothing) {
  InitRepo();
  const std::string image = tmp_.Sub("small.raw");
  WriteWholeFile(image, RandomData(8 * kMiB, 3));
  agent::ImageBackupOptions o;
  o.name = "small";
  o.cancel.Cancel();
  EXPECT_THAT(agent::BackupImage(*repo_, image, o),
              StatusIs(Code::kCancelled, HasSubstr(image)));
  EXPECT_TRUE(Points().empty());
  EXPECT_EQ(IndexedChunks(), 0u);
}

TEST_F(CancelTest, FileBackupOfARealTreeCancelledHalfWay) {
  InitRepo();
  // A real tree: the system's own /etc (entries this user cannot read make
  // the point partial, which does not matter here).
  agent::FileBackupOptions o;
  o.name = "etc";
  o.paths = {"/etc"};
  o.threads = 2;
  o.progress_interval = 0;
  int events = 0;
  o.progress = [&](const Progress& p) {
    EXPECT_EQ(p.phase, "backup");
    if (++events == 100) o.cancel.Cancel();
  };
  auto cancelled = agent::BackupFiles(*repo_, o);
  ASSERT_GE(events, 100) << "/etc holds too few entries for this test";
  EXPECT_THAT(cancelled, StatusIs(Code::kCancelled, HasSubstr("cancelled")));
  EXPECT_TRUE(Points().empty());
  ExpectCleanCheck();
  const uint64_t stored_by_cancelled = IndexedChunks();
  EXPECT_GT(stored_by_cancelled, 0u) << "the cancelled run's chunks were dropped";

  agent::FileBackupOptions again = o;
  again.progress = nullptr;
  again.cancel = CancelToken();  // a fresh, uncancelled token
  auto done = agent::BackupFiles(*repo_, again);
  ASSERT_THAT(done, IsOk());
  EXPECT_EQ(Points().size(), 1u);
  // Chunks stored before the cancel were not stored again.
  EXPECT_EQ(IndexedChunks(),
            stored_by_cancelled + done->manifest.stats.new_chunks);
  EXPECT_LT(done->manifest.stats.new_raw_bytes, done->bytes + (1u << 20));
  ExpectCleanCheck();
}

TEST_F(CancelTest, ACheckReadingDataStopsWhenCancelled) {
  InitRepo();
  const std::string image = tmp_.Sub("check.raw");
  WriteWholeFile(image, RandomData(16 * kMiB, 5));
  ASSERT_THAT(Backup(image, "check"), IsOk());
  repository::CheckOptions o;
  o.read_data_percent = 100;
  o.threads = 1;
  o.on_phase = [&](const std::string& phase) {
    if (phase.starts_with("reading ") && phase.find("packs") != std::string::npos)
      o.cancel.Cancel();
  };
  EXPECT_THAT(repository::CheckRepository(*repo_, o),
              StatusIs(Code::kCancelled, HasSubstr("the check")));
  o.on_phase = nullptr;
  o.cancel = CancelToken();
  auto full = repository::CheckRepository(*repo_, o);
  ASSERT_THAT(full, IsOk());
  EXPECT_THAT(full->findings, IsEmpty());
  EXPECT_GT(full->packs_read, 0u);
}

TEST_F(CancelTest, ImageRestoreCancelledLeavesNoTarget) {
  InitRepo();
  const std::string image = tmp_.Sub("disk.raw");
  const uint64_t size = 32 * kMiB;
  WriteWholeFile(image, RandomData(size, 4));
  auto m = Backup(image, "disk");
  ASSERT_THAT(m, IsOk());
  restore::ImageRestoreOptions o;
  o.threads = 2;
  o.progress_interval = 0;
  o.progress = [&](const Progress& p) {
    EXPECT_EQ(p.phase, "restore");
    if (p.done_bytes >= size / 4) o.cancel.Cancel();
  };
  const std::string target = tmp_.Sub("restored.raw");
  auto r = restore::RestoreImage(*repo_, *m, target, o);
  EXPECT_THAT(r, StatusIs(Code::kCancelled, HasSubstr(target)));
  EXPECT_FALSE(PathExists(target));
  EXPECT_FALSE(PathExists(target + ".haven-partial"));
}

}  // namespace
}  // namespace haven
