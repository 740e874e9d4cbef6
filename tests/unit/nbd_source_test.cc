// Tests for snapshot/nbd_source.h: AddExtent, and NbdSource reading real
// qcow2 images through qemu-nbd started by socket activation (the way a
// shut-off VM's qcow2 disks are read). Images are made with qemu-img and
// written with qemu-io; the expected bytes come from `qemu-img convert`.
#include "snapshot/nbd_source.h"

#include <sys/time.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace haven::snapshot {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::Sh;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

constexpr uint64_t kKiB = 1024, kMiB = 1024 * 1024;
constexpr uint64_t kCluster = 64 * kKiB;  // qcow2's default cluster size

// ------------------------------------------------------------- AddExtent

TEST(AddExtentTest, EmptyRangesAreIgnored) {
  Extents e;
  AddExtent(e, 5, 5);
  AddExtent(e, 7, 3);
  EXPECT_TRUE(e.empty());
  AddExtent(e, 0, 10);
  AddExtent(e, 10, 10);
  EXPECT_THAT(e, ElementsAre(Pair(0u, 10u)));
}

TEST(AddExtentTest, AdjacentAndOverlappingRangesMerge) {
  Extents e;
  AddExtent(e, 0, 10);
  AddExtent(e, 10, 20);  // adjacent
  EXPECT_THAT(e, ElementsAre(Pair(0u, 20u)));
  AddExtent(e, 15, 30);  // overlapping
  EXPECT_THAT(e, ElementsAre(Pair(0u, 30u)));
  AddExtent(e, 20, 25);  // inside: the extent does not shrink
  EXPECT_THAT(e, ElementsAre(Pair(0u, 30u)));
}

TEST(AddExtentTest, DisjointRangesAppend) {
  Extents e;
  AddExtent(e, 0, 10);
  AddExtent(e, 11, 20);
  AddExtent(e, 100, 200);
  AddExtent(e, 200, 201);
  EXPECT_THAT(e, ElementsAre(Pair(0u, 10u), Pair(11u, 20u), Pair(100u, 201u)));
}

TEST(AddExtentTest, HugeOffsets) {
  Extents e;
  const uint64_t top = ~uint64_t{0};
  AddExtent(e, top - 10, top - 5);
  AddExtent(e, top - 5, top);
  EXPECT_THAT(e, ElementsAre(Pair(top - 10, top)));
}

// --------------------------------------------------------------- fixtures

class NbdSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    if (Sh("command -v qemu-img && command -v qemu-io && command -v "
           "qemu-nbd") != 0)
      GTEST_SKIP() << "qemu-img, qemu-io and qemu-nbd are needed";
  }

  std::string Create(const std::string& name, uint64_t size,
                     const std::string& backing = "") {
    std::string path = tmp_.Sub(name);
    std::string cmd = "qemu-img create -q -f qcow2 ";
    if (!backing.empty()) cmd += "-b " + backing + " -F qcow2 ";
    cmd += path + " " + std::to_string(size);
    EXPECT_EQ(Sh(cmd), 0) << cmd;
    return path;
  }

  // qemu-io commands, e.g. "write -P 0xab 0 65536" or "write -z 0 65536".
  void Io(const std::string& path, const std::vector<std::string>& cmds) {
    std::string cmd = "qemu-io -f qcow2";
    for (const auto& c : cmds) cmd += " -c '" + c + "'";
    cmd += " " + path;
    ASSERT_EQ(Sh(cmd), 0) << cmd;
  }

  // The image's guest-visible bytes according to qemu-img.
  Bytes Raw(const std::string& path) {
    std::string raw = path + ".raw";
    std::string cmd = "qemu-img convert -O raw " + path + " " + raw;
    EXPECT_EQ(Sh(cmd), 0) << cmd;
    return ReadWholeFile(raw);
  }

  static NbdSpec SpecFor(const std::string& path,
                         const std::string& format = "qcow2") {
    NbdSpec spec;
    // As agent/vm_backup.cc names a shut-off VM's disk.
    spec.description = "vda of vm1 (" + path + ")";
    spec.command = {"qemu-nbd", "--read-only", "--format=" + format, "--",
                    path};
    spec.consistency_reason = "VM shut off";
    spec.watch_files = {path};
    return spec;
  }

  // Classify of every kCluster range, in order.
  static std::vector<RangeState> ClassifyAll(NbdSource& src,
                                             uint64_t chunk = kCluster) {
    std::vector<RangeState> out;
    for (uint64_t off = 0; off < src.size(); off += chunk) {
      auto s = src.Classify(off, std::min(src.size(), off + chunk));
      EXPECT_THAT(s, IsOk()) << "offset " << off;
      out.push_back(s.ok() ? *s : RangeState::kKeep);
    }
    return out;
  }

  static Bytes ReadAll(NbdSource& src) {
    Bytes out(src.size());
    EXPECT_THAT(src.Read(0, out.data(), out.size()), IsOk());
    return out;
  }

  TempDir tmp_;
};

