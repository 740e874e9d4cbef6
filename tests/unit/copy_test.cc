// CopyPoints between two real repositories on disk: only missing chunks
// cross, the copy restores byte for byte, a damaged source chunk is reported
// and not propagated, an interrupted copy resumes, and a target that does
// not share chunk-id keys is refused.
#include "repository/copy.h"

#include <filesystem>
#include <fstream>

#include "tests/unit/image_test_util.h"

namespace haven::testing_util {
namespace {

using repository::CopyOptions;
using repository::CopyPoints;
using repository::CopySelection;
using repository::LocalCopySource;
using repository::LocalCopyTarget;
using repository::PointSummary;
using repository::SelectPoints;

constexpr uint64_t kSize = 6 * kMiB;
constexpr uint64_t kChunk = 64 * 1024;

class CopyTest : public ImageRoundTripTest {
 protected:
  void SetUp() override {
    ImageRoundTripTest::SetUp();
    InitRepo();
    image_ = tmp_.Sub("disk.img");
    builder_ = std::make_unique<ImageBuilder>(image_, kSize);
    // 4 MiB of data that does not compress, then 2 MiB of hole.
    builder_->Write(0, RandomData(4 * kMiB, 7));
    builder_->Close();
  }

  // A target sharing the source's chunk-id keys (as init
  // --copy-params-from makes it), with its own master secret.
  std::unique_ptr<Repository> MakeTarget(const std::string& name,
                                         bool shared = true) {
    std::string dir = tmp_.Sub(name);
    repository::InitOptions o = FastInitOptions();
    if (shared) {
      o.shared_ids = true;
      o.chunk_id_key = repo_->secret().ChunkIdKey();
      o.tree_id_key = repo_->secret().TreeIdKey();
    }
    EXPECT_THAT(Repository::Init(dir, "target pass", o), IsOk());
    auto r = Repository::Open(dir, "target pass", WriteOptions());
    EXPECT_THAT(r, IsOk());
    return r.ok() ? std::move(r).value() : nullptr;
  }

  // Overwrites `n` 64 KiB chunks of the image in place.
  void Scribble(int n, uint32_t seed) {
    int fd = ::open(image_.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    for (int i = 0; i < n; ++i) {
      Bytes d = RandomData(kChunk, seed + i);
      off_t at = static_cast<off_t>((5 + 7 * i) * kChunk);
      ASSERT_EQ(::pwrite(fd, d.data(), d.size(), at),
                static_cast<ssize_t>(d.size()));
    }
    ::fsync(fd);
    ::close(fd);
  }

  Bytes ReadImage() {
    std::ifstream in(image_, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), {});
  }

  Bytes RestoreFrom(Repository& repo, const std::string& id) {
    auto m = repo.LoadSnapshot(id);
    EXPECT_THAT(m, IsOk());
    if (!m.ok()) return {};
    std::string out = tmp_.Sub("restored-" + id.substr(0, 8) + ".img");
    auto r = Restore(*m, out, &repo);
    EXPECT_THAT(r, IsOk());
    std::ifstream in(out, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), {});
  }

  std::string image_;
  std::unique_ptr<ImageBuilder> builder_;
};

TEST_F(CopyTest, SendsOnlyWhatTheTargetLacksAndRestoresByteForByte) {
  auto p1 = Backup(image_, "vm1");
  ASSERT_THAT(p1, IsOk());
  auto dst = MakeTarget("dst");
  ASSERT_TRUE(dst);
  LocalCopySource src(*repo_);
  LocalCopyTarget to(*dst);

  // The dry run says what the copy then sends, and sends nothing.
  CopyOptions dry;
  dry.dry_run = true;
  auto plan = CopyPoints(src, to, dry);
  ASSERT_THAT(plan, IsOk());
  ASSERT_EQ(plan->points.size(), 1u);
  EXPECT_EQ(plan->points[0].outcome, "would copy");
  EXPECT_EQ(std::filesystem::directory_iterator(dst->dir() + "/snapshots") ==
                std::filesystem::directory_iterator(),
            true);

  auto first = CopyPoints(src, to, {});
  ASSERT_THAT(first, IsOk());
  ASSERT_EQ(first->copied(), 1);
  EXPECT_EQ(first->chunks_sent, plan->chunks_sent);
  EXPECT_EQ(first->bytes_sent, plan->bytes_sent);
  // 64 distinct data chunks of 64 KiB and one leaf node.
  EXPECT_EQ(first->chunks_sent, 65u);
  EXPECT_EQ(first->bytes_sent, 4 * kMiB + 96 * 32);
  EXPECT_EQ(RestoreFrom(*dst, p1->id), ReadImage());

  // Again: nothing to send.
  auto again = CopyPoints(src, to, {});
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->chunks_sent, 0u);
  EXPECT_EQ(again->points[0].outcome, "present");

