// Tests for restore/image_writer.h: the raw writer's partial file and the
// rename that publishes it (never over a file it must not replace), and the
// qcow2 / VHDX writers over real qemu-img and qemu-nbd, written from several
// threads at once. What a qcow2 or VHDX holds is read back with
// `qemu-img convert -O raw`.
#include "restore/image_writer.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace haven::restore {
namespace {

using ::haven::testing_util::FileSize;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::Sh;
using ::haven::testing_util::ShOut;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteWholeFile;
using ::testing::_;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uint64_t kKiB = 1024, kMiB = 1024 * 1024;

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? uint64_t(st.st_blocks) * 512 : 0;
}

Bytes Slice(const Bytes& b, uint64_t off, uint64_t len) {
  return Bytes(b.begin() + off, b.begin() + off + len);
}

Result<std::unique_ptr<ImageWriter>> Open(
    const std::string& path, uint64_t size,
    ImageFormat format = ImageFormat::kRaw, bool overwrite = false) {
  ImageWriterOptions o;
  o.path = path;
  o.size = size;
  o.format = format;
  o.overwrite = overwrite;
  return OpenImageWriter(o);
}

// Writes `len` bytes of `want` at `off` through `w`.
Status Put(ImageWriter& w, const Bytes& want, uint64_t off, uint64_t len) {
  Bytes data(want.begin() + off, want.begin() + off + len);
  return w.Write(off, data);
}

// ------------------------------------------------------------------ formats

TEST(ImageFormatTest, NamesRoundTrip) {
  for (auto f : {ImageFormat::kRaw, ImageFormat::kQcow2, ImageFormat::kVhdx}) {
    auto parsed = ParseImageFormat(ImageFormatName(f));
    ASSERT_THAT(parsed, IsOk());
    EXPECT_EQ(*parsed, f);
  }
}

TEST(ImageFormatTest, UnknownNameListsTheKnownOnes) {
  EXPECT_THAT(ParseImageFormat("vmdk"),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr("'vmdk'"), HasSubstr("qcow2"))));
  EXPECT_THAT(ParseImageFormat("QCOW2"), StatusIs(Code::kInvalidArgument, _));
}

// -------------------------------------------------------------- WriteMerger

// Records every write it gets; fails the write at `fail_at` if set.
class FakeWriter : public ImageWriter {
 public:
  explicit FakeWriter(size_t limit) : limit_(limit) {}
  Status Write(uint64_t offset, Bytes& data) override {
    if (offset == fail_at)
      return IoError("disk full at " + std::to_string(offset));
    writes.push_back({offset, data});
    data = Bytes(7, 0xee);  // as the NBD writer may: another buffer back
    return OkStatus();
  }
  Status Finish() override { return OkStatus(); }
  void Discard() override {}
  const std::string& write_path() const override { return path_; }
  size_t merge_limit() const override { return limit_; }

  std::vector<std::pair<uint64_t, Bytes>> writes;
  uint64_t fail_at = ~uint64_t{0};

 private:
  size_t limit_;
  std::string path_ = "fake";
};

TEST(WriteMergerTest, WithoutALimitEveryWriteGoesStraightThrough) {
  FakeWriter w(0);
  WriteMerger m(w);
  for (uint64_t off : {0u, 4096u, 8192u}) {
    Bytes d = RandomData(4096, static_cast<uint32_t>(off));
    ASSERT_THAT(m.Add(off, d), IsOk());
  }
  EXPECT_EQ(w.writes.size(), 3u);
  ASSERT_THAT(m.Flush(), IsOk());
  EXPECT_EQ(w.writes.size(), 3u);
}

TEST(WriteMergerTest, AdjacentRangesMergeUpToTheLimit) {
  FakeWriter w(64 * kKiB);
  WriteMerger m(w);
  Bytes image = RandomData(kMiB, 50);
  // 16 KiB pieces: 0..80 KiB adjacent (the limit splits them 64 + 16), a
  // gap, then 96..112 KiB, and one piece as large as the limit.
  auto add = [&](uint64_t off, uint64_t len) {
    Bytes d = Slice(image, off, len);
    ASSERT_THAT(m.Add(off, d), IsOk());
  };
  for (uint64_t off = 0; off < 80 * kKiB; off += 16 * kKiB) add(off, 16 * kKiB);
  add(96 * kKiB, 16 * kKiB);
  add(256 * kKiB, 64 * kKiB);
  ASSERT_THAT(m.Flush(), IsOk());
  ASSERT_THAT(m.Flush(), IsOk());  // nothing left: no empty write
  ASSERT_EQ(w.writes.size(), 4u);
  const std::vector<std::pair<uint64_t, uint64_t>> want = {
      {0, 64 * kKiB},
      {64 * kKiB, 16 * kKiB},
      {96 * kKiB, 16 * kKiB},
      {256 * kKiB, 64 * kKiB}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(w.writes[i].first, want[i].first) << i;
    EXPECT_EQ(w.writes[i].second, Slice(image, want[i].first, want[i].second))
        << i;
  }
}

