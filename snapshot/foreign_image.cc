#include "snapshot/foreign_image.h"

#include <dirent.h>
#include <fcntl.h>
#include <libvhdi.h>
#include <libvmdk.h>
#include <strings.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <utility>

#include "base/file.h"
#include "snapshot/image_source.h"

namespace haven::snapshot {
namespace {

// Hyper-V allows longer checkpoint chains; past this depth a chain is more
// likely a crafted or broken one than a real VM's.
constexpr size_t kMaxParents = 16;

// --- The libraries' C handles and errors, owned by unique_ptr ------------

// Lets a C function fill a unique_ptr through its T** out-parameter; the
// pointer is adopted when the call's full expression ends (C++23 out_ptr).
// So: one OutPtr per owner in a full expression, and no use of the owner
// after the call in the same expression (no `f(OutPtr(x)) || g(x.get())`).
template <typename Ptr>
class OutPtr {
 public:
  explicit OutPtr(Ptr& owner) : owner_(owner) {}
  ~OutPtr() { owner_.reset(raw_); }
  OutPtr(const OutPtr&) = delete;
  OutPtr& operator=(const OutPtr&) = delete;
  using Raw = typename Ptr::pointer;
  operator Raw*() { return &raw_; }  // NOLINT: converts implicitly, by design

 private:
  Ptr& owner_;
  Raw raw_ = nullptr;
};

struct VhdiErrorFree {
  void operator()(libvhdi_error_t* e) const { libvhdi_error_free(&e); }
};
struct VmdkErrorFree {
  void operator()(libvmdk_error_t* e) const { libvmdk_error_free(&e); }
};
// Freeing closes an open file (and its extent files).
struct VhdiFileFree {
  void operator()(libvhdi_file_t* f) const { libvhdi_file_free(&f, nullptr); }
};
struct VmdkHandleFree {
  void operator()(libvmdk_handle_t* h) const {
    libvmdk_handle_free(&h, nullptr);
  }
};
struct VmdkExtentFree {
  void operator()(libvmdk_extent_descriptor_t* d) const {
    libvmdk_extent_descriptor_free(&d, nullptr);
  }
};
using VhdiError = std::unique_ptr<libvhdi_error_t, VhdiErrorFree>;
using VmdkError = std::unique_ptr<libvmdk_error_t, VmdkErrorFree>;
using VhdiFile = std::unique_ptr<libvhdi_file_t, VhdiFileFree>;
using VmdkHandle = std::unique_ptr<libvmdk_handle_t, VmdkHandleFree>;
using VmdkExtent = std::unique_ptr<libvmdk_extent_descriptor_t, VmdkExtentFree>;

// "libvhdi_file_open: unable to open file: x." -> "unable to open file: x".
std::string WithoutFunction(std::string_view line) {
  size_t colon = line.find(": ");
  if (colon != std::string_view::npos &&
      line.substr(0, colon).find(' ') == std::string_view::npos)
    line.remove_prefix(colon + 2);
  while (!line.empty() && (line.back() == '.' || line.back() == '\n'))
    line.remove_suffix(1);
  return std::string(line);
}

// The outermost message (sprint) and the root cause (the first line of the
// backtrace), which is the useful part: "unsupported signature".
template <typename E>
std::string ErrorText(E* error, int (*sprint)(E*, char*, size_t),
                      int (*backtrace)(E*, char*, size_t)) {
  if (error == nullptr) return "unknown error";
  char top[1024] = {0}, trace[4096] = {0};
  if (sprint(error, top, sizeof(top)) <= 0) return "unknown error";
  std::string text = WithoutFunction(top);
  if (backtrace(error, trace, sizeof(trace)) > 0) {
    std::string_view t(trace);
    std::string cause = WithoutFunction(t.substr(0, t.find('\n')));
    if (cause != text) text += ": " + cause;
  }
  return text;
}

std::string Text(const VhdiError& e) {
  return "libvhdi: " + ErrorText(e.get(), libvhdi_error_sprint,
                                 libvhdi_error_backtrace_sprint);
}
std::string Text(const VmdkError& e) {
  return "libvmdk: " + ErrorText(e.get(), libvmdk_error_sprint,
                                 libvmdk_error_backtrace_sprint);
}

// --- Files of a chain: where they may be, and whether they changed -------

struct FileStamp {
  std::string path;
  SourceFingerprint f;
  bool operator==(const FileStamp&) const = default;
};

FileStamp ToStamp(const std::string& path, const struct stat& st) {
  return {path, FingerprintOf(st)};
}

// The image the caller names may be reached through a symbolic link.
Result<FileStamp> StampImage(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return NotFound(path + ": no such file");
    return ErrnoStatus("stat " + path, errno);
  }
  if (!S_ISREG(st.st_mode))
    return InvalidArgument(path + ": not a regular file");
  return ToStamp(path, st);
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

// A file an image names (parent, extent) must be a regular file of the
// image's folder: `name` is a bare file name here.
Result<FileStamp> StampNamedFile(const std::string& image, const char* what,
                                 const std::string& dir,
                                 const std::string& name) {
  std::string path = JoinPath(dir, name);
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT)
      return NotFound(image + ": " + what + " '" + name + "' not found in " +
                      dir);
    return ErrnoStatus(image + ": " + what + " " + path, errno);
  }
  if (S_ISLNK(st.st_mode))
    return InvalidArgument(image + ": " + what + " " + path +
                           " is a symbolic link; only regular files in the "
                           "image's folder are read");
  if (!S_ISREG(st.st_mode))
    return InvalidArgument(image + ": " + what + " " + path +
                           " is not a regular file");
  return ToStamp(path, st);
}

