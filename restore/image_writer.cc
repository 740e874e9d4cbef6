#include "restore/image_writer.h"

#include <fcntl.h>
#include <libnbd.h>
#include <linux/fs.h>
#include <poll.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <list>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "base/file.h"
#include "base/process.h"

namespace haven::restore {
namespace {

constexpr double kQemuImgTimeout = 300;  // seconds, for create

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// A path qemu takes as a plain file name: "./" keeps a relative name with a
// ':' from being parsed as a protocol ("nbd:...") and one starting with '-'
// from being parsed as an option.
std::string QemuFileName(const std::string& path) {
  return path.starts_with('/') ? path : "./" + path;
}

// PATH.haven-partial, created exclusively, and the rename that publishes it
// as PATH. Removed on destruction unless committed.
class PartialFile {
 public:
  static Result<PartialFile> Create(const std::string& path, bool overwrite) {
    PartialFile f;
    f.final_path_ = path;
    f.path_ = path + kPartialSuffix;
    f.overwrite_ = overwrite;
    ::unlink(f.path_.c_str());  // a leftover of an interrupted restore
    int fd =
        ::open(f.path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      int err = errno;
      struct stat st;
      if (err == ENOENT && ::stat(DirOf(path).c_str(), &st) != 0)
        return NotFound("cannot create " + f.path_ + ": folder " + DirOf(path) +
                        " does not exist");
      return ErrnoStatus("create " + f.path_, err);
    }
    f.fd_.reset(fd);
    f.live_ = true;
    return f;
  }
  PartialFile() = default;
  PartialFile(PartialFile&& o) noexcept { *this = std::move(o); }
  PartialFile& operator=(PartialFile&& o) noexcept {
    Remove();
    final_path_ = std::move(o.final_path_);
    path_ = std::move(o.path_);
    fd_ = std::move(o.fd_);
    overwrite_ = o.overwrite_;
    live_ = std::exchange(o.live_, false);
    return *this;
  }
  ~PartialFile() { Remove(); }

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }

  // fsync, rename to the target (never over a file that appeared meanwhile
  // unless `overwrite`), fsync the directory.
  Status Commit() {
    Status s = FsyncFd(fd_.get(), path_);
    if (!s.ok()) {
      Remove();
      return s;
    }
    fd_.reset();
    const unsigned flags = overwrite_ ? 0 : RENAME_NOREPLACE;
    int rc = ::renameat2(AT_FDCWD, path_.c_str(), AT_FDCWD, final_path_.c_str(),
                         flags);
    if (rc != 0 && errno == EINVAL && flags != 0) {
      // The file system cannot rename without replacing: check, then rename.
      struct stat st;
      if (::lstat(final_path_.c_str(), &st) == 0) {
        rc = -1;
        errno = EEXIST;
      } else {
        rc = ::rename(path_.c_str(), final_path_.c_str());
      }
    }
    if (rc != 0) {
      int err = errno;
      Remove();
      if (err == EEXIST)
        return AlreadyExists(final_path_ +
                             " appeared while the restore ran; it was left "
                             "as it is and the restored image discarded");
      return ErrnoStatus("rename " + path_ + " to " + final_path_, err);
    }
    live_ = false;
    return FsyncDir(DirOf(final_path_));
  }

  void Remove() {
    if (!live_) return;
    fd_.reset();
    ::unlink(path_.c_str());
    live_ = false;
  }

 private:
  std::string final_path_, path_;
  UniqueFd fd_;
  bool overwrite_ = false;
  bool live_ = false;  // the partial file exists and is ours
};

// A sparse raw file.
class RawFileWriter : public ImageWriter {
 public:
  explicit RawFileWriter(PartialFile file) : file_(std::move(file)) {}

  Status Write(uint64_t offset, Bytes& data) override {
    return PWriteAll(file_.fd(), data.data(), data.size(), offset,
                     file_.path());
  }
  void Written(uint64_t offset, uint64_t len) override {
    ::sync_file_range(file_.fd(), static_cast<off_t>(offset),
                      static_cast<off_t>(len), SYNC_FILE_RANGE_WRITE);
  }
  Status Finish() override { return file_.Commit(); }
  void Discard() override { file_.Remove(); }
  const std::string& write_path() const override { return file_.path(); }

