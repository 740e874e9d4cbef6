// The file systems inside a disk of a recovery point, read through The
// Sleuth Kit (libtsk) from a DiskReader: partition tables (MBR, GPT) and
// ext2/3/4, NTFS, FAT12/16/32, exFAT and HFS+ file systems. Nothing is
// mounted and no helper VM runs; only the chunks the metadata and the
// requested files live in are fetched.
//
// Everything read here comes from a guest and is untrusted: names are raw
// bytes (they may hold '/', "..", control characters or NUL), sizes may
// exceed the disk, directories may loop. This layer reports them as found;
// file_restore.h decides what may be written where.
#ifndef HAVEN_RESTORE_GUEST_FS_H_
#define HAVEN_RESTORE_GUEST_FS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "restore/disk_reader.h"

namespace haven::restore {

// One volume of a disk: a partition, or the whole disk when it has no
// partition table. `number` is what `--partition` takes: partitions are
// numbered 1, 2, ... in the order of their start on the disk (for an
// ordinary GPT or MBR disk, the same numbers Linux gives them).
struct GuestVolume {
  int number = 0;           // 0: the whole disk (no partition table)
  uint64_t offset = 0;      // bytes from the start of the disk
  uint64_t size = 0;        // bytes
  std::string description;  // partition type, e.g. "Linux filesystem"
  std::string fs_type;      // "ext4", "ntfs", "fat32", "exfat", ...; "" if none
  std::string label;        // file-system label, "" if none or unknown
  std::string note;         // why no file system could be read, if so
};

struct GuestLayout {
  std::string scheme;  // "gpt", "dos" (MBR), or "none"
  std::vector<GuestVolume> volumes;
};

// Reads the partition table and probes each partition's file system.
// A disk without a partition table is one volume, number 0.
Result<GuestLayout> ReadGuestLayout(DiskBytes& disk);

// The volume `--partition N` names (N < 0: not given). Without N: the
// whole disk when it has no partition table, else the only partition with
// a readable file system. InvalidArgument lists the choices when N is
// unknown or several file systems qualify; FailedPrecondition names the
// supported file systems when none does.
Result<GuestVolume> ChooseVolume(const GuestLayout& layout, int partition,
                                 const std::string& disk_name);

// The longest symlink target read from a guest: Linux's PATH_MAX less the
// terminating NUL. Longer targets are reported, not read.
constexpr uint64_t kMaxLinkTarget = 4095;

enum class GuestType {
  kFile,
  kDir,
  kSymlink,
  kFifo,
  kCharDev,
  kBlockDev,
  kSocket,
  kOther
};

// A directory claiming more bytes than this is refused as damaged (a real
// one with ten million entries is under 1 GiB).
inline constexpr uint64_t kMaxDirectoryBytes = 1ull << 30;

struct GuestEntry {
  std::string name;  // raw bytes as stored (UTF-8 for NTFS/FAT/exFAT)
  uint64_t inode = 0;
  GuestType type = GuestType::kOther;
  uint64_t size = 0;  // as the file system claims: untrusted
  uint32_t mode = 0;  // permission bits (07777)
  uint32_t uid = 0, gid = 0;
  int64_t mtime_ns = 0, atime_ns = 0, ctime_ns = 0;
  std::string link_target;  // symlinks, where the file system has them
  // Symlinks whose target could not be read or cannot be used (damaged,
  // longer than kMaxLinkTarget, holding a NUL byte): why, for listings
  // and the restore's report; link_target is then "".
  std::string link_problem;
  // File backups (file_point.h) carry more than a guest file system:
  uint64_t rdev = 0;                // device nodes
  std::string user, group;          // owner names, "" if unknown
  std::vector<std::pair<std::string, std::string>> xattrs;  // ACLs too
  // Regular files with several links: the same key for every link of one
  // file, so it is restored once and linked; "" otherwise.
  std::string hardlink;
};

// What a file restore walks: a tree of entries with content. GuestFs is
// the real one; tests use fakes to inject hostile trees.
class GuestTree {
 public:
  virtual ~GuestTree() = default;
  virtual Result<GuestEntry> Lookup(const std::string& path) = 0;
  virtual Result<std::vector<GuestEntry>> List(const GuestEntry& dir) = 0;
  virtual Status ReadFile(
      const GuestEntry& file,
      const std::function<Status(uint64_t offset, const uint8_t* data,
                                 size_t len)>& sink,
      size_t block = 1 << 20) = 0;
  // The byte ranges (offset, length; in order, not touching) of regular
  // file `file` that hold data as the file system allocates it: the rest
  // are holes, which ReadFile gives as zeros. nullopt when the file
  // system cannot tell (the whole file is then data).
  virtual std::optional<std::vector<std::pair<uint64_t, uint64_t>>>
  DataRanges(const GuestEntry& file) {
    return std::nullopt;
  }
  // Whether mode, uid and gid are the guest's own (ext, HFS+), not values
  // made up for a file system without Unix metadata (NTFS, FAT, exFAT).
  virtual bool has_unix_metadata() const = 0;
  // No regular file can hold more bytes than this (the volume's size);
  // an entry claiming more is refused.
  virtual uint64_t max_file_size() const = 0;
  // Entries no directory of the tree leads to (path, why): a restore of
  // "/" reports them, since the walk cannot reach them.
  virtual std::vector<std::pair<std::string, std::string>> Unreachable()
      const {
    return {};
  }
};

class GuestFs : public GuestTree {
 public:
  // Opens the file system of `volume`; FailedPrecondition, naming the
  // supported file systems, when there is none Haven can read.
  static Result<std::unique_ptr<GuestFs>> Open(DiskBytes& disk,
                                               const GuestVolume& volume);
  ~GuestFs();
  GuestFs(const GuestFs&) = delete;
  GuestFs& operator=(const GuestFs&) = delete;