// The file name in a name an image records: the last component of a
// Windows or POSIX path ("C:\VMs\base.vhdx", "/vmfs/volumes/ds/base.vmdk").
// Untrusted: NUL bytes, "." and "..", and stream or drive syntax are refused.
Result<std::string> RecordedFileName(const std::string& image, const char* what,
                                     const std::string& recorded) {
  if (recorded.find('\0') != std::string::npos)
    return InvalidArgument(image + ": " + what + " name contains a NUL byte");
  size_t sep = recorded.find_last_of("/\\");
  std::string name =
      sep == std::string::npos ? recorded : recorded.substr(sep + 1);
  if (name.empty() || name == "." || name == ".." ||
      name.find(':') != std::string::npos)
    return InvalidArgument(image + ": " + what + " '" + recorded +
                           "' does not name a file");
  return name;
}

// Looks for the parent an image records in the image's own folder: by its
// exact name, else by the one name equal to it ignoring ASCII case (a chain
// copied from Windows, whose names are case-insensitive).
Result<FileStamp> FindParent(const std::string& image,
                             const std::string& recorded) {
  HAVEN_ASSIGN_OR_RETURN(std::string name,
                         RecordedFileName(image, "parent", recorded));
  std::string dir = DirName(image);
  Result<FileStamp> exact = StampNamedFile(image, "parent", dir, name);
  if (exact.ok() || exact.status().code() != Code::kNotFound) return exact;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (d == nullptr) return exact;
  std::optional<std::string> found;
  while (const struct dirent* e = ::readdir(d.get())) {
    if (::strcasecmp(e->d_name, name.c_str()) != 0) continue;
    if (found)
      return InvalidArgument(image + ": parent '" + name +
                             "' matches several files in " + dir +
                             " when case is ignored");
    found = e->d_name;
  }
  if (!found) return exact;
  return StampNamedFile(image, "parent", dir, *found);
}

// Hex of a big-endian GUID: "c8c1d5f5-6825-1645-a655-978be482aba7".
std::string GuidText(const uint8_t* g) {
  char s[37];
  std::snprintf(s, sizeof(s),
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
                "%02x%02x%02x%02x%02x%02x",
                g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9],
                g[10], g[11], g[12], g[13], g[14], g[15]);
  return s;
}

std::string Hex32(uint32_t v) {
  char s[9];
  std::snprintf(s, sizeof(s), "%08x", v);
  return s;
}

