#include "appliance/https_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <signal.h>

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <future>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "appliance/openssl_handles.h"
#include "base/json.h"

namespace haven::appliance {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using ErrorCode = beast::error_code;

// After refusing a request whose body may still be arriving, read and drop
// this much for this long so the refusal reaches the client before the
// close (closing with unread input makes the kernel send a reset instead).
constexpr size_t kDrainMaxBytes = 16 << 20;
constexpr std::chrono::milliseconds kDrainTime{2000};
// The TLS close_notify exchange after a response.
constexpr std::chrono::milliseconds kShutdownTime{1000};
// Threads that run Asio's completion handlers; handlers of requests run on
// options.threads others, so a slow handler never stalls reads and writes.
constexpr int kIoThreads = 2;

// Headers the server sets itself; a handler's own values for these are
// dropped.
constexpr std::string_view kServerOwnedHeaders[] = {
    "content-length", "connection", "transfer-encoding", "cache-control"};

// Sent with every response (a handler's own Content-Security-Policy
// replaces the default one): nothing is cached, nothing is framed or
// sniffed, no referrer leaves, and browsers stay on HTTPS.
constexpr std::pair<std::string_view, std::string_view> kSecurityHeaders[] = {
    {"Cache-Control", "no-store"},
    {"X-Content-Type-Options", "nosniff"},
    {"X-Frame-Options", "DENY"},
    {"Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"},
    {"Referrer-Policy", "no-referrer"},
    {"Strict-Transport-Security", "max-age=31536000"},
};

std::string PeerName(const tcp::endpoint& ep) {
  std::string host = ep.address().to_string();
  if (ep.address().is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(ep.port());
}

Response ErrorResponse(int status, const std::string& reason) {
  return Response::Json(status, DumpJson(nlohmann::json{{"error", reason}}));
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Why an operation failed, in the words the log and the tests expect.
std::string Why(const ErrorCode& ec) {
  if (ec == beast::error::timeout || ec == asio::error::operation_aborted)
    return "timed out";
  return ec.message();
}

// The response head as the server sends it: the handler's headers minus
// those the server owns and any that would break framing, then the
// security headers, Content-Length and Connection: close.
// `length` nullopt: the body is sent chunked (a stream of unknown length).
http::response<http::empty_body> ResponseHead(const Response& r,
                                              std::optional<uint64_t> length,
                                              bool keep_alive = false) {
  http::response<http::empty_body> head;
  head.version(11);
  head.result(static_cast<unsigned>(r.status));
  std::string_view reason = ReasonPhrase(r.status);
  head.reason(beast::string_view(reason.data(), reason.size()));
  for (const auto& [name, value] : r.headers) {
    bool owned = false;
    for (std::string_view o : kServerOwnedHeaders) owned |= (Lower(name) == o);
    // A handler's CR/LF must not start a header of its own.
    if (owned || name.empty() ||
        name.find_first_of("\r\n: ") != std::string::npos ||
        value.find_first_of("\r\n") != std::string::npos)
      continue;
    head.insert(name, value);
  }
  for (const auto& [name, value] : kSecurityHeaders) {
    // A handler may narrow the Content-Security-Policy for what it serves
    // (the console's pages load their own scripts); the others are fixed.
    if (name == "Content-Security-Policy" &&
        head.find("Content-Security-Policy") != head.end())
      continue;
    head.insert(beast::string_view(name.data(), name.size()),
                beast::string_view(value.data(), value.size()));
  }
  if (length) {
    head.content_length(*length);
  } else {
    head.set(http::field::transfer_encoding, "chunked");
  }
  head.set(http::field::connection, keep_alive ? "keep-alive" : "close");
  return head;
}

// Checks a parsed request head against what havend serves; nullopt when it
// is acceptable, else the status to refuse it with and why.
std::optional<std::pair<int, std::string>> RefusalFor(
    const http::request_parser<http::string_body>& parser,
    const RequestLimits& limits) {
  const auto& req = parser.get();
  size_t lines = 0, hosts = 0, expects = 0;
  for (const auto& field : req) {
    ++lines;
    if (field.name() == http::field::host) ++hosts;
    if (field.name() == http::field::expect) ++expects;
  }
  if (lines > limits.max_headers)
    return std::pair(431, "more than " + std::to_string(limits.max_headers) +
                              " header lines");
  if (req.count(http::field::transfer_encoding))
    return std::pair(
        501,
        std::string("Transfer-Encoding is not accepted; send Content-Length"));
  std::string_view target(req.target().data(), req.target().size());
  if (target.empty() || target[0] != '/')
    return std::pair(
        400,
        std::string("the request target must be a path starting with '/'"));
  if (!DecodeTargetPath(target))
    return std::pair(
        400, std::string("bad percent-escape, NUL or dot segment in the path"));
  if (req.version() == 11 && hosts != 1)
    return std::pair(
        400, std::string("an HTTP/1.1 request needs exactly one Host header"));
  if (expects > 1 ||
      (expects == 1 &&
       Lower(std::string(req[http::field::expect])) != "100-continue"))
    return std::pair(417,
                     std::string("only 'Expect: 100-continue' is understood"));
  auto length = parser.content_length();
  const uint64_t body_limit = limits.BodyLimitFor(*DecodeTargetPath(target));
  if (length && *length > body_limit)
    return std::pair(413, "request body of " + std::to_string(*length) +
                              " bytes is over the limit of " +
                              std::to_string(body_limit));
  std::string method(req.method_string());
  if (!length && (method == "POST" || method == "PUT" || method == "PATCH"))
    return std::pair(
        411, std::string("a request body needs a Content-Length header"));
  return std::nullopt;
}

// A parse error of Beast's as an answer: the status (0: none, just close)
// and the reason sent back.
std::pair<int, std::string> AnswerFor(const ErrorCode& ec,
                                      const RequestLimits& limits) {
  if (ec == http::error::end_of_stream || ec == http::error::partial_message)
    return {0, ""};
  if (ec == http::error::header_limit)
    return {431, "request head larger than " +
                     std::to_string(limits.max_head_bytes) + " bytes"};
  if (ec == http::error::body_limit)
    return {413, "request body over the limit of " +
                     std::to_string(limits.max_body_bytes) + " bytes"};
  // Beast refuses Transfer-Encoding beside Content-Length (smuggling).
  if (ec == http::error::bad_transfer_encoding)
    return {501, "Transfer-Encoding is not accepted; send Content-Length"};
  if (ec.category() == ErrorCode(http::error::bad_method).category())
    return {400, "malformed request head: " + ec.message()};
  return {0, ""};
}

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

class Session;

class HttpsServer::Impl {
 public:
  Impl(HttpsServerOptions options, Handler handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        ctx_(ssl::context::tls_server),
        acceptor_(asio::make_strand(ioc_)),
        work_(asio::make_work_guard(ioc_)) {
    if (!options_.log)
      options_.log = [](std::string_view line) {
        std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()),
                     line.data());
      };
    if (options_.threads < 1) options_.threads = 1;
    handlers_ = std::make_unique<asio::thread_pool>(options_.threads);
  }
  ~Impl() { Stop(); }

  Status Init(const ServerCertificate& certificate);
  void StartThreads();
  void Stop();
  uint16_t port() const { return port_; }

 private:
  friend class Session;
  Status InitTls(const ServerCertificate& certificate);
  void Accept();
  // Counts a request whose handler is running or whose response is being
  // written; Stop() waits for these.
  void BeginRequest();
  void EndRequest();
  bool stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }

  HttpsServerOptions options_;
  Handler handler_;
  // Before ioc_: connections still queued in ioc_ when it goes use it.
  ssl::context ctx_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::unique_ptr<asio::thread_pool> handlers_;
  std::vector<std::thread> io_threads_;
  uint16_t port_ = 0;
  std::atomic<int> large_bodies_{0};  // admitted large bodies in flight

  std::mutex mu_;
  std::condition_variable idle_cv_;
  std::vector<std::weak_ptr<Session>> sessions_;
  int active_ = 0;
  bool stopping_ = false;
  bool stopped_ = false;
  bool started_ = false;
};

// One TLS connection, one request: handshake -> head -> body -> handler
// (on the handler pool) -> response -> close. Its Asio work runs on the
// socket's strand; the handler's writes are posted there and waited for.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(HttpsServer::Impl& server, tcp::socket socket, std::string peer)
      : server_(server),
        options_(server.options_),
        stream_(std::move(socket), server.ctx_),
        timer_(stream_.get_executor()),
        peer_(std::move(peer)) {}
  // A connection that ends while reading an admitted large body (timeout,
  // client gone) gives its slot back here.
  ~Session() { ReleaseLargeBody(); }

