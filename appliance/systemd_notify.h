// sd_notify(3) without libsystemd: tells systemd (Type=notify) that havend
// is ready or stopping, by one datagram to $NOTIFY_SOCKET. The protocol is
// a few lines; a library dependency is not worth it.
#ifndef HAVEN_APPLIANCE_SYSTEMD_NOTIFY_H_
#define HAVEN_APPLIANCE_SYSTEMD_NOTIFY_H_

#include <string_view>

#include "base/status.h"

namespace haven::appliance {

// Sends `state` ("READY=1\nSTATUS=...", "STOPPING=1") to the socket named by
// $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace). OK and
// nothing sent when the variable is unset (not started by systemd); an
// error naming the socket when it cannot be sent.
Status NotifySystemd(std::string_view state);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_SYSTEMD_NOTIFY_H_
