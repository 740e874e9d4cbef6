#include "agent/vm_upload.h"

#include "agent/upload_sink.h"

namespace haven::agent {

AgentVmBackupResult BackupVmToAppliance(ApplianceClient& client,
                                        const std::string& state_dir,
                                        const snapshot::LibvirtHost& host,
                                        const std::string& vm,
                                        const VmBackupOptions& options) {
  AgentVmBackupResult r;
  std::unique_ptr<UploadPointSink> sink =
      NewVmUploadSink(client, state_dir, vm, options.cancel);
  r.report = BackupVm(*sink, host, vm, options);
  r.uploaded_chunks = sink->uploaded_chunks();
  r.uploaded_bytes = sink->uploaded_bytes();
  r.skipped_chunks = sink->skipped_chunks();
  return r;
}

}  // namespace haven::agent
