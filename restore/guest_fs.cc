#include "restore/guest_fs.h"

#include <tsk/libtsk.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <type_traits>

#include "base/bytes.h"

namespace haven::restore {
namespace {

constexpr char kSupported[] = "ext2/3/4, NTFS, FAT12/16/32, exFAT and HFS+";

// TSK's error for the current thread, cleared.
std::string TskError() {
  const char* e = tsk_error_get();
  std::string out = e ? e : "unknown error";
  tsk_error_reset();
  return out;
}

// An image for TSK whose bytes come from a DiskBytes. TSK's external
// image API takes a struct that starts with TSK_IMG_INFO and hands it back
// to our read and close callbacks.
struct ReaderImage {
  TSK_IMG_INFO info;  // must stay first
  DiskBytes* reader;
};
static_assert(std::is_standard_layout_v<ReaderImage>);

// Why the last failed read on this thread failed: TSK's own message for a
// failed read says only "read error"; the reader's names the chunk. TSK
// calls back on the calling thread.
thread_local Status last_read_error;
// Failed reads on this thread so far. TSK does not always pass a failed
// read on: a file's content read over a damaged chunk can come back as
// zeros. So every operation compares this count before and after, and a
// failed read fails the operation whatever TSK returned.
thread_local uint64_t read_failures = 0;

class ReadCheck {
 public:
  ReadCheck() : start_(read_failures) {}
  // DataLoss naming the failed read if any read failed since construction.
  Status Result(const std::string& what) const {
    if (read_failures == start_) return OkStatus();
    Status s = last_read_error.ok() ? DataLoss("a read of the disk failed")
                                    : last_read_error;
    last_read_error = OkStatus();
    tsk_error_reset();
    return Status(Code::kDataLoss, s.message()).WithContext(what);
  }

 private:
  uint64_t start_;
};

ssize_t ReadImage(TSK_IMG_INFO* img, TSK_OFF_T off, char* buf, size_t len) {
  auto* self = reinterpret_cast<ReaderImage*>(img);
  if (off < 0) return -1;
  Result<size_t> n = self->reader->Read(static_cast<uint64_t>(off),
                                        reinterpret_cast<uint8_t*>(buf), len);
  if (!n.ok()) {
    last_read_error = n.status();
    ++read_failures;
    tsk_error_reset();
    tsk_error_set_errno(TSK_ERR_IMG_READ);
    tsk_error_set_errstr("%s", n.status().message().c_str());
    return -1;
  }
  return static_cast<ssize_t>(*n);
}

void CloseImage(TSK_IMG_INFO* img) {
  delete reinterpret_cast<ReaderImage*>(img);
}
void StatImage(TSK_IMG_INFO*, FILE*) {}

struct ImgCloser {
  void operator()(TSK_IMG_INFO* p) const { tsk_img_close(p); }
};
struct VsCloser {
  void operator()(TSK_VS_INFO* p) const { tsk_vs_close(p); }
};
struct FsCloser {
  void operator()(TSK_FS_INFO* p) const { tsk_fs_close(p); }
};
struct FileCloser {
  void operator()(TSK_FS_FILE* p) const { tsk_fs_file_close(p); }
};
struct DirCloser {
  void operator()(TSK_FS_DIR* p) const { tsk_fs_dir_close(p); }
};
using ImgPtr = std::unique_ptr<TSK_IMG_INFO, ImgCloser>;
using VsPtr = std::unique_ptr<TSK_VS_INFO, VsCloser>;
using FsPtr = std::unique_ptr<TSK_FS_INFO, FsCloser>;
using FilePtr = std::unique_ptr<TSK_FS_FILE, FileCloser>;
using DirPtr = std::unique_ptr<TSK_FS_DIR, DirCloser>;

Result<ImgPtr> OpenImage(DiskBytes& disk) {
  auto* img = new ReaderImage{};
  img->reader = &disk;
  TSK_IMG_INFO* info =
      tsk_img_open_external(img, static_cast<TSK_OFF_T>(disk.size()), 512,
                            ReadImage, CloseImage, StatImage);
  if (!info) {
    delete img;
    return Internal("cannot open disk " + disk.name() +
                    " for The Sleuth Kit: " + TskError());
  }
  return ImgPtr(info);
}

// The reader's error when a TSK call failed on a read, else TSK's message.
Status FailureOf(TSK_IMG_INFO* img, Code code, const std::string& what) {
  (void)img;
  if (!last_read_error.ok()) {
    Status s = last_read_error;
    last_read_error = OkStatus();
    tsk_error_reset();
    return s.WithContext(what);
  }
  return Status(code, what + ": " + TskError());
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

std::string ReadAt(DiskBytes& disk, uint64_t off, size_t len) {
  std::string out(len, '\0');
  Result<size_t> n =
      disk.Read(off, reinterpret_cast<uint8_t*>(out.data()), len);
  if (!n.ok() || *n != len) return {};
  return out;
}

// File systems TSK cannot read that are common on Linux guests, named so
// the message says what the volume is.
std::string ForeignFileSystem(DiskBytes& disk, uint64_t off) {
  if (ReadAt(disk, off, 4) == "XFSB") return "XFS";
  if (ReadAt(disk, off + 0x10040, 8) == "_BHRfS_M") return "Btrfs";
  if (ReadAt(disk, off + 512, 8) == "LABELONE") return "LVM physical volume";
  if (ReadAt(disk, off, 6) == "LUKS\xba\xbe") return "LUKS (encrypted)";
  if (ReadAt(disk, off + 4086, 10) == "SWAPSPACE2") return "Linux swap";
  if (ReadAt(disk, off + 0x8000 + 1, 5) == "CD001") return "ISO 9660";
  return "";
}

std::string Utf16LeToUtf8(const std::string& in) {
  std::string out;
  for (size_t i = 0; i + 1 < in.size(); i += 2) {
    uint32_t c = static_cast<uint8_t>(in[i]) |
                 (static_cast<uint32_t>(static_cast<uint8_t>(in[i + 1])) << 8);
    if (c >= 0xd800 && c <= 0xdfff) c = '?';  // no surrogate pairs in labels
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xc0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3f));
    } else {
      out += static_cast<char>(0xe0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (c & 0x3f));
    }
  }
  return out;
}

