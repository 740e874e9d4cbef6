// The local-directory backend: each object is a file at <root>/<key>, the
// layout described in docs/repository-format.md (unchanged from before the
// backend interface existed, so old repositories open as they are).
//
// Durability: whole objects are written to NAME.tmp-PID-N beside their final
// name, fsync'd, then renamed (kReplace) or linked (kCreate) into place and
// the directory fsync'd. Streaming objects (packs) are written under
// <root>/tmp/ (a pack as tmp/pack-<name>.tmp) holding an flock, so that a
// cleaner can tell a live writer from a dead one (RemoveAbandonedTempFiles),
// and linked into place on Commit.
#ifndef HAVEN_REPOSITORY_LOCAL_BACKEND_H_
#define HAVEN_REPOSITORY_LOCAL_BACKEND_H_

#include <string>

#include "repository/backend.h"

namespace haven::repository {

// Opens a local file for ObjectReader-style reads (NotFound if absent).
Result<std::unique_ptr<ObjectReader>> OpenLocalFile(const std::string& path);

class LocalBackend : public Backend {
 public:
  // `root` is the repository directory (trailing slashes are dropped); it
  // is not created here.
  explicit LocalBackend(std::string root);

  const std::string& root() const { return root_; }
  // Creates the directories of an empty repository (root, keys/,
  // snapshots/, tmp/, packs/00 .. packs/ff), each synced.
  Status CreateLayout() const;
  // The file that holds object `name` (which must be a valid key).
  std::string PathOf(const std::string& name) const {
    return root_ + "/" + name;
  }

  std::string Describe() const override { return "local directory " + root_; }
  Result<std::vector<ObjectInfo>> List(
      const std::string& prefix) const override;
  Result<uint64_t> Stat(const std::string& name) const override;
  // Fills mtime_ns from st_mtim.
  Result<ObjectInfo> Info(const std::string& name) const override;
  Result<std::unique_ptr<ObjectReader>> OpenReader(
      const std::string& name) const override;
  Status WriteAtomic(const std::string& name, ByteSpan data,
                     WriteMode mode) override;
  Result<std::unique_ptr<ObjectWriter>> NewObjectWriter(
      const std::string& name) override;
  Status Delete(const std::string& name) override;

 private:
  std::string root_;
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_LOCAL_BACKEND_H_
