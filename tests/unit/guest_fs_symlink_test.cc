// Tests for restore/guest_fs.h and the file restore on real ext4 images made
// with mke2fs -d: symlink targets kept in the inode ("fast", under 60 bytes)
// and in a data block ("slow"), read exactly and restored into a folder and
// a tar; hostile symlinks made by editing the image's bytes (a target with a
// NUL, a block past the end of the disk or on a damaged chunk, a size past
// the block or past PATH_MAX) each reported with a clear reason, the rest of
// the directory still listed and restored; a sparse file restored with holes
// at block granularity.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "restore/file_restore.h"
#include "restore/guest_fs.h"
#include "tests/unit/test_util.h"

namespace haven::restore {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::Sh;
using ::haven::testing_util::ShOut;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteWholeFile;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr uint64_t kMiB = 1 << 20;

// The bytes of an image file; reads overlapping `bad_` fail with DataLoss,
// as a damaged chunk of a recovery point does.
class FileDisk : public DiskBytes {
 public:
  explicit FileDisk(const std::string& path) : name_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd_ >= 0 && ::fstat(fd_, &st) == 0) size_ = static_cast<uint64_t>(st.st_size);
  }
  ~FileDisk() override {
    if (fd_ >= 0) ::close(fd_);
  }
  uint64_t size() const override { return size_; }
  const std::string& name() const override { return name_; }
  Result<size_t> Read(uint64_t off, uint8_t* buf, size_t len) override {
    if (off >= size_) return size_t{0};
    len = static_cast<size_t>(std::min<uint64_t>(len, size_ - off));
    if (bad_len_ && off < bad_off_ + bad_len_ && bad_off_ < off + len)
      return DataLoss("chunk at byte " + std::to_string(bad_off_) + " is damaged");
    ssize_t n = ::pread(fd_, buf, len, static_cast<off_t>(off));
    if (n < 0) return IoError("pread failed");
    return static_cast<size_t>(n);
  }
  void Damage(uint64_t off, uint64_t len) { bad_off_ = off, bad_len_ = len; }

 private:
  std::string name_;
  int fd_ = -1;
  uint64_t size_ = 0;
  uint64_t bad_off_ = 0, bad_len_ = 0;
};

// A target of exactly `n` bytes: "/" then path components of 50 bytes.
std::string Target(size_t n, char c = 'a') {
  std::string t;
  while (t.size() < n) t += t.size() % 51 == 0 ? '/' : c;
  return t;
}

// The data block (4 KiB unless the image says otherwise) of a slow symlink.
uint64_t FirstBlock(const std::string& image, const std::string& path) {
  std::string out = ShOut("debugfs -R 'blocks " + path + "' '" + image + "' 2>/dev/null");
  return std::strtoull(out.c_str(), nullptr, 10);
}

class GuestFsSymlinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Sh("(command -v mke2fs && command -v debugfs)") != 0)
      GTEST_SKIP() << "mke2fs/debugfs not installed (e2fsprogs)";
    src_ = tmp_.Sub("src");
    ASSERT_TRUE(std::filesystem::create_directories(src_));
  }

  void Link(const std::string& target, const std::string& name) {
    ASSERT_EQ(::symlink(target.c_str(), (src_ + "/" + name).c_str()), 0) << name;
  }

  // An ext4 image of src_ with `block` byte blocks.
  std::string MakeImage(const std::string& name, int block = 4096,
                        const std::string& size = "32M") {
    const std::string img = tmp_.Sub(name);
    EXPECT_EQ(Sh("truncate -s " + size + " '" + img + "' && mke2fs -q -F -t ext4 -b " +
                  std::to_string(block) + " -d '" + src_ + "' '" + img + "'"),
              0);
    return img;
  }

  std::unique_ptr<GuestFs> Open(DiskBytes& disk) {
    auto layout = ReadGuestLayout(disk);
    EXPECT_THAT(layout, IsOk());
    if (!layout.ok()) return nullptr;
    auto v = ChooseVolume(*layout, -1, disk.name());
    EXPECT_THAT(v, IsOk());
    if (!v.ok()) return nullptr;
    auto fs = GuestFs::Open(disk, *v);
    EXPECT_THAT(fs, IsOk());
    return fs.ok() ? std::move(*fs) : nullptr;
  }

  // The root's entries by name.
  std::map<std::string, GuestEntry> Root(GuestFs& fs) {
    std::map<std::string, GuestEntry> out;
    auto root = fs.Lookup("/");
    EXPECT_THAT(root, IsOk());
    if (!root.ok()) return out;
    auto list = fs.List(*root);
    EXPECT_THAT(list, IsOk());
    if (!list.ok()) return out;
    for (auto& e : *list) out[e.name] = e;
    return out;
  }

  Result<FileRestoreStats> Restore(GuestTree& tree, FileTarget target, const std::string& path) {
    FileRestoreOptions o;
    o.target = target;
    o.path = path;
    o.owners = false;
    o.sync = false;
    return RestoreGuestFiles(tree, {"/"}, o);
  }

  TempDir tmp_;
  std::string src_;
};