std::string Name(RangeState s) {
  switch (s) {
    case RangeState::kHole:
      return "hole";
    case RangeState::kRead:
      return "read";
    case RangeState::kKeep:
      return "keep";
  }
  return "?";
}

// Clusters listed in `reads` are kRead, every other one kHole.
void ExpectStates(const std::vector<RangeState>& got,
                  const std::vector<uint64_t>& reads) {
  for (size_t i = 0; i < got.size(); ++i) {
    bool read = std::find(reads.begin(), reads.end(), i) != reads.end();
    EXPECT_EQ(Name(got[i]), read ? "read" : "hole") << "cluster " << i;
  }
}

// ------------------------------------------------------------------ tests

TEST_F(NbdSourceTest, Qcow2SizeMapAndBytes) {
  const std::string img = Create("disk.qcow2", 8 * kMiB);
  Io(img, {"write -P 0xab 0 65536",          // cluster 0
           "write -P 0x11 1048576 131072",   // clusters 16, 17
           "write -P 0x22 3149824 4096",     // 3 MiB + 4 KiB: cluster 48
           "write -z 5242880 65536",         // cluster 80: zero cluster
           "write -P 0x00 6291456 65536",    // cluster 96: zeros as data
           "write -P 0x33 8323072 65536"});  // the last cluster, 127
  auto src = NbdSource::Open(SpecFor(img));
  ASSERT_THAT(src, IsOk());
  EXPECT_EQ((*src)->size(), 8 * kMiB);
  EXPECT_EQ((*src)->description(), "vda of vm1 (" + img + ")");
  EXPECT_EQ((*src)->consistency_reason(), "VM shut off");
  EXPECT_FALSE((*src)->incremental());

  auto states = ClassifyAll(**src);
  ASSERT_EQ(states.size(), 128u);
  // Zeros written as data are "may hold data": read.
  ExpectStates(states, {0, 16, 17, 48, 96, 127});

  // A range straddling a hole and data must be read; a range inside one
  // long hole is a hole.
  auto straddle = (*src)->Classify(32 * kKiB, 96 * kKiB);
  ASSERT_THAT(straddle, IsOk());
  EXPECT_EQ(Name(*straddle), "read");
  auto big_hole = (*src)->Classify(2 * kMiB, 3 * kMiB);
  ASSERT_THAT(big_hole, IsOk());
  EXPECT_EQ(Name(*big_hole), "hole");

  const Bytes expected = Raw(img);
  ASSERT_EQ(expected.size(), 8 * kMiB);
  Bytes got = ReadAll(**src);
  EXPECT_TRUE(got == expected) << "NBD bytes differ from qemu-img convert";
  EXPECT_EQ(got[0], 0xab);
  EXPECT_EQ(got[3 * kMiB + 4 * kKiB], 0x22);
  EXPECT_EQ(got[3 * kMiB], 0x00);

  // Pieces at odd offsets agree too.
  for (uint64_t off :
       {uint64_t{1}, 65535 + uint64_t{0}, 3 * kMiB + 4095, 8 * kMiB - 7}) {
    Bytes piece(std::min<uint64_t>(100000, 8 * kMiB - off));
    ASSERT_THAT((*src)->Read(off, piece.data(), piece.size()), IsOk()) << off;
    EXPECT_TRUE(std::equal(piece.begin(), piece.end(), expected.begin() + off))
        << "offset " << off;
  }
  // A hole classified as such reads as zeros.
  for (size_t i = 0; i < states.size(); ++i) {
    if (states[i] == RangeState::kHole) {
      EXPECT_TRUE(IsAllZero(got.data() + i * kCluster, kCluster)) << i;
    }
  }
}

