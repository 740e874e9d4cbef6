// End-to-end tests of agent::BackupImage and restore::RestoreImage on real
// image files, a real repository and a real RocksDB index.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "agent/image_backup.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/repository.h"
#include "restore/image_restore.h"
#include "tests/unit/image_test_util.h"
#include "tests/unit/test_util.h"

namespace haven {
namespace {

using ::haven::testing_util::FileSize;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::WriteWholeFile;
using repository::Manifest;

using ::haven::testing_util::AllocatedBytes;
using ::haven::testing_util::DistinctDataChunks;
using ::haven::testing_util::ImageBuilder;
using ::haven::testing_util::ImageRoundTripTest;
using ::haven::testing_util::kMiB;
using ::haven::testing_util::Text;

TEST_F(ImageRoundTripTest, DataZerosHolesAndUnalignedSize) {
  InitRepo();
  const uint64_t size = 10 * kMiB + 12345;
  const std::string image = tmp_.Sub("disk.raw");
  ImageBuilder b(image, size);
  b.Write(0, RandomData(kMiB, 1));                                 // chunks 0-15
  b.Write(2 * kMiB, Bytes(kMiB, 0));                               // written zeros
  b.Write(5 * kMiB + 100, RandomData(70000, 2));                   // unaligned
  b.Write(8 * kMiB, Text(kMiB));                                   // compressible
  b.Write(size - 20000, RandomData(20000, 3));                     // the ragged tail
  b.Close();

  Manifest m;
  std::string target;
  ASSERT_NO_FATAL_FAILURE(RoundTrip(image, b.content(), &m, &target));
  EXPECT_EQ(m.disks[0].tree.count, 161u);
  // Chunks with data: 16 + 2 + 16 + 2 (the tail spans two chunks).
  const uint64_t data_chunks = 36;
  EXPECT_EQ(m.stats.hole_bytes, size - (data_chunks - 1) * 65536 - 12345);
  // New chunks: the distinct non-zero data chunks (the repeating text
  // dedups to a few) plus the single chunk-list node.
  EXPECT_EQ(m.stats.new_chunks, DistinctDataChunks(*repo_, b.content()) + 1);
  // The compressible megabyte shrinks: far less stored than raw.
  EXPECT_LT(m.stats.new_stored_bytes, m.stats.new_raw_bytes);

  // The written-zero megabyte became a hole in the output too: the first
  // data after chunk 15 is chunk 80 (5 MiB).
  if (AllocatedBytes(image) < size / 2) {
    int fd = ::open(target.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    EXPECT_EQ(::lseek(fd, static_cast<off_t>(kMiB), SEEK_DATA),
              static_cast<off_t>(5 * kMiB));
    ::close(fd);
    EXPECT_LE(AllocatedBytes(target), data_chunks * 65536 + 256 * 1024);
  }
}

TEST_F(ImageRoundTripTest, MostlyHoleImageStaysSparse) {
  InitRepo();
  const uint64_t size = 64 * kMiB;
  const std::string image = tmp_.Sub("sparse.raw");
  ImageBuilder b(image, size);
  b.Write(3 * kMiB + 5, RandomData(4000, 1));
  b.Write(60 * kMiB, Text(65536));
  b.Close();
  if (AllocatedBytes(image) > 4 * kMiB)
    GTEST_SKIP() << "the file system under " << tmp_.path() << " does not keep holes";

  Manifest m;
  std::string target;
  ASSERT_NO_FATAL_FAILURE(RoundTrip(image, b.content(), &m, &target));
  // Unallocated ranges are never read: only the neighbourhood of the two
  // chunks holding data (the reader works in batches of about 1 MiB), far
  // from the 64 MiB a full read would take.
  EXPECT_GE(m.stats.read_bytes, 2 * 65536u);
  EXPECT_LE(m.stats.read_bytes, size / 8);
  EXPECT_EQ(m.stats.hole_bytes, size - 2 * 65536);
  EXPECT_EQ(m.stats.new_chunks, 3u) << "two data chunks and one tree node";
  EXPECT_EQ(m.disks[0].tree.height, 1);
  // The restored file is sparse.
  EXPECT_EQ(FileSize(target), size);
  EXPECT_LT(AllocatedBytes(target), kMiB);
}

TEST_F(ImageRoundTripTest, AllHoleImage) {
  InitRepo();
  const uint64_t size = 32 * kMiB + 1;
  const std::string image = tmp_.Sub("empty-disk.raw");
  ImageBuilder b(image, size);
  b.Close();
  Manifest m;
  std::string target;
  ASSERT_NO_FATAL_FAILURE(RoundTrip(image, b.content(), &m, &target));
  EXPECT_EQ(m.stats.new_chunks, 0u);
  EXPECT_EQ(m.stats.hole_bytes, size);
  EXPECT_TRUE(m.disks[0].tree.root.IsZero());
  EXPECT_LT(AllocatedBytes(target), 64 * 1024u);
}

TEST_F(ImageRoundTripTest, EmptyImage) {
  InitRepo();
  const std::string image = tmp_.Sub("zero-bytes.raw");
  WriteWholeFile(image, {});
  Manifest m;
  std::string target;
  ASSERT_NO_FATAL_FAILURE(RoundTrip(image, {}, &m, &target));
  EXPECT_EQ(m.disks[0].size, 0u);
  EXPECT_EQ(m.disks[0].tree.count, 0u);
  EXPECT_EQ(m.stats.new_chunks, 0u);
  EXPECT_EQ(FileSize(target), 0u);
}

TEST_F(ImageRoundTripTest, ImagesSmallerThanOneChunk) {
  InitRepo();
  for (size_t n : {1u, 1000u, 65535u}) {
    SCOPED_TRACE("size " + std::to_string(n));
    const std::string image = tmp_.Sub("small-" + std::to_string(n) + ".raw");
    Bytes data = RandomData(n, static_cast<uint32_t>(n));
    WriteWholeFile(image, data);
    Manifest m;
    ASSERT_NO_FATAL_FAILURE(RoundTrip(image, data, &m, nullptr));
    EXPECT_EQ(m.disks[0].tree.count, 1u);
    EXPECT_EQ(m.disks[0].tree.height, 1);
    EXPECT_EQ(m.stats.read_bytes, n);
  }
}

TEST_F(ImageRoundTripTest, ChunkAlignedSizes) {
  InitRepo();
  for (size_t n : {65536u, 131072u, 65537u}) {
    SCOPED_TRACE("size " + std::to_string(n));
    const std::string image = tmp_.Sub("aligned-" + std::to_string(n) + ".raw");
    Bytes data = RandomData(n, static_cast<uint32_t>(n));
    WriteWholeFile(image, data);
    ASSERT_NO_FATAL_FAILURE(RoundTrip(image, data, nullptr, nullptr));
  }
}

TEST_F(ImageRoundTripTest, TwoLevelChunkListWithSmallChunks) {
  // 4 KiB chunks: 2100 chunks need a height-2 chunk-list tree.
  InitRepo(4096);
  const uint64_t size = 2100 * 4096 + 7;
  const std::string image = tmp_.Sub("tall.raw");
  ImageBuilder b(image, size);
  b.Write(0, RandomData(100 * 4096, 1));
  b.Write(1500 * 4096 - 10, RandomData(8192, 2));  // straddles a leaf boundary
  b.Write(size - 5000, RandomData(5000, 3));
  b.Close();
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(RoundTrip(image, b.content(), &m, nullptr));
  EXPECT_EQ(m.disks[0].tree.count, 2101u);
  EXPECT_EQ(m.disks[0].tree.height, 2);
}

TEST_F(ImageRoundTripTest, DuplicateChunksAreStoredOnce) {
  InitRepo();
  const std::string image = tmp_.Sub("dups.raw");
  Bytes block = RandomData(65536, 9);
  Bytes data;
  for (int i = 0; i < 20; ++i) data.insert(data.end(), block.begin(), block.end());
  WriteWholeFile(image, data);
  Manifest m;
  ASSERT_NO_FATAL_FAILURE(RoundTrip(image, data, &m, nullptr));
  EXPECT_EQ(m.stats.new_chunks, 2u) << "one data chunk and one tree node";
  EXPECT_EQ(m.stats.new_raw_bytes, 65536u + 20 * 32);
}

TEST_F(ImageRoundTripTest, IncrementalBackupStoresOnlyChangedChunks) {
  InitRepo();
  const std::string image = tmp_.Sub("vm.raw");
  Bytes v1 = RandomData(4 * kMiB, 1);
  WriteWholeFile(image, v1);
  auto first = Backup(image, "vm");
  ASSERT_THAT(first, IsOk());
  EXPECT_EQ(first->parent, "");
  EXPECT_EQ(first->stats.new_chunks, 64u + 1);

  Bytes v2 = v1;
  for (size_t i = 0; i < 100; ++i) v2[3 * kMiB + 777 + i] ^= 0xff;  // one chunk
  WriteWholeFile(image, v2);
  auto second = Backup(image, "vm");
  ASSERT_THAT(second, IsOk());
  EXPECT_EQ(second->parent, first->id);
  EXPECT_EQ(second->stats.new_chunks, 2u) << "the changed chunk and the tree node";

  // Each point restores to its own content.
  std::string t1 = tmp_.Sub("v1.raw"), t2 = tmp_.Sub("v2.raw");
  ASSERT_THAT(Restore(*first, t1), IsOk());
  ASSERT_THAT(Restore(*second, t2), IsOk());
  EXPECT_TRUE(ReadWholeFile(t1) == v1);
  EXPECT_TRUE(ReadWholeFile(t2) == v2);
}

}  // namespace
}  // namespace haven
