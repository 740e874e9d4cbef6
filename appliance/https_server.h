// HttpsServer: HTTPS/1.1 over OpenSSL for havend, with hard limits for
// untrusted clients.
//
//   acceptor thread: poll(listen socket) -> bounded queue of connections
//   worker threads:  TLS handshake (deadline) -> request head (deadline,
//                    size limit) -> body (deadline, size limit) -> handler
//                    -> response -> close (one request per connection)
//
// Every wait on a client has a deadline, so a client that trickles its
// handshake or headers (slowloris) holds one worker for at most
// handshake_timeout + head_timeout and is then cut off; the other workers
// keep serving. Responses always carry Content-Length, Connection: close,
// Cache-Control: no-store and security headers. Nothing of a request but its
// method, path (no query), status, size and peer is logged.
#ifndef HAVEN_APPLIANCE_HTTPS_SERVER_H_
#define HAVEN_APPLIANCE_HTTPS_SERVER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "appliance/certificate.h"
#include "appliance/http_message.h"
#include "base/status.h"

namespace haven::appliance {

inline constexpr uint16_t kDefaultPort = 8421;

struct ListenAddress {
  std::string host;  // numeric IPv4 or IPv6 address, no brackets
  uint16_t port = kDefaultPort;
};

// "ADDR:PORT", "[IPv6]:PORT", "ADDR" (default port) or ":PORT" (all IPv4
// addresses). ADDR must be numeric. Port 0 asks the kernel for a free port.
Result<ListenAddress> ParseListenAddress(std::string_view text);

struct HttpsServerOptions {
  ListenAddress listen;
  int threads = 8;                 // workers: connections served at once
  size_t max_queued = 128;         // accepted, waiting for a worker; more are closed
  RequestLimits limits;
  // From when a worker takes the connection to the end of the TLS handshake.
  std::chrono::milliseconds handshake_timeout{5000};
  std::chrono::milliseconds head_timeout{5000};       // TLS done -> head read
  std::chrono::milliseconds body_timeout{60000};      // head read -> body read
  // A response write that makes no progress this long ends the connection.
  std::chrono::milliseconds write_stall_timeout{30000};
  // Stop(): how long running requests may take to finish.
  std::chrono::milliseconds stop_grace{10000};
  // One line per request and per refused connection; default: stderr.
  std::function<void(std::string_view)> log;
};

class HttpsServer {
 public:
  // Binds, listens and starts the threads. Fails with a Status naming the
  // address when it cannot bind, or the certificate when OpenSSL refuses it.
  // Sets SIGPIPE to ignored for the whole process: OpenSSL writes with
  // write(2), and a client that goes away must not kill the daemon.
  static Result<std::unique_ptr<HttpsServer>> Start(
      HttpsServerOptions options, const ServerCertificate& certificate,
      Handler handler);

  // Stop() if still running.
  ~HttpsServer();
  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;

  // The bound port (the kernel's choice when options asked for 0).
  uint16_t port() const;

  // Graceful stop: closes the listening socket, drops connections that have
  // not yet sent a whole request, lets running handlers finish (up to
  // stop_grace), then joins every thread. Idempotent; thread-safe.
  void Stop();

  class Impl;

 private:
  explicit HttpsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_HTTPS_SERVER_H_