  const std::string& type() const { return type_; }
  // Whether the file system stores Unix owners and permission bits (ext,
  // HFS+); on NTFS/FAT/exFAT, mode/uid/gid are TSK's synthetic values.
  bool has_unix_metadata() const override { return unix_metadata_; }
  // Whether names compare case-insensitively (NTFS, FAT, exFAT, HFS+).
  bool case_insensitive() const { return case_insensitive_; }

  // The entry at `path` ("/" or "/a/b"; components matched byte for byte,
  // then case-insensitively where the file system is). NotFound names the
  // first component missing.
  Result<GuestEntry> Lookup(const std::string& path) override;

  // The allocated entries of directory `dir` ("." and ".." and TSK's
  // virtual files left out; NTFS metadata files too). Order as stored.
  Result<std::vector<GuestEntry>> List(const GuestEntry& dir) override;

  // Reads a regular file's content in pieces of at most `block` bytes,
  // in order, calling `sink(offset, data, len)` (holes arrive as zeros).
  // DataLoss if the file system gives fewer bytes than the entry's size or
  // a chunk under the file is damaged; the sink's error is returned as is.
  Status ReadFile(const GuestEntry& file,
                  const std::function<Status(
                      uint64_t offset, const uint8_t* data, size_t len)>& sink,
                  size_t block = 1 << 20) override;

  uint64_t max_file_size() const override { return volume_size_; }

  // From the file's block runs (extents, NTFS runs): runs marked sparse
  // are holes. nullopt for resident, compressed or encrypted content and
  // for runs out of order.
  std::optional<std::vector<std::pair<uint64_t, uint64_t>>> DataRanges(
      const GuestEntry& file) override;

 private:
  struct Handles;
  GuestFs() = default;
  std::unique_ptr<Handles> h_;
  std::string type_;
  bool unix_metadata_ = false;
  bool case_insensitive_ = false;
  uint64_t volume_size_ = 0;
};

// `ls -l`-style type letter and permission string ("drwxr-xr-x").
std::string ModeString(const GuestEntry& e);
const char* GuestTypeName(GuestType t);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_GUEST_FS_H_
