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
#ifndef HAVEN_AGENT_UPLOAD_SINK_H_
#define HAVEN_AGENT_UPLOAD_SINK_H_

#include <string>

#include "agent/appliance_client.h"
#include "agent/file_backup.h"

namespace haven::agent {

struct AgentBackupResult {
  FileBackupResult files;   // manifest.id: the appliance's point id
  uint64_t uploaded_chunks = 0, uploaded_bytes = 0;  // on the wire
  uint64_t skipped_chunks = 0;  // the appliance had them already
};

// Backs up `options.paths` through the appliance `client` speaks to;
// `state_dir` holds the cache. Options as BackupFiles.
Result<AgentBackupResult> BackupFilesToAppliance(
    ApplianceClient& client, const std::string& state_dir,
    const FileBackupOptions& options);

}  // namespace haven::agent

#endif  // HAVEN_AGENT_UPLOAD_SINK_H_