 private:
  PartialFile file_;
};

// A block device, written in place.
class BlockDeviceWriter : public ImageWriter {
 public:
  BlockDeviceWriter(std::string path, UniqueFd fd)
      : path_(std::move(path)), fd_(std::move(fd)) {}

  Status Write(uint64_t offset, Bytes& data) override {
    return PWriteAll(fd_.get(), data.data(), data.size(), offset, path_);
  }
  void Written(uint64_t offset, uint64_t len) override {
    ::sync_file_range(fd_.get(), static_cast<off_t>(offset),
                      static_cast<off_t>(len), SYNC_FILE_RANGE_WRITE);
  }
  Status Finish() override { return FsyncFd(fd_.get(), path_); }
  void Discard() override {}
  const std::string& write_path() const override { return path_; }

 private:
  std::string path_;
  UniqueFd fd_;
};

Result<std::unique_ptr<ImageWriter>> OpenBlockDevice(const std::string& path,
                                                     uint64_t size) {
  HAVEN_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_WRONLY));
  uint64_t dev_size = 0;
  if (::ioctl(fd.get(), BLKGETSIZE64, &dev_size) != 0)
    return ErrnoStatus("size of " + path, errno);
  if (dev_size < size)
    return InvalidArgument(path + " (" + std::to_string(dev_size) +
                           " bytes) is smaller than the image (" +
                           std::to_string(size) + " bytes)");
  // A device is not sparse: zero it first so holes read back as zeros.
  uint64_t range[2] = {0, size};
  if (size > 0 && ::ioctl(fd.get(), BLKZEROOUT, range) != 0)
    return ErrnoStatus("zero " + path, errno);
  return std::unique_ptr<ImageWriter>(
      new BlockDeviceWriter(path, std::move(fd)));
}

struct NbdCloser {
  // Also waits for a server started by socket activation to exit.
  void operator()(nbd_handle* h) const { nbd_close(h); }
};
using NbdHandle = std::unique_ptr<nbd_handle, NbdCloser>;

// A qcow2 or VHDX image made by qemu-img and written through qemu-nbd.
//
// A synchronous nbd_pwrite holds the handle's lock until the server
// replies, so workers calling it would wait for each other's round trips
// (measured: ~200 MB/s with 64 KiB chunks against ~400 MB/s with 16 writes
// in flight). Workers therefore only queue their buffer; one I/O thread
// owns the handle, keeps up to kMaxInFlight writes in flight (qemu-nbd
// serves 16 requests of a client at once) and hands the buffers back.
class NbdImageWriter : public ImageWriter {
 public:
  static Result<std::unique_ptr<ImageWriter>> Open(PartialFile file,
                                                   ImageFormat format,
                                                   uint64_t size);
  ~NbdImageWriter() override { Discard(); }

  Status Write(uint64_t offset, Bytes& data) override;
  Status Finish() override;
  void Discard() override {
    StopIo();
    h_.reset();  // qemu-nbd must be gone before its file is
    in_flight_.clear();
    file_.Remove();
  }
  const std::string& write_path() const override { return file_.path(); }
  size_t merge_limit() const override { return kMergeLimit; }
  // qemu-nbd runs with cache=unsafe, so nothing writes its dirty pages back
  // until the final fsync: start writeback of the file every kKickBytes.
  void Written(uint64_t offset, uint64_t len) override {
    if (unkicked_.fetch_add(len) + len < kKickBytes) return;
    unkicked_ = 0;
    ::sync_file_range(file_.fd(), 0, 0, SYNC_FILE_RANGE_WRITE);
  }

 private:
  static constexpr size_t kMaxInFlight = 16;
  // qemu-nbd spends about half as much CPU per byte on 1 MiB requests as
  // on 64 KiB ones (with the malloc settings below); 4 MiB costs more again.
  static constexpr size_t kMergeLimit = 1 << 20;
  static constexpr uint64_t kKickBytes = 32 << 20;
  static constexpr uint64_t kMaxQueuedBytes = 64 << 20;