// Reads a UTF-8 string through a libyal size/get pair; nullopt if the
// library says it is not available (0).
template <typename Handle, typename Error>
Result<std::optional<std::string>> Utf8String(
    Handle* handle, int (*size_fn)(Handle*, size_t*, typename Error::pointer*),
    int (*get_fn)(Handle*, uint8_t*, size_t, typename Error::pointer*),
    const std::string& what) {
  Error err;
  size_t size = 0;
  int r = size_fn(handle, &size, OutPtr(err));
  if (r == 0) return std::optional<std::string>();
  if (r != 1 || size == 0) return DataLoss(what + ": " + Text(err));
  std::string s(size, '\0');
  r = get_fn(handle, reinterpret_cast<uint8_t*>(s.data()), size, OutPtr(err));
  if (r != 1) return DataLoss(what + ": " + Text(err));
  s.resize(size - 1);  // the size counts the terminating NUL
  return std::optional<std::string>(std::move(s));
}

// --- What both readers share ---------------------------------------------

// An image and the other files of its chain (parents, extents), each
// stamped when it was opened.
class ChainSource : public DiskSource {
 public:
  const std::string& description() const override { return path_; }
  uint64_t size() const override { return size_; }
  Result<RangeState> Classify(uint64_t, uint64_t) override {
    return RangeState::kRead;  // neither library exposes allocation
  }
  Result<bool> ChangedDuringRead() override;
  std::string consistency_reason() const override { return reason_; }

 protected:
  explicit ChainSource(std::string path) : path_(std::move(path)) {}
  // Records a file of the chain; refuses one already in it (a loop).
  Status AddFile(const FileStamp& stamp);
  Status CheckRange(uint64_t offset, size_t len) const;
  // Reads through `read`, a libyal read_buffer_at_offset call.
  template <typename ReadFn>
  Status ReadAll(uint64_t offset, uint8_t* buf, size_t len, ReadFn read);

  std::string path_;
  uint64_t size_ = 0;
  std::string reason_;
  std::vector<FileStamp> files_;
};

Status ChainSource::AddFile(const FileStamp& stamp) {
  for (const FileStamp& f : files_) {
    if (f.f.dev == stamp.f.dev && f.f.ino == stamp.f.ino)
      return InvalidArgument(path_ + ": the chain of images loops: " +
                             stamp.path + " is already part of it");
  }
  files_.push_back(stamp);
  return OkStatus();
}

Result<bool> ChainSource::ChangedDuringRead() {
  for (const FileStamp& f : files_) {
    struct stat st;
    if (::stat(f.path.c_str(), &st) != 0) {
      if (errno == ENOENT) return true;  // removed or renamed meanwhile
      return ErrnoStatus("stat " + f.path, errno);
    }
    if (!(ToStamp(f.path, st) == f)) return true;
  }
  return false;
}

Status ChainSource::CheckRange(uint64_t offset, size_t len) const {
  if (offset > size_ || len > size_ - offset)
    return InvalidArgument(path_ + ": read of " + std::to_string(len) +
                           " bytes at " + std::to_string(offset) +
                           " is past the end (" + std::to_string(size_) + ")");
  return OkStatus();
}

