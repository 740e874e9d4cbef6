// Hyper-V and VMware images read natively (snapshot/foreign_image.h): every
// byte read is compared with what qemu-img makes of the same image, and the
// differencing VHDX chains that qemu-img cannot create are built by
// tests/tools/make_avhdx.py. Untrusted chains (missing, renamed, foreign or
// looping parents; extents outside the folder) must fail naming the file.
#include "snapshot/foreign_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "base/file.h"
#include "test_util.h"

namespace haven::snapshot {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteWholeFile;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint64_t kMiB = 1 << 20;

bool HaveQemu() {
  return std::system(
             "command -v qemu-img >/dev/null 2>&1 && "
             "command -v qemu-io >/dev/null 2>&1") == 0;
}

// Runs a shell command; on failure the assertion shows its output.
::testing::AssertionResult Sh(const std::string& cmd) {
  std::string log = ::testing::TempDir() + "/foreign_image_test." +
                    std::to_string(::getpid()) + ".log";
  int rc = std::system((cmd + " >'" + log + "' 2>&1").c_str());
  if (rc == 0) return ::testing::AssertionSuccess();
  Bytes out = ReadWholeFile(log);
  return ::testing::AssertionFailure()
         << "`" << cmd << "` failed (" << rc << "):\n"
         << std::string(out.begin(), out.end());
}

std::string MakeAvhdx() {
  if (const char* dir = std::getenv("HAVEN_SOURCE_DIR"))
    return std::string(dir) + "/tests/tools/make_avhdx.py";
  std::filesystem::path here(__FILE__);  // .../tests/unit/this_file.cc
  return (here.parent_path().parent_path() / "tools" / "make_avhdx.py")
      .string();
}

// make_avhdx.py PARENT CHILD ARGS...
::testing::AssertionResult Avhdx(const std::string& parent,
                                 const std::string& child,
                                 const std::string& args = "") {
  return Sh("python3 '" + MakeAvhdx() + "' '" + parent + "' '" + child + "' " +
            args);
}

// `data` with LENGTH bytes at OFFSET set to BYTE, as make_avhdx.py --write.
void Overlay(Bytes& data, uint64_t offset, uint64_t length, uint8_t byte) {
  ASSERT_LE(offset + length, data.size());
  std::fill(data.begin() + offset, data.begin() + offset + length, byte);
}

Result<std::unique_ptr<DiskSource>> Open(const std::string& path) {
  HAVEN_ASSIGN_OR_RETURN(ImageFormat format, DetectImageFormat(path));
  return OpenForeignImage(path, format);
}

// Compares every byte of `src` with `expected`, reading in pieces of an odd
// size so that reads straddle sectors, grains and blocks.
void ExpectSameBytes(DiskSource& src, const Bytes& expected) {
  ASSERT_EQ(src.size(), expected.size()) << src.description();
  constexpr size_t kPiece = 1000003;
  Bytes buf(kPiece);
  for (uint64_t off = 0; off < expected.size(); off += kPiece) {
    size_t n = std::min<uint64_t>(kPiece, expected.size() - off);
    ASSERT_THAT(src.Read(off, buf.data(), n), IsOk()) << "offset " << off;
    if (std::memcmp(buf.data(), expected.data() + off, n) != 0) {
      size_t i = 0;
      while (buf[i] == expected[off + i]) ++i;
      FAIL() << src.description() << " differs at byte " << off + i << ": 0x"
             << std::hex << int{buf[i]} << ", expected 0x"
             << int{expected[off + i]};
    }
  }
}

// Like ExpectSameBytes against the sparse file `raw`; its holes are known
// to be zeros without reading them (a 2 GiB hole reads slowly).
void ExpectSameAsFile(DiskSource& src, const std::string& raw) {
  UniqueFd file(::open(raw.c_str(), O_RDONLY | O_CLOEXEC));
  int fd = file.get();
  ASSERT_GE(fd, 0) << raw;
  struct stat st;
  ASSERT_EQ(::fstat(fd, &st), 0);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  ASSERT_EQ(src.size(), size) << src.description();
  constexpr size_t kPiece = 1000003;
  Bytes want(kPiece), got(kPiece);
  for (uint64_t off = 0; off < size; off += kPiece) {
    size_t n = std::min<uint64_t>(kPiece, size - off);
    off_t data = ::lseek(fd, static_cast<off_t>(off), SEEK_DATA);
    if (data < 0 || static_cast<uint64_t>(data) >= off + n) {
      std::fill(want.begin(), want.begin() + n, 0);
    } else {
      ASSERT_EQ(::pread(fd, want.data(), n, static_cast<off_t>(off)),
                static_cast<ssize_t>(n));
    }
    ASSERT_THAT(src.Read(off, got.data(), n), IsOk()) << "offset " << off;
    if (std::memcmp(got.data(), want.data(), n) != 0) {
      size_t i = 0;
      while (got[i] == want[i]) ++i;
      FAIL() << src.description() << " differs at byte " << off + i << ": 0x"
             << std::hex << int{got[i]} << ", qemu reads 0x" << int{want[i]};
    }
  }
}

// Compares `image` read natively with qemu-img's raw conversion of it.
void ExpectSameAsQemu(const std::string& image, const std::string& qemu_fmt,
                      const std::string& work_dir) {
  std::string raw = work_dir + "/expected.raw";
  ASSERT_TRUE(Sh("qemu-img convert -f " + qemu_fmt + " -O raw '" + image +
                 "' '" + raw + "'"));
  auto src = Open(image);
  ASSERT_THAT(src, IsOk());
  ExpectSameAsFile(**src, raw);
  EXPECT_THAT((*src)->Classify(0, (*src)->size()), IsOk());
  auto changed = (*src)->ChangedDuringRead();
  ASSERT_THAT(changed, IsOk());
  EXPECT_FALSE(*changed);
}

std::string Write(const std::string& fmt, const std::string& image,
                  const std::string& what) {
  return "qemu-io -f " + fmt + " -c 'write -P " + what + "' '" + image + "'";
}

class ForeignImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveQemu()) GTEST_SKIP() << "qemu-img / qemu-io not installed";
  }
  std::string P(const std::string& name) const { return dir_.Sub(name); }

  // base.vhdx: 64 MiB, 8 MiB blocks (qemu's choice), a few patterns.
  void MakeBase() {
    ASSERT_TRUE(Sh("qemu-img create -q -f vhdx '" + P("base.vhdx") + "' 64M"));
    ASSERT_TRUE(Sh(Write("vhdx", P("base.vhdx"), "0xab 1M 64k")));
    ASSERT_TRUE(Sh(Write("vhdx", P("base.vhdx"), "0x11 10M 3M")));
    ASSERT_TRUE(Sh(Write("vhdx", P("base.vhdx"), "0x22 63M 1M")));
    ASSERT_TRUE(Sh("qemu-img convert -f vhdx -O raw '" + P("base.vhdx") +
                   "' '" + P("base.raw") + "'"));
  }

  TempDir dir_;
};