  struct Request {
    uint64_t offset;
    Bytes data;
  };
  struct InFlight {
    NbdImageWriter* writer;
    Request req;
  };

  NbdImageWriter(PartialFile file, ImageFormat format, uint64_t size)
      : file_(std::move(file)), format_(format), size_(size) {}
  Status Connect();
  Status Fail(const std::string& what) const;
  Status WriteError(const Request& r, const std::string& why) const;
  Status Enqueue(Request r, Bytes& spare);
  void IoLoop();
  void Submit(Request r);
  void Completed(InFlight* f, int error);
  void SetError(Status s);
  void StopIo();

  PartialFile file_;
  ImageFormat format_;
  uint64_t size_;
  NbdHandle h_;
  uint64_t align_ = 1, max_request_ = 32 << 20;
  std::atomic<uint64_t> unkicked_{0};  // bytes written since writeback began

  std::thread io_;
  UniqueFd wake_;  // eventfd: work queued or stop
  std::mutex mu_;
  std::condition_variable room_;
  std::vector<Request> queue_;  // given by workers, not yet to libnbd
  std::vector<Bytes> spare_;    // buffers of completed writes
  size_t queued_ = 0;           // queue_ + in flight
  uint64_t queued_bytes_ = 0;
  bool stop_ = false;
  Status error_;  // the first failure; later writes fail with it
  // I/O thread only (and after it stopped): owned by this list, so their
  // buffers outlive libnbd's use of them even if no reply ever comes.
  std::list<InFlight> in_flight_;
};

Status NbdImageWriter::Fail(const std::string& what) const {
  const char* msg = nbd_get_error();
  return IoError(std::string(ImageFormatName(format_)) + " image " +
                 file_.path() + ": " + what +
                 " through qemu-nbd: " + (msg ? msg : "unknown NBD error"));
}

Status NbdImageWriter::WriteError(const Request& r,
                                  const std::string& why) const {
  return IoError(std::string(ImageFormatName(format_)) + " image " +
                 file_.path() + ": writing " + std::to_string(r.data.size()) +
                 " bytes at offset " + std::to_string(r.offset) +
                 " through qemu-nbd: " + why);
}

void NbdImageWriter::SetError(Status s) {
  std::lock_guard<std::mutex> l(mu_);
  if (error_.ok()) error_ = std::move(s);
  room_.notify_all();
}

Status NbdImageWriter::Write(uint64_t offset, Bytes& data) {
  const uint64_t len = data.size();
  if (offset > size_ || len > size_ - offset)
    return InvalidArgument(file_.path() + ": write of " + std::to_string(len) +
                           " bytes at offset " + std::to_string(offset) +
                           " is past the image end (" + std::to_string(size_) +
                           " bytes)");
  if (len == 0) return OkStatus();
  if (offset % align_ != 0 || (len % align_ != 0 && offset + len != size_))
    return InvalidArgument(file_.path() + ": write of " + std::to_string(len) +
                           " bytes at offset " + std::to_string(offset) +
                           " is not aligned to " + std::to_string(align_) +
                           " bytes");
  // The image's last block: qemu rounded the virtual size up, and what
  // lies past `size_` reads as zeros, so pad with zeros.
  if (len % align_ != 0) data.resize((len + align_ - 1) / align_ * align_, 0);
  if (data.size() <= max_request_)
    return Enqueue({offset, std::move(data)}, data);
  for (uint64_t at = 0; at < data.size(); at += max_request_) {
    uint64_t n = std::min<uint64_t>(max_request_, data.size() - at);
    Bytes part(data.begin() + at, data.begin() + at + n);
    Bytes unused;
    HAVEN_RETURN_IF_ERROR(Enqueue({offset + at, std::move(part)}, unused));
  }
  return OkStatus();
}