  void Start() {
    // Counted from the accept: there is no queue before it.
    beast::get_lowest_layer(stream_).expires_after(options_.handshake_timeout);
    stream_.async_handshake(
        ssl::stream_base::server,
        [self = shared_from_this()](ErrorCode ec) { self->OnHandshake(ec); });
  }

  // From Stop(): ends the connection, unless `force` is false and a handler
  // has the request.
  void Close(bool force) {
    asio::post(stream_.get_executor(), [self = shared_from_this(), force] {
      if (self->in_handler_ && !force) return;
      self->closed_ = true;
      ErrorCode ignored;
      self->DisarmTimer();
      beast::get_lowest_layer(self->stream_)
          .socket()
          .shutdown(tcp::socket::shutdown_both, ignored);
      beast::get_lowest_layer(self->stream_).close();
    });
  }

 private:
  void OnHandshake(ErrorCode ec) {
    if (ec) {
      if (!closed_)
        options_.log("TLS handshake with " + peer_ + " failed: " + Why(ec));
      return;
    }
    beast::get_lowest_layer(stream_).expires_never();
    ReadRequest(options_.head_timeout);
  }

  // Waits for the next request head, for `limit`. After a kept-alive
  // response the wait is the idle limit, and a client that sends nothing in
  // it is closed without a 408 (it was not sending a request).
  void ReadRequest(std::chrono::milliseconds limit) {
    started_ = Clock::now();
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(
        std::min<size_t>(options_.limits.max_head_bytes, UINT32_MAX)));
    // The body's size is checked against the head first, to answer 413
    // with the numbers; the parser enforces it again while reading.
    // (Beast 1.74 treats "none" as smaller than any length: use the maximum.)
    parser_->body_limit(std::numeric_limits<uint64_t>::max());
    ArmTimer(limit);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](ErrorCode ec, size_t) {
                              self->OnHead(ec);
                            });
  }

  // Head and body deadlines cancel the read instead of closing the socket
  // (as tcp_stream's expiry would), so the client still gets its 408.
  void ArmTimer(std::chrono::milliseconds limit) {
    timed_out_ = false;
    timer_.expires_after(limit);
    timer_.async_wait(
        [self = shared_from_this(), gen = ++timer_gen_](ErrorCode ec) {
          // Cancelled, or expired just as its read finished (both queued).
          if (ec || gen != self->timer_gen_) return;
          self->timed_out_ = true;
          ErrorCode ignored;
          beast::get_lowest_layer(self->stream_).socket().cancel(ignored);
        });
  }

  void DisarmTimer() {
    ++timer_gen_;
    timer_.cancel();
  }

  void OnHead(ErrorCode ec) {
    DisarmTimer();
    if (closed_) return;
    if (timed_out_ && served_ > 0 && !parser_->got_some() &&
        buffer_.size() == 0) {
      beast::get_lowest_layer(stream_).close();  // idle keep-alive ends
      return;
    }
    if (timed_out_)
      return Refuse(408,
                    "request head not received within " +
                        std::to_string(options_.head_timeout.count()) + " ms",
                    false);
    if (ec) {
      // A kept-alive client that closes between requests is done.
      if (served_ > 0 && ec == http::error::end_of_stream) return;
      auto [status, reason] = AnswerFor(ec, options_.limits);
      if (status != 0) return Refuse(status, reason, true);
      if (ec != http::error::end_of_stream &&
          ec != http::error::partial_message)
        options_.log("reading from " + peer_ + " failed: " + Why(ec));
      return;
    }
    if (auto refusal = RefusalFor(*parser_, options_.limits))
      return Refuse(refusal->first, refusal->second, true);
    if (auto refusal = AdmitLargeBody())
      return Refuse(refusal->first, refusal->second, true);
    {
      const auto& target = parser_->get().target();
      parser_->body_limit(options_.limits.BodyLimitFor(
          *DecodeTargetPath(std::string_view(target.data(), target.size()))));
    }
    if (parser_->is_done()) return StartHandler();
    ArmTimer(options_.body_timeout);
    if (parser_->get().count(http::field::expect)) {
      // 100-continue: the client waits for this before sending its body.
      interim_ = "HTTP/1.1 100 Continue\r\n\r\n";
      beast::get_lowest_layer(stream_).expires_after(
          options_.write_stall_timeout);
      asio::async_write(
          stream_, asio::buffer(interim_),
          [self = shared_from_this()](ErrorCode ec, size_t) {
            beast::get_lowest_layer(self->stream_).expires_never();
            if (ec) {
              self->DisarmTimer();
              return;
            }
            self->ReadBody();
          });
      return;
    }
    ReadBody();
  }

  // A body over the normal limit is read only for a caller the daemon
  // admits (admit_large_body), and only max_large_bodies at once.
  std::optional<std::pair<int, std::string>> AdmitLargeBody() {
    auto length = parser_->content_length();
    if (!length || *length <= options_.limits.max_body_bytes) return {};
    const auto& msg = parser_->get();
    std::string path =
        DecodeTargetPath(std::string_view(msg.target().data(),
                                          msg.target().size()))
            .value_or("");
    if (!options_.admit_large_body)
      return std::pair(401, std::string("a large body needs credentials"));
    std::optional<std::string> auth;
    if (auto it = msg.find(http::field::authorization); it != msg.end())
      auth = std::string(it->value());
    if (auto refusal =
            options_.admit_large_body(path, auth ? &*auth : nullptr))
      return refusal;
    if (server_.large_bodies_.fetch_add(1) >= options_.max_large_bodies) {
      server_.large_bodies_.fetch_sub(1);
      return std::pair(503, std::string("too many large uploads at once; "
                                        "try again in a few seconds"));
    }
    holds_large_ = true;
    return {};
  }

  void ReleaseLargeBody() {
    if (holds_large_) server_.large_bodies_.fetch_sub(1);
    holds_large_ = false;
  }

  void ReadBody() {
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](ErrorCode ec, size_t) {
                       self->OnBody(ec);
                     });
  }

  void OnBody(ErrorCode ec) {
    DisarmTimer();
    if (closed_) return;
    if (timed_out_)
      return Refuse(408,
                    "request body not received within " +
                        std::to_string(options_.body_timeout.count()) + " ms",
                    false);
    if (ec) {
      auto [status, reason] = AnswerFor(ec, options_.limits);
      if (status != 0) return Refuse(status, reason, true);
      return;
    }
    StartHandler();
  }

  void StartHandler() {
    in_handler_ = true;
    server_.BeginRequest();
    asio::post(*server_.handlers_, [self = shared_from_this()] {
      self->RunHandler();
      self->server_.EndRequest();
    });
  }

  Request MakeRequest() {
    auto& msg = parser_->get();
    Request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    size_t q = req.target.find('?');
    if (q != std::string::npos) req.query = req.target.substr(q + 1);
    req.path = DecodeTargetPath(req.target).value_or("");
    for (const auto& field : msg)
      req.headers.emplace_back(Lower(std::string(field.name_string())),
                               std::string(field.value()));
    req.body = std::move(msg.body());
    req.peer = peer_;
    return req;
  }

  // On a handler thread: the handler, then the response written through
  // the strand.
  void RunHandler() {
    Request req = MakeRequest();
    Response resp;
    try {
      resp = server_.handler_(req);
    } catch (const std::exception& e) {
      options_.log("handler for " + req.method + " " + req.path +
                   " threw: " + e.what());
      resp = ErrorResponse(500, "internal error");
    }
    bool head_only = req.method == "HEAD";
    bool chunked = resp.stream && resp.chunked;
    uint64_t length = resp.stream ? resp.stream_length : resp.body.size();
    // Keep the connection for another request when the client asks (HTTP/1.1
    // default) and the response is a plain one: streams (downloads, events)
    // end their connection.
    bool keep_alive = parser_->get().keep_alive() && !resp.stream &&
                      served_ + 1 < options_.max_requests_per_connection &&
                      !server_.stopping();
    Status sent = WriteAndWait(HeadText(ResponseHead(
        resp, chunked ? std::nullopt : std::optional<uint64_t>(length),
        keep_alive)));
    uint64_t body_sent = 0;
    if (sent.ok() && !head_only) {
      if (resp.stream) {
        BodyWriter writer = [&](std::string_view bytes) -> Status {
          if (chunked) {
            if (bytes.empty()) return OkStatus();  // "0" would end the body
            char size[24];
            int n = std::snprintf(size, sizeof size, "%zx\r\n", bytes.size());
            HAVEN_RETURN_IF_ERROR(WriteAndWait(std::string_view(size, n)));
            HAVEN_RETURN_IF_ERROR(WriteAndWait(bytes));
            HAVEN_RETURN_IF_ERROR(WriteAndWait("\r\n"));
            body_sent += bytes.size();
            return OkStatus();
          }
          if (body_sent + bytes.size() > length)
            return Internal("response body longer than its Content-Length");
          HAVEN_RETURN_IF_ERROR(WriteAndWait(bytes));
          body_sent += bytes.size();
          return OkStatus();
        };
        try {
          sent = resp.stream(writer);
        } catch (const std::exception& e) {
          sent = Internal(std::string("body stream threw: ") + e.what());
        }
        // A chunked body ends with the last chunk only when the stream
        // finished: a client must not take a cut-off download as whole.
        if (chunked && sent.ok()) sent = WriteAndWait("0\r\n\r\n");
        if (!chunked && sent.ok() && body_sent != length)
          sent = Internal("response body shorter than its Content-Length");
      } else {
        sent = WriteAndWait(resp.body);
        if (sent.ok()) body_sent = resp.body.size();
      }
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        Clock::now() - started_);
    options_.log(peer_ + " " + req.method + " " + QuoteUntrusted(req.path) +
                 " " + std::to_string(resp.status) + " " +
                 std::to_string(body_sent) + " bytes " +
                 std::to_string(ms.count()) + " ms" +
                 (sent.ok() ? "" : " (" + sent.message() + ")"));
    ++served_;
    ReleaseLargeBody();
    asio::post(stream_.get_executor(),
               [self = shared_from_this(), ok = sent.ok(), keep_alive] {
                 self->in_handler_ = false;
                 if (self->closed_) return;
                 // A response cut short must not look complete: no
                 // close_notify.
                 if (!ok) {
                   beast::get_lowest_layer(self->stream_).close();
                 } else if (keep_alive && !self->server_.stopping()) {
                   self->ReadRequest(self->options_.keep_alive_timeout);
                 } else {
                   self->Shutdown();
                 }
               });
  }

  static std::string HeadText(const http::response<http::empty_body>& head) {
    std::ostringstream out;
    out << head.base();
    return out.str();
  }

  // From a handler thread: writes `data` on the strand and waits. Fails when
  // the client makes no room for write_stall_timeout or is gone.
  Status WriteAndWait(std::string_view data) {
    std::promise<ErrorCode> done;
    std::future<ErrorCode> result = done.get_future();
    asio::post(stream_.get_executor(), [&] {
      if (closed_) {
        done.set_value(asio::error::operation_aborted);
        return;
      }
      beast::get_lowest_layer(stream_).expires_after(
          options_.write_stall_timeout);
      asio::async_write(stream_, asio::buffer(data.data(), data.size()),
                        [&](ErrorCode ec, size_t) { done.set_value(ec); });
    });
    ErrorCode ec = result.get();
    if (ec) return Unavailable("writing the response: " + Why(ec));
    return OkStatus();
  }

  // A refusal as JSON, then the connection ends. With `drain`, input that
  // is still arriving (a body the refusal will not read) is read and
  // dropped for a while first, so the client sees the answer, not a reset.
  void Refuse(int status, const std::string& reason, bool drain) {
    Response r = ErrorResponse(status, reason);
    out_ = HeadText(ResponseHead(r, r.body.size())) + r.body;
    options_.log(peer_ + " refused: " + std::to_string(status) + " " + reason);
    beast::get_lowest_layer(stream_).expires_after(
        options_.write_stall_timeout);
    asio::async_write(
        stream_, asio::buffer(out_),
        [self = shared_from_this(), drain](ErrorCode ec, size_t) {
          if (ec || self->closed_) return;
          if (!drain) return self->Shutdown();
          ErrorCode ignored;
          auto& sock = beast::get_lowest_layer(self->stream_).socket();
          sock.shutdown(tcp::socket::shutdown_send, ignored);
          beast::get_lowest_layer(self->stream_).expires_after(kDrainTime);
          self->Drain();
        });
  }

  void Drain() {
    drain_buf_.resize(16 * 1024);
    beast::get_lowest_layer(stream_).async_read_some(
        asio::buffer(drain_buf_),
        [self = shared_from_this()](ErrorCode ec, size_t n) {
          self->drained_ += n;
          if (ec || self->closed_ || self->drained_ >= kDrainMaxBytes) {
            beast::get_lowest_layer(self->stream_).close();
            return;
          }
          self->Drain();
        });
  }

  // close_notify both ways (bounded), then close.
  void Shutdown() {
    if (closed_) return;
    beast::get_lowest_layer(stream_).expires_after(kShutdownTime);
    stream_.async_shutdown([self = shared_from_this()](ErrorCode) {
      beast::get_lowest_layer(self->stream_).close();
    });
  }

  HttpsServer::Impl& server_;
  const HttpsServerOptions& options_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  asio::steady_timer timer_;
  std::string peer_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  Clock::time_point started_ = Clock::now();
  std::string interim_, out_;
  std::vector<char> drain_buf_;
  size_t drained_ = 0;
  uint64_t timer_gen_ = 0;  // which ArmTimer a timer completion belongs to
  bool timed_out_ = false;
  bool closed_ = false;
  std::atomic<bool> in_handler_{false};
  int served_ = 0;  // responses written on this connection
  bool holds_large_ = false;  // counted in server_.large_bodies_
};

