// Restores from damaged repositories: a flipped byte in a pack, a missing
// pack, a damaged chunk-list node. The restore must fail with DataLoss naming
// the pack and the image offsets, and leave no target behind.
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/pack_file.h"
#include "tests/unit/image_test_util.h"
#include "tests/unit/test_util.h"

namespace haven {
namespace {

using ::haven::testing_util::FileSize;
using ::haven::testing_util::FlipByte;
using ::haven::testing_util::ImageRoundTripTest;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::kMiB;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::WriteWholeFile;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using repository::ChunkId;
using repository::ChunkType;
using repository::Manifest;

class DamagedRestoreTest : public ImageRoundTripTest {
 protected:
  // Backs up a 2 MiB image of distinct random chunks.
  void SetUpBackup() {
    InitRepo();
    image_ = tmp_.Sub("victim.raw");
    data_ = RandomData(2 * kMiB + 999, 77);
    WriteWholeFile(image_, data_);
    auto m = Backup(image_);
    ASSERT_THAT(m, IsOk());
    manifest_ = *m;
  }

  // The pack and entry holding data chunk `index` of the image.
  void Locate(uint64_t index, std::string* pack, repository::PackEntry* entry) {
    const uint64_t cs = repo_->config().chunk_size;
    const uint64_t off = index * cs;
    const uint64_t len = std::min<uint64_t>(cs, data_.size() - off);
    ChunkId id = repo_->IdFor(ChunkType::kData, ByteSpan(data_.data() + off, len));
    auto loc = repo_->index().Get(id);
    ASSERT_THAT(loc, IsOk());
    ASSERT_TRUE(loc->has_value()) << "chunk " << index << " not indexed";
    *pack = (*loc)->pack;
    auto entries = repository::ReadPackHeader(repository::PackPath(repo_dir_, *pack), *pack,
                                              repo_->data_key());
    ASSERT_THAT(entries, IsOk());
    for (const auto& e : *entries)
      if (e.id == id) *entry = e;
    ASSERT_EQ(entry->id, id);
  }

  std::string image_;
  Bytes data_;
  Manifest manifest_;
};

TEST_F(DamagedRestoreTest, FlippedByteInAPackFailsNamingPackAndOffsets) {
  ASSERT_NO_FATAL_FAILURE(SetUpBackup());
  const uint64_t index = 17;
  std::string pack;
  repository::PackEntry entry;
  ASSERT_NO_FATAL_FAILURE(Locate(index, &pack, &entry));
  ASSERT_THAT(pack, MatchesRegex("[0-9a-f]{32}"));
  FlipByte(repository::PackPath(repo_dir_, pack), entry.offset + entry.stored_len / 2);

  const std::string target = tmp_.Sub("restored.raw");
  auto r = Restore(manifest_, target);
  const uint64_t begin = index * 65536, end = begin + 65536 - 1;
  EXPECT_THAT(r, StatusIs(Code::kDataLoss,
                          AllOf(HasSubstr("1 chunk(s)"), HasSubstr(pack),
                                HasSubstr("image offsets " + std::to_string(begin) + "-" +
                                          std::to_string(end)),
                                HasSubstr("authentication failed"))));
  EXPECT_FALSE(PathExists(target));
  EXPECT_FALSE(PathExists(target + ".haven-partial"));
}

TEST_F(DamagedRestoreTest, EveryDamagedRangeIsReported) {
  ASSERT_NO_FATAL_FAILURE(SetUpBackup());
  // Damage chunk 3 and the last, partial chunk 32 (2 MiB + 999 bytes).
  std::vector<std::string> packs;
  for (uint64_t index : {3ull, 32ull}) {
    std::string pack;
    repository::PackEntry entry;
    ASSERT_NO_FATAL_FAILURE(Locate(index, &pack, &entry));
    FlipByte(repository::PackPath(repo_dir_, pack), entry.offset + 20);
    packs.push_back(pack);
  }
  const std::string target = tmp_.Sub("restored.raw");
  auto r = Restore(manifest_, target);
  const uint64_t last_begin = 32 * 65536;
  EXPECT_THAT(r, StatusIs(Code::kDataLoss,
                          AllOf(HasSubstr("2 chunk(s)"), HasSubstr(packs[0]),
                                HasSubstr("image offsets 196608-262143"),
                                HasSubstr("image offsets " + std::to_string(last_begin) + "-" +
                                          std::to_string(data_.size() - 1)))));
  EXPECT_FALSE(PathExists(target));
  EXPECT_FALSE(PathExists(target + ".haven-partial"));
}

TEST_F(DamagedRestoreTest, DamageDoesNotTouchAnExistingTarget) {
  ASSERT_NO_FATAL_FAILURE(SetUpBackup());
  std::string pack;
  repository::PackEntry entry;
  ASSERT_NO_FATAL_FAILURE(Locate(0, &pack, &entry));
  FlipByte(repository::PackPath(repo_dir_, pack), entry.offset + 1);
  const std::string target = tmp_.Sub("keep.raw");
  WriteWholeFile(target, AsBytes("old contents"));
  EXPECT_THAT(Restore(manifest_, target, nullptr, /*overwrite=*/true),
              StatusIs(Code::kDataLoss, HasSubstr("image offsets 0-65535")));
  EXPECT_EQ(FileSize(target), 12u);
  EXPECT_FALSE(PathExists(target + ".haven-partial"));
}

TEST_F(DamagedRestoreTest, MissingPackFailsNamingIt) {
  ASSERT_NO_FATAL_FAILURE(SetUpBackup());
  std::string pack;
  repository::PackEntry entry;
  ASSERT_NO_FATAL_FAILURE(Locate(5, &pack, &entry));
  ASSERT_EQ(::unlink(repository::PackPath(repo_dir_, pack).c_str()), 0);
  const std::string target = tmp_.Sub("restored.raw");
  EXPECT_THAT(Restore(manifest_, target),
              StatusIs(Code::kDataLoss, AllOf(HasSubstr("pack " + pack + " is missing"),
                                              HasSubstr("image offsets 327680-393215"))));
  EXPECT_FALSE(PathExists(target));
  EXPECT_FALSE(PathExists(target + ".haven-partial"));
}

TEST_F(DamagedRestoreTest, DamagedChunkListFailsTheRestore) {
  ASSERT_NO_FATAL_FAILURE(SetUpBackup());
  const ChunkId root = manifest_.disks[0].tree.root;
  auto loc = repo_->index().Get(root);
  ASSERT_THAT(loc, IsOk());
  ASSERT_TRUE(loc->has_value());
  FlipByte(repository::PackPath(repo_dir_, (*loc)->pack), (*loc)->offset + 30);
  const std::string target = tmp_.Sub("restored.raw");
  EXPECT_THAT(Restore(manifest_, target),
              StatusIs(Code::kDataLoss, AllOf(HasSubstr("chunk list of disk disk0"),
                                              HasSubstr((*loc)->pack), HasSubstr(root.Hex()))));
  EXPECT_FALSE(PathExists(target));
  EXPECT_FALSE(PathExists(target + ".haven-partial"));
}

}  // namespace
}  // namespace haven