// Queues `r`, waiting while too much is queued; leaves a spare buffer (or
// an empty one) in `spare`.
Status NbdImageWriter::Enqueue(Request r, Bytes& spare) {
  std::unique_lock<std::mutex> l(mu_);
  room_.wait(l, [&] {
    return !error_.ok() || stop_ || queued_ == 0 ||
           (queued_ < kMaxInFlight &&
            queued_bytes_ + r.data.size() <= kMaxQueuedBytes);
  });
  if (!error_.ok()) return error_;
  if (stop_) return Internal(file_.path() + ": write after Finish");
  ++queued_;
  queued_bytes_ += r.data.size();
  queue_.push_back(std::move(r));
  if (!spare_.empty()) {
    spare = std::move(spare_.back());
    spare_.pop_back();
  } else {
    spare = Bytes();
  }
  l.unlock();
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  return OkStatus();
}

void NbdImageWriter::Submit(Request r) {
  in_flight_.push_back({this, std::move(r)});
  InFlight* f = &in_flight_.back();
  nbd_completion_callback cb{[](void* user, int* error) {
                               auto* f = static_cast<InFlight*>(user);
                               f->writer->Completed(f, *error);
                               return 1;  // retires the command
                             },
                             f, nullptr};
  if (nbd_aio_pwrite(h_.get(), f->req.data.data(), f->req.data.size(),
                     f->req.offset, cb, 0) == -1) {
    const char* msg = nbd_get_error();
    SetError(WriteError(f->req, msg ? msg : "unknown NBD error"));
    Completed(f, -1);
  }
}

// Called on the I/O thread, from inside libnbd for a reply.
void NbdImageWriter::Completed(InFlight* f, int error) {
  if (error > 0) SetError(WriteError(f->req, std::strerror(error)));
  std::lock_guard<std::mutex> l(mu_);
  --queued_;
  queued_bytes_ -= f->req.data.size();
  spare_.push_back(std::move(f->req.data));
  room_.notify_all();
  for (auto it = in_flight_.begin(); it != in_flight_.end(); ++it)
    if (&*it == f) {
      in_flight_.erase(it);
      break;
    }
}

void NbdImageWriter::IoLoop() {
  std::vector<Request> batch;
  while (true) {
    bool stop;
    {
      std::lock_guard<std::mutex> l(mu_);
      batch.swap(queue_);
      stop = stop_;
    }
    for (auto& r : batch) Submit(std::move(r));
    batch.clear();
    const bool dead =
        nbd_aio_is_dead(h_.get()) == 1 || nbd_aio_is_closed(h_.get()) == 1;
    if (dead && !in_flight_.empty()) {
      SetError(Fail("the connection to qemu-nbd was lost"));
      return;  // in-flight buffers stay owned until the handle is closed
    }
    if (stop && in_flight_.empty()) return;
    pollfd fds[2] = {{wake_.get(), POLLIN, 0}, {-1, 0, 0}};
    if (!dead) {
      fds[1].fd = nbd_aio_get_fd(h_.get());
      const unsigned dir = nbd_aio_get_direction(h_.get());
      if (dir & LIBNBD_AIO_DIRECTION_READ) fds[1].events |= POLLIN;
      if (dir & LIBNBD_AIO_DIRECTION_WRITE) fds[1].events |= POLLOUT;
    }
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      SetError(ErrnoStatus("poll for " + file_.path(), errno));
      return;
    }
    if (fds[0].revents & POLLIN) {
      uint64_t n;
      (void)!::read(wake_.get(), &n, sizeof n);
    }
    int rc = 0;
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR))
      rc = nbd_aio_notify_read(h_.get());
    else if (fds[1].revents & POLLOUT)
      rc = nbd_aio_notify_write(h_.get());
    if (rc == -1) {
      SetError(Fail("talking to qemu-nbd"));
      return;
    }
  }
}

void NbdImageWriter::StopIo() {
  if (!io_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    room_.notify_all();
  }
  uint64_t one = 1;
  (void)!::write(wake_.get(), &one, sizeof one);
  io_.join();
}

