// Tests for repository/repository.h on real directories and a real RocksDB
// index: init/open and the chunk writer and reader. Index rebuilds are in
// repository_index_test.cc, snapshot lookup in snapshot_lookup_test.cc.
#include "repository/repository.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/repository_test_util.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

namespace fs = std::filesystem;
using ::haven::testing_util::FastInitOptions;
using ::haven::testing_util::FlipByte;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::kPass;
using ::haven::testing_util::PackFiles;
using ::haven::testing_util::RepositoryTest;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::ReadOptions;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::SnapshotTree;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::WriteOptions;
using ::haven::testing_util::WriteWholeFile;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// ------------------------------------------------------------- init / open

TEST_F(RepositoryTest, InitCreatesTheDocumentedLayout) {
  // A real Init (the fixture's repository is a copy of one).
  repo_dir_ = tmp_.Sub("fresh");
  ASSERT_THAT(Repository::Init(repo_dir_, kPass, FastInitOptions()), IsOk());
  for (const char* sub : {"keys", "packs", "snapshots", "locks", "tmp", "index"})
    EXPECT_TRUE(fs::is_directory(repo_dir_ + "/" + sub)) << sub;
  for (const char* sub : {"00", "7f", "a0", "ff"})
    EXPECT_TRUE(fs::is_directory(repo_dir_ + "/packs/" + sub)) << sub;
  EXPECT_TRUE(fs::is_regular_file(repo_dir_ + "/config"));
  EXPECT_EQ(std::distance(fs::directory_iterator(repo_dir_ + "/keys"),
                          fs::directory_iterator{}),
            1);
  auto repo = OpenRepo(false);
  ASSERT_NE(repo, nullptr);
  EXPECT_EQ(repo->config().chunk_size, kDefaultChunkSize);
  EXPECT_EQ(repo->config().pack_size, 1u << 20);
  EXPECT_TRUE(IsPackName(repo->config().id)) << "32 hex digits";
  EXPECT_THAT(repo->unlocked_slot(), ::testing::MatchesRegex("[0-9a-f]{16}"));
}

TEST_F(RepositoryTest, InitTwiceIsAlreadyExists) {
  const auto before = SnapshotTree(repo_dir_);
  EXPECT_THAT(Repository::Init(repo_dir_, "another", FastInitOptions()),
              StatusIs(Code::kAlreadyExists, HasSubstr("already exists")));
  EXPECT_EQ(SnapshotTree(repo_dir_), before);
  // The original passphrase still opens it; the second one never did.
  EXPECT_NE(OpenRepo(false), nullptr);
  EXPECT_THAT(Repository::Open(repo_dir_, "another", ReadOptions()),
              StatusIs(Code::kPermissionDenied, HasSubstr("wrong passphrase")));
}

TEST_F(RepositoryTest, InitRefusesNonEmptyDirectory) {
  std::string dir = tmp_.Sub("occupied");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  WriteWholeFile(dir + "/important.txt", AsBytes("data"));
  EXPECT_THAT(Repository::Init(dir, kPass, FastInitOptions()),
              StatusIs(Code::kAlreadyExists, HasSubstr("not empty")));
  EXPECT_FALSE(PathExists(dir + "/config"));
  EXPECT_FALSE(PathExists(dir + "/keys"));
}

TEST_F(RepositoryTest, InitIntoEmptyExistingDirectoryWorks) {
  std::string dir = tmp_.Sub("empty");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  ASSERT_THAT(Repository::Init(dir, kPass, FastInitOptions()), IsOk());
  EXPECT_THAT(Repository::Open(dir, kPass, ReadOptions()), IsOk());
}

