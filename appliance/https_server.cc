#include "appliance/https_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "appliance/openssl_handles.h"
#include "base/file.h"
#include "base/json.h"

namespace haven::appliance {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunk = 16 * 1024;
// After refusing a request whose body is still arriving, read and drop this
// much for this long so the refusal reaches the client before the close
// (closing with unread input makes the kernel send a reset instead).
constexpr size_t kDrainMaxBytes = 16 << 20;
constexpr std::chrono::milliseconds kDrainTime{2000};

// Headers the server sets itself; a handler's own values for these are
// dropped.
constexpr std::string_view kServerOwnedHeaders[] = {
    "content-length", "connection", "transfer-encoding", "cache-control"};

// Sent with every response: nothing is cached, nothing is framed or
// sniffed, no referrer leaves, and browsers stay on HTTPS.
constexpr char kSecurityHeaders[] =
    "Cache-Control: no-store\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Strict-Transport-Security: max-age=31536000\r\n";

std::string PeerName(const sockaddr_storage& addr) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
  inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
  port = ntohs(in6->sin6_port);
  return "[" + std::string(host) + "]:" + std::to_string(port);
}

Response ErrorResponse(int status, const std::string& reason) {
  return Response::Json(status, DumpJson(nlohmann::json{{"error", reason}}));
}

struct Pending {
  int fd = -1;
  std::string peer;
};

}  // namespace

Result<ListenAddress> ParseListenAddress(std::string_view text) {
  ListenAddress out;
  std::string_view host = text, port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos)
      return InvalidArgument("listen address " + QuoteUntrusted(text) +
                             ": missing ']' after an IPv6 address");
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':')
        return InvalidArgument("listen address " + QuoteUntrusted(text) +
                               ": expected ':PORT' after ']'");
      port = rest.substr(1);
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon != std::string_view::npos) {
      if (text.find(':') != colon)
        return InvalidArgument("listen address " + QuoteUntrusted(text) +
                               ": write an IPv6 address as [ADDR]:PORT");
      host = text.substr(0, colon);
      port = text.substr(colon + 1);
    }
  }
  out.host = host.empty() ? "0.0.0.0" : std::string(host);
  unsigned char probe[sizeof(in6_addr)];
  if (inet_pton(AF_INET, out.host.c_str(), probe) != 1 &&
      inet_pton(AF_INET6, out.host.c_str(), probe) != 1)
    return InvalidArgument("listen address " + QuoteUntrusted(text) + ": " +
                           QuoteUntrusted(out.host) +
                           " is not a numeric IPv4 or IPv6 address");
  if (!port.empty() || (text.size() > 0 && text.back() == ':')) {
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoul(std::string(port)) > 65535)
      return InvalidArgument("listen address " + QuoteUntrusted(text) +
                             ": the port must be a number from 0 to 65535");
    out.port = static_cast<uint16_t>(std::stoul(std::string(port)));
  }
  return out;
}

class HttpsServer::Impl {
 public:
  Impl(HttpsServerOptions options, Handler handler)
      : options_(std::move(options)), handler_(std::move(handler)) {
    if (!options_.log)
      options_.log = [](std::string_view line) {
        std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
      };
    if (options_.threads < 1) options_.threads = 1;
  }
  ~Impl() { Stop(); }

  Status Init(const ServerCertificate& certificate);
  void StartThreads();
  void Stop();
  uint16_t port() const { return port_; }

 private:
  friend class Connection;
  void AcceptLoop();
  void WorkerLoop();
  void Serve(Pending pending);

  HttpsServerOptions options_;
  Handler handler_;
  SslCtxPtr ctx_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;  // eventfd: readable once Stop() began
  uint16_t port_ = 0;

  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::deque<Pending> queue_;
  std::set<int> active_;
  bool stopping_ = false;
  bool stopped_ = false;
  std::thread acceptor_;
  std::vector<std::thread> workers_;
};

namespace {

// One TLS connection on a non-blocking socket; every wait has a deadline.
class Connection {
 public:
  Connection(int fd, int stop_fd, SSL* ssl) : fd_(fd), stop_fd_(stop_fd), ssl_(ssl) {}

  enum class Wait { kReady, kTimeout, kStopped };

  // Waits until the socket is ready for `events`, `deadline` passes or (when
  // `stoppable`) the server stops.
  Wait WaitFor(short events, Clock::time_point deadline, bool stoppable) {
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - Clock::now());
      if (left.count() <= 0) return Wait::kTimeout;
      pollfd fds[2] = {{fd_, events, 0}, {stop_fd_, POLLIN, 0}};
      int n = ::poll(fds, stoppable ? 2 : 1, static_cast<int>(left.count()) + 1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Wait::kTimeout;
      if (stoppable && (fds[1].revents & POLLIN)) return Wait::kStopped;
      if (fds[0].revents) return Wait::kReady;
    }
  }