constexpr char kLabelSuffix[] = " (Volume Label Entry)";

// TSK shows a FAT or exFAT volume label, and exFAT's allocation bitmap,
// upcase table and GUID entries, as files of the root directory. The
// label entries are empty; the exFAT tables carry no timestamps, which a
// real exFAT file always has (its clock starts in 1980).
bool IsFatSpecial(const TSK_FS_META& m, const char* name) {
  std::string_view n(name);
  if (n.ends_with(kLabelSuffix) && m.size == 0) return true;
  return n.starts_with("$") && m.mtime == 0 && m.crtime == 0;
}

std::string VolumeLabel(DiskBytes& disk, TSK_FS_INFO* fs, uint64_t off) {
  if (TSK_FS_TYPE_ISEXT(fs->ftype))
    return Trim(ReadAt(disk, off + 1024 + 0x78, 16));
  if (fs->ftype == TSK_FS_TYPE_FAT12 || fs->ftype == TSK_FS_TYPE_FAT16 ||
      fs->ftype == TSK_FS_TYPE_FAT32) {
    std::string l = Trim(
        ReadAt(disk, off + (fs->ftype == TSK_FS_TYPE_FAT32 ? 0x47 : 0x2b), 11));
    return l == "NO NAME" ? "" : l;
  }
  if (fs->ftype == TSK_FS_TYPE_EXFAT) {
    DirPtr root(tsk_fs_dir_open_meta(fs, fs->root_inum));
    if (!root) return (tsk_error_reset(), "");
    for (size_t i = 0; i < tsk_fs_dir_getsize(root.get()); ++i) {
      FilePtr f(tsk_fs_dir_get(root.get(), i));
      if (!f || !f->name || !f->name->name || !f->meta) continue;
      std::string_view n(f->name->name);
      if (IsFatSpecial(*f->meta, f->name->name) && n.ends_with(kLabelSuffix))
        return std::string(n.substr(0, n.size() - strlen(kLabelSuffix)));
    }
    tsk_error_reset();
    return "";
  }
  if (TSK_FS_TYPE_ISNTFS(fs->ftype)) {
    FilePtr vol(tsk_fs_file_open_meta(fs, nullptr, 3));  // $Volume
    if (!vol) return (tsk_error_reset(), "");
    const TSK_FS_ATTR* a =
        tsk_fs_file_attr_get_type(vol.get(), TSK_FS_ATTR_TYPE_NTFS_VNAME, 0, 0);
    if (!a || a->size <= 0 || a->size > 256) return (tsk_error_reset(), "");
    std::string raw(static_cast<size_t>(a->size), '\0');
    if (tsk_fs_attr_read(a, 0, raw.data(), raw.size(),
                         TSK_FS_FILE_READ_FLAG_NONE) != a->size)
      return (tsk_error_reset(), "");
    return Utf16LeToUtf8(raw);
  }
  return "";
}

std::string FsTypeName(TSK_FS_TYPE_ENUM t) {
  const char* n = tsk_fs_type_toname(t);
  return n ? n : "unknown";
}

