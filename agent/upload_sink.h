// File backups through an appliance (docs/agents.md, "Protocol"): the
// PointSink an enrolled agent writes into.
//
//   Put(data)   zstd locally; batches of ~8 MiB: ask /agent/chunks/missing,
//               upload only what the appliance lacks for this agent
//               (/agent/chunks); a dropped connection retries the batch
//               with backoff, asking again first, so what arrived is not
//               sent twice
//   Put(tree)   kept here: tree nodes name upload ids, which only this
//               agent uses; the appliance rebuilds its own lists
//   Commit      flush the last batch, then /agent/points with the catalog
//               and content lists (the commit point); then the local cache
//               becomes the next run's parent
//
// Local cache (state_dir/cache/<name hex>/): the last committed point of
// each backup name: its manifest as the agent saw it, its catalog bytes
// and its content list, so the next run reads only changed files. It is
// used only while the appliance still lists that point for this agent.
//
// Image mode (VM points, agent/vm_upload.h): data chunks as above;
//   Put(tree)   the node is written to this run's node file and queued as
//               a tree-node frame (codec | 0x10); queued nodes go, in Put
//               order, only after every data batch Put before them was
//               answered (at Flush, or when ~8 MiB of nodes wait)
//   parent      state_dir/cache/vm-<name hex>/{manifest.json, nodes.bin}:
//               the last committed point with upload-id roots and its
//               nodes (frames id[32] len:u32 bytes), while the appliance
//               lists that point; NodeLoader reads nodes from there
//   Commit      data, then nodes, then /agent/vm-points {"upload_id",
//               "manifest"}; m.id and m.time are the appliance's; this
//               run's nodes and manifest become the cache
// A 409 naming missing chunks (the parent's chunks are gone) drops the
// cache: the next run reads the VM fully.
#ifndef HAVEN_AGENT_UPLOAD_SINK_H_
#define HAVEN_AGENT_UPLOAD_SINK_H_

#include <memory>
#include <string>

#include "agent/appliance_client.h"
#include "agent/file_backup.h"
#include "agent/point_sink.h"

namespace haven::agent {

struct AgentBackupResult {
  FileBackupResult files;   // manifest.id: the appliance's point id
  uint64_t uploaded_chunks = 0, uploaded_bytes = 0;  // on the wire
  uint64_t skipped_chunks = 0;  // the appliance had them already
};

// A PointSink that uploads, with what went over the wire.
class UploadPointSink : public PointSink {
 public:
  virtual uint64_t uploaded_chunks() const = 0;
  virtual uint64_t uploaded_bytes() const = 0;
  virtual uint64_t skipped_chunks() const = 0;
  // The appliance refused because chunks the point names are gone (the
  // cache was dropped).
  virtual bool lost_chunks() const = 0;
};

// The image-mode sink for the VM backup named `name` (cache in
// `state_dir`).
std::unique_ptr<UploadPointSink> NewVmUploadSink(ApplianceClient& client,
                                                 const std::string& state_dir,
                                                 const std::string& name,
                                                 CancelToken cancel);

// Backs up `options.paths` through the appliance `client` speaks to;
// `state_dir` holds the cache. Options as BackupFiles.
Result<AgentBackupResult> BackupFilesToAppliance(
    ApplianceClient& client, const std::string& state_dir,
    const FileBackupOptions& options);

}  // namespace haven::agent

#endif  // HAVEN_AGENT_UPLOAD_SINK_H_