// --- Images qemu-img can make: every byte as qemu reads it ---------------

TEST_F(ForeignImageTest, VhdxDynamicReadsLikeQemu) {
  std::string img = P("disk.vhdx");
  ASSERT_TRUE(
      Sh("qemu-img create -q -f vhdx -o block_size=1M '" + img + "' 40M"));
  ASSERT_TRUE(Sh(Write("vhdx", img, "0xab 1M 64k")));
  ASSERT_TRUE(Sh(Write("vhdx", img, "0xcd 3583k 3M")));   // across blocks
  ASSERT_TRUE(Sh(Write("vhdx", img, "0xef 40959k 1k")));  // the last bytes
  ExpectSameAsQemu(img, "vhdx", dir_.path());
  auto src = Open(img);
  ASSERT_THAT(src, IsOk());
  EXPECT_EQ((*src)->consistency_reason(),
            "VHDX image read directly (libvhdi), unchanged during the read");
  EXPECT_EQ((*src)->description(), img);
}

TEST_F(ForeignImageTest, VhdDynamicReadsLikeQemu) {
  std::string img = P("disk.vhd");
  ASSERT_TRUE(Sh("qemu-img create -q -f vpc '" + img + "' 48M"));
  ASSERT_TRUE(Sh(Write("vpc", img, "0xab 1M 64k")));
  ASSERT_TRUE(Sh(Write("vpc", img, "0x5a 2047k 4k")));  // across 2 MiB blocks
  ExpectSameAsQemu(img, "vpc", dir_.path());
}

TEST_F(ForeignImageTest, VhdFixedReadsLikeQemu) {
  std::string img = P("fixed.vhd");
  ASSERT_TRUE(
      Sh("qemu-img create -q -f vpc -o subformat=fixed '" + img + "' 16M"));
  ASSERT_TRUE(Sh(Write("vpc", img, "0xab 1M 64k")));
  ASSERT_TRUE(Sh(Write("vpc", img, "0x77 15M 512")));
  ASSERT_THAT(DetectImageFormat(img), IsOk());
  EXPECT_EQ(*DetectImageFormat(img), ImageFormat::kVhd);
  ExpectSameAsQemu(img, "vpc", dir_.path());
}