Status NbdImageWriter::Finish() {
  StopIo();
  Status s;
  {
    std::lock_guard<std::mutex> l(mu_);
    s = error_;
  }
  // The flush makes qemu write its cached metadata into the file (with
  // cache=unsafe it does not fsync: Commit does); only then is closing the
  // connection, which stops qemu-nbd, safe.
  if (s.ok() && nbd_flush(h_.get(), 0) == -1)
    s = Fail("flush");
  else if (s.ok() && nbd_shutdown(h_.get(), 0) == -1)
    s = Fail("closing the connection");
  h_.reset();
  in_flight_.clear();
  if (!s.ok()) {
    file_.Remove();
    return s;
  }
  return file_.Commit();
}

Status NbdImageWriter::Connect() {
  const std::string fmt = ImageFormatName(format_);
  h_.reset(nbd_create());
  if (!h_) return Fail("creating an NBD handle");
  // glibc's malloc gives qemu-nbd each request buffer over 128 KiB by mmap
  // and munmap (page faults, TLB shootdowns): 1 MiB requests then cost it
  // 3x the CPU of 64 KiB ones. Kept on the heap they cost half. `env` execs
  // qemu-nbd in the same process, as socket activation requires.
  //
  // cache=unsafe: qcow2 and VHDX fsync the file whenever new metadata must
  // reach the disk before what points to it; that keeps an image whose
  // writer crashes consistent, but this file is deleted if anything goes
  // wrong before Finish, and each fsync stalled the restore for 0.2-0.4 s.
  // Durability comes at the end: nbd_flush makes qemu write its cached
  // metadata into the file (still reporting errors), then the file is
  // fsync'd by PartialFile::Commit before it is renamed.
  std::vector<std::string> serve = {
      "env",
      "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:"
      "glibc.malloc.trim_threshold=268435456",
      "qemu-nbd",
      "--format=" + fmt,
      "--cache=unsafe",
      "--",
      QemuFileName(file_.path())};
  std::vector<char*> argv;
  for (auto& a : serve) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (nbd_connect_systemd_socket_activation(h_.get(), argv.data()) == -1)
    return Fail("starting qemu-nbd (installed with qemu-utils)");
  const int read_only = nbd_is_read_only(h_.get());
  if (read_only == -1) return Fail("asking whether the export is writable");
  if (read_only == 1)
    return IoError(fmt + " image " + file_.path() +
                   ": qemu-nbd serves it read-only");
  const int64_t served = nbd_get_size(h_.get());
  if (served < 0) return Fail("reading the export size");
  // qemu rounds a virtual size up to 512 bytes; never down.
  if (static_cast<uint64_t>(served) < size_)
    return IoError(fmt + " image " + file_.path() + ": qemu-nbd serves " +
                   std::to_string(served) + " bytes, the image has " +
                   std::to_string(size_));
  const int64_t min = nbd_get_block_size(h_.get(), LIBNBD_SIZE_MINIMUM);
  const int64_t max = nbd_get_block_size(h_.get(), LIBNBD_SIZE_MAXIMUM);
  if (min > 0) align_ = static_cast<uint64_t>(min);
  if (max > 0)
    max_request_ = std::min<uint64_t>(max_request_, static_cast<uint64_t>(max));
  if (align_ > 4096 || max_request_ < align_)
    return IoError(fmt + " image " + file_.path() +
                   ": qemu-nbd asks for blocks of " + std::to_string(align_) +
                   " to " + std::to_string(max_request_) + " bytes");
  int fd = ::eventfd(0, EFD_CLOEXEC);
  if (fd < 0) return ErrnoStatus("eventfd", errno);
  wake_.reset(fd);
  io_ = std::thread([this] { IoLoop(); });
  return OkStatus();
}

