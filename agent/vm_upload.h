// VM backups through an appliance: `haven backup vm`'s code path
// (BackupVm) writing into the image-mode upload sink (agent/upload_sink.h).
#ifndef HAVEN_AGENT_VM_UPLOAD_H_
#define HAVEN_AGENT_VM_UPLOAD_H_

#include <string>

#include "agent/appliance_client.h"
#include "agent/vm_backup.h"
#include "snapshot/libvirt_host.h"

namespace haven::agent {

struct AgentVmBackupResult {
  VmBackupReport report;  // manifest.id: the appliance's point id
  uint64_t uploaded_chunks = 0, uploaded_bytes = 0;  // on the wire
  uint64_t skipped_chunks = 0;  // the appliance had them already
};

// Backs up VM `vm` of `host` through the appliance `client` speaks to;
// `state_dir` holds the node cache (the next run's parent). The outcome is
// in report (as BackupVm's); a refusal because the last point's chunks
// are gone says the next run reads the VM fully.
AgentVmBackupResult BackupVmToAppliance(ApplianceClient& client,
                                        const std::string& state_dir,
                                        const snapshot::LibvirtHost& host,
                                        const std::string& vm,
                                        const VmBackupOptions& options);

}  // namespace haven::agent

#endif  // HAVEN_AGENT_VM_UPLOAD_H_
