// HttpsServer in-process with a real TLS client (OpenSSL): response framing
// the handler cannot break, streamed bodies, handler failures, graceful stop.
#include "appliance/https_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "appliance/openssl_handles.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing_util::IsOk;

// Sends `request` over TLS to 127.0.0.1:port and returns everything the
// server sent until it closed (or 10 s passed).
std::string Exchange(uint16_t port, const std::string& request) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    ADD_FAILURE() << "connect";
    return "";
  }
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  SslPtr ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), fd);
  std::string out;
  if (SSL_connect(ssl.get()) == 1) {
    size_t n = 0;
    SSL_write_ex(ssl.get(), request.data(), request.size(), &n);
    char buf[16384];
    while (SSL_read_ex(ssl.get(), buf, sizeof(buf), &n) == 1)
      out.append(buf, n);
  }
  ::close(fd);
  return out;
}

std::string Get(uint16_t port, const std::string& method,
                const std::string& path) {
  return Exchange(port, method + " " + path + " HTTP/1.1\r\nHost: x\r\n\r\n");
}

std::string BodyOf(const std::string& response) {
  size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? "" : response.substr(end + 4);
}

class ServerTest : public ::testing::Test {
 protected:
  void StartWith(Handler handler, HttpsServerOptions options = {}) {
    auto cert = GenerateSelfSigned("localhost");
    ASSERT_THAT(cert, IsOk());
    options.listen.host = "127.0.0.1";
    options.listen.port = 0;
    options.log = [](std::string_view) {};
    auto server = HttpsServer::Start(options, *cert, std::move(handler));
    ASSERT_THAT(server, IsOk());
    server_ = std::move(server.value());
  }
  std::unique_ptr<HttpsServer> server_;
};

TEST_F(ServerTest, ServerOwnsFramingAndSecurityHeaders) {
  StartWith([](const Request& req) {
    Response r;
    r.body = "path=" + req.path + " query=" + req.query + " body=" + req.body;
    r.headers = {{"content-length", "999"},
                 {"cache-control", "max-age=3600"},
                 {"x-evil", "a\r\nSet-Cookie: injected=1"},
                 {"x-fine", "yes"}};
    return r;
  });
  std::string resp = Exchange(server_->port(),
                              "POST /a%2Fb?q=1 HTTP/1.1\r\nHost: x\r\n"
                              "Content-Length: 5\r\n\r\nhello");
  EXPECT_THAT(resp, HasSubstr("HTTP/1.1 200 OK\r\n"));
  EXPECT_EQ(BodyOf(resp), "path=/a/b query=q=1 body=hello");
  EXPECT_THAT(resp, HasSubstr("\r\nContent-Length: 30\r\n"));
  EXPECT_THAT(resp, Not(HasSubstr("999")));
  EXPECT_THAT(resp, HasSubstr("\r\nCache-Control: no-store\r\n"));
  EXPECT_THAT(resp, Not(HasSubstr("max-age=3600")));
  EXPECT_THAT(resp, Not(HasSubstr("injected")));
  EXPECT_THAT(resp, HasSubstr("\r\nx-fine: yes\r\n"));
  EXPECT_THAT(resp, HasSubstr("\r\nX-Frame-Options: DENY\r\n"));
}

TEST_F(ServerTest, HeadSendsTheLengthButNoBody) {
  StartWith([](const Request&) { return Response::Json(200, "{\"a\":1}"); });
  std::string resp = Get(server_->port(), "HEAD", "/");
  EXPECT_THAT(resp, HasSubstr("Content-Length: 7\r\n"));
  EXPECT_EQ(BodyOf(resp), "");
}

TEST_F(ServerTest, StreamedBodyArrivesWhole) {
  Bytes data = testing_util::RandomData(3 << 20, 7);
  std::string expected(data.begin(), data.end());
  StartWith([&](const Request&) {
    Response r;
    r.stream_length = expected.size();
    r.stream = [&](const BodyWriter& write) -> Status {
      for (size_t off = 0; off < expected.size(); off += 100000)
        HAVEN_RETURN_IF_ERROR(
            write(std::string_view(expected).substr(off, 100000)));
      return OkStatus();
    };
    return r;
  });
  std::string resp = Get(server_->port(), "GET", "/download");
  EXPECT_THAT(resp, HasSubstr("Content-Length: 3145728\r\n"));
  EXPECT_TRUE(BodyOf(resp) == expected)
      << "body of " << BodyOf(resp).size() << " bytes";
}