void ProbeVolume(DiskBytes& disk, TSK_IMG_INFO* img, GuestVolume& v) {
  FsPtr fs(tsk_fs_open_img(img, static_cast<TSK_OFF_T>(v.offset),
                           TSK_FS_TYPE_DETECT));
  if (fs) {
    v.fs_type = FsTypeName(fs->ftype);
    v.label = VolumeLabel(disk, fs.get(), v.offset);
    return;
  }
  Status s = FailureOf(img, Code::kFailedPrecondition, "probe");
  if (s.code() == Code::kDataLoss) {
    v.note = s.message();
    return;
  }
  std::string foreign = ForeignFileSystem(disk, v.offset);
  v.note = foreign.empty() ? "no file system Haven can read"
                           : foreign + ": not readable by Haven";
}

GuestType TypeOf(TSK_FS_META_TYPE_ENUM t) {
  switch (t) {
    case TSK_FS_META_TYPE_REG:
      return GuestType::kFile;
    case TSK_FS_META_TYPE_DIR:
      return GuestType::kDir;
    case TSK_FS_META_TYPE_LNK:
      return GuestType::kSymlink;
    case TSK_FS_META_TYPE_FIFO:
      return GuestType::kFifo;
    case TSK_FS_META_TYPE_CHR:
      return GuestType::kCharDev;
    case TSK_FS_META_TYPE_BLK:
      return GuestType::kBlockDev;
    case TSK_FS_META_TYPE_SOCK:
      return GuestType::kSocket;
    default:
      return GuestType::kOther;
  }
}

int64_t Ns(time_t s, uint32_t ns) {
  return static_cast<int64_t>(s) * 1000000000 +
         std::min<uint32_t>(ns, 999999999);
}

GuestEntry EntryOf(const TSK_FS_META& m, std::string name) {
  GuestEntry e;
  e.name = std::move(name);
  e.inode = m.addr;
  e.type = TypeOf(m.type);
  e.size = m.size > 0 ? static_cast<uint64_t>(m.size) : 0;
  e.mode = static_cast<uint32_t>(m.mode) & 07777;
  e.uid = static_cast<uint32_t>(m.uid);
  e.gid = static_cast<uint32_t>(m.gid);
  e.mtime_ns = Ns(m.mtime, m.mtime_nano);
  e.atime_ns = Ns(m.atime, m.atime_nano);
  e.ctime_ns = Ns(m.ctime, m.ctime_nano);
  // TSK copies only targets kept in the inode (ext "fast" symlinks, under
  // 60 bytes) into m.link, as a C string. The others are read from the
  // file's content by ReadLinkTargets.
  if (m.type == TSK_FS_META_TYPE_LNK && m.link && m.link[0] != '\0')
    e.link_target = std::string(m.link, strnlen(m.link, kMaxLinkTarget + 1));
  return e;
}

// Fills in the target of symlink `e` from its content when TSK left it
// out (ext "slow" symlinks of 60 bytes or more, kept in a data block; HFS+
// links, kept in the data fork), and checks a target TSK gave against
// the size the inode claims. A target that cannot be read or used sets
// e.link_problem instead; reads are bounded by kMaxLinkTarget whatever
// the inode claims.
void ReadLinkTarget(TSK_FS_INFO* fs, GuestEntry& e) {
  if (e.type != GuestType::kSymlink || !e.link_problem.empty()) return;
  const std::string claims = std::to_string(e.size) + " bytes";
  if (e.link_target.size() > kMaxLinkTarget) {
    e.link_problem = "its target is longer than the " +
                     std::to_string(kMaxLinkTarget) + " bytes a target may hold";
    e.link_target.clear();
    return;
  }
  if (!e.link_target.empty()) {
    // ext keeps the target's length as the size: a shorter C string means
    // a NUL byte inside it.
    if (TSK_FS_TYPE_ISEXT(fs->ftype) && e.link_target.size() < e.size &&
        e.size <= kMaxLinkTarget) {
      e.link_problem = "its target holds a NUL byte (after " +
                       std::to_string(e.link_target.size()) + " of " + claims +
                       ")";
      e.link_target.clear();
    }
    return;
  }
  if (e.size == 0) {
    e.link_problem = "its target is empty";
    return;
  }
  if (e.size > kMaxLinkTarget) {
    e.link_problem = "its target claims " + claims + ", more than the " +
                     std::to_string(kMaxLinkTarget) + " a target may hold";
    return;
  }
  const std::string what = "reading the target of symlink inode " +
                           std::to_string(e.inode);
  ReadCheck check;
  FilePtr f(
      tsk_fs_file_open_meta(fs, nullptr, static_cast<TSK_INUM_T>(e.inode)));
  std::string target(static_cast<size_t>(e.size), '\0');
  ssize_t n = -1;
  if (f)
    n = tsk_fs_file_read(f.get(), 0, target.data(), target.size(),
                         TSK_FS_FILE_READ_FLAG_NONE);
  if (Status s = check.Result(what); !s.ok()) {
    e.link_problem = "its target cannot be read: " + s.message();
    return;
  }
  if (n != static_cast<ssize_t>(target.size())) {
    e.link_problem =
        "its target cannot be read: " +
        (n < 0 ? TskError()
               : "the file system gave " + std::to_string(n) + " of " + claims);
    tsk_error_reset();
    return;
  }
  if (size_t nul = target.find('\0'); nul != std::string::npos) {
    e.link_problem = "its target holds a NUL byte (after " +
                     std::to_string(nul) + " of " + claims + ")";
    return;
  }
  e.link_target = std::move(target);
}