TEST_F(RepositoryTest, InitRejectsBadOptionsWithoutCreatingAnything) {
  std::string dir = tmp_.Sub("bad");
  auto o = FastInitOptions();
  o.chunk_size = 65537;
  EXPECT_THAT(Repository::Init(dir, kPass, o),
              StatusIs(Code::kInvalidArgument, HasSubstr("power of two")));
  o = FastInitOptions();
  o.pack_size = 1000;
  EXPECT_THAT(Repository::Init(dir, kPass, o),
              StatusIs(Code::kInvalidArgument, HasSubstr("pack size")));
  EXPECT_THAT(Repository::Init(dir, "", FastInitOptions()),
              StatusIs(Code::kInvalidArgument, HasSubstr("passphrase is empty")));
  EXPECT_FALSE(PathExists(dir));
}

TEST_F(RepositoryTest, OpenWithWrongPassphraseChangesNothing) {
  const auto before = SnapshotTree(repo_dir_);
  ASSERT_FALSE(before.empty());
  for (bool write : {false, true}) {
    auto r = Repository::Open(repo_dir_, "not the passphrase",
                              write ? WriteOptions() : ReadOptions());
    EXPECT_THAT(r, StatusIs(Code::kPermissionDenied, HasSubstr("wrong passphrase")))
        << "write " << write;
  }
  EXPECT_EQ(SnapshotTree(repo_dir_), before);
}

TEST_F(RepositoryTest, OpenOfMissingDirectoryIsNotFound) {
  EXPECT_THAT(Repository::Open(tmp_.Sub("nowhere"), kPass, ReadOptions()),
              StatusIs(Code::kNotFound, HasSubstr("no Haven repository")));
  EXPECT_FALSE(PathExists(tmp_.Sub("nowhere")));
  // A directory that exists but holds no repository.
  EXPECT_THAT(Repository::Open(tmp_.path(), kPass, ReadOptions()),
              StatusIs(Code::kNotFound, HasSubstr("no Haven repository")));
}

// A wrong or unmounted path is the usual cause: the message says so first
// and names the path; creating a repository is not the first advice.
TEST_F(RepositoryTest, OpenOfMissingPathSaysCheckThePathNotInitFirst) {
  const std::string missing = tmp_.Sub("mnt/backup/repo");
  auto r = Repository::Open(missing, kPass, ReadOptions());
  ASSERT_THAT(r, StatusIs(Code::kNotFound, HasSubstr(missing)));
  const std::string& msg = r.status().message();
  EXPECT_THAT(msg, HasSubstr("does not exist"));
  EXPECT_THAT(msg, HasSubstr("mounted"));
  ASSERT_NE(msg.find("haven init"), std::string::npos);
  EXPECT_LT(msg.find("heck the repository path"), msg.find("haven init"));
  EXPECT_THAT(msg, HasSubstr("only for creating a new repository"));
  EXPECT_FALSE(PathExists(missing));
}

TEST_F(RepositoryTest, OpenOfAFileSaysItIsNotARepository) {
  const std::string file = tmp_.Sub("a-file");
  WriteWholeFile(file, AsBytes("not a repository"));
  EXPECT_THAT(Repository::Open(file, kPass, ReadOptions()),
              StatusIs(Code::kFailedPrecondition,
                       AllOf(HasSubstr(file), HasSubstr("is a file, not a repository"))));
  EXPECT_THAT(Repository::Init(file, kPass, {}),
              StatusIs(Code::kAlreadyExists, HasSubstr("is not a directory")));
  const Bytes kept = ReadWholeFile(file);
  EXPECT_EQ(std::string(kept.begin(), kept.end()), "not a repository");
}

TEST_F(RepositoryTest, OpenWithDamagedConfigIsDataLoss) {
  WriteWholeFile(repo_dir_ + "/config", AsBytes("{\"format\": \"haven-repository\""));
  EXPECT_THAT(Repository::Open(repo_dir_, kPass, ReadOptions()),
              StatusIs(Code::kDataLoss, HasSubstr("config")));
}

