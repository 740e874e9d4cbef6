#include "restore/nbd_server.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace haven::restore {
namespace {

constexpr uint64_t kNbdMagic = 0x4e42444d41474943ull;  // "NBDMAGIC"
constexpr uint64_t kOptMagic = 0x49484156454f5054ull;  // "IHAVEOPT"
constexpr uint64_t kOptReplyMagic = 0x3e889045565a9ull;
constexpr uint32_t kRequestMagic = 0x25609513;
constexpr uint32_t kSimpleReplyMagic = 0x67446698;

constexpr uint16_t kFlagFixedNewstyle = 1 << 0;
constexpr uint16_t kFlagNoZeroes = 1 << 1;
constexpr uint32_t kClientFixedNewstyle = 1 << 0;
constexpr uint32_t kClientNoZeroes = 1 << 1;

constexpr uint32_t kOptExportName = 1, kOptAbort = 2, kOptList = 3,
                   kOptInfo = 6, kOptGo = 7;
constexpr uint32_t kRepAck = 1, kRepServer = 2, kRepInfo = 3;
constexpr uint32_t kRepErrUnsup = 0x80000001u, kRepErrInvalid = 0x80000003u,
                   kRepErrUnknown = 0x80000006u;
constexpr uint16_t kInfoExport = 0, kInfoBlockSize = 3;

constexpr uint16_t kTransHasFlags = 1 << 0, kTransReadOnly = 1 << 1,
                   kTransSendFlush = 1 << 2, kTransMultiConn = 1 << 8;
constexpr uint16_t kTransmissionFlags =
    kTransHasFlags | kTransReadOnly | kTransSendFlush | kTransMultiConn;

constexpr uint16_t kCmdRead = 0, kCmdWrite = 1, kCmdDisc = 2, kCmdFlush = 3,
                   kCmdCache = 5;
constexpr uint32_t kEperm = 1, kEio = 5, kEinval = 22, kEnotsup = 95;

constexpr uint32_t kMaxOption = 4096;

bool ReadFull(int fd, void* buf, size_t len) {
  auto* p = static_cast<uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

bool WriteFull(int fd, const void* buf, size_t len) {
  auto* p = static_cast<const uint8_t*>(buf);
  while (len > 0) {
    ssize_t n = ::send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

// Skips `len` bytes the client sent (a refused write's payload).
bool Discard(int fd, uint64_t len) {
  uint8_t buf[65536];
  while (len > 0) {
    size_t n = len < sizeof buf ? static_cast<size_t>(len) : sizeof buf;
    if (!ReadFull(fd, buf, n)) return false;
    len -= n;
  }
  return true;
}

class Out {
 public:
  Out& U16(uint16_t v) { return Be(v, 2); }
  Out& U32(uint32_t v) { return Be(v, 4); }
  Out& U64(uint64_t v) { return Be(v, 8); }
  Out& Raw(const std::string& s) {
    b_.insert(b_.end(), s.begin(), s.end());
    return *this;
  }
  const std::vector<uint8_t>& bytes() const { return b_; }

 private:
  Out& Be(uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i)
      b_.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  std::vector<uint8_t> b_;
};

uint64_t GetBe(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

bool OptionReply(int fd, uint32_t option, uint32_t type,
                 const std::string& data = "") {
  Out o;
  o.U64(kOptReplyMagic)
      .U32(option)
      .U32(type)
      .U32(static_cast<uint32_t>(data.size()));
  o.Raw(data);
  return WriteFull(fd, o.bytes().data(), o.bytes().size());
}

bool SimpleReply(int fd, uint32_t error, uint64_t handle) {
  Out o;
  o.U32(kSimpleReplyMagic).U32(error).U64(handle);
  return WriteFull(fd, o.bytes().data(), o.bytes().size());
}

}  // namespace

NbdServer::NbdServer(std::map<std::string, DiskBytes*> exports,
                     std::function<void(const std::string&)> log)
    : exports_(std::move(exports)), log_(std::move(log)) {}

void NbdServer::Serve(int fd) {
  ++stats_.connections;
  DiskBytes* disk = nullptr;
  if (Negotiate(fd, &disk) == Negotiated::kExport) Transmit(fd, disk);
  ::close(fd);
}

NbdServer::Negotiated NbdServer::Negotiate(int fd, DiskBytes** chosen) {
  Out hello;
  hello.U64(kNbdMagic).U64(kOptMagic).U16(kFlagFixedNewstyle | kFlagNoZeroes);
  if (!WriteFull(fd, hello.bytes().data(), hello.bytes().size()))
    return Negotiated::kClose;
  uint8_t cflags[4];
  if (!ReadFull(fd, cflags, 4)) return Negotiated::kClose;
  const uint32_t client = static_cast<uint32_t>(GetBe(cflags, 4));
  if (!(client & kClientFixedNewstyle)) {
    if (log_) log_("client does not speak fixed newstyle NBD; closed");
    return Negotiated::kClose;
  }
  const bool no_zeroes = client & kClientNoZeroes;
  for (;;) {
    uint8_t head[16];
    if (!ReadFull(fd, head, sizeof head)) return Negotiated::kClose;
    if (GetBe(head, 8) != kOptMagic) {
      if (log_) log_("bad option magic from client; closed");
      return Negotiated::kClose;
    }
    const uint32_t option = static_cast<uint32_t>(GetBe(head + 8, 4));
    const uint32_t len = static_cast<uint32_t>(GetBe(head + 12, 4));
    if (len > kMaxOption) {
      if (log_)
        log_("option payload of " + std::to_string(len) + " bytes; closed");
      return Negotiated::kClose;
    }
    std::vector<uint8_t> data(len);
    if (len > 0 && !ReadFull(fd, data.data(), len)) return Negotiated::kClose;

    if (option == kOptAbort) {
      OptionReply(fd, option, kRepAck);
      return Negotiated::kClose;
    }
    if (option == kOptList) {
      if (len != 0) {
        if (!OptionReply(fd, option, kRepErrInvalid)) return Negotiated::kClose;
        continue;
      }
      bool ok = true;
      for (const auto& [name, d] : exports_) {
        Out o;
        o.U32(static_cast<uint32_t>(name.size())).Raw(name);
        ok = ok && OptionReply(fd, option, kRepServer,
                               std::string(o.bytes().begin(), o.bytes().end()));
      }
      if (!ok || !OptionReply(fd, option, kRepAck)) return Negotiated::kClose;
      continue;
    }
    if (option == kOptExportName) {
      std::string name(data.begin(), data.end());
      auto it = exports_.find(name);
      if (it == exports_.end()) {
        if (log_)
          log_("client asked for an unknown export (" +
               std::to_string(name.size()) + " bytes); closed");
        return Negotiated::kClose;  // the protocol's only answer
      }
      Out o;
      o.U64(it->second->size()).U16(kTransmissionFlags);
      if (!WriteFull(fd, o.bytes().data(), o.bytes().size()))
        return Negotiated::kClose;
      if (!no_zeroes) {
        uint8_t zeroes[124] = {};
        if (!WriteFull(fd, zeroes, sizeof zeroes)) return Negotiated::kClose;
      }
      *chosen = it->second;
      return Negotiated::kExport;
    }
    if (option == kOptInfo || option == kOptGo) {
      // u32 name length, name, u16 count, count x u16 info requests.
      if (len < 6 || GetBe(data.data(), 4) > len - 6 ||
          len != 6 + GetBe(data.data(), 4) +
                     2 * GetBe(data.data() + 4 + GetBe(data.data(), 4), 2)) {
        if (!OptionReply(fd, option, kRepErrInvalid)) return Negotiated::kClose;
        continue;
      }
      const uint32_t name_len = static_cast<uint32_t>(GetBe(data.data(), 4));
      std::string name(data.begin() + 4, data.begin() + 4 + name_len);
      auto it = exports_.find(name);
      if (it == exports_.end()) {
        if (!OptionReply(fd, option, kRepErrUnknown,
                         "no such disk in this recovery point"))
          return Negotiated::kClose;
        continue;
      }
      Out info;
      info.U16(kInfoExport).U64(it->second->size()).U16(kTransmissionFlags);
      Out sizes;  // any alignment works; 64 KiB reads suit the chunks
      sizes.U16(kInfoBlockSize).U32(1).U32(65536).U32(kNbdMaxRead);
      if (!OptionReply(fd, option, kRepInfo,
                       std::string(info.bytes().begin(), info.bytes().end())) ||
          !OptionReply(
              fd, option, kRepInfo,
              std::string(sizes.bytes().begin(), sizes.bytes().end())) ||
          !OptionReply(fd, option, kRepAck))
        return Negotiated::kClose;
      if (option == kOptGo) {
        *chosen = it->second;
        return Negotiated::kExport;
      }
      continue;
    }
    // STARTTLS, STRUCTURED_REPLY, meta contexts and anything newer.
    if (!OptionReply(fd, option, kRepErrUnsup)) return Negotiated::kClose;
  }
}

void NbdServer::Transmit(int fd, DiskBytes* disk) {
  std::vector<uint8_t> buf;
  for (;;) {
    uint8_t req[28];
    if (!ReadFull(fd, req, sizeof req)) return;
    if (GetBe(req, 4) != kRequestMagic) {
      if (log_) log_("bad request magic from client; closed");
      return;
    }
    const uint16_t type = static_cast<uint16_t>(GetBe(req + 6, 2));
    const uint64_t handle = GetBe(req + 8, 8);
    const uint64_t offset = GetBe(req + 16, 8);
    const uint32_t length = static_cast<uint32_t>(GetBe(req + 24, 4));
    switch (type) {
      case kCmdRead: {
        ++stats_.reads;
        if (length > kNbdMaxRead || offset > disk->size() ||
            length > disk->size() - offset) {
          if (!SimpleReply(fd, kEinval, handle)) return;
          break;
        }
        buf.resize(length);
        size_t done = 0;
        std::string error;
        while (done < length) {
          auto n = disk->Read(offset + done, buf.data() + done, length - done);
          if (!n.ok()) {
            error = n.status().message();
            break;
          }
          if (*n == 0) {
            error = "short read at " + std::to_string(offset + done);
            break;
          }
          done += *n;
        }
        if (!error.empty()) {
          ++stats_.read_errors;
          if (log_)
            log_("read of " + std::to_string(length) + " bytes at " +
                 std::to_string(offset) + " of " + disk->name() +
                 " failed (answered EIO): " + error);
          if (!SimpleReply(fd, kEio, handle)) return;
          break;
        }
        stats_.bytes_served += length;
        if (!SimpleReply(fd, 0, handle) || !WriteFull(fd, buf.data(), length))
          return;
        break;
      }
      case kCmdWrite:
        if (length > kNbdMaxRead || !Discard(fd, length)) return;
        if (!SimpleReply(fd, kEperm, handle)) return;
        break;
      case kCmdDisc:
        return;
      case kCmdFlush:
      case kCmdCache:
        if (!SimpleReply(fd, 0, handle)) return;
        break;
      default:  // trim, write zeroes: read-only; block status not offered
        if (!SimpleReply(fd, type == 4 || type == 6 ? kEperm : kEnotsup,
                         handle))
          return;
    }
  }
}

Result<int> ListenUnix(const std::string& path, int uid, int gid) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path)
    return InvalidArgument("socket path " + path + " is too long");
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus("socket", errno);
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
    ::unlink(path.c_str());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::chmod(path.c_str(), 0660) != 0 ||
      ((uid != -1 || gid != -1) && ::chown(path.c_str(), uid, gid) != 0) ||
      ::listen(fd, 16) != 0) {
    int e = errno;
    ::close(fd);
    return ErrnoStatus("listening on " + path, e);
  }
  return fd;
}

}  // namespace haven::restore