template <typename ReadFn>
Status ChainSource::ReadAll(uint64_t offset, uint8_t* buf, size_t len,
                            ReadFn read) {
  HAVEN_RETURN_IF_ERROR(CheckRange(offset, len));
  while (len > 0) {
    std::string error;
    ssize_t n = read(buf, len, offset, &error);
    if (n < 0)
      return IoError(path_ + ": read at offset " + std::to_string(offset) +
                     " failed: " + error);
    if (n == 0 || static_cast<size_t>(n) > len)
      return DataLoss(path_ + ": read at offset " + std::to_string(offset) +
                      " returned " + std::to_string(n) + " of " +
                      std::to_string(len) + " bytes");
    buf += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return OkStatus();
}

std::string Reason(const char* format, size_t parents, const char* library) {
  std::string what = std::string(format) + " image";
  if (parents > 0)
    what += " and its " + std::to_string(parents) + " parent image" +
            (parents > 1 ? "s" : "");
  return what + " read directly (" + library + "), unchanged during the read";
}

// --- VHD and VHDX (libvhdi) ----------------------------------------------

class VhdiSource final : public ChainSource {
 public:
  static Result<std::unique_ptr<DiskSource>> Open(const std::string& path,
                                                  ImageFormat format);
  ~VhdiSource() override {
    for (VhdiFile& f : chain_) f.reset();  // each child before its parent
  }
  Status Read(uint64_t offset, uint8_t* buf, size_t len) override;

 private:
  using ChainSource::ChainSource;
  static Result<VhdiFile> OpenFile(const std::string& path);
  // The parent that `child`, the last file of the chain, records, if any.
  Result<std::optional<std::string>> RecordedParent(const std::string& child);
  Status AttachParent(const std::string& child_path, VhdiFile parent,
                      const std::string& parent_path);

  std::vector<VhdiFile> chain_;  // the image, its parent, its grandparent...
};

Result<VhdiFile> VhdiSource::OpenFile(const std::string& path) {
  VhdiError err;
  VhdiFile file;
  if (libvhdi_file_initialize(OutPtr(file), OutPtr(err)) != 1)
    return Internal(path + ": " + Text(err));
  if (libvhdi_file_open(file.get(), path.c_str(), LIBVHDI_OPEN_READ,
                        OutPtr(err)) != 1)
    return DataLoss(path + ": not a readable VHD/VHDX image (" + Text(err) +
                    ")");
  return file;
}

Result<std::optional<std::string>> VhdiSource::RecordedParent(
    const std::string& path) {
  libvhdi_file_t* file = chain_.back().get();
  VhdiError err;
  uint32_t disk_type = 0;
  if (libvhdi_file_get_disk_type(file, &disk_type, OutPtr(err)) != 1)
    return DataLoss(path + ": " + Text(err));
  if (disk_type != LIBVHDI_DISK_TYPE_DIFFERENTIAL)
    return std::optional<std::string>();
  HAVEN_ASSIGN_OR_RETURN(
      std::optional<std::string> name,
      (Utf8String<libvhdi_file_t, VhdiError>(
          file, libvhdi_file_get_utf8_parent_filename_size,
          libvhdi_file_get_utf8_parent_filename, path + ": parent name")));
  if (!name)
    return DataLoss(path + ": differencing image records no parent file");
  return name;
}

Status VhdiSource::AttachParent(const std::string& child_path, VhdiFile parent,
                                const std::string& parent_path) {
  libvhdi_file_t* child = chain_.back().get();
  VhdiError err;
  uint8_t expected[16], actual[16];
  int r = libvhdi_file_get_parent_identifier(child, expected, 16, OutPtr(err));
  if (r != 1) return DataLoss(child_path + ": no parent identifier");
  if (libvhdi_file_get_identifier(parent.get(), actual, 16, OutPtr(err)) != 1)
    return DataLoss(parent_path + ": " + Text(err));
  if (std::memcmp(expected, actual, 16) != 0)
    return DataLoss(child_path + ": parent " + parent_path +
                    " has identifier " + GuidText(actual) +
                    ", the child was made from " + GuidText(expected) +
                    " (the parent was changed or replaced after the child "
                    "was made)");
  if (libvhdi_file_set_parent_file(child, parent.get(), OutPtr(err)) != 1)
    return DataLoss(child_path + ": cannot use parent " + parent_path + ": " +
                    Text(err));
  chain_.push_back(std::move(parent));
  return OkStatus();
}

Result<std::unique_ptr<DiskSource>> VhdiSource::Open(const std::string& path,
                                                     ImageFormat format) {
  std::unique_ptr<VhdiSource> s(new VhdiSource(path));
  HAVEN_ASSIGN_OR_RETURN(FileStamp stamp, StampImage(path));
  HAVEN_RETURN_IF_ERROR(s->AddFile(stamp));
  HAVEN_ASSIGN_OR_RETURN(VhdiFile image, OpenFile(path));
  VhdiError err;
  int file_type = 0;
  size64_t media_size = 0;
  if (libvhdi_file_get_file_type(image.get(), &file_type, OutPtr(err)) != 1)
    return DataLoss(path + ": " + Text(err));
  if (libvhdi_file_get_media_size(image.get(), &media_size, OutPtr(err)) != 1)
    return DataLoss(path + ": " + Text(err));
  bool vhdx = file_type == LIBVHDI_FILE_TYPE_VHDX;
  if (vhdx != (format == ImageFormat::kVhdx))
    return InvalidArgument(path + ": is a " + (vhdx ? "VHDX" : "VHD") +
                           " image, not " + FormatName(format));
  s->chain_.push_back(std::move(image));
  s->size_ = media_size;
  for (std::string child = path;; child = stamp.path) {
    HAVEN_ASSIGN_OR_RETURN(std::optional<std::string> recorded,
                           s->RecordedParent(child));
    if (!recorded) break;
    if (s->chain_.size() > kMaxParents)
      return InvalidArgument(path + ": chain of parent images is deeper than " +
                             std::to_string(kMaxParents));
    HAVEN_ASSIGN_OR_RETURN(stamp, FindParent(child, *recorded));
    HAVEN_RETURN_IF_ERROR(s->AddFile(stamp));
    HAVEN_ASSIGN_OR_RETURN(VhdiFile parent, OpenFile(stamp.path));
    HAVEN_RETURN_IF_ERROR(
        s->AttachParent(child, std::move(parent), stamp.path));
  }
  s->reason_ = Reason(vhdx ? "VHDX" : "VHD", s->chain_.size() - 1, "libvhdi");
  return std::unique_ptr<DiskSource>(std::move(s));
}

Status VhdiSource::Read(uint64_t offset, uint8_t* buf, size_t len) {
  return ReadAll(offset, buf, len,
                 [&](uint8_t* b, size_t n, uint64_t off, std::string* error) {
                   VhdiError err;
                   ssize_t r = libvhdi_file_read_buffer_at_offset(
                       chain_.front().get(), b, n, static_cast<off64_t>(off),
                       OutPtr(err));
                   if (r < 0) *error = Text(err);
                   return r;
                 });
}

// --- VMDK (libvmdk) ------------------------------------------------------

class VmdkSource final : public ChainSource {
 public:
  static Result<std::unique_ptr<DiskSource>> Open(const std::string& path);
  ~VmdkSource() override {
    for (VmdkHandle& h : chain_) h.reset();  // each child before its parent
  }
  Status Read(uint64_t offset, uint8_t* buf, size_t len) override;

 private:
  using ChainSource::ChainSource;
  // Opens the descriptor `disk` and its extent files, which must all be in
  // the descriptor's folder.
  Result<VmdkHandle> OpenDisk(const FileStamp& disk);
  // The file of extent `index` (nullopt for a zero extent, which has none).
  static Result<std::optional<FileStamp>> ExtentFile(libvmdk_handle_t* handle,
                                                     const std::string& path,
                                                     int index);
  // Records the extent files of `disk`; a sparse disk with an embedded
  // descriptor must be its own single extent.
  Status AddExtentFiles(libvmdk_handle_t* handle, const FileStamp& disk,
                        int extents);
  Status AttachParent(const std::string& child_path, VmdkHandle parent,
                      const std::string& parent_path);

  std::vector<VmdkHandle> chain_;  // the disk, its parent, ...
};

Result<std::optional<FileStamp>> VmdkSource::ExtentFile(
    libvmdk_handle_t* handle, const std::string& path, int index) {
  VmdkError err;
  VmdkExtent extent;
  int type = 0;
  if (libvmdk_handle_get_extent_descriptor(handle, index, OutPtr(extent),
                                           OutPtr(err)) != 1)
    return DataLoss(path + ": extent " + std::to_string(index) + ": " +
                    Text(err));
  if (libvmdk_extent_descriptor_get_type(extent.get(), &type, OutPtr(err)) != 1)
    return DataLoss(path + ": extent " + std::to_string(index) + ": " +
                    Text(err));
  switch (type) {
    case LIBVMDK_EXTENT_TYPE_ZERO:
      return std::optional<FileStamp>();
    case LIBVMDK_EXTENT_TYPE_FLAT:
    case LIBVMDK_EXTENT_TYPE_SPARSE:
    case LIBVMDK_EXTENT_TYPE_VMFS_FLAT:
    case LIBVMDK_EXTENT_TYPE_VMFS_SPARSE:
      break;
    default:  // VMFS raw or raw device mapping: a device, not a file here
      return InvalidArgument(path + ": extent " + std::to_string(index) +
                             " is a raw device mapping (type " +
                             std::to_string(type) +
                             "), which is not read from an image folder");
  }
  HAVEN_ASSIGN_OR_RETURN(
      std::optional<std::string> name,
      (Utf8String<libvmdk_extent_descriptor_t, VmdkError>(
          extent.get(), libvmdk_extent_descriptor_get_utf8_filename_size,
          libvmdk_extent_descriptor_get_utf8_filename,
          path + ": extent " + std::to_string(index))));
  if (!name)
    return DataLoss(path + ": extent " + std::to_string(index) +
                    " names no file");
  // libvmdk opens extents by the recorded name: it must be a bare name.
  if (name->empty() || *name == "." || *name == ".." ||
      name->find_first_of(std::string_view("/\\\0", 3)) != std::string::npos)
    return InvalidArgument(path + ": extent '" + *name +
                           "' is not a file name in the descriptor's folder");
  HAVEN_ASSIGN_OR_RETURN(FileStamp stamp,
                         StampNamedFile(path, "extent", DirName(path), *name));
  return std::optional<FileStamp>(std::move(stamp));
}

Status VmdkSource::AddExtentFiles(libvmdk_handle_t* handle,
                                  const FileStamp& disk, int extents) {
  // A sparse extent header ("KDMV") at 0 means the descriptor is embedded
  // (monolithicSparse, streamOptimized) and names the file itself; after a
  // rename it names another file, maybe an older disk of the same folder.
  HAVEN_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(disk.path, O_RDONLY));
  char magic[4] = {0};
  bool embedded = ::pread(fd.get(), magic, sizeof(magic), 0) == 4 &&
                  std::memcmp(magic, "KDMV", 4) == 0;
  for (int i = 0; i < extents; ++i) {
    HAVEN_ASSIGN_OR_RETURN(std::optional<FileStamp> file,
                           ExtentFile(handle, disk.path, i));
    bool itself =
        file && file->f.dev == disk.f.dev && file->f.ino == disk.f.ino;
    if (embedded && (extents != 1 || !itself))
      return InvalidArgument(
          disk.path + ": its embedded descriptor names " +
          (file ? "extent " + file->path : std::string("no extent file")) +
          ", not the file itself (renamed?); rename it back to the name "
          "it was created with");
    if (file && !itself) {
      HAVEN_RETURN_IF_ERROR(AddFile(*file));
    }
  }
  return OkStatus();
}