TEST_F(ServerTest, StreamShorterThanItsLengthEndsTheConnection) {
  StartWith([](const Request&) {
    Response r;
    r.stream_length = 1000;
    r.stream = [](const BodyWriter& write) { return write("only this"); };
    return r;
  });
  std::string resp = Get(server_->port(), "GET", "/");
  EXPECT_THAT(resp, HasSubstr("Content-Length: 1000\r\n"));
  // The client sees a short body, never a complete-looking response.
  EXPECT_EQ(BodyOf(resp), "only this");
}

TEST_F(ServerTest, ThrowingHandlerIs500) {
  StartWith([](const Request&) -> Response {
    throw std::runtime_error("boom secret");
  });
  std::string resp = Get(server_->port(), "GET", "/");
  EXPECT_THAT(resp, HasSubstr("HTTP/1.1 500 Internal Server Error\r\n"));
  EXPECT_EQ(BodyOf(resp), "{\"error\":\"internal error\"}");
}

TEST_F(ServerTest, RefusalsCarryTheReasonAsJson) {
  HttpsServerOptions o;
  o.limits.max_body_bytes = 10;
  StartWith([](const Request&) { return Response(); }, o);
  std::string resp =
      Exchange(server_->port(),
               "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n");
  EXPECT_THAT(resp, HasSubstr("HTTP/1.1 413 Content Too Large\r\n"));
  EXPECT_EQ(BodyOf(resp),
            "{\"error\":\"request body of 11 bytes is over the limit of 10\"}");
}

// Status line of what the server answered to `request`.
std::string StatusOf(uint16_t port, const std::string& request) {
  std::string resp = Exchange(port, request);
  return resp.substr(0, resp.find("\r\n"));
}

