// Snapshot manifests: one per recovery point, the commit point of a backup.
//
// snapshots/<id> holds Seal(data key, aad = "haven-snapshot:" + id,
// codec byte | payload) where the payload is the zstd-compressed JSON below
// (codec as in chunk_codec.h). The id is 32 hex digits (16 random bytes).
//
//   {"version": 1, "id": ..., "name": "vm1", "kind": "image",
//    "time": "2026-11-22T20:00:00Z", "hostname": ..., "tool": "haven 0.1.0",
//    "consistency": "offline" | "crash-consistent" | "application-consistent"
//                   | "inconsistent",
//    "consistency_reason": "...", "parent": "<id>" or "",
//    "vm": {"uuid": ..., "checkpoint": "haven-..."},  (libvirt VMs only)
//    "notes": ["vdc skipped: cdrom", ...],              (only if any)
//    "disks": [{"name": "disk0", "source": "/path", "size": N,
//               "kind": "config",        (config files only; name is a path)
//               "kind": "catalog" | "content",  (file backups: streams of
//                 variable-size chunks, "chunk_size": 0; file_tree.h)
//               "capture": "full: ..." | "incremental since haven-...",
//               "chunk_size": 65536, "chunks": N,
//               "tree": {"root": "<hex>", "height": 1},
//               "lost": [[offset, length], ...]}],   (only after a repair)
//    "files": {"paths": ["/srv"], "entries": N, "partial": false},
//                                                   (kind "files" only)
//    "repaired": {"from": "<id>", "time": ...},       (only after a repair)
//    "agent_id": "<agent id>",  (only for a point an enrolled agent committed
//                               through the appliance: its namespace)
//    "agent_key": "<16 hex>",   (only for a point whose data chunks that agent
//                               encrypted with its own key: the first 8
//                               bytes of SHA-256(mac key), agent/agent_key.h)
//    "stats": {"logical_bytes", "read_bytes", "hole_bytes", "new_chunks",
//              "new_raw_bytes", "new_stored_bytes", "duration_seconds"}}
#ifndef HAVEN_REPOSITORY_MANIFEST_H_
#define HAVEN_REPOSITORY_MANIFEST_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "repository/chunk_tree.h"

namespace haven::repository {

struct DiskManifest {
  std::string name;
  // "" for a disk; "config" for a configuration file captured with the
  // point (domain XML, network XML, NVRAM, ...), named by a relative path.
  std::string kind;
  std::string source;
  // How the disk was read: "full: <why>" or "incremental since <checkpoint>".
  std::string capture;
  uint64_t size = 0;
  uint32_t chunk_size = 0;
  TreeRoot tree;
  // Byte ranges whose chunks were lost and that `haven repair snapshots`
  // turned into holes: a restore gives zeros there and says so.
  std::vector<std::pair<uint64_t, uint64_t>> lost;  // offset, length
  // Image disks and config files: byte ranges. Streams: ranges of chunk
  // indexes (their chunks have no fixed size).
  uint64_t LostBytes() const;
  bool is_config() const { return kind == "config"; }
  // A file backup's catalog or content list (file_tree.h): a list of
  // variable-size chunks, chunk_size 0; `size` is the sum of their sizes.
  bool is_stream() const { return kind == "catalog" || kind == "content"; }
};

// A config file's name: 1-4 '/'-separated components of [A-Za-z0-9._+@-],
// none starting with '.'. It becomes a path on restore.
bool IsSafeConfigName(const std::string& name);

struct BackupStats {
  uint64_t logical_bytes = 0;     // size of everything captured
  uint64_t read_bytes = 0;        // bytes actually read from the source
  uint64_t hole_bytes = 0;        // zero or unallocated: stored as holes
  uint64_t new_chunks = 0;        // chunks not in the repository before
  uint64_t new_raw_bytes = 0;     // their size before compression
  uint64_t new_stored_bytes = 0;  // what they added to packs
  double duration_seconds = 0;
};

struct Manifest {
  std::string id;
  std::string name;
  std::string kind = "image";
  std::string time;
  std::string hostname;
  std::string tool;
  std::string consistency;
  std::string consistency_reason;
  std::string parent;
  std::string repaired_from;  // id this point replaced (repair snapshots)
  std::string repaired_time;
  std::vector<DiskManifest> disks;  // disks, then config files
  BackupStats stats;
  // A libvirt VM's point: the domain's uuid and the checkpoint created with
  // it (the next incremental run's base; "" if none).
  std::string vm_uuid;
  std::string checkpoint;
  std::vector<std::string> notes;  // skipped disks, config not captured
  // Kind "files" (haven backup files): the absolute paths backed up, the
  // number of catalog entries, and whether some entry could not be read
  // whole (its warning is in `notes`).
  std::vector<std::string> file_paths;
  uint64_t file_entries = 0;
  bool partial = false;
  // The enrolled agent that committed this point through the appliance
  // (docs/agents.md): the point is in that agent's namespace. "" for every
  // other point (and every point written before agents existed).
  std::string agent_id;
  // Set when the agent encrypted the point's data chunks (catalog and
  // content) with its own key, which the appliance never holds
  // (agent/agent_key.h): 16 lower-case hex digits naming that key. The
  // appliance can then neither list nor restore the point's files.
  std::string agent_key;

  // The disk named `name`, or the only disk when `name` is empty; config
  // files are not disks.
  const DiskManifest* FindDisk(const std::string& name) const;
  std::vector<const DiskManifest*> ImageDisks() const;
  std::vector<const DiskManifest*> ConfigFiles() const;
  // A file backup's stream of `kind` ("catalog" or "content"), or null.
  const DiskManifest* FindStream(const std::string& kind) const;
  // The config file named `name` ("domain.xml", "networks/x.xml"), or null.
  const DiskManifest* FindConfig(const std::string& name) const;

  std::string ToJson() const;
  // Parses and validates untrusted JSON (sizes, counts, tree shape).
  static Result<Manifest> FromJson(std::string_view json,
                                   const std::string& what);
};

bool IsSnapshotId(const std::string& s);
// An agent id as a manifest may hold it: 1-64 of [A-Za-z0-9_-].
bool IsAgentId(const std::string& s);
// An agent key's name as a manifest holds it: 16 lower-case hex digits.
bool IsAgentKeyId(const std::string& s);

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_MANIFEST_H_