Result<VmdkHandle> VmdkSource::OpenDisk(const FileStamp& disk) {
  const std::string& path = disk.path;
  VmdkError err;
  VmdkHandle handle;
  if (libvmdk_handle_initialize(OutPtr(handle), OutPtr(err)) != 1)
    return Internal(path + ": " + Text(err));
  if (libvmdk_handle_open(handle.get(), path.c_str(), LIBVMDK_OPEN_READ,
                          OutPtr(err)) != 1)
    return DataLoss(path + ": not a readable VMDK image (" + Text(err) + ")");
  int extents = 0;
  if (libvmdk_handle_get_number_of_extents(handle.get(), &extents,
                                           OutPtr(err)) != 1)
    return DataLoss(path + ": " + Text(err));
  if (extents <= 0) return DataLoss(path + ": the descriptor lists no extents");
  HAVEN_RETURN_IF_ERROR(AddExtentFiles(handle.get(), disk, extents));
  std::string dir = DirName(path);
  if (libvmdk_handle_set_extent_data_files_path(handle.get(), dir.c_str(),
                                                dir.size(), OutPtr(err)) != 1)
    return Internal(path + ": " + Text(err));
  if (libvmdk_handle_open_extent_data_files(handle.get(), OutPtr(err)) != 1)
    return DataLoss(path + ": cannot open its extent files (" + Text(err) +
                    ")");
  return handle;
}

