// A real image backup over a backend that fails at every write in turn (full
// disk, torn write, storage that stops): each failed run returns an error
// naming what failed and leaves no recovery point, earlier points restore
// byte-identical, check finds nothing wrong, and the next clean run succeeds
// reusing what the failed runs stored. Also: a repository whose objects and
// whose index live in different directories (Open/Init with a backend).
#include <filesystem>
#include <string>
#include <vector>

#include "agent/image_backup.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/check.h"
#include "repository/fault_backend.h"
#include "repository/local_backend.h"
#include "repository/repository.h"
#include "restore/image_restore.h"
#include "tests/unit/test_util.h"

namespace haven {
namespace {

using ::haven::testing_util::CloneFreshRepository;
using ::haven::testing_util::FastInitOptions;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::kTestPassphrase;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::ReadOptions;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteOptions;
using ::haven::testing_util::WriteWholeFile;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using repository::FaultBackend;
using repository::LocalBackend;
using repository::Manifest;
using repository::Repository;

namespace fs = std::filesystem;

constexpr size_t kMiB = 1 << 20;

class BackendFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repo_dir_ = tmp_.Sub("repo");
    ASSERT_THAT(CloneFreshRepository(repo_dir_), IsOk());
    first_image_ = tmp_.Sub("first.img");
    second_image_ = tmp_.Sub("second.img");
    first_data_ = RandomData(2 * kMiB, 1);
    WriteWholeFile(first_image_, first_data_);
    // Several packs (1 MiB each in the test repositories), then the chunk
    // list, then the manifest: every kind of write a backup makes.
    WriteWholeFile(second_image_, RandomData(4 * kMiB + 12345, 2));
    auto repo = Repository::Open(repo_dir_, kTestPassphrase, WriteOptions());
    ASSERT_THAT(repo, IsOk());
    auto m = Backup(**repo, first_image_, "first");
    ASSERT_THAT(m, IsOk());
    first_ = *m;
  }

  static Result<Manifest> Backup(Repository& repo, const std::string& image,
                                 const std::string& name) {
    agent::ImageBackupOptions o;
    o.name = name;
    o.threads = 2;
    return agent::BackupImage(repo, image, o);
  }

  // Opens `dir` through a FaultBackend; `*fault` points into it.
  static Result<std::unique_ptr<Repository>> OpenFaulty(const std::string& dir,
                                                        FaultBackend** fault) {
    auto backend =
        std::make_unique<FaultBackend>(std::make_unique<LocalBackend>(dir));
    *fault = backend.get();
    return Repository::Open(std::move(backend), dir, kTestPassphrase,
                            WriteOptions());
  }

  // How many writes a clean backup of the second image makes, and what it
  // stores (into a copy of the repository).
  int CountWrites(uint64_t* new_raw_bytes) {
    std::string copy = tmp_.Sub("count");
    fs::copy(repo_dir_, copy, fs::copy_options::recursive);
    FaultBackend* fault = nullptr;
    auto repo = OpenFaulty(copy, &fault);
    EXPECT_THAT(repo, IsOk());
    if (!repo.ok()) return 0;
    auto m = Backup(**repo, second_image_, "second");
    EXPECT_THAT(m, IsOk());
    *new_raw_bytes = m.ok() ? m->stats.new_raw_bytes : 0;
    return fault->writes();
  }

  // A fresh copy of the repository holding only the first point, so that
  // every faulty run starts from the same state.
  std::string FreshCopy() {
    std::string run = tmp_.Sub("run");
    fs::remove_all(run);
    fs::copy(repo_dir_, run, fs::copy_options::recursive);
    return run;
  }

  // The repository as after every failed run: only the first point, which
  // restores byte-identical, and a check (reading all data) finds nothing.
  void ExpectIntact(const std::string& dir) {
    auto repo = Repository::Open(dir, kTestPassphrase, ReadOptions());
    ASSERT_THAT(repo, IsOk());
    std::vector<std::string> errors;
    auto all = (*repo)->ListSnapshots(&errors);
    ASSERT_THAT(all, IsOk());
    EXPECT_THAT(errors, IsEmpty());
    ASSERT_EQ(all->size(), 1u);
    EXPECT_EQ((*all)[0].id, first_.id);
    std::string target = tmp_.Sub("restored.img");
    fs::remove(target);
    restore::ImageRestoreOptions ro;
    ro.threads = 2;
    ASSERT_THAT(restore::RestoreImage(**repo, first_, target, ro), IsOk());
    EXPECT_TRUE(ReadWholeFile(target) == first_data_);
    repository::CheckOptions co;
    co.read_data_percent = 100;
    co.threads = 2;
    auto check = repository::CheckRepository(**repo, co);
    ASSERT_THAT(check, IsOk());
    EXPECT_THAT(check->findings, IsEmpty());
    EXPECT_TRUE(fs::is_empty(dir + "/tmp")) << "temporary files left";
  }

  // A clean run after the failed one succeeds, restores byte-identical, and
  // stores only what the failed run had not: returns its new raw bytes.
  uint64_t CleanRunAfter(const std::string& dir) {
    auto repo = Repository::Open(dir, kTestPassphrase, WriteOptions());
    EXPECT_THAT(repo, IsOk());
    if (!repo.ok()) return ~0ull;
    auto m = Backup(**repo, second_image_, "second");
    EXPECT_THAT(m, IsOk());
    if (!m.ok()) return ~0ull;
    std::string target = tmp_.Sub("second.out");
    fs::remove(target);
    restore::ImageRestoreOptions ro;
    ro.threads = 2;
    EXPECT_THAT(restore::RestoreImage(**repo, *m, target, ro), IsOk());
    EXPECT_TRUE(ReadWholeFile(target) == ReadWholeFile(second_image_));
    return m->stats.new_raw_bytes;
  }