// UTF-16LE (pairs of surrogates joined) as UTF-8; false for an odd length
// or a lone surrogate.
bool Utf16LeToUtf8Strict(const uint8_t* p, size_t n, std::string& out) {
  if (n % 2 != 0) return false;
  out.clear();
  for (size_t i = 0; i < n; i += 2) {
    uint32_t c = p[i] | (static_cast<uint32_t>(p[i + 1]) << 8);
    if (c >= 0xdc00 && c <= 0xdfff) return false;
    if (c >= 0xd800 && c <= 0xdbff) {
      if (i + 3 >= n) return false;
      const uint32_t lo = p[i + 2] | (static_cast<uint32_t>(p[i + 3]) << 8);
      if (lo < 0xdc00 || lo > 0xdfff) return false;
      c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
      i += 2;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xc0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xe0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (c & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (c & 0x3f));
    }
  }
  return true;
}

// NTFS symlinks and junctions are reparse points: a $REPARSE_POINT
// attribute on the (empty) file or directory that TSK lists. Those two
// kinds become symlinks whose target is the reparse data's print name
// (else its substitute name, without "\??\"), with '\' as '/': a
// relative target works as it is; an absolute one keeps its drive
// ("C:/Users") and points nowhere outside the guest. Other kinds of
// reparse points (deduplicated, cloud or compressed files) stay what TSK
// says they are. Every offset and length is checked against the data.
void ReadReparsePoint(TSK_FS_FILE* f, GuestEntry& e) {
  constexpr uint32_t kSymlink = 0xA000000C, kMountPoint = 0xA0000003;
  constexpr TSK_OFF_T kMaxReparse = 16 * 1024;  // NTFS's own limit
  const TSK_FS_ATTR* a =
      tsk_fs_file_attr_get_type(f, TSK_FS_ATTR_TYPE_NTFS_REPARSE, 0, 0);
  if (!a) return (void)tsk_error_reset();
  if (a->size < 8 || a->size > kMaxReparse) return;
  std::vector<uint8_t> d(static_cast<size_t>(a->size));
  ReadCheck check;
  const ssize_t n =
      tsk_fs_attr_read(a, 0, reinterpret_cast<char*>(d.data()), d.size(),
                       TSK_FS_FILE_READ_FLAG_NONE);
  auto u16 = [&](size_t off) { return d[off] | (d[off + 1] << 8); };
  if (!check.Result("").ok() || n != static_cast<ssize_t>(d.size())) {
    // Unread, its kind is unknown: the entry stays as TSK lists it.
    tsk_error_reset();
    return;
  }
  const uint32_t tag = GetU32(d.data());
  if (tag != kSymlink && tag != kMountPoint) return;
  e.type = GuestType::kSymlink;
  e.mode = 0777;
  e.size = 0;
  const size_t end = 8 + static_cast<size_t>(u16(4));
  const size_t names = tag == kSymlink ? 20 : 16;  // where the names start
  if (end > d.size() || names > end) {
    e.link_problem = "its reparse data is cut short";
    return;
  }
  const size_t sub_off = u16(8), sub_len = u16(10);
  const size_t print_off = u16(12), print_len = u16(14);
  const size_t room = end - names;
  const bool use_print = print_len > 0;
  const size_t off = use_print ? print_off : sub_off;
  const size_t len = use_print ? print_len : sub_len;
  if (off > room || len > room - off) {
    e.link_problem = "its reparse data names a target outside itself";
    return;
  }
  std::string target;
  if (!Utf16LeToUtf8Strict(d.data() + names + off, len, target)) {
    e.link_problem = "its target is not valid UTF-16";
    return;
  }
  if (!use_print && target.starts_with("\\??\\")) target.erase(0, 4);
  std::replace(target.begin(), target.end(), '\\', '/');
  e.link_target = std::move(target);
  e.size = e.link_target.size();
}

// NTFS, FAT and exFAT carry no Unix owner or mode; TSK makes values up.
// Show and restore what a restore writes instead: root, 0755 / 0644.
void Synthesize(GuestEntry& e) {
  e.uid = e.gid = 0;
  e.mode = e.type == GuestType::kDir ? 0755 : 0644;
}

