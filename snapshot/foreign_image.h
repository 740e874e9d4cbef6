// snapshot/: capture a point in time from a source. This file: disk images
// of other hypervisors read natively — Hyper-V's VHD and VHDX (with the
// differencing chains of checkpoints, .avhdx) through libvhdi, VMware's VMDK
// (descriptor and extents, with snapshot deltas) through libvmdk — and how
// the format of an image file is told from its bytes.
//
// Image files are untrusted input: a parent or extent file is looked for
// only in the image's own folder, by the base name the image records, never
// through a symbolic link; its identity is checked against what the child
// expects before it is used.
#ifndef HAVEN_SNAPSHOT_FOREIGN_IMAGE_H_
#define HAVEN_SNAPSHOT_FOREIGN_IMAGE_H_

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "snapshot/disk_source.h"

namespace haven::snapshot {

enum class ImageFormat { kRaw, kQcow2, kVhd, kVhdx, kVmdk };

// "raw", "qcow2", "vhd", "vhdx", "vmdk".
const char* FormatName(ImageFormat format);

// Tells the format of the image at `path` by its magic bytes alone (never
// by its name): qcow2 "QFI\xfb" at 0; VHDX "vhdxfile" at 0; VHD "conectix"
// at 0 (dynamic and differencing) or in the last 512 bytes (fixed); VMDK
// "KDMV" at 0 (sparse) or a text descriptor starting "# Disk DescriptorFile".
// Anything else, block devices included, is kRaw. Fails only if the file
// cannot be opened or read.
Result<ImageFormat> DetectImageFormat(const std::string& path);

// Opens a kVhd, kVhdx or kVmdk image for reading, with its whole chain: the
// parents of a differencing VHD/VHDX (at most 16, no loops, each identified
// by the identifier the child records) and the extent files and parents of a
// VMDK. Every error names the file and what is wrong with it. The source
// reads every range (Classify() says kRead: the libraries do not expose
// allocation) and notices a change of any file of the chain (size, mtime,
// ctime, inode) between opening and ChangedDuringRead(). Other formats are an
// InvalidArgument error.
Result<std::unique_ptr<DiskSource>> OpenForeignImage(const std::string& path,
                                                     ImageFormat format);

// The VM configuration files found beside an image: the regular files (not
// symbolic links, at most 64 MiB) in the image's folder whose names end,
// ignoring case, in .vmx .vmxf .vmsd .nvram (kVmdk) or .vmcx .vmrs .vmgs .xml
// (kVhd, kVhdx); for an image in a Hyper-V export's "Virtual Hard Disks"
// folder, also those in the sibling "Virtual Machines". Full paths, sorted.
// Empty for kRaw and kQcow2, and when the folder cannot be read.
std::vector<std::string> ForeignConfigFiles(const std::string& image_path,
                                            ImageFormat format);

}  // namespace haven::snapshot

#endif  // HAVEN_SNAPSHOT_FOREIGN_IMAGE_H_
