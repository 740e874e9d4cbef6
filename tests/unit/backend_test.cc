// The Backend contract as LocalBackend keeps it (atomic durable writes,
// listing, stat, range reads, delete, refused names), and what FaultBackend
// injects.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/fault_backend.h"
#include "repository/local_backend.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteWholeFile;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

namespace fs = std::filesystem;

Bytes B(std::string_view text) {
  ByteSpan span = AsBytes(text);
  return Bytes(span.begin(), span.end());
}

std::vector<std::string> Names(const std::vector<ObjectInfo>& objects) {
  std::vector<std::string> out;
  for (const auto& o : objects) out.push_back(o.name);
  return out;
}

class LocalBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.Sub("repo");
    backend_ = std::make_unique<LocalBackend>(root_);
    ASSERT_THAT(backend_->CreateLayout(), IsOk());
  }
  Bytes ReadAll(const std::string& name) {
    auto r = backend_->Read(name, 1 << 30);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? *r : Bytes{};
  }

  TempDir dir_;
  std::string root_;
  std::unique_ptr<LocalBackend> backend_;
};

TEST_F(LocalBackendTest, CreateLayoutMakesTheRepositoryFolders) {
  for (const char* sub : {"keys", "snapshots", "tmp", "packs/00", "packs/ff"})
    EXPECT_TRUE(fs::is_directory(root_ + "/" + sub)) << sub;
}

TEST_F(LocalBackendTest, WriteAtomicStoresTheFileAtItsKey) {
  Bytes data = RandomData(5000, 1);
  ASSERT_THAT(backend_->WriteAtomic("snapshots/abc", data, WriteMode::kCreate),
              IsOk());
  EXPECT_TRUE(testing_util::ReadWholeFile(root_ + "/snapshots/abc") == data);
  EXPECT_TRUE(ReadAll("snapshots/abc") == data);
  EXPECT_THAT(backend_->Stat("snapshots/abc"), IsOk());
  EXPECT_EQ(*backend_->Stat("snapshots/abc"), 5000u);
  // No temporary file is left beside it.
  EXPECT_EQ(std::distance(fs::directory_iterator(root_ + "/snapshots"),
                          fs::directory_iterator()),
            1);
}

TEST_F(LocalBackendTest, CreateRefusesAnExistingObjectAndKeepsIt) {
  ASSERT_THAT(backend_->WriteAtomic("config", AsBytes("one"), WriteMode::kCreate),
              IsOk());
  EXPECT_THAT(backend_->WriteAtomic("config", AsBytes("two"), WriteMode::kCreate),
              StatusIs(Code::kAlreadyExists, HasSubstr("config")));
  EXPECT_TRUE(ReadAll("config") == B("one"));
  ASSERT_THAT(
      backend_->WriteAtomic("config", AsBytes("three"), WriteMode::kReplace),
      IsOk());
  EXPECT_TRUE(ReadAll("config") == B("three"));
}

