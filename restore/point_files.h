// The files of a recovery point as one GuestTree, whatever its kind: the
// catalog of a file backup (file_point.h), or a file system inside a disk
// of an image or VM backup (guest_fs.h) — the tree a file restore walks.
// The CLI opens the two apart (cli/image_files_commands.cc,
// cli/file_backup_commands.cc); a front end that restores either kind
// through one request (havend) opens them here.
#ifndef HAVEN_RESTORE_POINT_FILES_H_
#define HAVEN_RESTORE_POINT_FILES_H_

#include <memory>
#include <string>

#include "repository/repository.h"
#include "restore/disk_reader.h"
#include "restore/file_point.h"
#include "restore/guest_fs.h"

namespace haven::restore {

class PointFiles {
 public:
  // `disk` and `partition` choose the file system of an image or VM point
  // (as `haven restore file --disk --partition`: "" and -1 when there is
  // only one); a file backup takes neither. InvalidArgument listing the
  // disks when `disk` is needed or unknown, or naming the option a file
  // backup does not take; the errors of ChooseVolume and GuestFs::Open.
  // `repo` must outlive the result.
  static Result<std::unique_ptr<PointFiles>> Open(
      const repository::Repository& repo, const repository::Manifest& point,
      const std::string& disk, int partition);

  GuestTree& tree() { return files_ ? *files_ : static_cast<GuestTree&>(*fs_); }
  const repository::Manifest& point() const { return point_; }
  // For image and VM points: the disk, the volume and its file system.
  const std::string& disk() const { return disk_name_; }
  const GuestVolume& volume() const { return volume_; }
  std::string fs_type() const { return fs_ ? fs_->type() : "files"; }

 private:
  explicit PointFiles(repository::Manifest point) : point_(std::move(point)) {}
  repository::Manifest point_;  // the reader refers to its disk
  std::string disk_name_;
  GuestVolume volume_;
  std::unique_ptr<DiskReader> reader_;
  std::unique_ptr<GuestFs> fs_;
  std::unique_ptr<FilePoint> files_;
};

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_POINT_FILES_H_