TEST(WriteMergerTest, WriterErrorsComeBack) {
  FakeWriter w(64 * kKiB);
  w.fail_at = 0;
  WriteMerger m(w);
  Bytes d = RandomData(4096, 60);
  ASSERT_THAT(m.Add(0, d), IsOk());  // merged, not written yet
  d = RandomData(4096, 61);
  EXPECT_THAT(m.Add(100 * kKiB, d),
              StatusIs(Code::kIoError, HasSubstr("at 0")));
}

// ---------------------------------------------------------------- raw file

TEST(RawWriterTest, WritesSparseAndRenamesOnlyAtFinish) {
  TempDir tmp;
  const std::string path = tmp.Sub("disk.img");
  const uint64_t size = 64 * kMiB;
  Bytes want(size, 0);
  Bytes data = RandomData(kMiB, 1);
  std::copy(data.begin(), data.end(), want.begin() + 5 * kMiB);
  std::copy(data.begin(), data.begin() + 4 * kKiB, want.end() - 4 * kKiB);

  auto w = Open(path, size);
  ASSERT_THAT(w, IsOk());
  EXPECT_EQ((*w)->write_path(), path + kPartialSuffix);
  ASSERT_THAT(Put(**w, want, 5 * kMiB, kMiB), IsOk());
  ASSERT_THAT(Put(**w, want, size - 4 * kKiB, 4 * kKiB), IsOk());
  (*w)->Written(5 * kMiB, kMiB);
  EXPECT_FALSE(PathExists(path)) << "the target appears only at Finish";
  EXPECT_EQ(FileSize(path + kPartialSuffix), size);

  ASSERT_THAT((*w)->Finish(), IsOk());
  EXPECT_FALSE(PathExists(path + kPartialSuffix));
  EXPECT_EQ(ReadWholeFile(path), want);
  EXPECT_LT(AllocatedBytes(path), 4 * kMiB) << "holes were written";
}

TEST(RawWriterTest, DiscardAndDestructorRemoveThePartialFile) {
  TempDir tmp;
  const std::string path = tmp.Sub("disk.img");
  Bytes want = RandomData(kMiB, 2);
  {
    auto w = Open(path, kMiB);
    ASSERT_THAT(w, IsOk());
    ASSERT_THAT(Put(**w, want, 0, kMiB), IsOk());
    (*w)->Discard();
    EXPECT_FALSE(PathExists(path + kPartialSuffix));
    (*w)->Discard();  // idempotent
  }
  {
    auto w = Open(path, kMiB);
    ASSERT_THAT(w, IsOk());
    ASSERT_THAT(Put(**w, want, 0, kMiB), IsOk());
  }  // dropped without Finish
  EXPECT_FALSE(PathExists(path + kPartialSuffix));
  EXPECT_FALSE(PathExists(path));
}

TEST(RawWriterTest, ALeftoverPartialFileIsReplaced) {
  TempDir tmp;
  const std::string path = tmp.Sub("disk.img");
  WriteWholeFile(path + kPartialSuffix, RandomData(3 * kMiB, 3));
  auto w = Open(path, kMiB);
  ASSERT_THAT(w, IsOk());
  ASSERT_THAT((*w)->Finish(), IsOk());
  EXPECT_EQ(ReadWholeFile(path), Bytes(kMiB, 0));
}

TEST(RawWriterTest, ExistingFileIsRefusedWithoutOverwrite) {
  TempDir tmp;
  const std::string path = tmp.Sub("disk.img");
  Bytes old = RandomData(100, 4);
  WriteWholeFile(path, old);
  EXPECT_THAT(Open(path, kMiB),
              StatusIs(Code::kAlreadyExists,
                       AllOf(HasSubstr(path), HasSubstr("--overwrite"))));
  EXPECT_THAT(Open(path, kMiB, ImageFormat::kQcow2),
              StatusIs(Code::kAlreadyExists, HasSubstr(path)));
  EXPECT_EQ(ReadWholeFile(path), old);
  EXPECT_FALSE(PathExists(path + kPartialSuffix));
}

