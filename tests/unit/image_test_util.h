// Shared helpers for the image backup/restore tests: building sparse image
// files and a fixture with a fresh repository.
#ifndef HAVEN_TESTS_UNIT_IMAGE_TEST_UTIL_H_
#define HAVEN_TESTS_UNIT_IMAGE_TEST_UTIL_H_

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <set>
#include <string>

#include "agent/image_backup.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/repository.h"
#include "restore/image_restore.h"
#include "tests/unit/test_util.h"

namespace haven::testing_util {

using repository::ChunkId;
using repository::ChunkType;
using repository::Manifest;
using repository::Repository;
using ::testing::MatchesRegex;

inline constexpr const char* kImagePass = kTestPassphrase;
inline constexpr uint64_t kMiB = 1 << 20;

inline uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ~0ull;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

// Builds an image file: ftruncate to `size` (all hole), then pwrite pieces.
class ImageBuilder {
 public:
  ImageBuilder(const std::string& path, uint64_t size) : path_(path), content_(size, 0) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    EXPECT_GE(fd_, 0) << path;
    EXPECT_EQ(::ftruncate(fd_, static_cast<off_t>(size)), 0);
  }
  ~ImageBuilder() { Close(); }
  void Write(uint64_t offset, const Bytes& data) {
    ASSERT_LE(offset + data.size(), content_.size());
    ASSERT_EQ(::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset)),
              static_cast<ssize_t>(data.size()));
    std::memcpy(content_.data() + offset, data.data(), data.size());
  }
  void Close() {
    if (fd_ >= 0) {
      ::fsync(fd_);
      ::close(fd_);
      fd_ = -1;
    }
  }
  const Bytes& content() const { return content_; }

 private:
  std::string path_;
  Bytes content_;
  int fd_ = -1;
};

// Number of distinct chunks of `content` that are not all zeros.
inline uint64_t DistinctDataChunks(const Repository& repo, const Bytes& content) {
  const uint64_t cs = repo.config().chunk_size;
  std::set<std::string> ids;
  for (uint64_t off = 0; off < content.size(); off += cs) {
    const uint64_t len = std::min<uint64_t>(cs, content.size() - off);
    if (IsAllZero(content.data() + off, len)) continue;
    ids.insert(repo.IdFor(ChunkType::kData, ByteSpan(content.data() + off, len)).Hex());
  }
  return ids.size();
}

inline Bytes Text(size_t n) {
  const std::string line = "Haven backs up disk images; this line repeats. ";
  Bytes out;
  while (out.size() < n) out.insert(out.end(), line.begin(), line.end());
  out.resize(n);
  return out;
}

class ImageRoundTripTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    repo_dir_ = tmp_.Sub("repo");
  }

  void InitRepo(uint32_t chunk_size = repository::kDefaultChunkSize) {
    ASSERT_THAT(CloneFreshRepository(repo_dir_, chunk_size), IsOk());
    auto r = Repository::Open(repo_dir_, kImagePass, WriteOptions());
    ASSERT_THAT(r, IsOk());
    repo_ = std::move(r).value();
  }

  Result<Manifest> Backup(const std::string& image, const std::string& name = "img") {
    agent::ImageBackupOptions o;
    o.name = name;
    o.threads = 2;
    return agent::BackupImage(*repo_, image, o);
  }

  Result<restore::ImageRestoreStats> Restore(const Manifest& m, const std::string& target,
                                             const Repository* repo = nullptr,
                                             bool overwrite = false) {
    restore::ImageRestoreOptions o;
    o.threads = 2;
    o.overwrite = overwrite;
    return restore::RestoreImage(repo ? *repo : *repo_, m, target, o);
  }

  // Backs up `image`, restores it from a fresh read-only open of the
  // repository and checks the result is byte-identical.
  void RoundTrip(const std::string& image, const Bytes& expected, Manifest* out_manifest,
                 std::string* out_target) {
    auto m = Backup(image);
    ASSERT_THAT(m, IsOk());
    EXPECT_THAT(m->id, MatchesRegex("[0-9a-f]{32}"));
    ASSERT_EQ(m->disks.size(), 1u);
    const auto& disk = m->disks[0];
    EXPECT_EQ(disk.name, "disk0");
    EXPECT_EQ(disk.source, image);
    EXPECT_EQ(disk.size, expected.size());
    EXPECT_EQ(disk.chunk_size, repo_->config().chunk_size);
    EXPECT_EQ(disk.tree.count, (expected.size() + disk.chunk_size - 1) / disk.chunk_size);
    EXPECT_EQ(m->consistency, "offline");
    EXPECT_EQ(m->stats.logical_bytes, expected.size());

    // Restore through a separate, read-only handle (as a restore job would),
    // using the manifest as loaded from disk.
    auto reader = Repository::Open(repo_dir_, kImagePass, ReadOptions());
    ASSERT_THAT(reader, IsOk());
    auto loaded = (*reader)->LoadSnapshot(m->id);
    ASSERT_THAT(loaded, IsOk());
    std::string target = tmp_.Sub("restored-" + m->id.substr(0, 8) + ".raw");
    auto stats = Restore(*loaded, target, reader->get());
    ASSERT_THAT(stats, IsOk());
    EXPECT_EQ(stats->size, expected.size());
    EXPECT_EQ(stats->data_bytes + stats->hole_bytes, expected.size());
    EXPECT_FALSE(PathExists(target + ".haven-partial"));
    ASSERT_TRUE(PathExists(target));
    EXPECT_EQ(FileSize(target), expected.size());
    Bytes restored = ReadWholeFile(target);
    ASSERT_EQ(restored.size(), expected.size());
    EXPECT_TRUE(restored == expected) << "restored image differs from the source";
    if (out_manifest) *out_manifest = *m;
    if (out_target) *out_target = target;
  }

  TempDir tmp_;
  std::string repo_dir_;
  std::unique_ptr<Repository> repo_;
};

}  // namespace haven::testing_util

#endif  // HAVEN_TESTS_UNIT_IMAGE_TEST_UTIL_H_