TEST_F(GuestFsSymlinkTest, FastAndSlowSymlinksAreReadAndRestoredExactly) {
  std::map<std::string, std::string> links = {
      {"fast59", Target(59)},      {"slow60", Target(60)},
      {"slow200", Target(200)},    {"slow4000", Target(4000)},
      {"rel", "../../usr/share/ca-certificates/mozilla/"
              "Hellenic_Academic_and_Research_Institutions_RootCA_2015.crt"},
      {"short", "x"},
  };
  for (const auto& [name, target] : links) Link(target, name);
  WriteWholeFile(src_ + "/file", RandomData(5000, 3));
  FileDisk disk(MakeImage("links.img"));
  auto fs = Open(disk);
  ASSERT_NE(fs, nullptr);

  auto root = Root(*fs);
  for (const auto& [name, target] : links) {
    ASSERT_TRUE(root.count(name)) << name;
    const GuestEntry& e = root[name];
    EXPECT_EQ(e.type, GuestType::kSymlink) << name;
    EXPECT_EQ(e.link_target, target) << name;
    EXPECT_EQ(e.link_problem, "") << name;
    EXPECT_EQ(e.size, target.size()) << name;
  }
  // Lookup gives the same targets (a single symlink restored or listed).
  auto one = fs->Lookup("/slow4000");
  ASSERT_THAT(one, IsOk());
  EXPECT_EQ(one->link_target, links["slow4000"]);

  const std::string out = tmp_.Sub("out");
  auto r = Restore(*fs, FileTarget::kDirectory, out);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  EXPECT_EQ(r->symlinks, links.size());
  for (const auto& [name, target] : links) {
    std::error_code ec;
    EXPECT_EQ(std::filesystem::read_symlink(out + "/" + name, ec).string(), target) << name;
    EXPECT_FALSE(ec) << name << ": " << ec.message();
  }

  // The tar export holds every symlink with its target.
  const std::string tar = tmp_.Sub("links.tar");
  r = Restore(*fs, FileTarget::kTar, tar);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  std::map<std::string, std::string> archived;
  struct archive* a = archive_read_new();
  archive_read_support_format_all(a);
  ASSERT_EQ(archive_read_open_filename(a, tar.c_str(), 1 << 16), ARCHIVE_OK);
  struct archive_entry* ae;
  while (archive_read_next_header(a, &ae) == ARCHIVE_OK)
    if (archive_entry_filetype(ae) == AE_IFLNK)
      archived[archive_entry_pathname(ae)] = archive_entry_symlink(ae);
  archive_read_free(a);
  EXPECT_EQ(archived, links);
}