TEST_F(NbdSourceTest, ClassifyOutOfOrderGivesTheSameAnswers) {
  const std::string img = Create("order.qcow2", 4 * kMiB);
  Io(img, {"write -P 0x01 0 65536", "write -P 0x02 2097152 65536",
           "write -P 0x03 4128768 65536"});
  auto src = NbdSource::Open(SpecFor(img));
  ASSERT_THAT(src, IsOk());
  auto forward = ClassifyAll(**src);
  std::vector<RangeState> backward(forward.size());
  for (size_t i = forward.size(); i-- > 0;) {
    auto s = (*src)->Classify(i * kCluster, (i + 1) * kCluster);
    ASSERT_THAT(s, IsOk());
    backward[i] = *s;
  }
  EXPECT_EQ(forward, backward);
  ExpectStates(forward, {0, 32, 63});
}

TEST_F(NbdSourceTest, BackingChainIsReadThrough) {
  const std::string base = Create("base.qcow2", 8 * kMiB);
  Io(base, {"write -P 0xaa 0 65536", "write -P 0xab 2097152 65536",
            "write -P 0xac 7340032 65536"});
  const std::string top = Create("top.qcow2", 8 * kMiB, base);
  Io(top, {"write -P 0xbb 2097152 65536",  // hides the base's cluster 32
           "write -P 0xbc 4194304 65536",
           "write -z 7340032 65536"});  // zeroes the base's cluster 112
  auto src = NbdSource::Open(SpecFor(top));
  ASSERT_THAT(src, IsOk());
  EXPECT_EQ((*src)->size(), 8 * kMiB);
  auto states = ClassifyAll(**src);
  // Cluster 0 only in the base, 32 in both, 64 only in the top.
  ExpectStates(states, {0, 32, 64});
  const Bytes expected = Raw(top);
  Bytes got = ReadAll(**src);
  EXPECT_TRUE(got == expected) << "NBD bytes differ from qemu-img convert";
  EXPECT_EQ(got[0], 0xaa);
  EXPECT_EQ(got[2 * kMiB], 0xbb);
  EXPECT_EQ(got[4 * kMiB], 0xbc);
  EXPECT_EQ(got[7 * kMiB], 0x00);
}

TEST_F(NbdSourceTest, SizeNotAMultipleOfTheChunk) {
  const uint64_t size = 1000448;  // 1954 sectors
  const std::string img = Create("odd.qcow2", size);
  Io(img, {"write -P 0x5a 983040 17408"});  // the tail, cluster 15
  auto src = NbdSource::Open(SpecFor(img));
  ASSERT_THAT(src, IsOk());
  EXPECT_EQ((*src)->size(), size);
  auto states = ClassifyAll(**src);
  ASSERT_EQ(states.size(), 16u);
  ExpectStates(states, {15});
  Bytes got = ReadAll(**src);
  EXPECT_TRUE(got == Raw(img));
  EXPECT_EQ(got[size - 1], 0x5a);
}

TEST_F(NbdSourceTest, RangesPastTheEndAreInvalidArgument) {
  const std::string img = Create("small.qcow2", kMiB);
  auto src = NbdSource::Open(SpecFor(img));
  ASSERT_THAT(src, IsOk());
  EXPECT_THAT((*src)->Classify(0, kMiB + 1),
              StatusIs(Code::kInvalidArgument, HasSubstr("past the disk end")));
  EXPECT_THAT((*src)->Classify(kMiB, kMiB + 1),
              StatusIs(Code::kInvalidArgument, HasSubstr("past the disk end")));
  EXPECT_THAT((*src)->Classify(10, 10),
              StatusIs(Code::kInvalidArgument, HasSubstr("vda of vm1")));
  Bytes buf(64);
  EXPECT_THAT((*src)->Read(kMiB - 10, buf.data(), 64),
              StatusIs(Code::kInvalidArgument, HasSubstr("past the disk end")));
  EXPECT_THAT((*src)->Read(~uint64_t{0} - 5, buf.data(), 64),
              StatusIs(Code::kInvalidArgument, HasSubstr("past the disk end")));
  EXPECT_THAT((*src)->Read(kMiB - 64, buf.data(), 64), IsOk());
  EXPECT_TRUE(IsAllZero(buf.data(), buf.size()));
}

TEST_F(NbdSourceTest, MissingFileIsAnErrorNamingIt) {
  const std::string missing = tmp_.Sub("no-such-disk.qcow2");
  auto src = NbdSource::Open(SpecFor(missing));
  EXPECT_THAT(src, StatusIs(Code::kIoError,
                            AllOf(HasSubstr(missing), HasSubstr("qemu-nbd"))));
}