Result<std::unique_ptr<ImageWriter>> NbdImageWriter::Open(PartialFile file,
                                                          ImageFormat format,
                                                          uint64_t size) {
  const std::string fmt = ImageFormatName(format);
  std::vector<std::string> create = {"qemu-img", "create", "-q", "-f", fmt};
  if (format == ImageFormat::kVhdx)
    create.insert(create.end(), {"-o", "subformat=dynamic"});
  create.insert(create.end(),
                {QemuFileName(file.path()), std::to_string(size)});
  auto run = RunProcess(create, {}, kQemuImgTimeout, true);
  if (!run.ok())
    return run.status().WithContext("creating " + fmt + " image " +
                                    file.path());
  if (!run->exited || run->exit_code != 0) {
    const std::string what = "creating " + fmt + " image " + file.path();
    if (run->exited && run->exit_code == 127)
      return NotFound(what + ": qemu-img not found (install qemu-utils)");
    while (!run->output.empty() && run->output.back() == '\n')
      run->output.pop_back();
    return IoError(
        what + ": qemu-img create " +
        (run->timed_out ? "timed out"
         : !run->exited
             ? "was killed by signal " + std::to_string(run->signal)
             : "failed with exit code " + std::to_string(run->exit_code)) +
        (run->output.empty() ? "" : ": " + run->output));
  }
  std::unique_ptr<NbdImageWriter> w(
      new NbdImageWriter(std::move(file), format, size));
  HAVEN_RETURN_IF_ERROR(w->Connect());
  return std::unique_ptr<ImageWriter>(std::move(w));
}

}  // namespace

Status WriteMerger::Add(uint64_t offset, Bytes& data) {
  if (limit_ == 0 || data.size() >= limit_) {
    HAVEN_RETURN_IF_ERROR(Flush());
    return writer_.Write(offset, data);
  }
  if (!run_.empty() && (offset != run_offset_ + run_.size() ||
                        run_.size() + data.size() > limit_))
    HAVEN_RETURN_IF_ERROR(Flush());
  if (run_.empty()) run_offset_ = offset;
  run_.insert(run_.end(), data.begin(), data.end());
  return OkStatus();
}

Status WriteMerger::Flush() {
  if (run_.empty()) return OkStatus();
  Status s = writer_.Write(run_offset_, run_);
  run_.clear();  // the writer may have left another buffer: reuse it
  return s;
}

Result<ImageFormat> ParseImageFormat(const std::string& name) {
  if (name == "raw") return ImageFormat::kRaw;
  if (name == "qcow2") return ImageFormat::kQcow2;
  if (name == "vhdx") return ImageFormat::kVhdx;
  return InvalidArgument("unknown image format '" + name +
                         "' (raw, qcow2 or vhdx)");
}

const char* ImageFormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kRaw:
      return "raw";
    case ImageFormat::kQcow2:
      return "qcow2";
    case ImageFormat::kVhdx:
      return "vhdx";
  }
  return "?";
}

Result<std::unique_ptr<ImageWriter>> OpenImageWriter(
    const ImageWriterOptions& options) {
  const std::string& path = options.path;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISBLK(st.st_mode)) {
      if (options.format != ImageFormat::kRaw)
        return InvalidArgument(
            path + " is a block device; a " + ImageFormatName(options.format) +
            " image can only be written to a file (use --format raw to write "
            "the disk onto the device)");
      if (!options.overwrite)
        return AlreadyExists(
            path +
            " is a block device; pass --overwrite to write the image onto it");
      return OpenBlockDevice(path, options.size);
    }
    if (!options.overwrite)
      return AlreadyExists(
          path + " already exists; choose another path or pass --overwrite");
    if (!S_ISREG(st.st_mode))
      return InvalidArgument(path + " is not a regular file");
  }
  HAVEN_ASSIGN_OR_RETURN(PartialFile file,
                         PartialFile::Create(path, options.overwrite));
  if (options.format != ImageFormat::kRaw)
    return NbdImageWriter::Open(std::move(file), options.format, options.size);
  if (::ftruncate(file.fd(), static_cast<off_t>(options.size)) != 0)
    return ErrnoStatus("size " + file.path(), errno);
  return std::unique_ptr<ImageWriter>(new RawFileWriter(std::move(file)));
}

}  // namespace haven::restore
