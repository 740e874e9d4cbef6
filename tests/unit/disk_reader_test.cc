// Tests for restore/disk_reader.h: random access to a disk of a recovery
// point in a real repository. An image with data, holes, a repeated chunk
// and a partial last chunk is backed up; reads at any offset and length
// give its bytes, only the chunks a read touches are fetched, the LRU cache
// serves repeats and evicts the least recently used chunk, a damaged chunk
// fails only the reads that need it, and reads of repaired ("lost") ranges
// are counted.
#include "restore/disk_reader.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/pack_file.h"
#include "tests/unit/image_test_util.h"
#include "tests/unit/test_util.h"

namespace haven::restore {
namespace {

using ::haven::testing_util::ImageBuilder;
using ::haven::testing_util::ImageRoundTripTest;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::Text;
using ::testing::AllOf;
using ::testing::HasSubstr;
using repository::ChunkId;
using repository::ChunkType;
using repository::DiskManifest;
using repository::Manifest;
using repository::Repository;

constexpr uint64_t kCs = repository::kDefaultChunkSize;  // 64 KiB
constexpr uint64_t kChunks = 41;                          // 40 full + 1 partial
constexpr uint64_t kTail = 1234;                          // bytes in the last chunk
constexpr uint64_t kSize = (kChunks - 1) * kCs + kTail;

// Chunk layout of the image:
//   0-2 random | 3-9 hole | 10 random | 11 half data, half zeros |
//   12-19 hole | 20 text | 21 = chunk 0 again | 22-39 hole | 40 partial (1234 B)
class DiskReaderTest : public ImageRoundTripTest {
 protected:
  void SetUp() override {
    ImageRoundTripTest::SetUp();
    ASSERT_NO_FATAL_FAILURE(InitRepo());
    image_ = tmp_.Sub("disk.raw");
    {
      ImageBuilder b(image_, kSize);
      b.Write(0, RandomData(3 * kCs, 1));
      b.Write(10 * kCs, RandomData(kCs, 2));
      b.Write(11 * kCs, RandomData(kCs / 2, 3));
      b.Write(20 * kCs, Text(kCs));
      content_ = b.content();
      b.Write(21 * kCs, Bytes(content_.begin(), content_.begin() + kCs));
      b.Write(40 * kCs, RandomData(kTail, 4));
      b.Close();
      content_ = b.content();
    }
    auto m = Backup(image_);
    ASSERT_THAT(m, IsOk());
    auto reader = Repository::Open(repo_dir_, testing_util::kImagePass,
                                   testing_util::ReadOptions());
    ASSERT_THAT(reader, IsOk());
    ro_ = std::move(reader).value();
    auto loaded = ro_->LoadSnapshot(m->id);
    ASSERT_THAT(loaded, IsOk());
    manifest_ = *loaded;
    ASSERT_EQ(manifest_.disks.size(), 1u);
    disk_ = manifest_.disks[0];
    ASSERT_EQ(disk_.size, kSize);
    ASSERT_EQ(disk_.chunk_size, kCs);
    ASSERT_EQ(disk_.tree.count, kChunks);
  }

  // Reads [off, off+len) through `r` and checks it against the image.
  void ExpectRead(DiskReader& r, uint64_t off, size_t len) {
    Bytes buf(len + 16, 0xee);
    auto n = r.Read(off, buf.data(), len);
    ASSERT_THAT(n, IsOk()) << "offset " << off << " length " << len;
    const size_t want = off >= kSize ? 0 : static_cast<size_t>(std::min<uint64_t>(len, kSize - off));
    ASSERT_EQ(*n, want) << "offset " << off << " length " << len;
    EXPECT_EQ(std::memcmp(buf.data(), content_.data() + std::min(off, kSize), want), 0)
        << "offset " << off << " length " << len;
    for (size_t i = want; i < buf.size(); ++i)
      ASSERT_EQ(buf[i], 0xee) << "wrote past the bytes read at " << i;
  }