class VmdkSubformatTest : public ForeignImageTest,
                          public ::testing::WithParamInterface<const char*> {};

TEST_P(VmdkSubformatTest, ReadsLikeQemu) {
  std::string img = P("disk.vmdk");
  bool split = std::string(GetParam()) == "twoGbMaxExtentSparse";
  // Split disks need more than 2 GiB to have more than one extent file.
  std::string size = split ? "2100M" : "64M";
  ASSERT_TRUE(Sh("qemu-img create -q -f vmdk -o subformat=" +
                 std::string(GetParam()) + " '" + img + "' " + size));
  ASSERT_TRUE(Sh(Write("vmdk", img, "0xab 1M 64k")));
  ASSERT_TRUE(Sh(Write("vmdk", img, "0xcd 60k 8k")));  // across 64k grains
  ASSERT_TRUE(Sh(Write("vmdk", img, "0xef 63M 1M")));
  if (split) {
    ASSERT_TRUE(Sh(Write("vmdk", img, "0x42 2047M 2M")));  // across extents
    ASSERT_TRUE(Sh(Write("vmdk", img, "0x43 2099M 1M")));
  }
  ExpectSameAsQemu(img, "vmdk", dir_.path());
  auto src = Open(img);
  ASSERT_THAT(src, IsOk());
  EXPECT_EQ((*src)->consistency_reason(),
            "VMDK image read directly (libvmdk), unchanged during the read");
}

INSTANTIATE_TEST_SUITE_P(Subformats, VmdkSubformatTest,
                         ::testing::Values("monolithicSparse",
                                           "twoGbMaxExtentSparse",
                                           "monolithicFlat"));

// streamOptimized (compressed grains, what OVA exports hold) can only be
// written front to back: converted from a patterned raw image.
TEST_F(ForeignImageTest, VmdkStreamOptimizedReadsLikeQemu) {
  std::string raw = P("source.raw"), img = P("disk.vmdk");
  ASSERT_TRUE(Sh("qemu-img create -q -f raw '" + raw + "' 32M"));
  ASSERT_TRUE(Sh(Write("raw", raw, "0xab 1M 64k")));
  ASSERT_TRUE(Sh(Write("raw", raw, "0xcd 60k 8k")));
  ASSERT_TRUE(Sh(Write("raw", raw, "0xef 31M 1M")));
  ASSERT_TRUE(
      Sh("qemu-img convert -f raw -O vmdk -o subformat=streamOptimized '" +
         raw + "' '" + img + "'"));
  ExpectSameAsQemu(img, "vmdk", dir_.path());
}

TEST_F(ForeignImageTest, VmdkSnapshotDeltaReadsThroughItsParent) {
  ASSERT_TRUE(Sh("qemu-img create -q -f vmdk '" + P("base.vmdk") + "' 64M"));
  ASSERT_TRUE(Sh(Write("vmdk", P("base.vmdk"), "0xab 0 4M")));
  ASSERT_TRUE(Sh("cd '" + dir_.path() +
                 "' && qemu-img create -q -f vmdk -b base.vmdk -F vmdk "
                 "delta.vmdk"));
  ASSERT_TRUE(Sh(Write("vmdk", P("delta.vmdk"), "0xcd 1M 64k")));
  ExpectSameAsQemu(P("delta.vmdk"), "vmdk", dir_.path());
  auto src = Open(P("delta.vmdk"));
  ASSERT_THAT(src, IsOk());
  EXPECT_THAT((*src)->consistency_reason(),
              HasSubstr("and its 1 parent image"));

  // Writing to the parent gives it a new content id: the delta no longer
  // applies to it.
  ASSERT_TRUE(Sh(Write("vmdk", P("base.vmdk"), "0x01 8M 4k")));
  EXPECT_THAT(
      Open(P("delta.vmdk")),
      StatusIs(Code::kDataLoss, AllOf(HasSubstr("delta.vmdk: parent"),
                                      HasSubstr("base.vmdk has content id"))));
}

// --- Differencing VHDX (AVHDX), built by make_avhdx.py -------------------

