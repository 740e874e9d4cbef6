// Tests for agent/fastcdc.h: content-defined cut points.
#include "agent/fastcdc.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace haven::agent {
namespace {

std::vector<uint8_t> RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// Cuts a whole buffer, feeding NextCut at most `window` bytes at a time as
// a streaming caller would.
std::vector<size_t> Chunk(const FastCdc& cdc, const std::vector<uint8_t>& data,
                          size_t window = SIZE_MAX) {
  std::vector<size_t> sizes;
  size_t pos = 0;
  while (pos < data.size()) {
    size_t avail = std::min(window, data.size() - pos);
    bool last = pos + avail == data.size();
    size_t n = cdc.NextCut(data.data() + pos, avail, last);
    EXPECT_GT(n, 0u) << "window " << window << " at " << pos;
    if (n == 0) break;
    sizes.push_back(n);
    pos += n;
  }
  return sizes;
}

// The content of each chunk, to compare two chunkings.
std::multiset<std::string> Contents(const std::vector<uint8_t>& data,
                                    const std::vector<size_t>& sizes) {
  std::multiset<std::string> out;
  size_t pos = 0;
  for (size_t n : sizes) {
    out.emplace(reinterpret_cast<const char*>(data.data() + pos), n);
    pos += n;
  }
  return out;
}

FastCdc Make(uint32_t min, uint32_t avg, uint32_t max) {
  auto c = FastCdc::Create({min, avg, max});
  EXPECT_TRUE(c.ok()) << c.status().message();
  return *c;
}

TEST(FastCdcTest, SizesStayWithinBoundsAndAverageNearTarget) {
  const FastCdc cdc = Make(16 << 10, 64 << 10, 256 << 10);
  const auto data = RandomBytes(32 << 20, 1);
  const auto sizes = Chunk(cdc, data);
  size_t total = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    total += sizes[i];
    EXPECT_LE(sizes[i], 256u << 10);
    if (i + 1 < sizes.size()) {
      EXPECT_GT(sizes[i], 16u << 10) << i;
    }
  }
  EXPECT_EQ(total, data.size());
  const double mean = static_cast<double>(total) / sizes.size();
  // Normalized chunking centres sizes near avg (min + about avg here).
  EXPECT_GT(mean, 48.0 * 1024) << sizes.size() << " chunks";
  EXPECT_LT(mean, 112.0 * 1024) << sizes.size() << " chunks";
}

TEST(FastCdcTest, CutsDependOnContentOnlyNotOnHowItIsFed) {
  const FastCdc cdc = Make(2048, 8192, 65536);
  const auto data = RandomBytes(4 << 20, 2);
  const auto whole = Chunk(cdc, data);
  EXPECT_EQ(Chunk(cdc, data, 65536), whole);
  EXPECT_EQ(Chunk(cdc, data, 100000), whole);
  EXPECT_EQ(Chunk(Make(2048, 8192, 65536), data), whole);  // no hidden state
}

TEST(FastCdcTest, AnInsertionChangesOnlyTheChunksAroundIt) {
  const FastCdc cdc = Make(2048, 8192, 65536);
  auto data = RandomBytes(8 << 20, 3);
  const auto before = Contents(data, Chunk(cdc, data));
  const auto extra = RandomBytes(100, 4);
  data.insert(data.begin() + (3 << 20) + 12345, extra.begin(), extra.end());
  const auto after_sizes = Chunk(cdc, data);
  const auto after = Contents(data, after_sizes);
  size_t shared = 0;
  for (const auto& c : after) shared += before.count(c) ? 1 : 0;
  // Only the chunk holding the insertion (and at most its neighbour) is new.
  EXPECT_GE(shared + 2, after.size());
  EXPECT_GT(after.size(), 500u);
}

TEST(FastCdcTest, FixedSizeChunksWouldAllShiftButTheseDoNot) {
  // The same insertion with fixed 8 KiB chunks: almost nothing is shared.
  auto data = RandomBytes(2 << 20, 5);
  auto fixed = [](const std::vector<uint8_t>& d) {
    return Contents(d, std::vector<size_t>(d.size() / 8192, 8192));
  };
  const auto before = fixed(data);
  data.insert(data.begin() + 4096, 'x');
  data.pop_back();
  size_t shared = 0;
  for (const auto& c : fixed(data)) shared += before.count(c) ? 1 : 0;
  EXPECT_LT(shared, 2u);
}

TEST(FastCdcTest, UniformDataCutsAtMaxSize) {
  const FastCdc cdc = Make(1024, 4096, 16384);
  const std::vector<uint8_t> zeros(100000, 0);
  const auto sizes = Chunk(cdc, zeros);
  ASSERT_EQ(sizes.size(), 7u);
  for (size_t i = 0; i + 1 < sizes.size(); ++i) EXPECT_EQ(sizes[i], 16384u);
  EXPECT_EQ(sizes.back(), 100000u - 6 * 16384);
}

TEST(FastCdcTest, ShortInputAndStreamingContract) {
  const FastCdc cdc = Make(1024, 4096, 16384);
  const auto data = RandomBytes(20000, 6);
  EXPECT_EQ(cdc.NextCut(data.data(), 0, true), 0u);
  EXPECT_EQ(cdc.NextCut(data.data(), 500, true), 500u);  // under min: all
  EXPECT_EQ(cdc.NextCut(data.data(), 500, false), 0u);   // needs more
  EXPECT_EQ(cdc.NextCut(data.data(), 1024, false), 0u);
  size_t n = cdc.NextCut(data.data(), data.size(), false);
  EXPECT_GT(n, 1024u);
  EXPECT_LE(n, 16384u);
  // Given exactly max bytes and no cut, the chunk is max long.
  const std::vector<uint8_t> zeros(16384, 0);
  EXPECT_EQ(cdc.NextCut(zeros.data(), zeros.size(), false), 16384u);
}

TEST(FastCdcTest, CutPointsAreFixedAcrossVersions) {
  // The first cuts of a fixed input (std::mt19937_64 is specified by the
  // standard). If these change, new backups stop deduplicating against old
  // ones: change them only together with the gear table's spec.
  const FastCdc cdc = Make(2048, 8192, 65536);
  const auto data = RandomBytes(1 << 20, 7);
  auto sizes = Chunk(cdc, data);
  sizes.resize(8);
  EXPECT_EQ(sizes, (std::vector<size_t>{10170, 8490, 10932, 8650, 8620, 8529,
                                        14083, 8620}));
}

TEST(FastCdcTest, BadParametersAreRefused) {
  for (CdcParams p : {CdcParams{0, 4096, 16384}, CdcParams{4096, 4096, 16384},
                      CdcParams{1024, 5000, 16384}, CdcParams{1024, 4096, 4096},
                      CdcParams{1024, 4096, 128u << 20}}) {
    auto c = FastCdc::Create(p);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
    EXPECT_NE(c.status().message().find("power of two"), std::string::npos);
  }
}

}  // namespace
}  // namespace haven::agent
