// agent/file_backup.h: a file written to while the backup reads it. It is
// read again once; when it changes again it is kept as read, flagged
// "changed" in the catalog, named in a warning, and the point is partial.
// The next run reads it again (a flagged file is never taken unread).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include "agent/file_backup.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/file_tree.h"
#include "restore/file_point.h"
#include "tests/unit/repository_test_util.h"
#include "tests/unit/test_util.h"

namespace haven::agent {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::WriteWholeFile;
using ::testing::Contains;
using ::testing::HasSubstr;

class FileChangeTest : public testing_util::RepositoryTest {};

TEST_F(FileChangeTest, AFileThatKeepsChangingIsKeptFlaggedAndThePointIsPartial) {
  auto repo = OpenRepo(true);
  ASSERT_NE(repo, nullptr);
  const std::string src = tmp_.Sub("src");
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  const std::string busy = src + "/busy.log", calm = src + "/calm.txt";
  WriteWholeFile(busy, RandomData(48 << 20, 1));
  WriteWholeFile(calm, RandomData(1000, 2));

  // A writer appends to busy.log every half millisecond for as long as the
  // backup runs: every read of it sees its size and mtime move.
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    int fd = ::open(busy.c_str(), O_WRONLY | O_APPEND);
    ASSERT_GE(fd, 0);
    while (!stop) {
      ASSERT_EQ(::write(fd, "x", 1), 1);
      ::usleep(500);
    }
    ::close(fd);
  });
  FileBackupOptions o;
  o.name = "busy";
  o.paths = {src};
  o.threads = 1;
  std::vector<std::string> warned;
  o.on_warning = [&](const std::string& w) { warned.push_back(w); };
  auto r = BackupFiles(*repo, o);
  stop = true;
  writer.join();
  ASSERT_THAT(r, IsOk());

  EXPECT_THAT(r->warnings, Contains(HasSubstr(busy + ": changed while it was read")));
  EXPECT_EQ(warned, r->warnings);
  EXPECT_TRUE(r->manifest.partial);
  EXPECT_THAT(r->manifest.notes, Contains(HasSubstr("busy.log")));
  auto loaded = repo->LoadSnapshot(r->manifest.id);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_TRUE(loaded->partial);

  auto point = restore::FilePoint::Open(*repo, *loaded);
  ASSERT_THAT(point, IsOk());
  const repository::FileRecord* rec = (*point)->Find(busy);
  ASSERT_NE(rec, nullptr);
  EXPECT_TRUE(rec->changed());
  EXPECT_FALSE(rec->partial());  // what was read is kept
  EXPECT_GE(rec->size, uint64_t{48} << 20);
  EXPECT_EQ(rec->DataBytes(), rec->size);
  const repository::FileRecord* quiet = (*point)->Find(calm);
  ASSERT_NE(quiet, nullptr);
  EXPECT_EQ(quiet->flags, 0);

  // Quiet now: the next run reads the flagged file again and only it.
  auto again = BackupFiles(*repo, o);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->files_read, 1u);
  EXPECT_EQ(again->files_unchanged, 1u);
  EXPECT_TRUE(again->warnings.empty());
  EXPECT_FALSE(again->manifest.partial);
}

}  // namespace
}  // namespace haven::agent