TEST_F(RepositoryTest, OpenWithFutureVersionIsFailedPrecondition) {
  auto raw = ReadFile(repo_dir_ + "/config", 65536);
  ASSERT_THAT(raw, IsOk());
  std::string text(raw->begin(), raw->end());
  size_t at = text.find("\"version\": 1");
  ASSERT_NE(at, std::string::npos) << text;
  text.replace(at, 12, "\"version\": 2");
  WriteWholeFile(repo_dir_ + "/config", AsBytes(text));
  EXPECT_THAT(Repository::Open(repo_dir_, kPass, ReadOptions()),
              StatusIs(Code::kFailedPrecondition, HasSubstr("version 2")));
}

TEST_F(RepositoryTest, ConfigFromAnotherRepositoryDoesNotOpen) {
  // Swapping in another repository's config changes the id that binds the
  // key slots: the passphrase no longer opens anything.
  std::string other = tmp_.Sub("other");
  ASSERT_THAT(Repository::Init(other, kPass, FastInitOptions()), IsOk());
  fs::copy_file(other + "/config", repo_dir_ + "/config",
                fs::copy_options::overwrite_existing);
  EXPECT_THAT(Repository::Open(repo_dir_, kPass, ReadOptions()),
              StatusIs(Code::kPermissionDenied, HasSubstr("wrong passphrase")));
}

TEST_F(RepositoryTest, OpenWithoutKeySlotsIsDataLoss) {
  for (const auto& e : fs::directory_iterator(repo_dir_ + "/keys")) fs::remove(e.path());
  EXPECT_THAT(Repository::Open(repo_dir_, kPass, ReadOptions()),
              StatusIs(Code::kDataLoss, HasSubstr("no key slots")));
}

// ------------------------------------------------------------ chunk I/O

TEST_F(RepositoryTest, PutFlushThenReadChunkRoundTrips) {
  std::vector<Stored> chunks;
  {
    auto repo = OpenRepo(true);
    ASSERT_NE(repo, nullptr);
    chunks = StoreChunks(*repo, 8, 10000);
    ExpectReadable(*repo, chunks);
    // Also compressible and tiny chunks.
    auto writer = repo->NewWriter();
    WriteContext ctx(1);
    Bytes zeros_and_text(50000, 'z');
    Bytes tiny = {42};
    for (const Bytes* raw : {&zeros_and_text, &tiny}) {
      Stored s{ChunkType::kData, repo->IdFor(ChunkType::kData, *raw), *raw};
      auto put = writer->Put(s.type, s.id, s.raw, ctx);
      ASSERT_THAT(put, IsOk());
      EXPECT_TRUE(*put);
      chunks.push_back(s);
    }
    ASSERT_THAT(writer->Flush(), IsOk());
    EXPECT_EQ(writer->new_raw_bytes(), 50001u);
    EXPECT_LT(writer->new_stored_bytes(), 50001u) << "text compresses";
    ExpectReadable(*repo, chunks);
  }
  // Durable: a new read-only open sees everything.
  auto again = OpenRepo(false);
  ASSERT_NE(again, nullptr);
  ExpectReadable(*again, chunks);
}

TEST_F(RepositoryTest, PutOfTheSameChunkTwiceStoresItOnce) {
  auto repo = OpenRepo(true);
  ASSERT_NE(repo, nullptr);
  Bytes raw = RandomData(30000, 77);
  ChunkId id = repo->IdFor(ChunkType::kData, raw);
  auto writer = repo->NewWriter();
  WriteContext ctx(1);
  auto first = writer->Put(ChunkType::kData, id, raw, ctx);
  auto second = writer->Put(ChunkType::kData, id, raw, ctx);  // still pending
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  EXPECT_TRUE(*first);
  EXPECT_FALSE(*second);
  ASSERT_THAT(writer->Flush(), IsOk());
  auto third = writer->Put(ChunkType::kData, id, raw, ctx);  // now in the index
  ASSERT_THAT(third, IsOk());
  EXPECT_FALSE(*third);
  EXPECT_EQ(writer->new_chunks(), 1u);
  EXPECT_EQ(writer->new_raw_bytes(), 30000u);
  ASSERT_THAT(writer->Flush(), IsOk());

  // A second writer (a later backup) does not store it again either.
  auto writer2 = repo->NewWriter();
  auto fourth = writer2->Put(ChunkType::kData, id, raw, ctx);
  ASSERT_THAT(fourth, IsOk());
  EXPECT_FALSE(*fourth);
  ASSERT_THAT(writer2->Flush(), IsOk());
  EXPECT_EQ(writer2->new_chunks(), 0u);

  // One pack holding one chunk.
  auto packs = PackFiles(repo_dir_);
  ASSERT_THAT(packs, SizeIs(1));
  auto entries = ReadPackHeader(PackPath(repo_dir_, packs[0]), packs[0], repo->data_key());
  ASSERT_THAT(entries, IsOk());
  EXPECT_THAT(*entries, SizeIs(1));
  auto count = repo->index().CountChunks();
  ASSERT_THAT(count, IsOk());
  EXPECT_EQ(*count, 1u);
}