TEST_F(NbdSourceTest, BadFormatIsAnError) {
  const std::string img = Create("fmt.qcow2", kMiB);
  for (const char* format : {"no-such-format", "vmdk"}) {
    SCOPED_TRACE(format);
    auto src = NbdSource::Open(SpecFor(img, format));
    EXPECT_THAT(src, StatusIs(Code::kIoError,
                              AllOf(HasSubstr(img), HasSubstr("qemu-nbd"))));
  }
}

TEST_F(NbdSourceTest, ChangedDuringReadSeesATouchedFile) {
  const std::string img = Create("watched.qcow2", kMiB);
  Io(img, {"write -P 0x77 0 65536"});
  auto src = NbdSource::Open(SpecFor(img));
  ASSERT_THAT(src, IsOk());
  Bytes all = ReadAll(**src);
  auto before = (*src)->ChangedDuringRead();
  ASSERT_THAT(before, IsOk());
  EXPECT_FALSE(*before) << "reading through qemu-nbd changed the image file";

  // touch: new times, same content and size.
  ASSERT_EQ(::utimes(img.c_str(), nullptr), 0);
  auto after = (*src)->ChangedDuringRead();
  ASSERT_THAT(after, IsOk());
  EXPECT_TRUE(*after);
}

TEST_F(NbdSourceTest, ChangedDuringReadSeesARemovedFile) {
  const std::string img = Create("removed.qcow2", kMiB);
  auto src = NbdSource::Open(SpecFor(img));
  ASSERT_THAT(src, IsOk());
  ASSERT_EQ(::unlink(img.c_str()), 0);
  auto changed = (*src)->ChangedDuringRead();
  ASSERT_THAT(changed, IsOk());
  EXPECT_TRUE(*changed);
}

TEST_F(NbdSourceTest, NoWatchFilesNeverChanged) {
  const std::string img = Create("unwatched.qcow2", kMiB);
  NbdSpec spec = SpecFor(img);
  spec.watch_files.clear();
  auto src = NbdSource::Open(spec);
  ASSERT_THAT(src, IsOk());
  ASSERT_EQ(::utimes(img.c_str(), nullptr), 0);
  auto changed = (*src)->ChangedDuringRead();
  ASSERT_THAT(changed, IsOk());
  EXPECT_FALSE(*changed);
}

// The incremental path: a persistent qcow2 bitmap exported by qemu-nbd -B,
// as a backup job exports the checkpoint's bitmap.
TEST_F(NbdSourceTest, DirtyBitmapGivesKeepForCleanRanges) {
  const std::string img = Create("inc.qcow2", 4 * kMiB);
  Io(img, {"write -P 0x01 0 65536", "write -P 0x02 1048576 65536"});
  ASSERT_EQ(Sh("qemu-img bitmap --add " + img + " b0"), 0);
  Io(img, {"write -P 0x03 1048576 4096",   // cluster 16: dirty data
           "write -P 0x04 2097152 65536",  // cluster 32: dirty data
           "write -z 3145728 65536"});     // cluster 48: dirty, now zero
  NbdSpec spec = SpecFor(img);
  spec.command = {"qemu-nbd", "--read-only", "--format=qcow2", "-B", "b0", "--",
                  img};
  spec.dirty_bitmap = "b0";
  auto src = NbdSource::Open(spec);
  ASSERT_THAT(src, IsOk());
  EXPECT_TRUE((*src)->incremental());
  uint64_t dirty = 0;
  for (const auto& [begin, end] : (*src)->dirty_extents()) dirty += end - begin;
  EXPECT_EQ(dirty, 3 * kCluster);
  auto states = ClassifyAll(**src);
  ASSERT_EQ(states.size(), 64u);
  for (size_t i = 0; i < states.size(); ++i) {
    std::string want = i == 16 || i == 32 ? "read" : i == 48 ? "hole" : "keep";
    EXPECT_EQ(Name(states[i]), want) << "cluster " << i;
  }
  Bytes got = ReadAll(**src);
  EXPECT_TRUE(got == Raw(img));

  // A bitmap the server does not export.
  spec.dirty_bitmap = "other";
  EXPECT_THAT(NbdSource::Open(spec),
              StatusIs(Code::kNotFound, HasSubstr("'other'")));
}

}  // namespace
}  // namespace haven::snapshot