Status VmdkSource::AttachParent(const std::string& child_path,
                                VmdkHandle parent,
                                const std::string& parent_path) {
  libvmdk_handle_t* child = chain_.back().get();
  VmdkError err;
  uint32_t expected = 0, actual = 0;
  if (libvmdk_handle_get_parent_content_identifier(child, &expected,
                                                   OutPtr(err)) != 1)
    return DataLoss(child_path + ": no parent content identifier");
  if (libvmdk_handle_get_content_identifier(parent.get(), &actual,
                                            OutPtr(err)) != 1)
    return DataLoss(parent_path + ": " + Text(err));
  if (expected != actual)
    return DataLoss(child_path + ": parent " + parent_path +
                    " has content id " + Hex32(actual) +
                    ", the child was made from " + Hex32(expected) +
                    " (the parent was changed after the snapshot)");
  if (libvmdk_handle_set_parent_handle(child, parent.get(), OutPtr(err)) != 1)
    return DataLoss(child_path + ": cannot use parent " + parent_path + ": " +
                    Text(err));
  chain_.push_back(std::move(parent));
  return OkStatus();
}

Result<std::unique_ptr<DiskSource>> VmdkSource::Open(const std::string& path) {
  std::unique_ptr<VmdkSource> s(new VmdkSource(path));
  HAVEN_ASSIGN_OR_RETURN(FileStamp stamp, StampImage(path));
  HAVEN_RETURN_IF_ERROR(s->AddFile(stamp));
  HAVEN_ASSIGN_OR_RETURN(VmdkHandle disk, s->OpenDisk(stamp));
  VmdkError err;
  size64_t media_size = 0;
  if (libvmdk_handle_get_media_size(disk.get(), &media_size, OutPtr(err)) != 1)
    return DataLoss(path + ": " + Text(err));
  s->size_ = media_size;
  s->chain_.push_back(std::move(disk));
  for (std::string child = path;; child = stamp.path) {
    HAVEN_ASSIGN_OR_RETURN(
        std::optional<std::string> recorded,
        (Utf8String<libvmdk_handle_t, VmdkError>(
            s->chain_.back().get(),
            libvmdk_handle_get_utf8_parent_filename_size,
            libvmdk_handle_get_utf8_parent_filename, child + ": parent name")));
    if (!recorded) break;
    if (s->chain_.size() > kMaxParents)
      return InvalidArgument(path + ": chain of parent disks is deeper than " +
                             std::to_string(kMaxParents));
    HAVEN_ASSIGN_OR_RETURN(stamp, FindParent(child, *recorded));
    HAVEN_RETURN_IF_ERROR(s->AddFile(stamp));
    HAVEN_ASSIGN_OR_RETURN(VmdkHandle parent, s->OpenDisk(stamp));
    HAVEN_RETURN_IF_ERROR(
        s->AttachParent(child, std::move(parent), stamp.path));
  }
  s->reason_ = Reason("VMDK", s->chain_.size() - 1, "libvmdk");
  return std::unique_ptr<DiskSource>(std::move(s));
}

