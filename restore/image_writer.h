// restore/: where the bytes of a restored disk go. An ImageWriter takes the
// data chunks of one image at any offsets, from several threads at once, and
// makes them durable in Finish(). Ranges never written read back as zeros,
// so holes are simply not written.
//
//   raw file     PATH.haven-partial, sparse (ftruncate), pwrite
//   qcow2/vhdx   PATH.haven-partial made by `qemu-img create`, written
//                through qemu-nbd (started by libnbd, socket activation)
//                in writes of up to 1 MiB, 16 in flight, sent by one I/O
//                thread; flushed, then fsync'd by Haven
//   block device written in place after BLKZEROOUT
//
// A file target is renamed from PATH.haven-partial to PATH only in a
// successful Finish(), after everything was written and fsync'd; on any
// failure, and when the writer is destroyed unfinished, the partial file is
// removed and PATH is left as it was.
#ifndef HAVEN_RESTORE_IMAGE_WRITER_H_
#define HAVEN_RESTORE_IMAGE_WRITER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "base/bytes.h"
#include "base/status.h"

namespace haven::restore {

enum class ImageFormat { kRaw, kQcow2, kVhdx };

// "raw", "qcow2" or "vhdx" (dynamic); anything else is InvalidArgument.
Result<ImageFormat> ParseImageFormat(const std::string& name);
const char* ImageFormatName(ImageFormat format);

// Suffix of the file a restore writes before renaming it to its target.
inline constexpr char kPartialSuffix[] = ".haven-partial";

class ImageWriter {
 public:
  virtual ~ImageWriter() = default;

  // Writes `data` at `offset` (offset + data.size() <= the image size).
  // Thread-safe; concurrent calls must write disjoint ranges. The writer may
  // keep data's buffer and leave another one (of any size and content) in
  // its place, so that a queued write costs no copy. For qcow2 and VHDX the
  // write may still be in flight on return: its error, if any, comes from
  // a later Write or from Finish. Offsets and sizes must be multiples of
  // 512 bytes, except the size of a write that ends the image.
  virtual Status Write(uint64_t offset, Bytes& data) = 0;
  // Says that [offset, offset + len) is complete: a hint to start writeback
  // now, so that Finish has little left to do. Thread-safe.
  virtual void Written(uint64_t offset, uint64_t len) {}
  // Makes every write durable and puts the image at its target path. Call
  // once, after the last Write returned. On error the partial file is gone.
  virtual Status Finish() = 0;
  // Abandons the image: the partial file is removed (a block device keeps
  // what was written). Idempotent; the destructor does it unless Finish
  // succeeded.
  virtual void Discard() = 0;

  // The path being written, for messages (PATH.haven-partial for a file).
  virtual const std::string& write_path() const = 0;
  // Writes up to this many bytes cost much less than the same bytes in
  // separate writes, worth a copy to merge adjacent chunks; 0: no gain.
  virtual size_t merge_limit() const { return 0; }
};

// Merges writes of adjacent ranges into one of up to writer.merge_limit()
// bytes (copying them into a buffer of its own); with a limit of 0 every
// write goes straight through, without a copy. Not thread-safe: one per
// thread. Flush before the writer's Finish.
class WriteMerger {
 public:
  explicit WriteMerger(ImageWriter& writer)
      : writer_(writer), limit_(writer.merge_limit()) {}
  // Writes or merges `data` at `offset`; may leave another buffer in `data`.
  Status Add(uint64_t offset, Bytes& data);
  // Writes what was merged so far.
  Status Flush();

 private:
  ImageWriter& writer_;
  const size_t limit_;
  uint64_t run_offset_ = 0;
  Bytes run_;
};

struct ImageWriterOptions {
  std::string path;   // target file or block device
  uint64_t size = 0;  // virtual size of the image, bytes
  ImageFormat format = ImageFormat::kRaw;
  // Replace an existing file; allow writing onto a block device.
  bool overwrite = false;
};

// Opens the writer for `options.path`. A regular file that exists is
// AlreadyExists unless `overwrite` (and stays untouched until Finish). A
// block device needs `overwrite`, format raw and at least `size` bytes; it
// is zeroed here. qcow2 and vhdx need qemu-img and qemu-nbd in PATH.
Result<std::unique_ptr<ImageWriter>> OpenImageWriter(
    const ImageWriterOptions& options);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_IMAGE_WRITER_H_