TEST_F(ForeignImageTest, AvhdxChainOverlaysChildrenOnTheParent) {
  MakeBase();
  Bytes expected = ReadWholeFile(P("base.raw"));
  // Child, 1 MiB blocks: a whole block (FULLY_PRESENT), sectors of blocks
  // (PARTIALLY_PRESENT: the rest of those blocks comes from the parent, not
  // from the child's filler), a write across two blocks, the last block.
  ASSERT_TRUE(Avhdx(P("base.vhdx"), P("child.avhdx"),
                    "--write 0:1M:0x33 --write 10M:4k:0x44 "
                    "--write 2M:512:0x66 --write 3146752:1536:0x77 "
                    "--write 5119k:2k:0x88 --write 63M:1M:0x55"));
  Overlay(expected, 0, kMiB, 0x33);
  Overlay(expected, 10 * kMiB, 4096, 0x44);
  Overlay(expected, 2 * kMiB, 512, 0x66);
  Overlay(expected, 3146752, 1536, 0x77);
  Overlay(expected, 5119 * 1024, 2048, 0x88);
  Overlay(expected, 63 * kMiB, kMiB, 0x55);
  {
    auto src = Open(P("child.avhdx"));
    ASSERT_THAT(src, IsOk());
    ExpectSameBytes(**src, expected);
    EXPECT_EQ((*src)->consistency_reason(),
              "VHDX image and its 1 parent image read directly (libvhdi), "
              "unchanged during the read");
  }
  // Grandchild with 2 MiB blocks over the child.
  ASSERT_TRUE(Avhdx(P("child.avhdx"), P("grandchild.avhdx"),
                    "--block-size 2M --write 1M:2M:0x99 --write 10M:512:0xaa"));
  Overlay(expected, kMiB, 2 * kMiB, 0x99);
  Overlay(expected, 10 * kMiB, 512, 0xaa);
  auto src = Open(P("grandchild.avhdx"));
  ASSERT_THAT(src, IsOk());
  ExpectSameBytes(**src, expected);
  EXPECT_THAT((*src)->consistency_reason(), HasSubstr("its 2 parent images"));
  auto changed = (*src)->ChangedDuringRead();
  ASSERT_THAT(changed, IsOk());
  EXPECT_FALSE(*changed);
}

TEST_F(ForeignImageTest, AvhdxParentIsFoundIgnoringCase) {
  MakeBase();
  ASSERT_TRUE(Avhdx(P("base.vhdx"), P("child.avhdx"),
                    "--parent-path 'D:\\VMs\\BASE.VHDX' --write 0:4k:0x01"));
  Bytes expected = ReadWholeFile(P("base.raw"));
  Overlay(expected, 0, 4096, 0x01);
  auto src = Open(P("child.avhdx"));
  ASSERT_THAT(src, IsOk());
  ExpectSameBytes(**src, expected);
}

TEST_F(ForeignImageTest, AvhdxMissingParentIsNamed) {
  MakeBase();
  ASSERT_TRUE(Avhdx(P("base.vhdx"), P("disk.avhdx"), "--write 0:4k:0x01"));
  ASSERT_EQ(::unlink(P("base.vhdx").c_str()), 0);
  EXPECT_THAT(
      Open(P("disk.avhdx")),
      StatusIs(Code::kNotFound,
               HasSubstr("disk.avhdx: parent 'base.vhdx' not found in " +
                         dir_.path())));
}

TEST_F(ForeignImageTest, AvhdxParentIsOnlyLookedForBesideTheChild) {
  MakeBase();
  ASSERT_EQ(::mkdir(P("sub").c_str(), 0755), 0);
  // The child records a path to the folder above; that parent exists there,
  // but only the child's own folder is searched.
  ASSERT_TRUE(Avhdx(P("base.vhdx"), P("sub/child.avhdx"),
                    "--parent-path '..\\base.vhdx'"));
  EXPECT_THAT(
      Open(P("sub/child.avhdx")),
      StatusIs(Code::kNotFound,
               HasSubstr("parent 'base.vhdx' not found in " + P("sub"))));
  ASSERT_TRUE(Avhdx(P("base.vhdx"), P("dots.avhdx"), "--parent-path '..'"));
  EXPECT_THAT(Open(P("dots.avhdx")),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr("dots.avhdx: parent '..'"),
                             HasSubstr("does not name a file"))));
  ASSERT_TRUE(Avhdx(P("base.vhdx"), P("stream.avhdx"),
                    "--parent-path 'C:\\base.vhdx:evil'"));
  EXPECT_THAT(
      Open(P("stream.avhdx")),
      StatusIs(Code::kInvalidArgument, HasSubstr("does not name a file")));
}