Status VmdkSource::Read(uint64_t offset, uint8_t* buf, size_t len) {
  return ReadAll(offset, buf, len,
                 [&](uint8_t* b, size_t n, uint64_t off, std::string* error) {
                   VmdkError err;
                   ssize_t r = libvmdk_handle_read_buffer_at_offset(
                       chain_.front().get(), b, n, static_cast<off64_t>(off),
                       OutPtr(err));
                   if (r < 0) *error = Text(err);
                   return r;
                 });
}

// --- Format detection and configuration files ----------------------------

bool HasCaseInsensitiveSuffix(const std::string& name,
                              std::span<const std::string_view> suffixes) {
  for (std::string_view s : suffixes) {
    if (name.size() > s.size() &&
        ::strncasecmp(name.c_str() + name.size() - s.size(), s.data(),
                      s.size()) == 0)
      return true;
  }
  return false;
}

}  // namespace

const char* FormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kRaw:
      return "raw";
    case ImageFormat::kQcow2:
      return "qcow2";
    case ImageFormat::kVhd:
      return "vhd";
    case ImageFormat::kVhdx:
      return "vhdx";
    case ImageFormat::kVmdk:
      return "vmdk";
  }
  return "unknown";
}

Result<ImageFormat> DetectImageFormat(const std::string& path) {
  HAVEN_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat " + path, errno);
  if (S_ISBLK(st.st_mode)) return ImageFormat::kRaw;
  if (!S_ISREG(st.st_mode))
    return InvalidArgument(path +
                           " is neither a regular file nor a block device");
  // Magic numbers: qcow2 header, VHDX file type identifier, VHD footer copy
  // (dynamic disks) or footer (fixed disks, last 512 bytes), VMDK sparse
  // header or text descriptor.
  static constexpr std::string_view kQcow2("QFI\xfb", 4), kVhdx("vhdxfile"),
      kVhd("conectix"), kVmdkSparse("KDMV"),
      kVmdkDescriptor("# Disk DescriptorFile");
  uint64_t size = static_cast<uint64_t>(st.st_size);
  char head[32] = {0};
  size_t head_len = std::min<uint64_t>(size, sizeof(head));
  HAVEN_RETURN_IF_ERROR(PReadExact(fd.get(), reinterpret_cast<uint8_t*>(head),
                                   head_len, 0, path));
  std::string_view h(head, head_len);
  if (h.starts_with(kQcow2)) return ImageFormat::kQcow2;
  if (h.starts_with(kVhdx)) return ImageFormat::kVhdx;
  if (h.starts_with(kVhd)) return ImageFormat::kVhd;
  if (h.starts_with(kVmdkSparse) || h.starts_with(kVmdkDescriptor))
    return ImageFormat::kVmdk;
  if (size >= 512) {
    char tail[8];
    HAVEN_RETURN_IF_ERROR(PReadExact(fd.get(), reinterpret_cast<uint8_t*>(tail),
                                     sizeof(tail), size - 512, path));
    if (std::string_view(tail, sizeof(tail)) == kVhd) return ImageFormat::kVhd;
  }
  return ImageFormat::kRaw;
}