TEST_F(LocalBackendTest, ConfigIsWorldReadableOtherObjectsPrivate) {
  ASSERT_THAT(backend_->WriteAtomic("config", AsBytes("{}"), WriteMode::kCreate),
              IsOk());
  ASSERT_THAT(backend_->WriteAtomic("keys/0011", AsBytes("k"), WriteMode::kCreate),
              IsOk());
  struct stat st;
  ASSERT_EQ(::stat((root_ + "/config").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  ASSERT_EQ(::stat((root_ + "/keys/0011").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(LocalBackendTest, WriteCreatesAMissingFolder) {
  ASSERT_THAT(
      backend_->WriteAtomic("protected/p1", AsBytes("x"), WriteMode::kReplace),
      IsOk());
  EXPECT_TRUE(PathExists(root_ + "/protected/p1"));
}

TEST_F(LocalBackendTest, ListReturnsObjectsWithSizesAndHidesTemporaries) {
  ASSERT_THAT(backend_->WriteAtomic("snapshots/a", Bytes(10), WriteMode::kCreate),
              IsOk());
  ASSERT_THAT(backend_->WriteAtomic("snapshots/b", Bytes(20), WriteMode::kCreate),
              IsOk());
  ASSERT_THAT(backend_->WriteAtomic("keys/k", Bytes(5), WriteMode::kCreate),
              IsOk());
  // A temp file of a writer that died, and a streaming writer still open.
  WriteWholeFile(root_ + "/snapshots/c.tmp-99999-1", Bytes(3));
  auto open = backend_->NewObjectWriter("snapshots/d");
  ASSERT_THAT(open, IsOk());
  ASSERT_THAT((*open)->Append(Bytes(7)), IsOk());

  auto listed = backend_->List("snapshots/");
  ASSERT_THAT(listed, IsOk());
  EXPECT_THAT(Names(*listed),
              UnorderedElementsAre("snapshots/a", "snapshots/b"));
  for (const auto& o : *listed)
    EXPECT_EQ(o.size, o.name == "snapshots/a" ? 10u : 20u) << o.name;
  auto all = backend_->List("");
  ASSERT_THAT(all, IsOk());
  EXPECT_THAT(Names(*all),
              UnorderedElementsAre("snapshots/a", "snapshots/b", "keys/k"));
  // The same keys whatever the spelling of the root.
  LocalBackend slashed(root_ + "//");
  auto again = slashed.List("");
  ASSERT_THAT(again, IsOk());
  EXPECT_THAT(Names(*again),
              UnorderedElementsAre("snapshots/a", "snapshots/b", "keys/k"));
  // A folder that does not exist yet is empty, not an error.
  EXPECT_THAT(backend_->List("protected/"), IsOk());
  EXPECT_THAT(*backend_->List("protected/"), IsEmpty());
  EXPECT_THAT(backend_->List("snapshots"),
              StatusIs(Code::kInvalidArgument, HasSubstr("folder")));
}

TEST_F(LocalBackendTest, ListOfAMissingRepositoryIsAnError) {
  LocalBackend gone(dir_.Sub("no-such-repo"));
  EXPECT_THAT(gone.List("packs/"),
              StatusIs(Code::kIoError, HasSubstr("no-such-repo")));
}

TEST_F(LocalBackendTest, ListAndInfoGiveTheFileMtimeAsChangeMarker) {
  ASSERT_THAT(backend_->WriteAtomic("snapshots/a", AsBytes("abc"),
                                    WriteMode::kCreate),
              IsOk());
  struct timespec t[2] = {{1700000000, 123456789}, {1700000000, 123456789}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (root_ + "/snapshots/a").c_str(), t, 0), 0);
  auto listed = backend_->List("snapshots/");
  ASSERT_THAT(listed, IsOk());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].size, 3u);
  EXPECT_EQ((*listed)[0].mtime_ns, int64_t{1700000000123456789});
  auto info = backend_->Info("snapshots/a");
  ASSERT_THAT(info, IsOk());
  EXPECT_EQ(info->size, 3u);
  EXPECT_EQ(info->mtime_ns, int64_t{1700000000123456789});
  EXPECT_THAT(backend_->Info("snapshots/none"),
              StatusIs(Code::kNotFound, HasSubstr("snapshots/none")));
}

TEST_F(LocalBackendTest, StatAndReadOfAMissingObjectAreNotFound) {
  EXPECT_THAT(backend_->Stat("snapshots/none"),
              StatusIs(Code::kNotFound, HasSubstr("snapshots/none")));
  EXPECT_THAT(backend_->OpenReader("snapshots/none"),
              StatusIs(Code::kNotFound, HasSubstr("snapshots/none")));
  EXPECT_THAT(backend_->Read("snapshots/none", 100),
              StatusIs(Code::kNotFound, HasSubstr("snapshots/none")));
}

TEST_F(LocalBackendTest, ReadRefusesAnObjectOverTheLimit) {
  ASSERT_THAT(backend_->WriteAtomic("keys/big", Bytes(101), WriteMode::kCreate),
              IsOk());
  EXPECT_THAT(backend_->Read("keys/big", 100),
              StatusIs(Code::kDataLoss, HasSubstr("more than the limit")));
}

TEST_F(LocalBackendTest, RangeReadsStayInBoundsAndReportShortReads) {
  Bytes data = RandomData(4096, 2);
  ASSERT_THAT(backend_->WriteAtomic("packs/ab/x", data, WriteMode::kCreate),
              IsOk());
  auto r = backend_->OpenReader("packs/ab/x");
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ((*r)->size(), 4096u);
  Bytes out(100);
  ASSERT_THAT((*r)->ReadAt(1000, 100, out.data(), "test range"), IsOk());
  EXPECT_TRUE(std::equal(out.begin(), out.end(), data.begin() + 1000));
  ASSERT_THAT((*r)->ReadAt(3996, 100, out.data(), "last bytes"), IsOk());
  EXPECT_THAT((*r)->ReadAt(4000, 100, out.data(), "pack x, chunk y"),
              StatusIs(Code::kDataLoss, HasSubstr("pack x, chunk y")));
  EXPECT_THAT((*r)->ReadAt(1u << 20, 1, out.data(), "far"),
              StatusIs(Code::kDataLoss, HasSubstr("far")));
}

TEST_F(LocalBackendTest, StreamingWriterIsInvisibleUntilCommit) {
  Bytes a = RandomData(3 << 20, 3), b = RandomData(1000, 4);
  {
    auto w = backend_->NewObjectWriter("packs/cd/p1");
    ASSERT_THAT(w, IsOk());
    ASSERT_THAT((*w)->Append(a), IsOk());
    ASSERT_THAT((*w)->Append(b), IsOk());
    EXPECT_EQ((*w)->size(), a.size() + b.size());
    EXPECT_TRUE(PathExists(root_ + "/tmp/pack-p1.tmp"));
    EXPECT_THAT(backend_->Stat("packs/cd/p1"), StatusIs(Code::kNotFound, HasSubstr("p1")));
    EXPECT_THAT(*backend_->List("packs/"), IsEmpty());
    ASSERT_THAT((*w)->Commit(), IsOk());
  }
  Bytes all = a;
  all.insert(all.end(), b.begin(), b.end());
  EXPECT_TRUE(ReadAll("packs/cd/p1") == all);
  EXPECT_TRUE(fs::is_empty(root_ + "/tmp"));
}

TEST_F(LocalBackendTest, AbandonedStreamingWriterLeavesNothing) {
  {
    auto w = backend_->NewObjectWriter("packs/cd/p2");
    ASSERT_THAT(w, IsOk());
    ASSERT_THAT((*w)->Append(RandomData(2 << 20, 5)), IsOk());
  }
  EXPECT_THAT(backend_->Stat("packs/cd/p2"), StatusIs(Code::kNotFound, HasSubstr("p2")));
  EXPECT_TRUE(fs::is_empty(root_ + "/tmp"));
}

TEST_F(LocalBackendTest, StreamingCommitRefusesToReplace) {
  ASSERT_THAT(backend_->WriteAtomic("packs/cd/p3", AsBytes("old"), WriteMode::kCreate),
              IsOk());
  auto w = backend_->NewObjectWriter("packs/cd/p3");
  ASSERT_THAT(w, IsOk());
  ASSERT_THAT((*w)->Append(AsBytes("new")), IsOk());
  EXPECT_THAT((*w)->Commit(), StatusIs(Code::kAlreadyExists, HasSubstr("p3")));
  EXPECT_TRUE(ReadAll("packs/cd/p3") == B("old"));
}

TEST_F(LocalBackendTest, DeleteRemovesAndAMissingObjectIsNotFound) {
  ASSERT_THAT(backend_->WriteAtomic("snapshots/x", AsBytes("x"), WriteMode::kCreate),
              IsOk());
  ASSERT_THAT(backend_->Delete("snapshots/x"), IsOk());
  EXPECT_FALSE(PathExists(root_ + "/snapshots/x"));
  EXPECT_THAT(backend_->Delete("snapshots/x"),
              StatusIs(Code::kNotFound, HasSubstr("snapshots/x")));
}

TEST_F(LocalBackendTest, NamesOutsideTheRepositoryAreRefused) {
  // A file beside the repository that a bad name would reach.
  WriteWholeFile(dir_.Sub("outside"), AsBytes("secret"));
  const std::vector<std::string> names = {"../outside", "/etc/passwd", "snapshots/../../outside", "", "a//b",
        "snapshots/", "./config", "keys/..", std::string("a\0b", 3),
        "snap shots/x", "packs\\ab"};
  for (const std::string& bad : names) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(backend_->Stat(bad), StatusIs(Code::kInvalidArgument, HasSubstr("refused")));
    EXPECT_THAT(backend_->OpenReader(bad), StatusIs(Code::kInvalidArgument, HasSubstr("refused")));
    EXPECT_THAT(backend_->WriteAtomic(bad, AsBytes("x"), WriteMode::kReplace),
                StatusIs(Code::kInvalidArgument, HasSubstr("refused")));
    EXPECT_THAT(backend_->NewObjectWriter(bad),
                StatusIs(Code::kInvalidArgument, HasSubstr("refused")));
    EXPECT_THAT(backend_->Delete(bad), StatusIs(Code::kInvalidArgument, HasSubstr("refused")));
  }
  EXPECT_THAT(backend_->List("../"), StatusIs(Code::kInvalidArgument, HasSubstr("refused")));
  // Control bytes of an untrusted name never reach a message.
  EXPECT_THAT(backend_->Stat(std::string("a\0b\n", 4)),
              StatusIs(Code::kInvalidArgument, HasSubstr("name of 4 bytes is refused")));
  EXPECT_TRUE(testing_util::ReadWholeFile(dir_.Sub("outside")) == B("secret"));
}

// ---------------------------------------------------------------- faults

class FaultBackendTest : public LocalBackendTest {
 protected:
  void SetUp() override {
    LocalBackendTest::SetUp();
    fault_ = std::make_unique<FaultBackend>(std::make_unique<LocalBackend>(root_));
  }
  std::unique_ptr<FaultBackend> fault_;
};

TEST_F(FaultBackendTest, NoSpaceFailsTheNthWriteOnly) {
  fault_->FailWrite(2, FaultBackend::Fault::kNoSpace);
  EXPECT_THAT(fault_->WriteAtomic("snapshots/1", AsBytes("a"), WriteMode::kCreate), IsOk());
  EXPECT_THAT(fault_->WriteAtomic("snapshots/2", AsBytes("b"), WriteMode::kCreate),
              StatusIs(Code::kIoError,
                       AllOf(HasSubstr("snapshots/2"), HasSubstr("No space left on device"))));
  EXPECT_THAT(backend_->Stat("snapshots/2"), StatusIs(Code::kNotFound, HasSubstr("snapshots/2")));
  EXPECT_THAT(fault_->WriteAtomic("snapshots/3", AsBytes("c"), WriteMode::kCreate), IsOk());
  EXPECT_EQ(fault_->writes(), 3);
  EXPECT_FALSE(fault_->crashed());
}

TEST_F(FaultBackendTest, NoSpaceOnAStreamingCommitDiscardsTheObject) {
  fault_->FailWrite(1, FaultBackend::Fault::kNoSpace);
  auto w = fault_->NewObjectWriter("packs/ab/p");
  ASSERT_THAT(w, IsOk());
  ASSERT_THAT((*w)->Append(RandomData(1000, 1)), IsOk());
  EXPECT_THAT((*w)->Commit(), StatusIs(Code::kIoError, HasSubstr("No space left")));
  EXPECT_THAT(backend_->Stat("packs/ab/p"), StatusIs(Code::kNotFound, HasSubstr("packs/ab/p")));
  EXPECT_TRUE(fs::is_empty(root_ + "/tmp"));
}

TEST_F(FaultBackendTest, TornWriteIsNeverVisibleAndStopsEverything) {
  ASSERT_THAT(fault_->WriteAtomic("snapshots/old", AsBytes("kept"), WriteMode::kCreate),
              IsOk());
  fault_->FailWrite(2, FaultBackend::Fault::kTear);
  EXPECT_THAT(fault_->WriteAtomic("snapshots/new", RandomData(1000, 2), WriteMode::kCreate),
              StatusIs(Code::kIoError, AllOf(HasSubstr("snapshots/new"), HasSubstr("torn"))));
  EXPECT_TRUE(fault_->crashed());
  EXPECT_THAT(backend_->Stat("snapshots/new"), StatusIs(Code::kNotFound, HasSubstr("new")));
  EXPECT_THAT(Names(*backend_->List("snapshots/")), UnorderedElementsAre("snapshots/old"));
  EXPECT_THAT(fault_->Stat("snapshots/old"), StatusIs(Code::kIoError, HasSubstr("injected")));
  EXPECT_THAT(fault_->List("snapshots/"), StatusIs(Code::kIoError, HasSubstr("injected")));
}

TEST_F(FaultBackendTest, CrashAfterNWritesFailsEveryLaterOperation) {
  fault_->CrashAfter(2);
  ASSERT_THAT(fault_->WriteAtomic("keys/a", AsBytes("a"), WriteMode::kCreate), IsOk());
  auto reader = fault_->OpenReader("keys/a");
  ASSERT_THAT(reader, IsOk());
  auto w = fault_->NewObjectWriter("packs/ab/q");
  ASSERT_THAT(w, IsOk());
  ASSERT_THAT((*w)->Append(AsBytes("pack")), IsOk());
  ASSERT_THAT((*w)->Commit(), IsOk());  // the second write: the last one
  EXPECT_TRUE(fault_->crashed());
  EXPECT_THAT(backend_->Stat("packs/ab/q"), IsOk());
  Bytes one(1);
  EXPECT_THAT((*reader)->ReadAt(0, 1, one.data(), "a"),
              StatusIs(Code::kIoError, HasSubstr("stopped after 2 writes")));
  EXPECT_THAT(fault_->WriteAtomic("keys/b", AsBytes("b"), WriteMode::kCreate),
              StatusIs(Code::kIoError, HasSubstr("keys/b")));
  EXPECT_THAT(fault_->Delete("keys/a"), StatusIs(Code::kIoError, HasSubstr("injected")));
  EXPECT_THAT(fault_->NewObjectWriter("packs/ab/r"),
              StatusIs(Code::kIoError, HasSubstr("injected")));
  EXPECT_THAT(backend_->Stat("keys/a"), IsOk());
  EXPECT_THAT(backend_->Stat("keys/b"), StatusIs(Code::kNotFound, HasSubstr("keys/b")));
}

}  // namespace
}  // namespace haven::repository