TEST(RawWriterTest, OverwriteReplacesTheFileOnlyAtFinish) {
  TempDir tmp;
  const std::string path = tmp.Sub("disk.img");
  Bytes old = RandomData(100, 5);
  WriteWholeFile(path, old);
  Bytes want = RandomData(kMiB, 6);
  auto w = Open(path, kMiB, ImageFormat::kRaw, /*overwrite=*/true);
  ASSERT_THAT(w, IsOk());
  ASSERT_THAT(Put(**w, want, 0, kMiB), IsOk());
  EXPECT_EQ(ReadWholeFile(path), old);
  ASSERT_THAT((*w)->Finish(), IsOk());
  EXPECT_EQ(ReadWholeFile(path), want);
}

TEST(RawWriterTest, AFileThatAppearsDuringTheRestoreIsNotReplaced) {
  TempDir tmp;
  const std::string path = tmp.Sub("disk.img");
  auto w = Open(path, kMiB);
  ASSERT_THAT(w, IsOk());
  Bytes theirs = RandomData(100, 7);
  WriteWholeFile(path, theirs);  // someone else's, after our check
  EXPECT_THAT((*w)->Finish(),
              StatusIs(Code::kAlreadyExists, HasSubstr("appeared")));
  EXPECT_EQ(ReadWholeFile(path), theirs);
  EXPECT_FALSE(PathExists(path + kPartialSuffix));
}

TEST(RawWriterTest, MissingFolderIsNamed) {
  TempDir tmp;
  const std::string dir = tmp.Sub("no-such-dir");
  EXPECT_THAT(Open(dir + "/disk.img", kMiB),
              StatusIs(Code::kNotFound,
                       AllOf(HasSubstr(dir), HasSubstr("does not exist"))));
  EXPECT_THAT(Open(dir + "/disk.qcow2", kMiB, ImageFormat::kQcow2),
              StatusIs(Code::kNotFound, HasSubstr(dir)));
}

TEST(RawWriterTest, ADirectoryIsNotATarget) {
  TempDir tmp;
  EXPECT_THAT(Open(tmp.path(), kMiB, ImageFormat::kRaw, true),
              StatusIs(Code::kInvalidArgument, HasSubstr("not a regular")));
}

TEST(BlockDeviceTest, OnlyRawGoesOntoADevice) {
  TempDir tmp;
  const std::string dev = tmp.Sub("loop-node");
  // A device node that is never opened: the checks come first.
  if (::mknod(dev.c_str(), S_IFBLK | 0600, makedev(7, 200)) != 0)
    GTEST_SKIP() << "mknod needs root";
  EXPECT_THAT(Open(dev, kMiB, ImageFormat::kQcow2, true),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr(dev), HasSubstr("block device"),
                             HasSubstr("qcow2"))));
  EXPECT_THAT(Open(dev, kMiB, ImageFormat::kVhdx, true),
              StatusIs(Code::kInvalidArgument, HasSubstr("vhdx")));
  EXPECT_THAT(Open(dev, kMiB),
              StatusIs(Code::kAlreadyExists, HasSubstr("--overwrite")));
}

// ------------------------------------------------------------ qcow2 / VHDX

class NbdWriterTest : public ::testing::TestWithParam<ImageFormat> {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    if (Sh("command -v qemu-img && command -v qemu-nbd") != 0)
      GTEST_SKIP() << "qemu-img and qemu-nbd are needed";
  }
  std::string Name() const { return ImageFormatName(GetParam()); }

  // The guest-visible bytes of an image, by qemu-img.
  Bytes Raw(const std::string& path) {
    const std::string raw = path + ".raw";
    std::string cmd =
        "qemu-img convert -f " + Name() + " -O raw " + path + " " + raw;
    EXPECT_EQ(Sh(cmd), 0) << cmd;
    Bytes b = ReadWholeFile(raw);
    ::unlink(raw.c_str());
    return b;
  }

  TempDir tmp_;
};

TEST_P(NbdWriterTest, ConcurrentWritesReadBack) {
  const std::string path = tmp_.Sub("disk." + Name());
  const uint64_t size = 256 * kMiB, piece = 64 * kKiB;
  Bytes want(size, 0);
  // Scattered 64 KiB pieces (every 7th of the first 64 MiB) and one larger
  // run near the end, with holes between.
  std::vector<std::pair<uint64_t, uint64_t>> writes;
  for (uint64_t off = 0; off < 64 * kMiB; off += 7 * piece)
    writes.push_back({off, piece});
  writes.push_back({size - 3 * kMiB, 2 * kMiB + 12 * kKiB});
  uint32_t seed = 10;
  for (auto [off, len] : writes) {
    Bytes d = RandomData(len, seed++);
    std::copy(d.begin(), d.end(), want.begin() + off);
  }

  auto w = Open(path, size, GetParam());
  ASSERT_THAT(w, IsOk());
  EXPECT_EQ((*w)->write_path(), path + kPartialSuffix);
  std::vector<std::thread> threads;
  std::vector<Status> errors(4);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < writes.size(); i += 4) {
        Status s = Put(**w, want, writes[i].first, writes[i].second);
        if (!s.ok()) errors[t] = s;
        (*w)->Written(writes[i].first, writes[i].second);
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& e : errors) ASSERT_THAT(e, IsOk());
  EXPECT_FALSE(PathExists(path));
  ASSERT_THAT((*w)->Finish(), IsOk());
  EXPECT_FALSE(PathExists(path + kPartialSuffix));

  EXPECT_THAT(ShOut("qemu-img info --output=json " + path),
              HasSubstr("\"format\": \"" + Name() + "\""));
  EXPECT_EQ(Raw(path), want);
  // Holes were not written: about 12 MiB of data in a 256 MiB image.
  EXPECT_LT(AllocatedBytes(path), 48 * kMiB);
  if (GetParam() == ImageFormat::kQcow2) {
    EXPECT_EQ(Sh("qemu-img check -q " + path), 0);
  }
}

