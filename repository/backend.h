// Where a repository's objects are stored. Everything the repository keeps
// durably except its local caches (index/, locks/, tmp/ scratch) goes through
// this interface, so that a local directory, an object store and a remote
// appliance are interchangeable below pack, gc, check and repair code.
//
// Objects are immutable byte strings named by relative keys:
//
//   config               the repository's configuration (config.h)
//   keys/<slot>          a wrapped master secret (key_slots.h)
//   packs/<xx>/<name>    a pack (pack_format.h); xx = first 2 digits of name
//   snapshots/<id>       a manifest (manifest.h)
//   protected/<id>       a marker: forget never removes point <id>
//
// A key is one or more '/'-separated segments of [A-Za-z0-9._-], none of
// them "." or ".."; anything else (absolute, "..", empty segments, NUL) is
// refused with InvalidArgument before any I/O, so a key can never name a
// path outside the repository.
//
// Thread safety: every method of a Backend may be called from several
// threads at once. An ObjectReader or ObjectWriter belongs to one thread at
// a time.
#ifndef HAVEN_REPOSITORY_BACKEND_H_
#define HAVEN_REPOSITORY_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"

namespace haven::repository {

struct ObjectInfo {
  std::string name;  // full key, e.g. "packs/ab/ab12..."
  uint64_t size = 0;
  // A change marker: the object's modification time (ns since the epoch)
  // where the backend can tell (a local directory: st_mtim), else 0 for
  // "unknown". Objects are immutable, so a marker that differs from an
  // earlier one means the object was replaced or damaged in place; a cache
  // that trusts an earlier read of an object (the catalog, catalog.h) must
  // treat 0 as "may have changed".
  int64_t mtime_ns = 0;
};

// An open object for random reads: the restore hot path keeps a few of these
// per thread (ReadContext) instead of reopening a pack for every chunk.
class ObjectReader {
 public:
  virtual ~ObjectReader() = default;
  // Size of the object when it was opened.
  virtual uint64_t size() const = 0;
  // Reads exactly `len` bytes at `offset` into `out`. A range that runs past
  // the end of the object is DataLoss naming `what` (something that named
  // this range claimed bytes the object does not have); I/O errors are
  // IoError. On failure `out` holds unspecified bytes.
  virtual Status ReadAt(uint64_t offset, size_t len, uint8_t* out,
                        const std::string& what) = 0;
};

// A large object written in pieces (a pack of up to 1 GiB is never held in
// memory whole). Nothing is visible under the object's name until Commit()
// returns OK; destroying the writer without a successful Commit() discards
// everything appended.
class ObjectWriter {
 public:
  virtual ~ObjectWriter() = default;
  // Appends bytes. On failure the writer is unusable; destroy it.
  virtual Status Append(ByteSpan data) = 0;
  // Bytes appended so far.
  virtual uint64_t size() const = 0;
  // Makes the object durable and visible under its name, all at once. After
  // OK a crash (of this process or of the machine) cannot lose it. Fails
  // with AlreadyExists if an object of that name exists (it is left alone).
  virtual Status Commit() = 0;
};

// Object lock (immutability on an object store): objects written while a
// policy is set carry a retention period, during which nobody holding the
// store's ordinary credentials can delete or overwrite them.
struct ObjectLockPolicy {
  int64_t seconds = 0;  // 0: no object lock
  std::string mode;     // "GOVERNANCE" or "COMPLIANCE"
};

// Objects that carry retention when a policy is set: what a recovery point
// needs to be read (config, keys, packs, manifests). Lock objects, protection
// markers and caches stay deletable.
bool RetainedKind(const std::string& name);

enum class WriteMode {
  kCreate,   // fail with AlreadyExists if the object exists
  kReplace,  // replace an existing object atomically
};

class Backend {
 public:
  virtual ~Backend() = default;

  // A short description for messages, e.g. "local directory /srv/repo".
  virtual std::string Describe() const = 0;

  // Every object under the folder `prefix` ("packs/", "snapshots/", "keys/";
  // "" for all), with sizes and change markers, in no particular order. Objects being written
  // are not listed. A folder with no objects is an empty list, not an error;
  // a backend that cannot be reached at all is an error.
  virtual Result<std::vector<ObjectInfo>> List(
      const std::string& prefix) const = 0;

  // The object's size; NotFound if there is no such object.
  virtual Result<uint64_t> Stat(const std::string& name) const = 0;

  // The object's size and change marker (see ObjectInfo); NotFound if there
  // is no such object. The default has no marker (mtime_ns 0).
  virtual Result<ObjectInfo> Info(const std::string& name) const;

  // Opens an object for ReadAt; NotFound if there is no such object.
  virtual Result<std::unique_ptr<ObjectReader>> OpenReader(
      const std::string& name) const = 0;

  // Reads a whole object; NotFound if absent, DataLoss if it is larger than
  // `max_size` (an untrusted size is bounded before allocating).
  virtual Result<Bytes> Read(const std::string& name,
                             size_t max_size) const;

  // Writes a whole object durably (file and directory synced for a local
  // directory) before returning. Readers see the old object (or none) or
  // the new one, never a part. On failure nothing new is visible.
  virtual Status WriteAtomic(const std::string& name, ByteSpan data,
                             WriteMode mode) = 0;

  // Starts a streaming write of a new object (see ObjectWriter).
  virtual Result<std::unique_ptr<ObjectWriter>> NewObjectWriter(
      const std::string& name) = 0;

  // Removes an object durably; NotFound if there is no such object.
  // FailedPrecondition if object lock retains it (RetainedUntil).
  virtual Status Delete(const std::string& name) = 0;

  // True if processes on other machines may share this store, so that a
  // local flock cannot order them: the repository then also takes lock
  // objects in the store (store_lock.h). False for a local directory.
  virtual bool Shared() const { return false; }

  // Sets the retention that later writes of RetainedKind objects carry.
  // The default (a store without object lock) refuses any policy with
  // seconds > 0 with FailedPrecondition.
  virtual Status SetObjectLock(const ObjectLockPolicy& policy);
  // Until when (seconds since the epoch) the object is retained; 0 if it is
  // not. NotFound if there is no such object.
  virtual Result<int64_t> RetainedUntil(const std::string& name) const;
  // Makes the object retained until at least `until` (retention can only
  // grow). Unimplemented where there is no object lock.
  virtual Status ExtendRetention(const std::string& name, int64_t until);
  // Removes what writers killed mid-object left behind (an object store's
  // unfinished multipart uploads) if older than `age_seconds`. Returns how
  // many; the default has nothing to remove.
  virtual Result<uint64_t> RemoveAbandonedUploads(int64_t age_seconds);
};

// OK if `name` is a well-formed key (see above); InvalidArgument otherwise.
Status ValidateObjectName(const std::string& name);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_BACKEND_H_