  // The pack and entry of the data chunk at image offset `index * kCs`.
  void Locate(uint64_t index, std::string* pack, repository::PackEntry* entry) {
    const uint64_t off = index * kCs;
    const uint64_t len = std::min<uint64_t>(kCs, kSize - off);
    ChunkId id = repo_->IdFor(ChunkType::kData, ByteSpan(content_.data() + off, len));
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
  Bytes content_;
  std::unique_ptr<Repository> ro_;
  Manifest manifest_;
  DiskManifest disk_;
};

TEST_F(DiskReaderTest, RandomReadsGiveTheImageBytes) {
  for (size_t cache : {size_t{256}, size_t{3}, size_t{1}}) {
    SCOPED_TRACE("cache " + std::to_string(cache));
    DiskReader r(*ro_, disk_, cache);
    EXPECT_EQ(r.size(), kSize);
    EXPECT_EQ(r.stats().disk_chunks, kChunks);
    std::mt19937_64 rng(42 + cache);
    uint64_t expected_bytes = 0;
    for (int i = 0; i < 400; ++i) {
      const uint64_t off = rng() % (kSize + 1000);
      const size_t len = static_cast<size_t>(rng() % (3 * kCs + 7));
      ASSERT_NO_FATAL_FAILURE(ExpectRead(r, off, len));
      if (off < kSize) expected_bytes += std::min<uint64_t>(len, kSize - off);
    }
    // Edges: chunk boundaries, the partial last chunk, the end, past it.
    const std::vector<std::pair<uint64_t, size_t>> edges = {
        {0, 1},           {0, kCs},         {kCs - 10, 20},      {kCs - 1, 2},
        {2 * kCs, kCs},   {3 * kCs - 5, 10}, {9 * kCs + 1, kCs},  {11 * kCs + kCs / 2 - 3, 6},
        {39 * kCs, kCs + kTail}, {40 * kCs - 1, 2}, {kSize - 100, 1000}, {kSize - 1, 1},
        {kSize, 10},      {kSize + 5, 10},  {0, 0},              {0, kSize},
        {1, kSize + 100}};
    for (const auto& [off, len] : edges) {
      ASSERT_NO_FATAL_FAILURE(ExpectRead(r, off, len));
      if (off < kSize) expected_bytes += std::min<uint64_t>(len, kSize - off);
    }
    EXPECT_EQ(r.stats().bytes_read, expected_bytes);
    EXPECT_EQ(r.stats().lost_reads, 0u);
  }
}

TEST_F(DiskReaderTest, OneReadFetchesOnlyTheChunksItTouches) {
  DiskReader r(*ro_, disk_);
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, 2 * kCs + 100, 4096));
  DiskReadStats s = r.stats();
  EXPECT_EQ(s.chunks_fetched, 1u);
  EXPECT_EQ(s.cache_hits, 0u);
  EXPECT_EQ(s.nodes_fetched, 1u);  // one leaf holds all 41 ids
  EXPECT_EQ(s.bytes_read, 4096u);

  // The same range again: served from the cache.
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, 2 * kCs + 100, 4096));
  s = r.stats();
  EXPECT_EQ(s.chunks_fetched, 1u);
  EXPECT_EQ(s.cache_hits, 1u);
  EXPECT_EQ(s.nodes_fetched, 1u);

  // Across the boundary of chunks 0 and 1: two more fetches.
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, kCs - 10, 20));
  s = r.stats();
  EXPECT_EQ(s.chunks_fetched, 3u);
  EXPECT_EQ(s.cache_hits, 1u);
  EXPECT_EQ(s.nodes_fetched, 1u);

  // Chunk 21 holds the bytes of chunk 0 but is its own slot: fetched once.
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, 21 * kCs, 100));
  EXPECT_EQ(r.stats().chunks_fetched, 4u);

  // The partial last chunk.
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, kSize - 10, 10));
  EXPECT_EQ(r.stats().chunks_fetched, 5u);
  EXPECT_EQ(r.stats().bytes_read, 4096u * 2 + 20 + 100 + 10);
}

TEST_F(DiskReaderTest, HolesReadAsZerosWithoutFetching) {
  DiskReader r(*ro_, disk_);
  Bytes buf(3 * kCs, 0xaa);
  auto n = r.Read(4 * kCs + 7, buf.data(), buf.size());  // inside chunks 4-7: all hole
  ASSERT_THAT(n, IsOk());
  EXPECT_EQ(*n, buf.size());
  EXPECT_TRUE(IsAllZero(buf.data(), buf.size()));
  DiskReadStats s = r.stats();
  EXPECT_EQ(s.chunks_fetched, 0u);
  EXPECT_EQ(s.cache_hits, 0u);
  EXPECT_EQ(s.nodes_fetched, 1u);
  // A hole from chunk 22 to 39 and past it: only the last chunk is data.
  Bytes tail(kSize - 22 * kCs, 0xaa);
  n = r.Read(22 * kCs, tail.data(), tail.size() + 50);
  ASSERT_THAT(n, IsOk());
  EXPECT_EQ(*n, tail.size());
  EXPECT_TRUE(std::equal(tail.begin(), tail.end(), content_.begin() + 22 * kCs));
  EXPECT_EQ(r.stats().chunks_fetched, 1u);
  // Reading the hole again still fetches nothing.
  n = r.Read(5 * kCs, buf.data(), kCs);
  ASSERT_THAT(n, IsOk());
  EXPECT_EQ(r.stats().chunks_fetched, 1u);
  EXPECT_EQ(r.stats().nodes_fetched, 1u);
}

