// TarExtractor (haven agent restore) with hostile archives made here with
// libarchive: names with "..", absolute names, a symlink the archive makes
// and then tries to write through, a hard link out of the target, a file
// that exists already, and an archive cut off in the middle.
#include "restore/tar_extract.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <string>

#include "tests/unit/test_util.h"

namespace haven::restore {
namespace {

using ::testing::HasSubstr;
using testing_util::IsOk;
using testing_util::PathExists;
using testing_util::StatusIs;

// A tar (pax) in memory.
class TarMaker {
 public:
  TarMaker() : a_(archive_write_new()) {
    archive_write_set_format_pax_restricted(a_);
    archive_write_open(a_, this, nullptr, OnWrite, nullptr);
  }
  ~TarMaker() { archive_write_free(a_); }
  void File(const std::string& name, const std::string& data) {
    Add(name, AE_IFREG, data, "", "");
  }
  void Dir(const std::string& name) { Add(name, AE_IFDIR, "", "", ""); }
  void Symlink(const std::string& name, const std::string& target) {
    Add(name, AE_IFLNK, "", target, "");
  }
  void HardLink(const std::string& name, const std::string& target) {
    Add(name, AE_IFREG, "", "", target);
  }
  void Entry(const std::string& name, int type, int perm,
             const std::string& data) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, perm);
    archive_entry_set_size(e, data.size());
    archive_write_header(a_, e);
    if (!data.empty()) archive_write_data(a_, data.data(), data.size());
    archive_entry_free(e);
  }
  std::string Finish() {
    archive_write_close(a_);
    return out_;
  }

 private:
  static la_ssize_t OnWrite(struct archive*, void* self, const void* buf,
                            size_t n) {
    static_cast<TarMaker*>(self)->out_.append(static_cast<const char*>(buf), n);
    return static_cast<la_ssize_t>(n);
  }
  void Add(const std::string& name, int type, const std::string& data,
           const std::string& symlink, const std::string& hardlink) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, type == AE_IFDIR ? 0755 : 0644);
    archive_entry_set_size(e, data.size());
    if (!symlink.empty()) archive_entry_set_symlink(e, symlink.c_str());
    if (!hardlink.empty()) archive_entry_set_hardlink(e, hardlink.c_str());
    archive_write_header(a_, e);
    if (!data.empty()) archive_write_data(a_, data.data(), data.size());
    archive_entry_free(e);
  }
  struct archive* a_;
  std::string out_;
};

std::string ReadText(const std::string& path) {
  Bytes b = testing_util::ReadWholeFile(path);
  return std::string(b.begin(), b.end());
}

// Feeds `tar` in small pieces, as a download would.
Result<TarExtractResult> Extract(const std::string& dir,
                                 const std::string& tar) {
  HAVEN_ASSIGN_OR_RETURN(auto x, TarExtractor::Start(dir));
  for (size_t off = 0; off < tar.size(); off += 1000)
    HAVEN_RETURN_IF_ERROR(x->Write(std::string_view(tar).substr(off, 1000)));
  return x->Finish();
}