TEST_F(RepositoryTest, FlushWithNothingWrittenCreatesNoPack) {
  auto repo = OpenRepo(true);
  ASSERT_NE(repo, nullptr);
  auto writer = repo->NewWriter();
  ASSERT_THAT(writer->Flush(), IsOk());
  EXPECT_THAT(PackFiles(repo_dir_), IsEmpty());
}

TEST_F(RepositoryTest, PacksAreCutAtPackSize) {
  auto repo = OpenRepo(true);
  ASSERT_NE(repo, nullptr);
  // 40 random 64 KiB chunks = 2.5 MiB with 1 MiB packs: three packs.
  auto chunks = StoreChunks(*repo, 40, 65536);
  auto packs = PackFiles(repo_dir_);
  EXPECT_THAT(packs, SizeIs(3));
  for (const auto& p : packs) {
    EXPECT_TRUE(IsPackName(p)) << p;
    EXPECT_TRUE(PathExists(repo_dir_ + "/packs/" + p.substr(0, 2) + "/" + p));
  }
  EXPECT_TRUE(fs::is_empty(repo_dir_ + "/tmp"));
  ExpectReadable(*repo, chunks);
}

TEST_F(RepositoryTest, UnflushedWriterLeavesNothingBehind) {
  auto repo = OpenRepo(true);
  ASSERT_NE(repo, nullptr);
  Bytes raw = RandomData(1000, 5);
  ChunkId id = repo->IdFor(ChunkType::kData, raw);
  {
    auto writer = repo->NewWriter();
    WriteContext ctx(1);
    ASSERT_THAT(writer->Put(ChunkType::kData, id, raw, ctx), IsOk());
    EXPECT_FALSE(fs::is_empty(repo_dir_ + "/tmp"));
  }
  EXPECT_TRUE(fs::is_empty(repo_dir_ + "/tmp"));
  EXPECT_THAT(PackFiles(repo_dir_), IsEmpty());
  ReadContext rctx;
  Bytes out;
  EXPECT_THAT(repo->ReadChunk(ChunkType::kData, id, out, rctx),
              StatusIs(Code::kDataLoss, HasSubstr("not in the index")));
}