  // Runs an SSL call until it completes. Returns "" on success, else why not.
  template <typename Op>
  std::string Drive(Op op, Clock::time_point deadline, bool stoppable,
                    bool* eof = nullptr) {
    for (;;) {
      ERR_clear_error();
      int rc = op();
      if (rc > 0) return "";
      int err = SSL_get_error(ssl_, rc);
      Wait w;
      if (err == SSL_ERROR_WANT_READ) {
        w = WaitFor(POLLIN, deadline, stoppable);
      } else if (err == SSL_ERROR_WANT_WRITE) {
        w = WaitFor(POLLOUT, deadline, stoppable);
      } else if (err == SSL_ERROR_ZERO_RETURN) {
        if (eof) *eof = true;
        return "closed by the client";
      } else {
        std::string why = OpenSslErrors();
        if (eof && (why.empty() || why.find("unexpected eof") != std::string::npos))
          *eof = true;
        return why.empty() ? "connection closed" : why;
      }
      if (w == Wait::kTimeout) return "timed out";
      if (w == Wait::kStopped) return "server stopping";
    }
  }

  std::string Handshake(Clock::time_point deadline) {
    return Drive([&] { return SSL_accept(ssl_); }, deadline, true);
  }

  // Appends what arrives next to `buf`. "" on success.
  std::string ReadSome(std::string& buf, Clock::time_point deadline,
                       bool stoppable, bool* eof) {
    char chunk[kReadChunk];
    size_t got = 0;
    std::string why = Drive(
        [&] { return SSL_read_ex(ssl_, chunk, sizeof(chunk), &got); },
        deadline, stoppable, eof);
    if (why.empty()) buf.append(chunk, got);
    return why;
  }

  // Writes all of `data`; fails when the client makes no room for
  // `stall` at a time.
  Status WriteAll(std::string_view data, std::chrono::milliseconds stall) {
    while (!data.empty()) {
      size_t wrote = 0;
      std::string why = Drive(
          [&] { return SSL_write_ex(ssl_, data.data(), data.size(), &wrote); },
          Clock::now() + stall, false);
      if (!why.empty()) return Unavailable("writing the response: " + why);
      data.remove_prefix(wrote);
    }
    return OkStatus();
  }

  // close_notify, then reads and drops input for a while, so a response sent
  // before the whole request was read is not lost to a TCP reset.
  void Finish(bool drain) {
    ERR_clear_error();
    SSL_shutdown(ssl_);
    ::shutdown(fd_, SHUT_WR);
    if (!drain) return;
    auto deadline = Clock::now() + kDrainTime;
    size_t dropped = 0;
    char buf[kReadChunk];
    while (dropped < kDrainMaxBytes &&
           WaitFor(POLLIN, deadline, true) == Wait::kReady) {
      ssize_t n = ::read(fd_, buf, sizeof(buf));
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) break;
      dropped += static_cast<size_t>(n);
    }
  }

 private:
  int fd_;
  int stop_fd_;
  SSL* ssl_;
};

std::string ResponseHead(const Response& r, uint64_t length) {
  std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " +
                     std::string(ReasonPhrase(r.status)) + "\r\n";
  for (const auto& [name, value] : r.headers) {
    bool owned = false;
    for (std::string_view o : kServerOwnedHeaders) owned |= (name == o);
    // A handler's CR/LF must not start a header of its own.
    if (owned || name.find_first_of("\r\n:") != std::string::npos ||
        value.find_first_of("\r\n") != std::string::npos)
      continue;
    head += name + ": " + value + "\r\n";
  }
  head += kSecurityHeaders;
  head += "Content-Length: " + std::to_string(length) + "\r\n";
  head += "Connection: close\r\n\r\n";
  return head;
}

}  // namespace