TEST(TarExtract, WritesOnlyInsideTheTarget) {
  testing_util::TempDir tmp;
  const std::string to = tmp.Sub("to"), outside = tmp.Sub("outside");
  ASSERT_EQ(mkdir(to.c_str(), 0755), 0);
  ASSERT_EQ(mkdir(outside.c_str(), 0755), 0);
  TarMaker t;
  t.Dir("etc");
  t.File("etc/hosts", "127.0.0.1 localhost\n");
  t.File("../escaped", "up");
  t.File("etc/../../escaped2", "up");
  t.File("/abs-escaped", "abs");
  t.Symlink("etc/out", outside);
  t.File("etc/out/through", "via the symlink");
  t.HardLink("etc/passwd-link", "../outside-file");
  t.File("etc/bad\x01name", "control");
  auto r = Extract(to, t.Finish());
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(ReadText(to + "/etc/hosts"), "127.0.0.1 localhost\n");
  // The archive's own symlink is made, and never followed.
  struct stat st;
  ASSERT_EQ(lstat((to + "/etc/out").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_FALSE(PathExists(outside + "/through"));
  EXPECT_FALSE(PathExists(tmp.Sub("escaped")));
  EXPECT_FALSE(PathExists(tmp.Sub("escaped2")));
  EXPECT_FALSE(PathExists("/abs-escaped"));
  EXPECT_FALSE(PathExists(to + "/etc/passwd-link"));
  // Each refusal is listed, by name.
  std::string all;
  for (const auto& p : r->problems) all += p + "\n";
  EXPECT_EQ(r->problems.size(), 6u) << all;
  EXPECT_THAT(all, HasSubstr("../escaped: an invalid name"));
  EXPECT_THAT(all, HasSubstr("/abs-escaped: an absolute name"));
  EXPECT_THAT(all, HasSubstr("etc/out/through"));
  EXPECT_THAT(all, HasSubstr("etc/passwd-link"));
  EXPECT_THAT(all, HasSubstr("etc/bad\\x01name"));
}

// An agent's restore gives back no set-id bit and makes no device node,
// and a hard link may only join names this restore wrote: one to a file
// that was in the target before (with data, it would overwrite that file)
// is skipped.
TEST(TarExtract, NoSetIdNoDevicesNoLinksToFilesItDidNotWrite) {
  testing_util::TempDir tmp;
  const std::string to = tmp.path();
  std::string mine = "mine\n";
  testing_util::WriteWholeFile(
      to + "/was-here",
      ByteSpan(reinterpret_cast<const uint8_t*>(mine.data()), mine.size()));
  TarMaker t;
  t.Entry("suid", AE_IFREG, 04755, "#!/bin/sh\n");
  t.Entry("tty0", AE_IFCHR, 0600, "");
  t.File("a", "a\n");
  t.HardLink("a-link", "a");
  t.HardLink("grab", "was-here");
  auto r = Extract(to, t.Finish());
  ASSERT_THAT(r, IsOk());
  struct stat st;
  ASSERT_EQ(lstat((to + "/suid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_FALSE(PathExists(to + "/tty0"));
  ASSERT_EQ(lstat((to + "/a-link").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  EXPECT_FALSE(PathExists(to + "/grab"));
  EXPECT_EQ(ReadText(to + "/was-here"), "mine\n");
  std::string all;
  for (const auto& p : r->problems) all += p + "\n";
  EXPECT_THAT(all, HasSubstr("tty0: a device node"));
  EXPECT_THAT(all, HasSubstr("grab: a hard link to was-here, which this "
                             "restore did not write"));
}

TEST(TarExtract, ExistingFilesAreKept) {
  testing_util::TempDir tmp;
  const std::string to = tmp.path();
  std::string mine = "mine\n";
  testing_util::WriteWholeFile(
      to + "/keep.txt",
      ByteSpan(reinterpret_cast<const uint8_t*>(mine.data()), mine.size()));
  TarMaker t;
  t.File("keep.txt", "from the backup\n");
  t.File("new.txt", "new\n");
  auto r = Extract(to, t.Finish());
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(ReadText(to + "/keep.txt"), "mine\n");
  EXPECT_EQ(ReadText(to + "/new.txt"), "new\n");
  ASSERT_EQ(r->problems.size(), 1u);
  EXPECT_THAT(r->problems[0], HasSubstr("keep.txt"));
}

TEST(TarExtract, CutOffArchiveIsDataLoss) {
  testing_util::TempDir tmp;
  TarMaker t;
  t.File("a", std::string(100000, 'a'));
  t.File("b", std::string(100000, 'b'));
  std::string tar = t.Finish();
  tar.resize(150000);
  EXPECT_THAT(Extract(tmp.path(), tar),
              StatusIs(Code::kDataLoss, HasSubstr("cut off")));
}

}  // namespace
}  // namespace haven::restore
