// A repository's objects in an S3 bucket (Ceph RGW, AWS S3, MinIO): keys are
// PREFIX/<object name> (backend.h). The local index, locks and scratch
// space live in a cache directory on this machine (S3CacheDir); the bucket
// alone is the repository, so a lost cache is rebuilt from it.
//
//   reads    ranged GETs through a block cache of bounded size shared by
//            every reader (1 MiB blocks; a read that spans several missing
//            blocks is one request), so a file restore from an image point
//            fetches only the blocks its chunks are in
//   writes   a small object is one PUT; an object that grows past the part
//            size (packs) is a multipart upload whose parts go up while the
//            pack is still being filled, at most `parallel` at once across
//            the backend; every PUT and part carries Content-MD5, so the
//            store refuses bytes that changed on the way
//   create   kCreate sends If-None-Match: * and checks with HEAD first
//   lock     with an ObjectLockPolicy, RetainedKind objects are written with
//            x-amz-object-lock-mode and -retain-until-date; on a versioned
//            bucket Delete removes the current version by its id, and a
//            retained one is refused by the store (FailedPrecondition)
#ifndef HAVEN_REPOSITORY_S3_S3_BACKEND_H_
#define HAVEN_REPOSITORY_S3_S3_BACKEND_H_

#include <condition_variable>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "repository/backend.h"
#include "repository/s3/s3_client.h"

namespace haven::repository::s3 {

struct S3BackendOptions {
  size_t part_size = 8 << 20;         // multipart above this; >= 5 MiB
  int parallel = 4;                   // uploads in flight (HAVEN_S3_PARALLEL)
  size_t cache_bytes = 128ull << 20;  // read block cache (HAVEN_S3_CACHE_MB)
  size_t block_size = 1 << 20;
};

// From HAVEN_S3_PARALLEL, HAVEN_S3_CACHE_MB and HAVEN_S3_CA_FILE, with the
// defaults above. InvalidArgument for a value out of range.
Result<S3BackendOptions> S3BackendOptionsFromEnvironment(
    S3ClientOptions* client);

// The local cache directory of a location: $HAVEN_CACHE_DIR, else
// $XDG_CACHE_HOME/haven, else ~/.cache/haven (/var/cache/haven for root),
// plus "s3-" and 16 hex digits of the location's SHA-256.
std::string S3CacheDir(const S3Location& location);

class BlockCache;

class S3Backend : public Backend {
 public:
  // Checks that the bucket answers (and whether it keeps versions).
  static Result<std::unique_ptr<S3Backend>> Open(S3Location location,
                                                 S3Credentials credentials,
                                                 S3ClientOptions client,
                                                 S3BackendOptions options);
  ~S3Backend() override;

  std::string Describe() const override;
  Result<std::vector<ObjectInfo>> List(
      const std::string& prefix) const override;
  Result<uint64_t> Stat(const std::string& name) const override;
  Result<ObjectInfo> Info(const std::string& name) const override;
  Result<std::unique_ptr<ObjectReader>> OpenReader(
      const std::string& name) const override;
  Result<Bytes> Read(const std::string& name, size_t max_size) const override;
  Status WriteAtomic(const std::string& name, ByteSpan data,
                     WriteMode mode) override;
  Result<std::unique_ptr<ObjectWriter>> NewObjectWriter(
      const std::string& name) override;
  Status Delete(const std::string& name) override;
  bool Shared() const override { return true; }
  Status SetObjectLock(const ObjectLockPolicy& policy) override;
  Result<int64_t> RetainedUntil(const std::string& name) const override;
  Status ExtendRetention(const std::string& name, int64_t until) override;
  Result<uint64_t> RemoveAbandonedUploads(int64_t age_seconds) override;

  // Whether the bucket has object lock enabled (its configuration).
  Result<bool> BucketHasObjectLock() const;
  const S3Client& client() const { return *client_; }

  // For the writer: one upload slot of `parallel`.
  void AcquireSlot();
  void ReleaseSlot();
  std::string Key(const std::string& name) const;
  std::vector<std::string> LockHeaders(const std::string& name) const;
  // Until when a write of `name` now is retained; 0 for none.
  int64_t RetainUntilFor(const std::string& name) const;

 private:
  S3Backend() = default;
  Result<S3Response> Head(const std::string& name) const;
  Status DeleteAllVersions(const std::string& name);

  std::unique_ptr<S3Client> client_;
  S3BackendOptions options_;
  bool versioned_ = false;
  ObjectLockPolicy lock_;
  std::unique_ptr<BlockCache> cache_;
  std::mutex slot_mu_;
  std::condition_variable slot_cv_;
  int slots_in_use_ = 0;
};

}  // namespace haven::repository::s3

#endif  // HAVEN_REPOSITORY_S3_S3_BACKEND_H_