Status HttpsServer::Impl::InitTls(const ServerCertificate& certificate) {
  SSL_CTX* ctx = ctx_.native_handle();
  // TLS 1.2 and 1.3 only; in 1.2 forward-secret AEAD suites only.
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1)
    return OpenSslStatus(Code::kInternal, "TLS protocol settings");
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION);
  // The certificate file may hold a chain: leaf first, then intermediates.
  BioPtr cert_bio(
      BIO_new_mem_buf(certificate.cert_pem.data(),
                      static_cast<int>(certificate.cert_pem.size())));
  X509Ptr leaf(
      cert_bio ? PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)
               : nullptr);
  if (!leaf || SSL_CTX_use_certificate(ctx, leaf.get()) != 1)
    return OpenSslStatus(Code::kInvalidArgument, "the server certificate");
  while (X509* extra =
             PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr)) {
    if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
      X509_free(extra);
      return OpenSslStatus(Code::kInvalidArgument, "the certificate chain");
    }
  }
  ERR_clear_error();  // the loop ends on a "no start line" error
  BioPtr key_bio(BIO_new_mem_buf(certificate.key_pem.data(),
                                 static_cast<int>(certificate.key_pem.size())));
  PkeyPtr key(key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr,
                                                nullptr)
                      : nullptr);
  if (!key || SSL_CTX_use_PrivateKey(ctx, key.get()) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1)
    return OpenSslStatus(Code::kInvalidArgument, "the server private key");
  return OkStatus();
}