TEST_F(ForeignImageTest, AvhdxSymlinkedParentIsRefused) {
  MakeBase();
  ASSERT_EQ(::mkdir(P("elsewhere").c_str(), 0755), 0);
  ASSERT_EQ(::rename(P("base.vhdx").c_str(), P("elsewhere/base.vhdx").c_str()),
            0);
  ASSERT_EQ(::symlink("elsewhere/base.vhdx", P("base.vhdx").c_str()), 0);
  ASSERT_TRUE(Avhdx(P("base.vhdx"), P("child.avhdx")));
  EXPECT_THAT(
      Open(P("child.avhdx")),
      StatusIs(Code::kInvalidArgument, AllOf(HasSubstr("child.avhdx: parent"),
                                             HasSubstr("is a symbolic link"))));
}

TEST_F(ForeignImageTest, AvhdxParentWithOtherIdentifierIsRefused) {
  MakeBase();
  ASSERT_TRUE(Avhdx(P("base.vhdx"), P("child.avhdx"),
                    "--parent-linkage 01234567-89ab-cdef-0123-456789abcdef"));
  EXPECT_THAT(
      Open(P("child.avhdx")),
      StatusIs(
          Code::kDataLoss,
          AllOf(HasSubstr("child.avhdx: parent " + P("base.vhdx")),
                HasSubstr("made from 01234567-89ab-cdef-0123-456789abcdef"))));
}

TEST_F(ForeignImageTest, AvhdxParentWrittenAfterTheCheckpointIsRefused) {
  MakeBase();
  ASSERT_TRUE(Avhdx(P("base.vhdx"), P("child.avhdx")));
  // qemu, like Hyper-V, gives the parent a new DataWriteGuid when it writes.
  ASSERT_TRUE(Sh(Write("vhdx", P("base.vhdx"), "0x01 0 4k")));
  EXPECT_THAT(Open(P("child.avhdx")),
              StatusIs(Code::kDataLoss, HasSubstr("has identifier")));
}

TEST_F(ForeignImageTest, AvhdxChainThatLoopsIsRefused) {
  MakeBase();
  // The child names itself as its parent, with its own identifier.
  const char* guid = "0a1b2c3d-0000-4000-8000-00000000abcd";
  ASSERT_TRUE(Avhdx(P("base.vhdx"), P("loop.avhdx"),
                    std::string("--parent-path 'loop.avhdx' ") +
                        "--data-write-guid " + guid + " --parent-linkage " +
                        guid));
  EXPECT_THAT(Open(P("loop.avhdx")),
              StatusIs(Code::kInvalidArgument,
                       AllOf(HasSubstr("loop.avhdx: the chain of images loops"),
                             HasSubstr(P("loop.avhdx") + " is already"))));
}

TEST_F(ForeignImageTest, AvhdxChainDeeperThanSixteenIsRefused) {
  std::string parent = P("base.vhdx");
  ASSERT_TRUE(Sh("qemu-img create -q -f vhdx '" + parent + "' 20M"));
  for (int i = 1; i <= 17; ++i) {
    std::string child = P("c" + std::to_string(i) + ".avhdx");
    ASSERT_TRUE(
        Avhdx(parent, child,
              "--write " + std::to_string(i) + "M:4k:" + std::to_string(i)));
    parent = child;
  }
  Bytes expected(20 * kMiB, 0);
  for (int i = 1; i <= 16; ++i) Overlay(expected, i * kMiB, 4096, i);
  auto src = Open(P("c16.avhdx"));  // 16 parents: still read
  ASSERT_THAT(src, IsOk());
  ExpectSameBytes(**src, expected);
  EXPECT_THAT(Open(P("c17.avhdx")),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("c17.avhdx: chain of parent images is deeper "
                                 "than 16")));
}

TEST_F(ForeignImageTest, ChangeOfAParentIsNoticed) {
  MakeBase();
  ASSERT_TRUE(Avhdx(P("base.vhdx"), P("child.avhdx"), "--write 0:4k:0x01"));
  auto src = Open(P("child.avhdx"));
  ASSERT_THAT(src, IsOk());
  Bytes buf(4096);
  ASSERT_THAT((*src)->Read(0, buf.data(), buf.size()), IsOk());
  // The parent written to while the child is read (qemu-io here).
  ASSERT_TRUE(Sh(Write("vhdx", P("base.vhdx"), "0x02 8M 4k")));
  auto changed = (*src)->ChangedDuringRead();
  ASSERT_THAT(changed, IsOk());
  EXPECT_TRUE(*changed);
}

// --- Damaged and hostile images ------------------------------------------