TEST_F(GuestFsSymlinkTest, HostileSymlinksAreReportedOneByOne) {
  Link(Target(59), "fast-nul");          // a NUL written into the inode
  Link(Target(200, 'n'), "slow-nul");    // a NUL written into its block
  Link(Target(200, 'p'), "slow-past");   // its extent points past the disk
  Link(Target(200, 'z'), "slow-zero");   // its extent points at block 0's zeros
  Link(Target(300, 'd'), "slow-damaged");  // its block is on a damaged chunk
  Link(Target(100, 'h'), "slow-huge");   // its size claims 1 MiB
  Link(Target(100, 'g'), "good");
  WriteWholeFile(src_ + "/file.txt", RandomData(3000, 5));
  const std::string img = MakeImage("hostile.img");
  const uint64_t nul_block = FirstBlock(img, "/slow-nul");
  ASSERT_GT(nul_block, 0u);
  // slow-damaged's extent moved to a block far from everything else, so
  // the damaged chunk (64 KiB, as TSK reads through its cache) holds
  // nothing another entry needs.
  const uint64_t damaged_block = 7000;
  {  // The NUL, byte 100 of slow-nul's block.
    int fd = ::open(img.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, "\0", 1, static_cast<off_t>(nul_block * 4096 + 100)), 1);
    ::close(fd);
  }
  // i_block[2]: bytes 8-11 of a fast target; i_block[5]: the start block of
  // the first extent (after the 12-byte header and ee_block, ee_len,
  // ee_start_hi).
  ASSERT_EQ(Sh("debugfs -w -R 'sif /fast-nul block[2] 0' '" + img + "'"), 0);
  ASSERT_EQ(Sh("debugfs -w -R 'sif /slow-past block[5] 0x7ffffff0' '" + img + "'"), 0);
  ASSERT_EQ(Sh("debugfs -w -R 'sif /slow-zero block[5] 0' '" + img + "'"), 0);
  ASSERT_EQ(Sh("debugfs -w -R 'sif /slow-huge size 1048576' '" + img + "'"), 0);
  ASSERT_EQ(Sh("debugfs -w -R 'sif /slow-damaged block[5] " + std::to_string(damaged_block) +
                  "' '" + img + "'"),
            0);
  FileDisk disk(img);
  disk.Damage(damaged_block * 4096 / 65536 * 65536, 65536);
  auto fs = Open(disk);
  ASSERT_NE(fs, nullptr);

  auto root = Root(*fs);  // the directory lists despite the damaged block
  ASSERT_TRUE(root.count("good") && root.count("file.txt"));
  EXPECT_EQ(root["good"].link_target, Target(100, 'g'));
  EXPECT_EQ(root["good"].link_problem, "");
  const std::map<std::string, std::string> want = {
      {"fast-nul", "holds a NUL byte (after 8 of 59 bytes)"},
      {"slow-nul", "holds a NUL byte (after 100 of 200 bytes)"},
      {"slow-past", "cannot be read"},
      {"slow-zero", "holds a NUL byte (after 0 of 200 bytes)"},
      {"slow-damaged", "is damaged"},
      {"slow-huge", "claims 1048576 bytes, more than the 4095"},
  };
  for (const auto& [name, why] : want) {
    ASSERT_TRUE(root.count(name)) << name;
    EXPECT_EQ(root[name].type, GuestType::kSymlink) << name;
    EXPECT_EQ(root[name].link_target, "") << name;
    EXPECT_THAT(root[name].link_problem, HasSubstr(why)) << name;
  }

  const std::string out = tmp_.Sub("out");
  auto r = Restore(*fs, FileTarget::kDirectory, out);
  ASSERT_THAT(r, IsOk());
  std::map<std::string, std::string> problems;
  for (const auto& p : r->problems) problems[p.path] = p.what;
  EXPECT_EQ(problems.size(), want.size());
  for (const auto& [name, why] : want)
    EXPECT_THAT(problems["/" + name], HasSubstr("symlink not restored: its target")) << name;
  EXPECT_EQ(std::filesystem::read_symlink(out + "/good").string(), Target(100, 'g'));
  EXPECT_TRUE(ReadWholeFile(out + "/file.txt") == RandomData(3000, 5));
  for (const auto& [name, why] : want)
    EXPECT_FALSE(std::filesystem::is_symlink(out + "/" + name)) << name;

  // The tar export reports the same entries and holds the good ones.
  auto t = Restore(*fs, FileTarget::kTar, tmp_.Sub("hostile.tar"));
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->problems.size(), want.size());
  EXPECT_EQ(t->symlinks, 1u);
}

// With 1 KiB blocks, a target may be longer than a block only by lying:
// the inode claims 3000 bytes, its one block holds 1000. The rest is a hole
// (zeros) or unreadable, never bytes from elsewhere.
TEST_F(GuestFsSymlinkTest, TargetLongerThanItsBlockIsReported) {
  Link(Target(1000, 'b'), "long");
  Link(Target(1000, 'k'), "ok");
  const std::string img = MakeImage("small.img", 1024, "8M");
  ASSERT_EQ(Sh("debugfs -w -R 'sif /long size 3000' '" + img + "'"), 0);
  FileDisk disk(img);
  auto fs = Open(disk);
  ASSERT_NE(fs, nullptr);
  auto root = Root(*fs);
  ASSERT_TRUE(root.count("long") && root.count("ok"));
  EXPECT_EQ(root["ok"].link_target, Target(1000, 'k'));
  EXPECT_EQ(root["long"].link_target, "");
  EXPECT_THAT(root["long"].link_problem, HasSubstr("its target"));
}

