#include "appliance/systemd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/file.h"

namespace haven::appliance {

Status NotifySystemd(std::string_view state) {
  const char* name = std::getenv("NOTIFY_SOCKET");
  if (!name || !*name) return OkStatus();
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  size_t len = std::strlen(name);
  if ((name[0] != '/' && name[0] != '@') || len >= sizeof addr.sun_path)
    return InvalidArgument("NOTIFY_SOCKET is not a socket path: " +
                           QuoteUntrusted(name));
  std::memcpy(addr.sun_path, name, len);
  if (name[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus("socket for NOTIFY_SOCKET", errno);
  socklen_t size = offsetof(sockaddr_un, sun_path) + len;
  if (::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
               reinterpret_cast<const sockaddr*>(&addr), size) < 0)
    return ErrnoStatus(std::string("notifying systemd at ") + name, errno);
  return OkStatus();
}

}  // namespace haven::appliance
