// A read-only NBD server (the fixed newstyle protocol, simple replies) for
// the disks of a recovery point: what instant recovery puts under a VM's
// qcow2 overlays (restore/instant_restore.h). QEMU is the client; a read the
// repository cannot serve (a pack gone, the store unreachable, a damaged
// chunk) is answered with EIO, never with other bytes.
//
// Why a server of our own rather than an nbdkit plugin: a plugin is a
// shared object, and Haven's libraries are built as position-dependent
// static archives; the server needs only what QEMU's NBD client asks
// (NBD_OPT_GO / INFO / LIST / EXPORT_NAME, READ, FLUSH, DISC), and living in
// Haven it uses the same DiskReader that `haven ls` and file restore use.
//
// Protocol limits: option payloads above 4 KiB, reads above 32 MiB, reads
// past the end and any write, trim or write-zeroes (refused with EPERM: the
// export is read-only) are errors for that request only; a malformed request
// header ends the connection.
#ifndef HAVEN_RESTORE_NBD_SERVER_H_
#define HAVEN_RESTORE_NBD_SERVER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "base/status.h"
#include "restore/disk_reader.h"

namespace haven::restore {

inline constexpr uint32_t kNbdMaxRead = 32u << 20;

struct NbdServerStats {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> bytes_served{0};
  std::atomic<uint64_t> read_errors{0};  // answered with EIO
};

class NbdServer {
 public:
  // `exports`: export name -> bytes served under it; they must outlive the
  // server. `log` receives one line per failed read and per protocol error.
  NbdServer(std::map<std::string, DiskBytes*> exports,
            std::function<void(const std::string&)> log);

  // Serves one client on `fd` (a connected stream socket) until it
  // disconnects or breaks the protocol; closes `fd`. Thread-safe: each
  // connection may run on its own thread.
  void Serve(int fd);

  const NbdServerStats& stats() const { return stats_; }

 private:
  enum class Negotiated { kExport, kClose };
  Negotiated Negotiate(int fd, DiskBytes** chosen);
  void Transmit(int fd, DiskBytes* disk);

  std::map<std::string, DiskBytes*> exports_;
  std::function<void(const std::string&)> log_;
  NbdServerStats stats_;
};

// Listens on a unix socket at `path` (replacing a stale socket file) with
// mode 0660, owned by `uid`:`gid` when they are not -1. Returns the listening
// fd.
Result<int> ListenUnix(const std::string& path, int uid, int gid);

}  // namespace haven::restore

#endif  // HAVEN_RESTORE_NBD_SERVER_H_