// A directory whose inode claims more bytes than the volume holds is
// refused in words at once, not handed to The Sleuth Kit (which would map
// the claim block by block, in time quadratic in it); its siblings list.
TEST_F(GuestFsSymlinkTest, DirectoryClaimingMoreThanItsVolumeIsRefused) {
  ASSERT_TRUE(std::filesystem::create_directories(src_ + "/big"));
  ASSERT_TRUE(std::filesystem::create_directories(src_ + "/fine"));
  { std::ofstream(src_ + "/fine/a") << "a"; }
  const std::string img = MakeImage("dir.img", 1024, "8M");
  ASSERT_EQ(Sh("debugfs -w -R 'sif /big size 0x40000000' '" + img + "'"), 0);
  FileDisk disk(img);
  auto fs = Open(disk);
  ASSERT_NE(fs, nullptr);
  auto root = Root(*fs);
  ASSERT_TRUE(root.count("big") && root.count("fine"));
  auto big = fs->List(root["big"]);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), Code::kDataLoss);
  EXPECT_THAT(big.status().message(), HasSubstr("more than its volume"));
  auto fine = fs->List(root["fine"]);
  ASSERT_THAT(fine, IsOk());
  EXPECT_EQ(fine->size(), 1u);
}

// A 200 MiB file with three 4 KiB writes comes back with about 12 KiB
// allocated, not a MiB around each write.
TEST_F(GuestFsSymlinkTest, SparseFileKeepsBlockGranularHoles) {
  const std::string path = src_ + "/sparse.img";
  const uint64_t size = 200 * kMiB;
  const uint64_t offsets[] = {0, 77 * kMiB + 8192, size - 4096};
  {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    for (uint64_t off : offsets) {
      Bytes d = RandomData(4096, static_cast<uint32_t>(off % 1000));
      ASSERT_EQ(::pwrite(fd, d.data(), d.size(), static_cast<off_t>(off)), 4096);
    }
    ::close(fd);
  }
  // A volume larger than the file: a restore refuses files claiming more
  // than their volume holds.
  FileDisk disk(MakeImage("sparse-fs.img", 4096, "256M"));
  auto fs = Open(disk);
  ASSERT_NE(fs, nullptr);
  const std::string out = tmp_.Sub("out");
  auto r = Restore(*fs, FileTarget::kDirectory, out);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  struct stat st {};
  ASSERT_EQ(::stat((out + "/sparse.img").c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), size);
  const uint64_t allocated = static_cast<uint64_t>(st.st_blocks) * 512;
  EXPECT_LE(allocated, 64u * 1024) << "allocated " << allocated << " bytes";
  EXPECT_GE(allocated, 3u * 4096);
  const Bytes want = ReadWholeFile(path);
  EXPECT_TRUE(ReadWholeFile(out + "/sparse.img") == want);

  // The tar export stores the 12 KiB written and the map of the holes,
  // from the file system's extents (the file is too large to hold).
  const std::string tar = tmp_.Sub("sparse.tar");
  r = Restore(*fs, FileTarget::kTar, tar);
  ASSERT_THAT(r, IsOk());
  EXPECT_THAT(r->problems, IsEmpty());
  ASSERT_EQ(::stat(tar.c_str(), &st), 0);
  EXPECT_LE(static_cast<uint64_t>(st.st_size), 64u * 1024) << "tar of " << st.st_size << " bytes";
  struct archive* a = archive_read_new();
  archive_read_support_format_all(a);
  ASSERT_EQ(archive_read_open_filename(a, tar.c_str(), 1 << 16), ARCHIVE_OK);
  struct archive_entry* ae;
  bool found = false;
  while (archive_read_next_header(a, &ae) == ARCHIVE_OK) {
    if (std::string(archive_entry_pathname(ae)) != "sparse.img") continue;
    found = true;
    EXPECT_EQ(archive_entry_sparse_count(ae), 3);
    Bytes got(static_cast<size_t>(archive_entry_size(ae)));
    la_ssize_t n;
    size_t done = 0;
    while (done < got.size() &&
           (n = archive_read_data(a, got.data() + done, got.size() - done)) > 0)
      done += static_cast<size_t>(n);
    EXPECT_EQ(done, want.size());
    EXPECT_TRUE(got == want);
  }
  archive_read_free(a);
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace haven::restore
