#include "restore/point_files.h"

namespace haven::restore {

Result<std::unique_ptr<PointFiles>> PointFiles::Open(
    const repository::Repository& repo, const repository::Manifest& point,
    const std::string& disk, int partition) {
  std::unique_ptr<PointFiles> p(new PointFiles(point));
  const std::string short_id = point.id.substr(0, 8);
  if (point.kind == "files") {
    if (!disk.empty() || partition >= 0)
      return InvalidArgument("snapshot " + short_id +
                             " is a file backup: it has no disk or "
                             "partition to choose");
    HAVEN_ASSIGN_OR_RETURN(p->files_, FilePoint::Open(repo, p->point_));
    return p;
  }
  const repository::DiskManifest* d = p->point_.FindDisk(disk);
  if (!d) {
    std::string names;
    for (const auto* each : p->point_.ImageDisks())
      names += (names.empty() ? "" : ", ") + each->name;
    return InvalidArgument(
        "snapshot " + short_id +
        (disk.empty()
             ? " has several disks: " + names + "; choose one"
             : " has no disk " + QuoteUntrusted(disk) + "; it has: " + names));
  }
  p->disk_name_ = d->name;
  p->reader_ = std::make_unique<DiskReader>(repo, *d);
  HAVEN_ASSIGN_OR_RETURN(GuestLayout layout, ReadGuestLayout(*p->reader_));
  HAVEN_ASSIGN_OR_RETURN(p->volume_, ChooseVolume(layout, partition, d->name));
  HAVEN_ASSIGN_OR_RETURN(p->fs_, GuestFs::Open(*p->reader_, p->volume_));
  return p;
}

}  // namespace haven::restore