// ext names are length-counted and may hold a NUL; TSK copies them as C
// strings, so "a\0b" would be listed (and restored) as "a". The
// directory's own bytes say what the names really are: each block holds
// entries of inode (le32), record length (le16), name length (u8), type
// (u8) and the name. Names with a NUL get their full bytes back, so the
// restore reports them instead of writing a shorter name.
void RestoreNulNames(TSK_FS_INFO* fs, const GuestEntry& dir,
                     std::vector<GuestEntry>& entries) {
  constexpr uint64_t kMaxDirBytes = 64 << 20;
  const uint32_t bs = fs->block_size;
  if (dir.size == 0 || dir.size > kMaxDirBytes || bs < 1024 || bs > 65536 ||
      dir.size % bs != 0)
    return;
  FilePtr f(
      tsk_fs_file_open_meta(fs, nullptr, static_cast<TSK_INUM_T>(dir.inode)));
  if (!f) return (void)tsk_error_reset();
  std::vector<uint8_t> block(bs);
  for (uint64_t off = 0; off < dir.size; off += bs) {
    if (tsk_fs_file_read(f.get(), static_cast<TSK_OFF_T>(off),
                         reinterpret_cast<char*>(block.data()), bs,
                         TSK_FS_FILE_READ_FLAG_NONE) !=
        static_cast<ssize_t>(bs))
      return (void)tsk_error_reset();
    for (uint32_t pos = 0; pos + 8 <= bs;) {
      const uint32_t inode = block[pos] | (block[pos + 1] << 8) |
                             (block[pos + 2] << 16) |
                             (static_cast<uint32_t>(block[pos + 3]) << 24);
      const uint32_t rec_len = block[pos + 4] | (block[pos + 5] << 8);
      const uint32_t name_len = block[pos + 6];
      if (rec_len < 8 || pos + rec_len > bs) break;
      const uint8_t* name = block.data() + pos + 8;
      if (inode != 0 && name_len > 0 && 8 + name_len <= rec_len &&
          std::memchr(name, 0, name_len)) {
        std::string full(reinterpret_cast<const char*>(name), name_len);
        std::string cut(full.c_str());
        for (GuestEntry& e : entries)
          if (e.inode == inode && e.name == cut) {
            e.name = full;
            break;
          }
      }
      pos += rec_len;
    }
  }
}

