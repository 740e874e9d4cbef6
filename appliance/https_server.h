// HttpsServer: HTTPS/1.1 for havend on Boost.Beast + Asio (OpenSSL through
// Asio's ssl stream), with hard limits for untrusted clients.
//
//   io threads (2):   async accept -> TLS handshake (deadline) -> request
//                     head (deadline, Beast's header_limit) -> body
//                     (deadline, body_limit) -> post to a handler thread
//   handler threads:  handler -> response written through the connection's
//                     strand (write deadline) -> the next request on the
//                     same connection (keep-alive, idle deadline) or close
//
// Waiting clients hold no thread: a client that trickles its handshake or
// headers (slowloris) holds one connection slot for at most
// handshake_timeout + head_timeout and is then cut off. Responses always
// carry Content-Length (or chunked encoding), Connection, Cache-Control:
// no-store and security headers. Nothing of a request but its method, path (no
// query), status, size and peer is logged.
#ifndef HAVEN_APPLIANCE_HTTPS_SERVER_H_
#define HAVEN_APPLIANCE_HTTPS_SERVER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

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
  int threads = 8;  // handlers running at once
  // Connections open at once are at most threads + max_queued; one more is
  // closed at accept and logged.
  size_t max_queued = 128;
  RequestLimits limits;
  // Accept -> end of the TLS handshake; over it the connection is closed.
  std::chrono::milliseconds handshake_timeout{5000};
  // TLS done -> whole head read; head read -> whole body read. Over either
  // the client gets 408 and the connection ends.
  std::chrono::milliseconds head_timeout{5000};
  std::chrono::milliseconds body_timeout{60000};
  // One write (the head, the body, or one chunk a stream hands the writer)
  // not done in this long ends the connection.
  std::chrono::milliseconds write_stall_timeout{30000};
  // Keep-alive: after a response, how long a connection may wait for its
  // next request before it is closed, and how many requests one connection
  // may make. Streamed responses (downloads, events) end their connection.
  std::chrono::milliseconds keep_alive_timeout{15000};
  int max_requests_per_connection = 1000;
  // Stop(): how long running requests may take to finish.
  std::chrono::milliseconds stop_grace{10000};
  // A request that may carry more than limits.max_body_bytes (its path is
  // in limits.large_bodies and its Content-Length is over the normal
  // limit) is checked by this before one byte of its body is read: given
  // the path and the Authorization header (nullptr when none), nullopt lets
  // it in, else the status and reason to refuse it with. Unset: refused 401.
  // So no one without credentials makes havend hold a large body.
  std::function<std::optional<std::pair<int, std::string>>(
      std::string_view path, const std::string* authorization)>
      admit_large_body;
  // Large bodies being read or handled at once, over all connections; one
  // more is refused 503 with Retry-After.
  int max_large_bodies = 8;
  // One line per request and per refused connection; default: stderr.
  std::function<void(std::string_view)> log;
};

class HttpsServer {
 public:
  // Binds, listens and starts the threads. Fails with a Status naming the
  // address when it cannot bind, or the certificate when OpenSSL refuses it.
  // Sets SIGPIPE to ignored for the whole process: a client that goes away
  // must not kill the daemon.
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
  // not yet sent a whole request, lets running handlers finish and write
  // their responses (up to stop_grace), then closes every connection and
  // joins every thread. Idempotent; thread-safe; not from a handler.
  void Stop();

  class Impl;

 private:
  explicit HttpsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_HTTPS_SERVER_H_