TEST_F(ForeignImageTest, GarbageAndTruncatedHeadersNameTheFile) {
  MakeBase();
  Bytes garbage = RandomData(2 * kMiB, 7);
  std::memcpy(garbage.data(), "vhdxfile", 8);
  WriteWholeFile(P("garbage.vhdx"), garbage);
  EXPECT_THAT(Open(P("garbage.vhdx")),
              StatusIs(Code::kDataLoss,
                       AllOf(HasSubstr(P("garbage.vhdx") +
                                       ": not a readable VHD/VHDX image"),
                             HasSubstr("unsupported signature"))));

  Bytes base = ReadWholeFile(P("base.vhdx"));
  base.resize(300000);  // the second region table is cut
  WriteWholeFile(P("short.vhdx"), base);
  EXPECT_THAT(Open(P("short.vhdx")),
              StatusIs(Code::kDataLoss,
                       HasSubstr(P("short.vhdx") + ": not a readable")));

  Bytes dynamic_vhd(1024, 0);
  std::memcpy(dynamic_vhd.data(), "conectix", 8);
  WriteWholeFile(P("cut.vhd"), dynamic_vhd);
  EXPECT_THAT(Open(P("cut.vhd")),
              StatusIs(Code::kDataLoss, HasSubstr(P("cut.vhd") + ": ")));

  std::string text = "# Disk DescriptorFile\nversion=1\ncreateType=\"what\"\n";
  WriteWholeFile(
      P("bad.vmdk"),
      ByteSpan(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  EXPECT_THAT(Open(P("bad.vmdk")),
              StatusIs(Code::kDataLoss, HasSubstr(P("bad.vmdk") + ": ")));

  Bytes sparse(4096, 0);
  std::memcpy(sparse.data(), "KDMV", 4);
  WriteWholeFile(P("cut.vmdk"), sparse);
  EXPECT_THAT(Open(P("cut.vmdk")),
              StatusIs(Code::kDataLoss, HasSubstr(P("cut.vmdk") + ": ")));
}

TEST_F(ForeignImageTest, TruncatedSparseVmdkFailsNamingTheFile) {
  std::string img = P("disk.vmdk");
  ASSERT_TRUE(Sh("qemu-img create -q -f vmdk '" + img + "' 64M"));
  ASSERT_TRUE(Sh(Write("vmdk", img, "0xab 0 8M")));
  ASSERT_EQ(::truncate(img.c_str(), 1 * kMiB), 0);
  // Its header and grain tables are intact: it opens, but the grains past
  // the end cannot be read.
  auto src = Open(img);
  ASSERT_THAT(src, IsOk());
  Bytes buf(kMiB);
  Status s;
  for (uint64_t off = 0; off < 8 * kMiB && s.ok(); off += kMiB)
    s = (*src)->Read(off, buf.data(), buf.size());
  EXPECT_THAT(s, StatusIs(Code::kIoError,
                          AllOf(HasSubstr(img + ": read at offset"),
                                HasSubstr("unable to read grain data"))));
}

// A monolithicFlat descriptor with its extent line replaced.
void WriteFlatDescriptor(const std::string& path, const std::string& extent) {
  std::string d =
      "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
      "createType=\"monolithicFlat\"\n\n# Extent description\nRW 8192 FLAT \"" +
      extent +
      "\" 0\n\n# The Disk Data Base\n#DDB\n\n"
      "ddb.virtualHWVersion = \"4\"\nddb.adapterType = \"ide\"\n";
  WriteWholeFile(
      path, ByteSpan(reinterpret_cast<const uint8_t*>(d.data()), d.size()));
}

TEST_F(ForeignImageTest, VmdkExtentsMustBeFilesOfTheDescriptorsFolder) {
  ASSERT_EQ(::mkdir(P("vm").c_str(), 0755), 0);
  WriteWholeFile(P("outside-flat.vmdk"), Bytes(4 * kMiB, 0x5a));
  WriteFlatDescriptor(P("vm/up.vmdk"), "../outside-flat.vmdk");
  EXPECT_THAT(
      Open(P("vm/up.vmdk")),
      StatusIs(Code::kInvalidArgument,
               HasSubstr("vm/up.vmdk: extent '../outside-flat.vmdk' is "
                         "not a file name in the descriptor's folder")));
  WriteFlatDescriptor(P("vm/abs.vmdk"), P("outside-flat.vmdk"));
  EXPECT_THAT(
      Open(P("vm/abs.vmdk")),
      StatusIs(Code::kInvalidArgument, HasSubstr("is not a file name")));
  WriteFlatDescriptor(P("vm/gone.vmdk"), "gone-flat.vmdk");
  EXPECT_THAT(Open(P("vm/gone.vmdk")),
              StatusIs(Code::kNotFound,
                       HasSubstr("gone.vmdk: extent 'gone-flat.vmdk' not found "
                                 "in " +
                                 P("vm"))));
  ASSERT_EQ(::symlink("../outside-flat.vmdk", P("vm/link-flat.vmdk").c_str()),
            0);
  WriteFlatDescriptor(P("vm/link.vmdk"), "link-flat.vmdk");
  EXPECT_THAT(
      Open(P("vm/link.vmdk")),
      StatusIs(Code::kInvalidArgument, HasSubstr("is a symbolic link")));
  // The same descriptor with the extent in place reads it.
  WriteWholeFile(P("vm/ok-flat.vmdk"), Bytes(4 * kMiB, 0x5a));
  WriteFlatDescriptor(P("vm/ok.vmdk"), "ok-flat.vmdk");
  auto src = Open(P("vm/ok.vmdk"));
  ASSERT_THAT(src, IsOk());
  ExpectSameBytes(**src, Bytes(4 * kMiB, 0x5a));
}

// A monolithic sparse disk names itself as its extent; a copy under another
// name would be read through the original (which may hold other data).
TEST_F(ForeignImageTest, RenamedSparseVmdkIsNotReadThroughAnotherFile) {
  ASSERT_TRUE(Sh("qemu-img create -q -f vmdk '" + P("disk.vmdk") + "' 8M"));
  ASSERT_TRUE(Sh("cp '" + P("disk.vmdk") + "' '" + P("copy.vmdk") + "'"));
  ASSERT_TRUE(Sh(Write("vmdk", P("disk.vmdk"), "0xab 0 64k")));
  EXPECT_THAT(
      Open(P("copy.vmdk")),
      StatusIs(Code::kInvalidArgument,
               AllOf(HasSubstr("copy.vmdk: its embedded descriptor names "
                               "extent " +
                               P("disk.vmdk")),
                     HasSubstr("not the file itself"))));
  ASSERT_EQ(::unlink(P("disk.vmdk").c_str()), 0);
  EXPECT_THAT(Open(P("copy.vmdk")),
              StatusIs(Code::kNotFound,
                       HasSubstr("copy.vmdk: extent 'disk.vmdk' not found")));
}

TEST_F(ForeignImageTest, WrongFormatsAndRangesAreRefused) {
  ASSERT_TRUE(Sh("qemu-img create -q -f vpc '" + P("disk.vhd") + "' 8M"));
  EXPECT_THAT(OpenForeignImage(P("disk.vhd"), ImageFormat::kVhdx),
              StatusIs(Code::kInvalidArgument,
                       HasSubstr("disk.vhd: is a VHD image, not vhdx")));
  EXPECT_THAT(OpenForeignImage(P("disk.vhd"), ImageFormat::kRaw),
              StatusIs(Code::kInvalidArgument, HasSubstr("disk.vhd: raw")));
  EXPECT_THAT(OpenForeignImage(P("none.vhdx"), ImageFormat::kVhdx),
              StatusIs(Code::kNotFound, HasSubstr("none.vhdx")));
  auto src = OpenForeignImage(P("disk.vhd"), ImageFormat::kVhd);
  ASSERT_THAT(src, IsOk());
  Bytes buf(1024);
  EXPECT_THAT((*src)->Read((*src)->size() - 512, buf.data(), buf.size()),
              StatusIs(Code::kInvalidArgument, HasSubstr("past the end")));
}

// Every handle and file is released: opening many sources leaks no fd.
TEST_F(ForeignImageTest, SourcesCloseTheirFiles) {
  MakeBase();
  ASSERT_TRUE(Avhdx(P("base.vhdx"), P("child.avhdx"), "--write 0:4k:0x01"));
  ASSERT_TRUE(Sh("qemu-img create -q -f vmdk -o subformat=monolithicFlat '" +
                 P("flat.vmdk") + "' 8M"));
  auto count_fds = [] {
    int n = 0;
    for (auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
      (void)e;
      ++n;
    }
    return n;
  };
  int before = count_fds();
  for (int i = 0; i < 20; ++i) {
    for (const char* name : {"child.avhdx", "flat.vmdk"}) {
      auto src = Open(P(name));
      ASSERT_THAT(src, IsOk());
      Bytes buf(4096);
      ASSERT_THAT((*src)->Read(0, buf.data(), buf.size()), IsOk());
    }
  }
  EXPECT_EQ(count_fds(), before);
}

// --- Detection by magic bytes --------------------------------------------

TEST_F(ForeignImageTest, DetectsEachFormatByItsBytes) {
  struct Case {
    const char* file;
    const char* create;
    ImageFormat format;
  };
  const Case cases[] = {
      {"a.qcow2", "-f qcow2", ImageFormat::kQcow2},
      {"a.vhdx", "-f vhdx", ImageFormat::kVhdx},
      {"dynamic.vhd", "-f vpc", ImageFormat::kVhd},
      {"fixed.vhd", "-f vpc -o subformat=fixed", ImageFormat::kVhd},
      {"sparse.vmdk", "-f vmdk", ImageFormat::kVmdk},
      {"flat.vmdk", "-f vmdk -o subformat=monolithicFlat", ImageFormat::kVmdk},
      {"a.raw", "-f raw", ImageFormat::kRaw},
  };
  for (const Case& c : cases) {
    // Names say nothing: every image is called "image".
    std::string img = P("image");
    ASSERT_TRUE(Sh(std::string("qemu-img create -q ") + c.create + " '" + img +
                   "' 8M"));
    auto f = DetectImageFormat(img);
    ASSERT_THAT(f, IsOk()) << c.file;
    EXPECT_EQ(*f, c.format) << c.file << " detected as " << FormatName(*f);
    ASSERT_TRUE(Sh("rm -f '" + dir_.path() + "'/image*"));
  }
  WriteWholeFile(P("empty"), Bytes());
  WriteWholeFile(P("tiny"), Bytes{'Q', 'F'});
  WriteWholeFile(P("random"), RandomData(1 << 16, 3));
  for (const char* name : {"empty", "tiny", "random"}) {
    auto f = DetectImageFormat(P(name));
    ASSERT_THAT(f, IsOk()) << name;
    EXPECT_EQ(*f, ImageFormat::kRaw) << name;
  }
  EXPECT_THAT(DetectImageFormat(P("missing")),
              StatusIs(Code::kNotFound, HasSubstr(P("missing"))));
  EXPECT_THAT(DetectImageFormat(dir_.path()),
              StatusIs(Code::kInvalidArgument, HasSubstr(dir_.path())));
  EXPECT_STREQ(FormatName(ImageFormat::kVhdx), "vhdx");
  EXPECT_STREQ(FormatName(ImageFormat::kQcow2), "qcow2");
}

// --- VM configuration beside the disks -----------------------------------

TEST(ForeignConfigFilesTest, PicksTheHypervisorsConfigurationFiles) {
  TempDir dir;
  for (const char* name :
       {"vm.vmx", "VM.VMXF", "vm.vmsd", "vm.nvram", "vm.vmx.lck-notes.txt",
        "disk.vmdk", "vm.vmcx", "vm.VMRS", "vm.vmgs", "Config.XML", "notes.txt",
        ".vmx"}) {
    WriteWholeFile(dir.Sub(name), Bytes{'x'});
  }
  ASSERT_EQ(::symlink("vm.vmx", dir.Sub("link.vmx").c_str()), 0);
  ASSERT_EQ(::mkdir(dir.Sub("folder.vmx").c_str(), 0755), 0);
  ASSERT_EQ(::truncate(dir.Sub("vm.vmsd").c_str(), (64 << 20) + 1), 0);
  EXPECT_THAT(
      ForeignConfigFiles(dir.Sub("disk.vmdk"), ImageFormat::kVmdk),
      ElementsAre(dir.Sub("VM.VMXF"), dir.Sub("vm.nvram"), dir.Sub("vm.vmx")));
  EXPECT_THAT(ForeignConfigFiles(dir.Sub("disk.avhdx"), ImageFormat::kVhdx),
              ElementsAre(dir.Sub("Config.XML"), dir.Sub("vm.VMRS"),
                          dir.Sub("vm.vmcx"), dir.Sub("vm.vmgs")));
  EXPECT_THAT(ForeignConfigFiles(dir.Sub("disk.vhd"), ImageFormat::kVhd),
              ElementsAre(dir.Sub("Config.XML"), dir.Sub("vm.VMRS"),
                          dir.Sub("vm.vmcx"), dir.Sub("vm.vmgs")));
  EXPECT_THAT(ForeignConfigFiles(dir.Sub("disk.raw"), ImageFormat::kRaw),
              IsEmpty());
  EXPECT_THAT(ForeignConfigFiles(dir.Sub("disk.qcow2"), ImageFormat::kQcow2),
              IsEmpty());
  EXPECT_THAT(ForeignConfigFiles(dir.Sub("gone/disk.vmdk"), ImageFormat::kVmdk),
              IsEmpty());
}

}  // namespace
}  // namespace haven::snapshot