bool EqualsIgnoreAsciiCase(const std::string& a, const std::string& b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

struct GuestFs::Handles {
  ImgPtr img;
  FsPtr fs;
};

Result<GuestLayout> ReadGuestLayout(DiskBytes& disk) {
  HAVEN_ASSIGN_OR_RETURN(ImgPtr img, OpenImage(disk));
  GuestLayout layout;
  // GPT first, then MBR, then the rest: TSK's own detection tries every
  // type and, when a GPT disk's protective MBR also parses, leaks the
  // MBR it drops.
  VsPtr vs;
  for (TSK_VS_TYPE_ENUM t :
       {TSK_VS_TYPE_GPT, TSK_VS_TYPE_DOS, TSK_VS_TYPE_DETECT}) {
    vs.reset(tsk_vs_open(img.get(), 0, t));
    if (vs) break;
    Status s = FailureOf(img.get(), Code::kNotFound, "partition table");
    if (s.code() == Code::kDataLoss) return s;
  }
  if (!vs) {
    layout.scheme = "none";
    GuestVolume whole;
    whole.size = disk.size();
    whole.description = "whole disk";
    ProbeVolume(disk, img.get(), whole);
    layout.volumes.push_back(std::move(whole));
    return layout;
  }
  layout.scheme = vs->vstype == TSK_VS_TYPE_GPT ? "gpt"
                  : vs->vstype == TSK_VS_TYPE_DOS
                      ? "dos"
                      : tsk_vs_type_toname(vs->vstype);
  for (TSK_PNUM_T i = 0; i < vs->part_count; ++i) {
    const TSK_VS_PART_INFO* p = tsk_vs_part_get(vs.get(), i);
    if (!p || !(p->flags & TSK_VS_PART_FLAG_ALLOC) ||
        (p->flags & TSK_VS_PART_FLAG_META))
      continue;
    GuestVolume v;
    v.offset = p->start * vs->block_size;
    v.size = p->len * vs->block_size;
    if (v.offset >= disk.size()) {
      v.note = "starts past the end of the disk";
    } else {
      v.size = std::min<uint64_t>(v.size, disk.size() - v.offset);
    }
    v.description = p->desc ? p->desc : "";
    layout.volumes.push_back(std::move(v));
  }
  std::stable_sort(layout.volumes.begin(), layout.volumes.end(),
                   [](const GuestVolume& a, const GuestVolume& b) {
                     return a.offset < b.offset;
                   });
  for (size_t i = 0; i < layout.volumes.size(); ++i) {
    GuestVolume& v = layout.volumes[i];
    v.number = static_cast<int>(i + 1);
    if (v.note.empty()) ProbeVolume(disk, img.get(), v);
  }
  return layout;
}

Result<GuestVolume> ChooseVolume(const GuestLayout& layout, int partition,
                                 const std::string& disk_name) {
  auto describe = [](const GuestVolume& v) {
    std::string d = std::to_string(v.number) + " (" +
                    (v.fs_type.empty() ? v.note : v.fs_type);
    if (!v.label.empty()) d += " '" + v.label + "'";
    return d + ")";
  };
  std::string all;
  for (const auto& v : layout.volumes)
    all += (all.empty() ? "" : ", ") + describe(v);
  if (partition >= 0) {
    for (const auto& v : layout.volumes)
      if (v.number == partition) return v;
    if (layout.scheme == "none")
      return InvalidArgument("disk " + disk_name +
                             " has no partition table; leave out --partition");
    return InvalidArgument("disk " + disk_name + " has no partition " +
                           std::to_string(partition) + "; it has " +
                           (all.empty() ? std::string("none") : all));
  }
  std::vector<const GuestVolume*> readable;
  for (const auto& v : layout.volumes)
    if (!v.fs_type.empty()) readable.push_back(&v);
  if (readable.size() == 1) return *readable[0];
  if (readable.size() > 1)
    return InvalidArgument("disk " + disk_name +
                           " holds several file systems: " + all +
                           "; choose one with --partition N");
  return FailedPrecondition(
      "disk " + disk_name + " holds no file system Haven can read" +
      (all.empty() ? std::string() : " (volumes: " + all + ")") +
      "; supported: " + kSupported +
      ". Restore the whole disk with `haven restore image` and mount it "
      "instead");
}

Result<std::unique_ptr<GuestFs>> GuestFs::Open(DiskBytes& disk,
                                               const GuestVolume& volume) {
  HAVEN_ASSIGN_OR_RETURN(ImgPtr img, OpenImage(disk));
  const std::string where = volume.number == 0
                                ? "disk " + disk.name()
                                : "partition " + std::to_string(volume.number) +
                                      " of disk " + disk.name();
  FsPtr fs(tsk_fs_open_img(img.get(), static_cast<TSK_OFF_T>(volume.offset),
                           TSK_FS_TYPE_DETECT));
  if (!fs) {
    Status s =
        FailureOf(img.get(), Code::kFailedPrecondition, "opening " + where);
    if (s.code() == Code::kDataLoss) return s;
    std::string foreign = ForeignFileSystem(disk, volume.offset);
    return FailedPrecondition(
        where + " holds " +
        (foreign.empty() ? std::string("no file system Haven can read")
                         : foreign + ", which Haven cannot read file by file") +
        "; supported: " + kSupported +
        ". Restore the whole disk with `haven restore image` and mount it "
        "instead");
  }
  auto out = std::unique_ptr<GuestFs>(new GuestFs());
  out->type_ = FsTypeName(fs->ftype);
  out->unix_metadata_ =
      TSK_FS_TYPE_ISEXT(fs->ftype) || (fs->ftype & TSK_FS_TYPE_HFS_DETECT) != 0;
  out->case_insensitive_ = !TSK_FS_TYPE_ISEXT(fs->ftype);
  out->volume_size_ = volume.size;
  out->h_ = std::make_unique<Handles>();
  out->h_->img = std::move(img);
  out->h_->fs = std::move(fs);
  return out;
}

GuestFs::~GuestFs() {
  if (h_) h_->fs.reset();  // before the image it reads from
}

Result<std::vector<GuestEntry>> GuestFs::List(const GuestEntry& dir) {
  if (dir.type != GuestType::kDir) return FailedPrecondition("not a directory");
  TSK_FS_INFO* fs = h_->fs.get();
  const std::string what =
      "reading directory inode " + std::to_string(dir.inode);
  // The Sleuth Kit maps a directory's blocks into a run list whose every
  // append walks the list: a damaged inode claiming a huge directory costs
  // time quadratic in its claim before one entry is read. No directory is
  // larger than its volume, and none real is near kMaxDirectoryBytes.
  if (dir.size > std::min<uint64_t>(volume_size_, kMaxDirectoryBytes))
    return DataLoss(
        what + ": it claims " + std::to_string(dir.size) +
        " bytes, more than " +
        (dir.size > volume_size_
             ? "its volume (" + std::to_string(volume_size_) + " bytes)"
             : "any real directory (" + std::to_string(kMaxDirectoryBytes) +
                   " bytes)") +
        ": the file system is damaged there");
  ReadCheck check;
  DirPtr d(tsk_fs_dir_open_meta(fs, static_cast<TSK_INUM_T>(dir.inode)));
  if (!d) return FailureOf(h_->img.get(), Code::kDataLoss, what);
  const bool ntfs_root =
      TSK_FS_TYPE_ISNTFS(fs->ftype) && dir.inode == fs->root_inum;
  const bool fat_root =
      TSK_FS_TYPE_ISFAT(fs->ftype) && dir.inode == fs->root_inum;
  std::vector<GuestEntry> out;
  const size_t n = tsk_fs_dir_getsize(d.get());
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    FilePtr f(tsk_fs_dir_get(d.get(), i));
    if (!f) {
      tsk_error_reset();
      continue;
    }
    const TSK_FS_NAME* name = f->name;
    if (!name || !name->name || !(name->flags & TSK_FS_NAME_FLAG_ALLOC))
      continue;
    // "." and ".." are skipped only as what they should be: "." naming
    // this directory, ".." a directory. Anything else so named is listed
    // (and a restore reports the name as invalid).
    if (std::strcmp(name->name, ".") == 0 && name->meta_addr == dir.inode)
      continue;
    if (std::strcmp(name->name, "..") == 0 && TSK_FS_IS_DIR_NAME(name->type))
      continue;
    if (name->meta_addr == TSK_FS_ORPHANDIR_INUM(fs)) continue;
    if (!f->meta) {  // a name whose inode cannot be read: shown, not restored
      GuestEntry e;
      e.name.assign(name->name, strnlen(name->name, name->name_size));
      e.inode = name->meta_addr;
      out.push_back(std::move(e));
      continue;
    }
    if (f->meta->type == TSK_FS_META_TYPE_VIRT ||
        f->meta->type == TSK_FS_META_TYPE_VIRT_DIR)
      continue;
    if (ntfs_root && name->meta_addr < 16 && name->name[0] == '$') continue;
    if (fat_root && IsFatSpecial(*f->meta, name->name)) continue;
    out.push_back(
        EntryOf(*f->meta,
                std::string(name->name, strnlen(name->name, name->name_size))));
    if (!unix_metadata_) Synthesize(out.back());
    if (TSK_FS_TYPE_ISNTFS(fs->ftype)) ReadReparsePoint(f.get(), out.back());
  }
  if (TSK_FS_TYPE_ISEXT(fs->ftype)) RestoreNulNames(fs, dir, out);
  HAVEN_RETURN_IF_ERROR(check.Result(what));
  // After the directory's own check: a symlink whose target is on a
  // damaged block is one entry's problem, not the directory's.
  for (GuestEntry& e : out) ReadLinkTarget(fs, e);
  return out;
}