Status HttpsServer::Impl::Init(const ServerCertificate& certificate) {
  HAVEN_RETURN_IF_ERROR(InitTls(certificate));
  std::string where =
      options_.listen.host + " port " + std::to_string(options_.listen.port);
  ErrorCode ec;
  asio::ip::address address = asio::ip::make_address(options_.listen.host, ec);
  if (ec)
    return InvalidArgument("listen address " + where + ": " + ec.message());
  tcp::endpoint endpoint(address, options_.listen.port);
  if (acceptor_.open(endpoint.protocol(), ec))
    return ErrnoStatus("socket for " + where, ec.value());
  acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (acceptor_.bind(endpoint, ec))
    return ErrnoStatus("bind " + where, ec.value());
  if (acceptor_.listen(128, ec))
    return ErrnoStatus("listen " + where, ec.value());
  port_ = acceptor_.local_endpoint(ec).port();
  if (ec) return ErrnoStatus("getsockname " + where, ec.value());
  return OkStatus();
}

void HttpsServer::Impl::StartThreads() {
  started_ = true;
  asio::post(acceptor_.get_executor(), [this] { Accept(); });
  for (int i = 0; i < kIoThreads; ++i)
    io_threads_.emplace_back([this] { ioc_.run(); });
}

void HttpsServer::Impl::Accept() {
  acceptor_.async_accept(asio::make_strand(ioc_), [this](ErrorCode ec,
                                                         tcp::socket socket) {
    if (!acceptor_.is_open()) return;
    if (ec) {
      // EMFILE and the like: back off instead of spinning on a full table.
      auto timer =
          std::make_shared<asio::steady_timer>(acceptor_.get_executor());
      timer->expires_after(std::chrono::milliseconds(50));
      timer->async_wait([this, timer](ErrorCode) { Accept(); });
      return;
    }
    socket.set_option(tcp::no_delay(true), ec);
    ErrorCode peer_ec;
    std::string peer = PeerName(socket.remote_endpoint(peer_ec));
    size_t limit = static_cast<size_t>(options_.threads) + options_.max_queued;
    std::shared_ptr<Session> session;
    {
      std::lock_guard lock(mu_);
      std::erase_if(sessions_, [](const auto& s) { return s.expired(); });
      if (!stopping_ && sessions_.size() < limit) {
        session = std::make_shared<Session>(*this, std::move(socket), peer);
        sessions_.push_back(session);
      }
    }
    if (session) {
      session->Start();
    } else if (!stopping()) {
      options_.log("refused " + peer + ": " + std::to_string(limit) +
                   " connections already open");
    }
    Accept();
  });
}