Status HttpsServer::Impl::Init(const ServerCertificate& certificate) {
  ctx_.reset(SSL_CTX_new(TLS_server_method()));
  if (!ctx_) return OpenSslStatus(Code::kInternal, "SSL_CTX_new");
  SSL_CTX* ctx = ctx_.get();
  // TLS 1.2 and 1.3 only; in 1.2 forward-secret AEAD suites only.
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1)
    return OpenSslStatus(Code::kInternal, "TLS protocol settings");
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

  // The certificate file may hold a chain: leaf first, then intermediates.
  BioPtr cert_bio(BIO_new_mem_buf(certificate.cert_pem.data(),
                                  static_cast<int>(certificate.cert_pem.size())));
  X509Ptr leaf(cert_bio ? PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)
                        : nullptr);
  if (!leaf || SSL_CTX_use_certificate(ctx, leaf.get()) != 1)
    return OpenSslStatus(Code::kInvalidArgument, "the server certificate");
  while (X509* extra = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
      X509_free(extra);
      return OpenSslStatus(Code::kInvalidArgument, "the certificate chain");
    }
  }
  ERR_clear_error();  // the loop ends on a "no start line" error
  BioPtr key_bio(BIO_new_mem_buf(certificate.key_pem.data(),
                                 static_cast<int>(certificate.key_pem.size())));
  PkeyPtr key(key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr)
                      : nullptr);
  if (!key || SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1)
    return OpenSslStatus(Code::kInvalidArgument, "the server private key");

  addrinfo hints{};
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string where = options_.listen.host + " port " +
                      std::to_string(options_.listen.port);
  int gai = getaddrinfo(options_.listen.host.c_str(),
                        std::to_string(options_.listen.port).c_str(), &hints, &res);
  if (gai != 0)
    return InvalidArgument("listen address " + where + ": " + gai_strerror(gai));
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> res_owner(res, freeaddrinfo);
  UniqueFd fd(::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoStatus("socket for " + where, errno);
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd.get(), res->ai_addr, res->ai_addrlen) != 0)
    return ErrnoStatus("bind " + where, errno);
  if (::listen(fd.get(), 128) != 0) return ErrnoStatus("listen " + where, errno);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0)
    return ErrnoStatus("getsockname " + where, errno);
  port_ = bound.ss_family == AF_INET
              ? ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port)
              : ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  listen_fd_ = std::move(fd);
  stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_fd_.valid()) return ErrnoStatus("eventfd", errno);
  return OkStatus();
}

void HttpsServer::Impl::StartThreads() {
  acceptor_ = std::thread([this] { AcceptLoop(); });
  for (int i = 0; i < options_.threads; ++i)
    workers_.emplace_back([this] { WorkerLoop(); });
}

void HttpsServer::Impl::AcceptLoop() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (fds[1].revents & POLLIN) return;
    if (!(fds[0].revents & POLLIN)) continue;
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd = ::accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      // EMFILE and the like: back off instead of spinning on a full table.
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    Pending p{fd, PeerName(addr)};
    std::unique_lock lock(mu_);
    if (queue_.size() >= options_.max_queued) {
      lock.unlock();
      ::close(fd);
      options_.log("refused " + p.peer + ": " + std::to_string(options_.max_queued) +
                   " connections already wait for a worker");
      continue;
    }
    queue_.push_back(std::move(p));
    work_cv_.notify_one();
  }
}

void HttpsServer::Impl::WorkerLoop() {
  for (;;) {
    Pending p;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      p = std::move(queue_.front());
      queue_.pop_front();
      active_.insert(p.fd);
    }
    Serve(p);
    {
      std::lock_guard lock(mu_);
      active_.erase(p.fd);
      ::close(p.fd);
      if (active_.empty()) idle_cv_.notify_all();
    }
  }
}