TEST_F(DiskReaderTest, LeastRecentlyUsedChunkIsEvicted) {
  DiskReader r(*ro_, disk_, /*cache_chunks=*/2);
  auto read = [&](uint64_t index) { ExpectRead(r, index * kCs + 5, 10); };
  auto fetched = [&] { return r.stats().chunks_fetched; };
  auto hits = [&] { return r.stats().cache_hits; };
  read(0);  // [0]
  read(1);  // [1 0]
  read(2);  // [2 1], 0 evicted
  EXPECT_EQ(fetched(), 3u);
  EXPECT_EQ(hits(), 0u);
  read(1);  // hit: [1 2]
  EXPECT_EQ(fetched(), 3u);
  EXPECT_EQ(hits(), 1u);
  read(0);  // miss: [0 1], 2 evicted (least recently used)
  EXPECT_EQ(fetched(), 4u);
  read(1);  // hit: [1 0]
  EXPECT_EQ(hits(), 2u);
  EXPECT_EQ(fetched(), 4u);
  read(2);  // miss: [2 1], 0 evicted
  EXPECT_EQ(fetched(), 5u);
  read(0);  // miss
  EXPECT_EQ(fetched(), 6u);
  EXPECT_EQ(hits(), 2u);

  // A cache of 0 still keeps one chunk (reads within one chunk hit it).
  DiskReader one(*ro_, disk_, 0);
  ExpectRead(one, 10, 10);
  ExpectRead(one, 20, 10);
  EXPECT_EQ(one.stats().chunks_fetched, 1u);
  EXPECT_EQ(one.stats().cache_hits, 1u);
  ExpectRead(one, kCs + 20, 10);
  ExpectRead(one, 30, 10);
  EXPECT_EQ(one.stats().chunks_fetched, 3u);
}

TEST_F(DiskReaderTest, DamagedChunkFailsOnlyTheReadsThatNeedIt) {
  std::string pack;
  repository::PackEntry entry;
  ASSERT_NO_FATAL_FAILURE(Locate(10, &pack, &entry));
  testing_util::FlipByte(repository::PackPath(repo_dir_, pack),
                         entry.offset + entry.stored_len / 2);

  DiskReader r(*ro_, disk_);
  Bytes buf(2 * kCs);
  const std::string where = "reading disk disk0 at byte " + std::to_string(10 * kCs);
  EXPECT_THAT(r.Read(10 * kCs + 5, buf.data(), 100), StatusIs(Code::kDataLoss, HasSubstr(where)));
  // A read that starts in the hole before it and runs into it fails too.
  EXPECT_THAT(r.Read(9 * kCs, buf.data(), kCs + 1), StatusIs(Code::kDataLoss, HasSubstr(where)));
  // Other chunks still read, before and after the damaged one.
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, 2 * kCs, kCs));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, 11 * kCs, kCs));
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, 9 * kCs, kCs));  // the hole right before
  // The damage is not cached as data: it fails again.
  EXPECT_THAT(r.Read(10 * kCs + kCs - 1, buf.data(), 1),
              StatusIs(Code::kDataLoss, HasSubstr(where)));
  DiskReadStats s = r.stats();
  EXPECT_EQ(s.chunks_fetched, 2u);  // chunks 2 and 11; failures are not fetches
  EXPECT_EQ(s.bytes_read, 2 * kCs + kCs);
}

TEST_F(DiskReaderTest, ReadsOfLostRangesAreCounted) {
  DiskManifest repaired = disk_;
  repaired.lost = {{3 * kCs, 2 * kCs}, {kSize - 100, 100}};
  DiskReader r(*ro_, repaired);
  auto lost = [&] { return r.stats().lost_reads; };
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, 3 * kCs - 10, 10));  // ends where it starts
  EXPECT_EQ(lost(), 0u);
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, 3 * kCs - 10, 11));  // one byte into it
  EXPECT_EQ(lost(), 1u);
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, 4 * kCs + 5, 10));   // inside
  EXPECT_EQ(lost(), 2u);
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, 5 * kCs, 10));       // just after
  EXPECT_EQ(lost(), 2u);
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, 5 * kCs - 1, 1));    // its last byte
  EXPECT_EQ(lost(), 3u);
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, 0, kSize));          // both ranges: one read
  EXPECT_EQ(lost(), 4u);
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, kSize - 1, 1));
  EXPECT_EQ(lost(), 5u);
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, kSize, 10));         // past the end: nothing read
  EXPECT_EQ(lost(), 5u);
  ASSERT_NO_FATAL_FAILURE(ExpectRead(r, 20 * kCs, kCs));
  EXPECT_EQ(lost(), 5u);
}

TEST_F(DiskReaderTest, DiskWithoutChunkSizeIsDataLoss) {
  DiskManifest broken = disk_;
  broken.chunk_size = 0;
  DiskReader r(*ro_, broken);
  uint8_t b[16];
  EXPECT_THAT(r.Read(0, b, sizeof b),
              StatusIs(Code::kDataLoss, AllOf(HasSubstr("disk0"), HasSubstr("no chunk size"))));
}

TEST_F(DiskReaderTest, ChunkListShorterThanTheDiskReadsAsHoles) {
  // A manifest claiming more bytes than its chunk list covers: the slots
  // past the list read as zeros (never past the list's nodes).
  DiskManifest longer = disk_;
  longer.size = kSize + 3 * kCs;
  DiskReader r(*ro_, longer);
  Bytes buf(2 * kCs, 0xaa);
  auto n = r.Read(kChunks * kCs + 10, buf.data(), buf.size());
  ASSERT_THAT(n, IsOk());
  EXPECT_EQ(*n, buf.size());
  EXPECT_TRUE(IsAllZero(buf.data(), buf.size()));
  EXPECT_EQ(r.stats().chunks_fetched, 0u);
}

}  // namespace
}  // namespace haven::restore
