// Shared fixture for the Repository tests: a fresh repository per test and
// helpers to store and read back chunks.
#ifndef HAVEN_TESTS_UNIT_REPOSITORY_TEST_UTIL_H_
#define HAVEN_TESTS_UNIT_REPOSITORY_TEST_UTIL_H_

#include <algorithm>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/repository.h"
#include "tests/unit/test_util.h"

namespace haven::testing_util {

using repository::ChunkId;
using repository::ChunkType;
using repository::ReadContext;
using repository::Repository;
using repository::WriteContext;

inline constexpr const char* kPass = kTestPassphrase;

inline std::vector<std::string> PackFiles(const std::string& repo) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(repo + "/packs"))
    if (e.is_regular_file()) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

class RepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    repo_dir_ = tmp_.Sub("repo");
    ASSERT_THAT(testing_util::CloneFreshRepository(repo_dir_), IsOk());
  }

  std::unique_ptr<Repository> OpenRepo(bool write) {
    auto r = Repository::Open(repo_dir_, kPass, write ? WriteOptions() : ReadOptions());
    EXPECT_THAT(r, IsOk());
    if (!r.ok()) return nullptr;
    return std::move(r).value();
  }

  struct Stored {
    ChunkType type;
    ChunkId id;
    Bytes raw;
  };

  // Stores `n` distinct chunks of `size` bytes and flushes.
  std::vector<Stored> StoreChunks(Repository& repo, int n, size_t size, uint32_t seed = 1) {
    std::vector<Stored> out;
    auto writer = repo.NewWriter();
    WriteContext ctx(repo.config().compression_level);
    for (int i = 0; i < n; ++i) {
      Stored s;
      s.type = i % 4 == 3 ? ChunkType::kTree : ChunkType::kData;
      s.raw = RandomData(size, seed * 1000 + static_cast<uint32_t>(i));
      s.id = repo.IdFor(s.type, s.raw);
      auto put = writer->Put(s.type, s.id, s.raw, ctx);
      EXPECT_THAT(put, IsOk());
      if (put.ok()) {
        EXPECT_TRUE(*put) << "chunk " << i << " was not new";
      }
      out.push_back(std::move(s));
    }
    EXPECT_THAT(writer->Flush(), IsOk());
    EXPECT_EQ(writer->new_chunks(), static_cast<uint64_t>(n));
    return out;
  }

  void ExpectReadable(const Repository& repo, const std::vector<Stored>& chunks) {
    ReadContext ctx;
    Bytes out;
    for (const auto& c : chunks) {
      ASSERT_THAT(repo.ReadChunk(c.type, c.id, out, ctx), IsOk()) << c.id.Hex();
      EXPECT_EQ(out, c.raw) << c.id.Hex();
    }
  }

  TempDir tmp_;
  std::string repo_dir_;
};

}  // namespace haven::testing_util

#endif  // HAVEN_TESTS_UNIT_REPOSITORY_TEST_UTIL_H_
