// The preflight of a VM restore's storage folder (restore/storage_preflight)
// and the restore journal (restore/restore_journal): what a dry run finds,
// and what a re-run trusts.
#include "restore/storage_preflight.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/file.h"
#include "restore/restore_journal.h"
#include "tests/unit/test_util.h"

namespace haven {
namespace {

using namespace testing_util;  // NOLINT
using restore::CheckStorageFolder;
using restore::LoadRestoreJournal;
using restore::QemuAccessProblem;
using restore::RestoreJournal;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

TEST(StoragePreflightTest, AnExistingFolder) {
  TempDir tmp;
  auto check = CheckStorageFolder(tmp.path());
  EXPECT_THAT(check.problems, IsEmpty());
  EXPECT_THAT(check.create, IsEmpty());
  EXPECT_EQ(check.existing, tmp.path());
  EXPECT_GT(check.free_bytes, 0u);
  EXPECT_NE(check.device, 0u);
}

TEST(StoragePreflightTest, MissingFoldersAreListedOutermostFirst) {
  TempDir tmp;
  auto check = CheckStorageFolder(tmp.Sub("a/b/c"));
  EXPECT_THAT(check.problems, IsEmpty());
  EXPECT_EQ(check.existing, tmp.path());
  EXPECT_THAT(check.create,
              ElementsAre(tmp.Sub("a"), tmp.Sub("a/b"), tmp.Sub("a/b/c")));
}

TEST(StoragePreflightTest, AFileIsNotAFolder) {
  TempDir tmp;
  ASSERT_THAT(WriteFileAtomic(tmp.Sub("f"), Bytes{1, 2, 3}), IsOk());
  auto check = CheckStorageFolder(tmp.Sub("f"));
  ASSERT_THAT(check.problems, SizeIs(1));
  EXPECT_THAT(check.problems[0],
              AllOf(HasSubstr(tmp.Sub("f")), HasSubstr("is not a folder")));
  // Below a file: the file is named, and that the folder would be made in it.
  check = CheckStorageFolder(tmp.Sub("f/images"));
  ASSERT_THAT(check.problems, SizeIs(1));
  EXPECT_THAT(check.problems[0],
              AllOf(HasSubstr(tmp.Sub("f") + " is not a folder"),
                    HasSubstr("would be made in it")));
}

TEST(StoragePreflightTest, AFolderThisProcessCannotWrite) {
  if (geteuid() == 0) GTEST_SKIP() << "root writes anywhere";
  TempDir tmp;
  ASSERT_EQ(::mkdir(tmp.Sub("ro").c_str(), 0500), 0);
  auto check = CheckStorageFolder(tmp.Sub("ro"));
  ASSERT_THAT(check.problems, SizeIs(1));
  EXPECT_THAT(check.problems[0], HasSubstr("cannot write to"));
}

TEST(StoragePreflightTest, QemuMustEnterEveryFolder) {
  TempDir tmp;
  const std::string closed = tmp.Sub("closed"), inner = closed + "/images";
  ASSERT_EQ(::mkdir(closed.c_str(), 0700), 0);
  ASSERT_EQ(::mkdir(inner.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(tmp.path().c_str(), 0755), 0);
  // uid/gid 65534 (nobody) owns none of it and is in none of its groups.
  std::string problem = QemuAccessProblem(inner, "+65534:+65534");
  EXPECT_THAT(problem, AllOf(HasSubstr("cannot enter " + closed),
                             HasSubstr("mode 0700"), HasSubstr("chmod o+x")));
  // A folder still to be made (0755) is no problem; nor is an open path.
  ASSERT_EQ(::chmod(closed.c_str(), 0711), 0);
  EXPECT_EQ(QemuAccessProblem(inner + "/new/deeper", "+65534:+65534"), "");
  // Owner and group bits count for the owner and the group.
  ASSERT_EQ(::chmod(closed.c_str(), 0710), 0);
  ASSERT_EQ(::chown(closed.c_str(), 0, 65534), geteuid() == 0 ? 0 : -1);
  if (geteuid() == 0) {
    EXPECT_EQ(QemuAccessProblem(inner, "+65534:+65534"), "");
    ASSERT_EQ(::chown(closed.c_str(), 65534, 0), 0);
    ASSERT_EQ(::chmod(closed.c_str(), 0100), 0);
    EXPECT_EQ(QemuAccessProblem(inner, "+65534:+65534"), "");
  }
  // Root, no label, or an unreadable one: nothing to check.
  ASSERT_EQ(::chmod(closed.c_str(), 0700), 0);
  EXPECT_EQ(QemuAccessProblem(inner, "+0:+0"), "");
  EXPECT_EQ(QemuAccessProblem(inner, ""), "");
  EXPECT_EQ(QemuAccessProblem(inner, "garbage"), "");
}

TEST(RestoreJournalTest, RoundTripAndOnlyForTheSamePoint) {
  TempDir tmp;
  RestoreJournal j;
  j.snapshot = "abcd1234";
  j.name = "web1";
  j.uuid = "6f1e2d3c-4b5a-4978-8a6b-5c4d3e2f1a0b";
  j.files = {"/x/web1-vda.img", "/x/web1-vda.img.haven-restore"};
  j.disks = {{"/x/web1-vda.img", "raw", true}};
  j.networks = {"netx"};
  j.placed = false;
  const std::string path = tmp.Sub(".haven-restore-web1.json");
  ASSERT_THAT(SaveRestoreJournal(path, j), IsOk());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  RestoreJournal back = LoadRestoreJournal(path, "abcd1234");
  EXPECT_EQ(back.snapshot, "abcd1234");
  EXPECT_EQ(back.uuid, j.uuid);
  EXPECT_EQ(back.files, j.files);
  ASSERT_NE(back.FindDisk("/x/web1-vda.img", "raw"), nullptr);
  EXPECT_TRUE(back.FindDisk("/x/web1-vda.img", "raw")->staged);
  EXPECT_EQ(back.FindDisk("/x/web1-vda.img", "qcow2"), nullptr);
  EXPECT_EQ(back.networks, j.networks);

  // Another point's journal, a damaged one, none: nothing is claimed.
  EXPECT_EQ(LoadRestoreJournal(path, "ffff0000").snapshot, "");
  EXPECT_THAT(LoadRestoreJournal(path, "ffff0000").files, IsEmpty());
  const std::string text = "{\"snapshot\": \"abcd1234\", \"files\": 7}";
  ASSERT_THAT(WriteFileAtomic(path, Bytes(text.begin(), text.end())), IsOk());
  EXPECT_THAT(LoadRestoreJournal(path, "abcd1234").files, IsEmpty());
  EXPECT_EQ(LoadRestoreJournal(tmp.Sub("none"), "abcd1234").snapshot, "");
  // A version-1 journal (files only) still gives its files.
  const std::string v1 =
      "{\"snapshot\": \"abcd1234\", \"name\": \"web1\", \"files\": [\"/a\"]}";
  ASSERT_THAT(WriteFileAtomic(path, Bytes(v1.begin(), v1.end())), IsOk());
  EXPECT_THAT(LoadRestoreJournal(path, "abcd1234").files, ElementsAre("/a"));
}

}  // namespace
}  // namespace haven