  // A night with 3 chunks changed sends those and the new leaf.
  Scribble(3, 99);
  auto p2 = Backup(image_, "vm1");
  ASSERT_THAT(p2, IsOk());
  auto night = CopyPoints(src, to, {});
  ASSERT_THAT(night, IsOk());
  EXPECT_EQ(night->copied(), 1);
  EXPECT_EQ(night->chunks_sent, 4u);
  EXPECT_EQ(night->bytes_sent, 3 * kChunk + 96 * 32);
  EXPECT_EQ(RestoreFrom(*dst, p2->id), ReadImage());
}

TEST_F(CopyTest, RefusesATargetThatDoesNotShareChunkIdKeys) {
  ASSERT_THAT(Backup(image_, "vm1"), IsOk());
  auto dst = MakeTarget("foreign", /*shared=*/false);
  ASSERT_TRUE(dst);
  LocalCopySource src(*repo_);
  LocalCopyTarget to(*dst);
  EXPECT_THAT(CopyPoints(src, to, {}),
              StatusIs(Code::kFailedPrecondition,
                       ::testing::HasSubstr("--copy-params-from")));
  EXPECT_TRUE(std::filesystem::is_empty(dst->dir() + "/snapshots") ||
              !std::filesystem::exists(dst->dir() + "/snapshots"));
}

TEST_F(CopyTest, ADamagedSourceChunkIsReportedWithItsPointsAndNotCopied) {
  auto p1 = Backup(image_, "vm1");
  ASSERT_THAT(p1, IsOk());
  // Another image with data of its own: it must still be copied.
  std::string other = tmp_.Sub("other.img");
  {
    ImageBuilder b(other, 2 * kMiB);
    b.Write(0, RandomData(2 * kMiB, 55));
  }
  auto p2 = Backup(other, "vm2");
  ASSERT_THAT(p2, IsOk());
  // Flip one byte in the middle of vm1's first pack's chunk data: find the
  // pack that holds vm1's first chunk.
  auto id0 =
      repo_->IdFor(ChunkType::kData, ByteSpan(ReadImage().data(), kChunk));
  auto loc = repo_->index().Get(id0);
  ASSERT_THAT(loc, IsOk());
  ASSERT_TRUE(loc->has_value());
  std::string pack =
      repo_dir_ + "/packs/" + (*loc)->pack.substr(0, 2) + "/" + (*loc)->pack;
  {
    std::fstream f(pack, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>((*loc)->offset + 40));
    char c;
    f.read(&c, 1);
    c ^= 0x10;
    f.seekp(static_cast<std::streamoff>((*loc)->offset + 40));
    f.write(&c, 1);
  }
  auto dst = MakeTarget("dst");
  LocalCopySource src(*repo_);
  LocalCopyTarget to(*dst);
  auto r = CopyPoints(src, to, {});
  ASSERT_THAT(r, IsOk());
  ASSERT_EQ(r->points.size(), 2u);
  EXPECT_EQ(r->points[0].id, p1->id);
  EXPECT_EQ(r->points[0].outcome, "failed");
  EXPECT_EQ(r->points[1].outcome, "copied");
  ASSERT_EQ(r->damaged.size(), 1u);
  EXPECT_EQ(r->damaged[0].id, id0);
  EXPECT_EQ(r->damaged[0].points, std::vector<std::string>{p1->id});
  // Not in the target, neither the chunk nor the point (nor the leaf above
  // it, which would claim a whole subtree).
  EXPECT_FALSE(dst->index().Get(id0)->has_value());
  EXPECT_FALSE(dst->index().Get(p1->disks[0].tree.root)->has_value());
  EXPECT_THAT(dst->LoadSnapshot(p1->id),
              StatusIs(Code::kNotFound, ::testing::_));
  EXPECT_EQ(RestoreFrom(*dst, p2->id).size(), 2 * kMiB);
}