void HttpsServer::Impl::BeginRequest() {
  std::lock_guard lock(mu_);
  ++active_;
}

void HttpsServer::Impl::EndRequest() {
  std::lock_guard lock(mu_);
  if (--active_ == 0) idle_cv_.notify_all();
}

void HttpsServer::Impl::Stop() {
  std::vector<std::shared_ptr<Session>> open;
  auto collect = [&] {
    open.clear();
    for (const auto& weak : sessions_)
      if (auto s = weak.lock()) open.push_back(std::move(s));
  };
  {
    std::unique_lock lock(mu_);
    if (stopped_ || !started_) return;
    stopped_ = true;
    stopping_ = true;
    collect();
  }
  std::promise<void> closed;
  asio::post(acceptor_.get_executor(), [&] {
    ErrorCode ignored;
    acceptor_.close(ignored);
    closed.set_value();
  });
  closed.get_future().wait();
  // Connections that have not sent a whole request: nothing of theirs runs.
  for (const auto& s : open) s->Close(false);
  {
    std::unique_lock lock(mu_);
    idle_cv_.wait_for(lock, options_.stop_grace, [&] { return active_ == 0; });
    collect();
  }
  for (const auto& s : open) s->Close(true);
  open.clear();
  handlers_->join();
  work_.reset();
  ioc_.stop();
  for (std::thread& t : io_threads_) t.join();
  io_threads_.clear();
}

HttpsServer::HttpsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpsServer::~HttpsServer() { Stop(); }
uint16_t HttpsServer::port() const { return impl_->port(); }
void HttpsServer::Stop() { impl_->Stop(); }

Result<std::unique_ptr<HttpsServer>> HttpsServer::Start(
    HttpsServerOptions options, const ServerCertificate& certificate,
    Handler handler) {
  // A client that goes away mid-response must not kill the process (Asio
  // sends with MSG_NOSIGNAL, but OpenSSL or a handler may write otherwise).
  ::signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handler));
  HAVEN_RETURN_IF_ERROR(impl->Init(certificate));
  impl->StartThreads();
  return std::unique_ptr<HttpsServer>(new HttpsServer(std::move(impl)));
}

}  // namespace haven::appliance