  TempDir tmp_;
  std::string repo_dir_, first_image_, second_image_;
  Bytes first_data_;
  Manifest first_;
};

TEST_F(BackendFaultTest, EveryWriteFailingInTurnLosesNothing) {
  uint64_t full = 0;
  const int writes = CountWrites(&full);
  // At least two packs, the chunk list's pack, the manifest.
  ASSERT_GE(writes, 4);
  ASSERT_GT(full, 4 * kMiB);
  for (int n = 1; n <= writes; ++n) {
    for (auto kind : {FaultBackend::Fault::kNoSpace, FaultBackend::Fault::kTear}) {
      bool tear = kind == FaultBackend::Fault::kTear;
      SCOPED_TRACE(std::string(tear ? "torn" : "no space at") + " write " +
                   std::to_string(n) + " of " + std::to_string(writes));
      std::string dir = FreshCopy();
      {
        FaultBackend* fault = nullptr;
        auto repo = OpenFaulty(dir, &fault);
        ASSERT_THAT(repo, IsOk());
        fault->FailWrite(n, kind);
        auto m = Backup(**repo, second_image_, "second");
        // The error names the object that failed and why (after a torn
        // write, whichever write came next meets the stopped storage).
        EXPECT_THAT(m, StatusIs(Code::kIoError,
                                AllOf(AnyOf(HasSubstr("packs/"), HasSubstr("snapshots/")),
                                      HasSubstr(tear ? "injected crash"
                                                     : "No space left on device"))));
        EXPECT_EQ(fault->crashed(), tear);
      }
      ExpectIntact(dir);
      uint64_t stored = CleanRunAfter(dir);
      // Packs committed before the fault are reused; the run that failed
      // only at the manifest had stored every chunk.
      if (n == 1) {
        EXPECT_EQ(stored, full);
      } else {
        EXPECT_LT(stored, full);
      }
      if (n == writes) {
        EXPECT_EQ(stored, 0u);
      }
    }
  }
  // The storage stops after N writes (whatever the backup does next fails).
  for (int n = 0; n < writes; ++n) {
    SCOPED_TRACE("crash after " + std::to_string(n) + " writes");
    std::string dir = FreshCopy();
    {
      FaultBackend* fault = nullptr;
      auto repo = OpenFaulty(dir, &fault);
      ASSERT_THAT(repo, IsOk());
      fault->CrashAfter(n);
      EXPECT_THAT(Backup(**repo, second_image_, "second"),
                  StatusIs(Code::kIoError, HasSubstr("injected crash")));
    }
    ExpectIntact(dir);
    EXPECT_LE(CleanRunAfter(dir), full);
  }
}

TEST(BackendRepositoryTest, ObjectsAndIndexCanLiveApart) {
  TempDir tmp;
  const std::string objects = tmp.Sub("objects"), cache = tmp.Sub("cache");
  auto backend = std::make_unique<LocalBackend>(objects);
  ASSERT_THAT(backend->CreateLayout(), IsOk());
  ASSERT_THAT(Repository::Init(std::move(backend), cache, kTestPassphrase,
                               FastInitOptions()),
              IsOk());
  EXPECT_THAT(Repository::Init(std::make_unique<LocalBackend>(objects), cache,
                               kTestPassphrase, FastInitOptions()),
              StatusIs(Code::kAlreadyExists, HasSubstr(objects)));
  const std::string image = tmp.Sub("disk.img");
  const Bytes data = RandomData(3 * kMiB, 7);
  WriteWholeFile(image, data);
  std::string id;
  {
    auto repo = Repository::Open(std::make_unique<LocalBackend>(objects), cache,
                                 kTestPassphrase, WriteOptions());
    ASSERT_THAT(repo, IsOk());
    agent::ImageBackupOptions o;
    o.name = "apart";
    auto m = agent::BackupImage(**repo, image, o);
    ASSERT_THAT(m, IsOk());
    id = m->id;
    ASSERT_THAT((*repo)->SetProtected(id, true), IsOk());
    EXPECT_TRUE((*repo)->IsProtected(id));
  }
  // Objects on one side, caches on the other.
  EXPECT_TRUE(fs::exists(objects + "/config"));
  EXPECT_TRUE(fs::exists(objects + "/snapshots/" + id));
  EXPECT_TRUE(fs::exists(objects + "/protected/" + id));
  EXPECT_FALSE(fs::exists(objects + "/index"));
  EXPECT_TRUE(fs::exists(cache + "/index/CURRENT"));
  EXPECT_FALSE(fs::exists(cache + "/config"));
  EXPECT_FALSE(fs::exists(cache + "/packs"));

  auto repo = Repository::Open(std::make_unique<LocalBackend>(objects), cache,
                               kTestPassphrase, ReadOptions());
  ASSERT_THAT(repo, IsOk());
  auto m = (*repo)->FindSnapshot("apart:latest");
  ASSERT_THAT(m, IsOk());
  const std::string target = tmp.Sub("out.img");
  restore::ImageRestoreOptions ro;
  ASSERT_THAT(restore::RestoreImage(**repo, *m, target, ro), IsOk());
  EXPECT_TRUE(ReadWholeFile(target) == data);
  repository::CheckOptions co;
  co.read_data_percent = 100;
  auto check = repository::CheckRepository(**repo, co);
  ASSERT_THAT(check, IsOk());
  EXPECT_THAT(check->findings, IsEmpty());
  EXPECT_GE(check->packs_read, 1u);
}

}  // namespace
}  // namespace haven