void HttpsServer::Impl::Serve(Pending p) {
  SslPtr ssl(SSL_new(ctx_.get()));
  if (!ssl || SSL_set_fd(ssl.get(), p.fd) != 1) {
    options_.log("TLS setup for " + p.peer + " failed: " + OpenSslErrors());
    return;
  }
  Connection conn(p.fd, stop_fd_.get(), ssl.get());
  // Counted from now, not from the accept: time spent queued behind busy
  // workers is the server's, not the client's fault.
  std::string why = conn.Handshake(Clock::now() + options_.handshake_timeout);
  if (!why.empty()) {
    options_.log("TLS handshake with " + p.peer + " failed: " + why);
    return;
  }

  auto started = Clock::now();
  auto send_error = [&](int status, const std::string& reason, bool drain) {
    Response r = ErrorResponse(status, reason);
    std::string out = ResponseHead(r, r.body.size()) + r.body;
    (void)conn.WriteAll(out, options_.write_stall_timeout);
    conn.Finish(drain);
    options_.log(p.peer + " refused: " + std::to_string(status) + " " + reason);
  };

  // The head: all of it within head_timeout, at most max_head_bytes.
  std::string buf;
  std::optional<ParsedHead> head;
  auto head_deadline = Clock::now() + options_.head_timeout;
  for (;;) {
    HeadParse parsed = ParseRequestHead(buf, options_.limits);
    if (parsed.error) {
      send_error(parsed.error->status, parsed.error->reason, true);
      return;
    }
    if (parsed.head) {
      head = std::move(parsed.head);
      break;
    }
    bool eof = false;
    why = conn.ReadSome(buf, head_deadline, true, &eof);
    if (why == "timed out") {
      send_error(408, "request head not received within " +
                          std::to_string(options_.head_timeout.count()) + " ms",
                 false);
      return;
    }
    if (!why.empty()) {
      if (!eof && why != "server stopping")
        options_.log("reading from " + p.peer + " failed: " + why);
      return;
    }
  }

  Request& req = head->request;
  req.peer = p.peer;
  req.body = buf.substr(head->head_bytes);
  if (req.body.size() > head->content_length) req.body.resize(head->content_length);
  if (head->expect_continue && req.body.size() < head->content_length &&
      !conn.WriteAll("HTTP/1.1 100 Continue\r\n\r\n", options_.write_stall_timeout)
           .ok())
    return;
  auto body_deadline = Clock::now() + options_.body_timeout;
  while (req.body.size() < head->content_length) {
    bool eof = false;
    why = conn.ReadSome(req.body, body_deadline, true, &eof);
    if (why == "timed out") {
      send_error(408, "request body not received within " +
                          std::to_string(options_.body_timeout.count()) + " ms",
                 false);
      return;
    }
    if (!why.empty()) return;
  }
  if (req.body.size() > head->content_length) req.body.resize(head->content_length);

  Response resp;
  try {
    resp = handler_(req);
  } catch (const std::exception& e) {
    options_.log("handler for " + req.method + " " + req.path + " threw: " + e.what());
    resp = ErrorResponse(500, "internal error");
  }
  bool head_only = req.method == "HEAD";
  uint64_t length = resp.stream ? resp.stream_length : resp.body.size();
  Status sent = conn.WriteAll(ResponseHead(resp, length), options_.write_stall_timeout);
  uint64_t body_sent = 0;
  if (sent.ok() && !head_only) {
    if (resp.stream) {
      BodyWriter writer = [&](std::string_view bytes) -> Status {
        if (body_sent + bytes.size() > length)
          return Internal("response body longer than its Content-Length");
        HAVEN_RETURN_IF_ERROR(conn.WriteAll(bytes, options_.write_stall_timeout));
        body_sent += bytes.size();
        return OkStatus();
      };
      try {
        sent = resp.stream(writer);
      } catch (const std::exception& e) {
        sent = Internal(std::string("body stream threw: ") + e.what());
      }
      if (sent.ok() && body_sent != length)
        sent = Internal("response body shorter than its Content-Length");
    } else {
      sent = conn.WriteAll(resp.body, options_.write_stall_timeout);
      if (sent.ok()) body_sent = resp.body.size();
    }
  }
  if (sent.ok()) conn.Finish(false);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  options_.log(p.peer + " " + req.method + " " + QuoteUntrusted(req.path) + " " +
               std::to_string(resp.status) + " " + std::to_string(body_sent) +
               " bytes " + std::to_string(ms.count()) + " ms" +
               (sent.ok() ? "" : " (" + sent.message() + ")"));
}

void HttpsServer::Impl::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopped_ || !stop_fd_.valid()) return;
    stopped_ = true;
    stopping_ = true;
  }
  uint64_t one = 1;
  (void)!::write(stop_fd_.get(), &one, sizeof(one));
  work_cv_.notify_all();
  if (acceptor_.joinable()) acceptor_.join();
  listen_fd_.reset();
  std::unique_lock lock(mu_);
  // Accepted but not started: they have sent nothing that was read.
  for (const Pending& p : queue_) ::close(p.fd);
  queue_.clear();
  if (!idle_cv_.wait_for(lock, options_.stop_grace, [&] { return active_.empty(); })) {
    for (int fd : active_) ::shutdown(fd, SHUT_RDWR);
  }
  lock.unlock();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

HttpsServer::HttpsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpsServer::~HttpsServer() { Stop(); }
uint16_t HttpsServer::port() const { return impl_->port(); }
void HttpsServer::Stop() { impl_->Stop(); }

Result<std::unique_ptr<HttpsServer>> HttpsServer::Start(
    HttpsServerOptions options, const ServerCertificate& certificate,
    Handler handler) {
  // A client that goes away mid-response must not kill the process: OpenSSL
  // writes with write(2), which raises SIGPIPE on a closed socket.
  ::signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handler));
  HAVEN_RETURN_IF_ERROR(impl->Init(certificate));
  impl->StartThreads();
  return std::unique_ptr<HttpsServer>(new HttpsServer(std::move(impl)));
}

}  // namespace haven::appliance