Result<GuestEntry> GuestFs::Lookup(const std::string& path) {
  TSK_FS_INFO* fs = h_->fs.get();
  ReadCheck check;
  FilePtr root(tsk_fs_file_open_meta(fs, nullptr, fs->root_inum));
  if (!root || !root->meta)
    return FailureOf(h_->img.get(), Code::kDataLoss,
                     "reading the root directory");
  HAVEN_RETURN_IF_ERROR(check.Result("reading the root directory"));
  GuestEntry cur = EntryOf(*root->meta, "/");
  if (!unix_metadata_) Synthesize(cur);
  std::string walked;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t slash = path.find('/', pos);
    if (slash == std::string::npos) slash = path.size();
    std::string part = path.substr(pos, slash - pos);
    pos = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..")
      return InvalidArgument("path " + path + " holds \"..\"; give it from /");
    if (cur.type != GuestType::kDir)
      return NotFound((walked.empty() ? "/" : walked) + " is not a directory");
    HAVEN_ASSIGN_OR_RETURN(std::vector<GuestEntry> entries, List(cur));
    const GuestEntry* found = nullptr;
    for (const auto& e : entries)
      if (e.name == part) found = &e;
    if (!found && case_insensitive_) {
      for (const auto& e : entries) {
        if (!EqualsIgnoreAsciiCase(e.name, part)) continue;
        if (found)
          return InvalidArgument(walked + "/" + part +
                                 " matches several names that differ only in "
                                 "case; give the exact name");
        found = &e;
      }
    }
    walked += "/" + part;
    if (!found) return NotFound(walked + " does not exist");
    GuestEntry next = *found;
    cur = std::move(next);
  }
  return cur;
}