TEST_F(ServerTest, HeadLimitsAndRefusals) {
  HttpsServerOptions o;
  o.limits.max_body_bytes = 1000;
  o.limits.max_headers = 10;
  std::atomic<int> served{0};
  StartWith(
      [&](const Request&) {
        ++served;
        return Response::Json(200, "{}");
      },
      o);
  uint16_t port = server_->port();
  std::string start = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
  std::string end = "\r\n\r\n";
  std::string fits =
      start + std::string(16 * 1024 - start.size() - end.size(), 'a') + end;
  ASSERT_EQ(fits.size(), 16u * 1024);
  EXPECT_EQ(StatusOf(port, fits), "HTTP/1.1 200 OK");
  // Beast applies the limit to the request line and the fields in turn, so
  // a few bytes over may pass; 64 over never does.
  std::string over =
      start + std::string(16 * 1024 - start.size() - end.size() + 64, 'a') +
      end;
  EXPECT_EQ(StatusOf(port, over),
            "HTTP/1.1 431 Request Header Fields Too Large");
  std::string many = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 10; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(StatusOf(port, many + "\r\n"),
            "HTTP/1.1 431 Request Header Fields Too Large");
  EXPECT_EQ(
      StatusOf(port,
               "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n"),
      "HTTP/1.1 413 Content Too Large");
  EXPECT_EQ(StatusOf(port, "POST /x HTTP/1.1\r\nHost: h\r\n\r\n"),
            "HTTP/1.1 411 Length Required");
  EXPECT_EQ(StatusOf(port,
                     "POST /x HTTP/1.1\r\nHost: h\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            "HTTP/1.1 501 Not Implemented");
  // Transfer-Encoding beside Content-Length (request smuggling).
  EXPECT_EQ(StatusOf(port,
                     "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n"),
            "HTTP/1.1 501 Not Implemented");
  EXPECT_EQ(
      StatusOf(port, "GET / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n"),
      "HTTP/1.1 417 Expectation Failed");
  const char* bad[] = {
      "GET /a/../etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET /a/%2e%2e/b HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET /a%00b HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",  // absolute form
      "GET / HTTP/1.1\r\n\r\n",                     // no Host
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: "
      "2\r\n\r\n",
      "GET / FTP/1.1\r\nHost: h\r\n\r\n",
      "GET / HTTP/1.1\nHost: h\r\n\r\n",     // bare LF
      "GET /  HTTP/1.1\r\nHost: h\r\n\r\n",  // two spaces
  };
  for (const char* text : bad)
    EXPECT_EQ(StatusOf(port, text), "HTTP/1.1 400 Bad Request") << text;
  // Beast refuses versions other than 1.0 and 1.1 as malformed.
  EXPECT_EQ(StatusOf(port, "GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
            "HTTP/1.1 400 Bad Request");
  EXPECT_EQ(served, 1);  // only the head of exactly the limit
}

TEST_F(ServerTest, BodyDeadlineIs408AndExpectContinueIsAnswered) {
  HttpsServerOptions o;
  o.body_timeout = std::chrono::milliseconds(700);
  StartWith(
      [](const Request& req) {
        return Response::Json(200, "{\"got\":\"" + req.body + "\"}");
      },
      o);
  auto t0 = std::chrono::steady_clock::now();
  std::string resp =
      Exchange(server_->port(),
               "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc");
  double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_THAT(resp, HasSubstr("HTTP/1.1 408 Request Timeout\r\n"));
  EXPECT_THAT(BodyOf(resp),
              HasSubstr("request body not received within 700 ms"));
  EXPECT_LT(secs, 3.0);
  // The client's whole body after the head in one write still gets the
  // interim 100 first, then the answer.
  resp = Exchange(server_->port(),
                  "PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n"
                  "Expect: 100-continue\r\n\r\nxyz");
  EXPECT_THAT(resp, HasSubstr("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(resp, HasSubstr("{\"got\":\"xyz\"}"));
}

TEST_F(ServerTest, StopLetsARunningRequestFinishAndDropsWaitingClients) {
  std::atomic<bool> in_handler{false};
  StartWith([&](const Request&) {
    in_handler = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    return Response::Json(200, "{\"done\":true}");
  });
  uint16_t port = server_->port();
  std::string slow_resp, idle_resp;
  std::thread slow([&] { slow_resp = Get(port, "GET", "/"); });
  // A client that connects and sends half a head: it is not waited for.
  std::thread idle([&] { idle_resp = Exchange(port, "GET / HTTP/1.1\r\n"); });
  while (!in_handler)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  auto t0 = std::chrono::steady_clock::now();
  server_->Stop();
  double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  slow.join();
  idle.join();
  EXPECT_EQ(BodyOf(slow_resp), "{\"done\":true}");
  EXPECT_EQ(idle_resp, "");
  EXPECT_LT(secs, 2.0);  // not the 5 s head timeout
  server_->Stop();       // idempotent
}

TEST_F(ServerTest, TimeQueuedBehindABusyWorkerIsNotTheClientsHandshakeTime) {
  HttpsServerOptions o;
  o.threads = 1;
  o.handshake_timeout = std::chrono::milliseconds(500);
  o.head_timeout = std::chrono::milliseconds(1500);
  StartWith([](const Request&) { return Response::Json(200, "{}"); }, o);
  uint16_t port = server_->port();
  // Holds the only worker until the head timeout cuts it off (408).
  std::string slow_resp;
  std::thread slow([&] { slow_resp = Exchange(port, "GET / HTTP/1.1\r\n"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Queued for about 1.2 s, longer than the handshake timeout, then served.
  std::string resp = Get(port, "GET", "/");
  slow.join();
  EXPECT_THAT(slow_resp, HasSubstr("HTTP/1.1 408 Request Timeout\r\n"));
  EXPECT_THAT(resp, HasSubstr("HTTP/1.1 200 OK\r\n"));
}

}  // namespace
}  // namespace haven::appliance