Result<std::unique_ptr<DiskSource>> OpenForeignImage(const std::string& path,
                                                     ImageFormat format) {
  switch (format) {
    case ImageFormat::kVhd:
    case ImageFormat::kVhdx:
      return VhdiSource::Open(path, format);
    case ImageFormat::kVmdk:
      return VmdkSource::Open(path);
    case ImageFormat::kRaw:
    case ImageFormat::kQcow2:
      break;
  }
  return InvalidArgument(path + ": " + FormatName(format) +
                         " images are not read as foreign images");
}

std::vector<std::string> ForeignConfigFiles(const std::string& image_path,
                                            ImageFormat format) {
  static constexpr std::string_view kVmware[] = {".vmx", ".vmxf", ".vmsd",
                                                 ".nvram"};
  static constexpr std::string_view kHyperV[] = {".vmcx", ".vmrs", ".vmgs",
                                                 ".xml"};
  std::span<const std::string_view> suffixes;
  switch (format) {
    case ImageFormat::kVmdk:
      suffixes = kVmware;
      break;
    case ImageFormat::kVhd:
    case ImageFormat::kVhdx:
      suffixes = kHyperV;
      break;
    case ImageFormat::kRaw:
    case ImageFormat::kQcow2:
      return {};
  }
  std::vector<std::string> out;
  std::vector<std::string> dirs = {DirName(image_path)};
  // A Hyper-V export keeps disks in "Virtual Hard Disks" and the VM's
  // configuration in the sibling "Virtual Machines".
  if (format != ImageFormat::kVmdk) {
    std::string base = dirs[0].substr(dirs[0].rfind('/') + 1);
    std::transform(base.begin(), base.end(), base.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (base == "virtual hard disks")
      dirs.push_back(JoinPath(DirName(dirs[0]), "Virtual Machines"));
  }
  for (const auto& dir : dirs) {
    std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
    if (d == nullptr) continue;
    while (const struct dirent* e = ::readdir(d.get())) {
      std::string name = e->d_name;
      if (!HasCaseInsensitiveSuffix(name, suffixes)) continue;
      std::string path = JoinPath(dir, name);
      struct stat st;
      if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
          static_cast<uint64_t>(st.st_size) > kMaxConfigFileBytes)
        continue;
      out.push_back(std::move(path));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace haven::snapshot