TEST_P(NbdWriterTest, SizeNotAMultipleOf512IsRoundedUp) {
  const std::string path = tmp_.Sub("odd." + Name());
  const uint64_t size = 3 * kMiB + 12345;
  Bytes want = RandomData(size, 20);
  auto w = Open(path, size, GetParam());
  ASSERT_THAT(w, IsOk());
  ASSERT_THAT(Put(**w, want, 0, size), IsOk());
  ASSERT_THAT((*w)->Finish(), IsOk());
  Bytes got = Raw(path);
  ASSERT_EQ(got.size(), (size + 511) / 512 * 512);
  EXPECT_EQ(Slice(got, 0, size), want);
  EXPECT_EQ(Slice(got, size, got.size() - size), Bytes(got.size() - size, 0));
}

TEST_P(NbdWriterTest, DiscardRemovesTheImage) {
  const std::string path = tmp_.Sub("gone." + Name());
  {
    auto w = Open(path, 16 * kMiB, GetParam());
    ASSERT_THAT(w, IsOk());
    ASSERT_THAT(Put(**w, RandomData(16 * kMiB, 30), 0, kMiB), IsOk());
    (*w)->Discard();
    EXPECT_FALSE(PathExists(path + kPartialSuffix));
  }
  {
    auto w = Open(path, 16 * kMiB, GetParam());
    ASSERT_THAT(w, IsOk());
    ASSERT_THAT(Put(**w, RandomData(16 * kMiB, 31), 0, kMiB), IsOk());
  }  // dropped without Finish: qemu-nbd stopped, file removed
  EXPECT_FALSE(PathExists(path + kPartialSuffix));
  EXPECT_FALSE(PathExists(path));
}

TEST_P(NbdWriterTest, AWriteOutsideTheImageNamesTheFileAndTheOffset) {
  const std::string path = tmp_.Sub("small." + Name());
  auto w = Open(path, kMiB, GetParam());
  ASSERT_THAT(w, IsOk());
  Bytes d = RandomData(64 * kKiB, 40);
  EXPECT_THAT(
      (*w)->Write(kMiB - 4 * kKiB, d),
      StatusIs(Code::kInvalidArgument, AllOf(HasSubstr(path + kPartialSuffix),
                                             HasSubstr("at offset 1044480"),
                                             HasSubstr("past the image end"))));
  if (GetParam() == ImageFormat::kVhdx) {  // qcow2 takes any byte range
    d.resize(1000);
    EXPECT_THAT((*w)->Write(4096, d),
                StatusIs(Code::kInvalidArgument, HasSubstr("not aligned")));
  }
  (*w)->Discard();
  EXPECT_FALSE(PathExists(path + kPartialSuffix));
}

TEST_P(NbdWriterTest, QemuImgFailureIsReportedWithItsOutput) {
  // 2^62 bytes: larger than either format allows (qcow2 and VHDX both
  // stop at 64 TiB with their default cluster and block sizes).
  const std::string path = tmp_.Sub("huge." + Name());
  auto w = Open(path, uint64_t{1} << 62, GetParam());
  EXPECT_THAT(
      w, StatusIs(Code::kIoError, AllOf(HasSubstr(path + kPartialSuffix),
                                        HasSubstr("qemu-img create failed"),
                                        HasSubstr("too large"))));
  EXPECT_FALSE(PathExists(path + kPartialSuffix));
  EXPECT_FALSE(PathExists(path));
}

INSTANTIATE_TEST_SUITE_P(Formats, NbdWriterTest,
                         ::testing::Values(ImageFormat::kQcow2,
                                           ImageFormat::kVhdx),
                         [](const auto& info) {
                           return std::string(ImageFormatName(info.param));
                         });

}  // namespace
}  // namespace haven::restore