TEST_F(RepositoryTest, ReadChunkErrorsNameThePackAndChunk) {
  std::vector<Stored> chunks;
  {
    auto repo = OpenRepo(true);
    ASSERT_NE(repo, nullptr);
    chunks = StoreChunks(*repo, 4, 5000);
  }
  auto repo = OpenRepo(false);
  ASSERT_NE(repo, nullptr);
  auto packs = PackFiles(repo_dir_);
  ASSERT_THAT(packs, SizeIs(1));
  const std::string pack = packs[0];
  ReadContext ctx;
  Bytes out;

  // Unknown chunk.
  ChunkId unknown = repo->IdFor(ChunkType::kData, AsBytes("never stored"));
  EXPECT_THAT(repo->ReadChunk(ChunkType::kData, unknown, out, ctx),
              StatusIs(Code::kDataLoss, AllOf(HasSubstr(unknown.Hex()),
                                              HasSubstr("not in the index"))));
  // Wrong type.
  ASSERT_EQ(chunks[0].type, ChunkType::kData);
  EXPECT_THAT(repo->ReadChunk(ChunkType::kTree, chunks[0].id, out, ctx),
              StatusIs(Code::kDataLoss, AllOf(HasSubstr("pack " + pack),
                                              HasSubstr(chunks[0].id.Hex()),
                                              HasSubstr("another type"))));
  // A flipped byte inside the first blob.
  auto entries = ReadPackHeader(PackPath(repo_dir_, pack), pack, repo->data_key());
  ASSERT_THAT(entries, IsOk());
  const PackEntry* first = nullptr;
  for (const auto& e : *entries)
    if (e.id == chunks[0].id) first = &e;
  ASSERT_NE(first, nullptr);
  FlipByte(PackPath(repo_dir_, pack), first->offset + first->stored_len / 2);
  EXPECT_THAT(repo->ReadChunk(ChunkType::kData, chunks[0].id, out, ctx),
              StatusIs(Code::kDataLoss, AllOf(HasSubstr("pack " + pack),
                                              HasSubstr("chunk " + chunks[0].id.Hex()),
                                              HasSubstr("authentication failed"))));
  // The other chunks of that pack are unaffected.
  ExpectReadable(*repo, {chunks[1], chunks[2], chunks[3]});
}

TEST_F(RepositoryTest, MissingOrTruncatedPackIsDataLoss) {
  std::vector<Stored> chunks;
  {
    auto repo = OpenRepo(true);
    ASSERT_NE(repo, nullptr);
    chunks = StoreChunks(*repo, 3, 5000);
  }
  auto packs = PackFiles(repo_dir_);
  ASSERT_THAT(packs, SizeIs(1));
  const std::string path = PackPath(repo_dir_, packs[0]);
  {
    auto repo = OpenRepo(false);
    ASSERT_NE(repo, nullptr);
    ASSERT_EQ(::truncate(path.c_str(), 100), 0);
    ReadContext ctx;
    Bytes out;
    // The last chunk lies beyond the new end of the file.
    EXPECT_THAT(repo->ReadChunk(chunks[2].type, chunks[2].id, out, ctx),
                StatusIs(Code::kDataLoss, AllOf(HasSubstr("pack " + packs[0]),
                                                HasSubstr("shorter than expected"))));
  }
  ASSERT_EQ(::unlink(path.c_str()), 0);
  auto repo = OpenRepo(false);
  ASSERT_NE(repo, nullptr);
  ReadContext ctx;
  Bytes out;
  EXPECT_THAT(repo->ReadChunk(chunks[0].type, chunks[0].id, out, ctx),
              StatusIs(Code::kDataLoss, AllOf(HasSubstr("pack " + packs[0]),
                                              HasSubstr("missing"))));
}

TEST_F(RepositoryTest, DataAndTreeIdsDiffer) {
  auto repo = OpenRepo(false);
  ASSERT_NE(repo, nullptr);
  Bytes raw = RandomData(100, 1);
  EXPECT_NE(repo->IdFor(ChunkType::kData, raw), repo->IdFor(ChunkType::kTree, raw));
  EXPECT_EQ(repo->IdFor(ChunkType::kData, raw), repo->IdFor(ChunkType::kData, raw));
  // Ids are keyed: another repository gives other ids for the same bytes.
  std::string other = tmp_.Sub("other");
  ASSERT_THAT(Repository::Init(other, kPass, FastInitOptions()), IsOk());
  auto repo2 = Repository::Open(other, kPass, ReadOptions());
  ASSERT_THAT(repo2, IsOk());
  EXPECT_NE((*repo2)->IdFor(ChunkType::kData, raw), repo->IdFor(ChunkType::kData, raw));
}

}  // namespace
}  // namespace haven::repository