Status GuestFs::ReadFile(
    const GuestEntry& file,
    const std::function<Status(uint64_t, const uint8_t*, size_t)>& sink,
    size_t block) {
  if (file.type != GuestType::kFile)
    return FailedPrecondition("not a regular file");
  FilePtr f(tsk_fs_file_open_meta(h_->fs.get(), nullptr,
                                  static_cast<TSK_INUM_T>(file.inode)));
  if (!f)
    return FailureOf(h_->img.get(), Code::kDataLoss,
                     "opening inode " + std::to_string(file.inode));
  block = std::max<size_t>(block, 4096);
  std::vector<uint8_t> buf(static_cast<size_t>(
      std::min<uint64_t>(block, std::max<uint64_t>(file.size, 1))));
  uint64_t off = 0;
  while (off < file.size) {
    const size_t want =
        static_cast<size_t>(std::min<uint64_t>(buf.size(), file.size - off));
    ReadCheck check;
    ssize_t n = tsk_fs_file_read(f.get(), static_cast<TSK_OFF_T>(off),
                                 reinterpret_cast<char*>(buf.data()), want,
                                 TSK_FS_FILE_READ_FLAG_NONE);
    HAVEN_RETURN_IF_ERROR(check.Result("reading inode " +
                                       std::to_string(file.inode) +
                                       " at byte " + std::to_string(off)));
    if (n <= 0)
      return FailureOf(h_->img.get(), Code::kDataLoss,
                       "reading inode " + std::to_string(file.inode) +
                           " at byte " + std::to_string(off) + " of " +
                           std::to_string(file.size));
    HAVEN_RETURN_IF_ERROR(sink(off, buf.data(), static_cast<size_t>(n)));
    off += static_cast<uint64_t>(n);
  }
  return OkStatus();
}

std::optional<std::vector<std::pair<uint64_t, uint64_t>>> GuestFs::DataRanges(
    const GuestEntry& file) {
  // More runs than this and the map is not worth keeping.
  constexpr size_t kMaxRuns = 1 << 16;
  if (file.type != GuestType::kFile || file.size == 0) return std::nullopt;
  TSK_FS_INFO* fs = h_->fs.get();
  ReadCheck check;
  FilePtr f(tsk_fs_file_open_meta(fs, nullptr,
                                  static_cast<TSK_INUM_T>(file.inode)));
  const TSK_FS_ATTR* a = f ? tsk_fs_file_attr_get(f.get()) : nullptr;
  if (!check.Result("").ok() || !a) {
    tsk_error_reset();
    return std::nullopt;
  }
  if (!(a->flags & TSK_FS_ATTR_NONRES) ||
      (a->flags & (TSK_FS_ATTR_COMP | TSK_FS_ATTR_ENC)) || a->nrd.skiplen != 0)
    return std::nullopt;
  const uint64_t bs = fs->block_size;
  if (bs == 0) return std::nullopt;
  std::vector<std::pair<uint64_t, uint64_t>> out;
  uint64_t end = 0;  // where the last range ended
  size_t runs = 0;
  for (const TSK_FS_ATTR_RUN* r = a->nrd.run; r; r = r->next) {
    if (++runs > kMaxRuns) return std::nullopt;
    if (r->len == 0 || (r->flags & (TSK_FS_ATTR_RUN_FLAG_SPARSE |
                                    TSK_FS_ATTR_RUN_FLAG_FILLER)))
      continue;
    if (r->offset > file.size / bs) continue;  // past the end
    const uint64_t off = r->offset * bs;  // <= size: no overflow
    if (off >= file.size) continue;
    const uint64_t blocks =
        std::min<uint64_t>(r->len, (file.size - off) / bs + 1);
    const uint64_t len = std::min<uint64_t>(blocks * bs, file.size - off);
    if (off < end) return std::nullopt;  // out of order or overlapping
    if (!out.empty() && off == end)
      out.back().second += len;
    else
      out.emplace_back(off, len);
    end = off + len;
  }
  return out;
}

const char* GuestTypeName(GuestType t) {
  switch (t) {
    case GuestType::kFile:
      return "file";
    case GuestType::kDir:
      return "dir";
    case GuestType::kSymlink:
      return "symlink";
    case GuestType::kFifo:
      return "fifo";
    case GuestType::kCharDev:
      return "chardev";
    case GuestType::kBlockDev:
      return "blockdev";
    case GuestType::kSocket:
      return "socket";
    default:
      return "other";
  }
}

std::string ModeString(const GuestEntry& e) {
  static const char kTypes[] = "-dlpcbs?";
  std::string s(10, '-');
  s[0] = kTypes[static_cast<int>(e.type)];
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i)
    if (e.mode & (0400u >> i)) s[1 + i] = rwx[i];
  if (e.mode & 04000) s[3] = (e.mode & 0100) ? 's' : 'S';
  if (e.mode & 02000) s[6] = (e.mode & 0010) ? 's' : 'S';
  if (e.mode & 01000) s[9] = (e.mode & 0001) ? 't' : 'T';
  return s;
}

}  // namespace haven::restore