TEST_F(CopyTest, ACancelledCopyResumesWithoutSendingAgainWhatArrived) {
  auto p1 = Backup(image_, "vm1");
  ASSERT_THAT(p1, IsOk());
  auto dst = MakeTarget("dst");
  LocalCopySource src(*repo_);
  LocalCopyTarget to(*dst);
  CopyOptions cut;
  cut.batch_chunks = 8;
  uint64_t seen = 0;
  cut.progress = [&](const Progress& p) {
    seen = p.done_bytes;
    if (p.done_bytes >= 2 * kMiB) cut.cancel.Cancel();
  };
  auto stopped = CopyPoints(src, to, cut);
  EXPECT_THAT(stopped, StatusIs(Code::kCancelled, ::testing::_));
  EXPECT_GE(seen, 2 * kMiB);
  EXPECT_THAT(dst->LoadSnapshot(p1->id),
              StatusIs(Code::kNotFound, ::testing::_));
  auto rest = CopyPoints(src, to, {});
  ASSERT_THAT(rest, IsOk());
  EXPECT_EQ(rest->copied(), 1);
  // Everything that arrived before the cut is not sent again.
  EXPECT_LE(rest->bytes_sent + seen, 4 * kMiB + 96 * 32 + kChunk);
  EXPECT_EQ(RestoreFrom(*dst, p1->id), ReadImage());
}

TEST(SelectPointsTest, RefsNamesTimesAndPolicies) {
  std::vector<PointSummary> pts = {
      {"aa01", "web", "image", "2026-12-01T01:00:00Z"},
      {"aa02", "db", "image", "2026-12-01T02:00:00Z"},
      {"bb03", "web", "image", "2026-12-02T01:00:00Z"},
      {"bb04", "web", "image", "2026-12-02T05:00:00Z"},
      {"cc05", "db", "image", "2026-12-03T01:00:00Z"},
  };
  auto ids = [](Result<std::vector<PointSummary>> r) {
    std::vector<std::string> out;
    if (r.ok())
      for (const auto& p : r.value()) out.push_back(p.id);
    return out;
  };
  CopySelection s;
  EXPECT_EQ(ids(SelectPoints(pts, s)).size(), 5u);
  s.refs = {"latest"};
  EXPECT_EQ(ids(SelectPoints(pts, s)), std::vector<std::string>{"cc05"});
  s.refs = {"web:latest", "aa01"};
  EXPECT_EQ(ids(SelectPoints(pts, s)),
            (std::vector<std::string>{"aa01", "bb04"}));
  s.refs = {"aa"};
  EXPECT_THAT(SelectPoints(pts, s),
              StatusIs(Code::kInvalidArgument, ::testing::_));
  s.refs = {"nobody:latest"};
  EXPECT_THAT(SelectPoints(pts, s), StatusIs(Code::kNotFound, ::testing::_));
  s = {};
  s.names = {"web"};
  s.keep.daily = 7;  // newest of each day
  EXPECT_EQ(ids(SelectPoints(pts, s)),
            (std::vector<std::string>{"aa01", "bb04"}));
  s = {};
  s.since = "2026-12-02T00:00:00Z";
  EXPECT_EQ(ids(SelectPoints(pts, s)),
            (std::vector<std::string>{"bb03", "bb04", "cc05"}));
  s.since = "yesterday";
  EXPECT_THAT(SelectPoints(pts, s),
              StatusIs(Code::kInvalidArgument, ::testing::_));
}

}  // namespace
}  // namespace haven::testing_util
