// bench/havend.sh's load generator: CLIENTS threads, each sending GET
// requests for the given PATHS in turn over its own kept-alive TLS
// connection (a new one per request with API_LOAD_NEW_CONNECTIONS=1) for
// SECONDS, and prints per
// path the request count, errors and latency percentiles as JSON.
//
// Usage: HAVEN_TOKEN=... api_load HOST PORT CAFILE CLIENTS SECONDS PATH...
// The token comes from the environment, never argv. CAFILE is havend's
// cert.pem: the certificate is verified (by fingerprint equality, as the
// self-signed certificate is its own CA).
#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using Clock = std::chrono::steady_clock;

namespace {

struct Sample {
  std::vector<double> ms;
  int errors = 0;
  int statuses_not_200 = 0;
};

// One client's connection: kept alive across requests (as a browser or
// Prometheus keeps it), reopened when the server closes it.
class Client {
 public:
  Client(asio::io_context& io, ssl::context& ctx, std::string host,
         std::string port, bool keep_alive)
      : io_(io),
        ctx_(ctx),
        host_(std::move(host)),
        port_(std::move(port)),
        keep_alive_(keep_alive) {}

  // One GET; the status, or -1 on a network error (the connection is then
  // dropped and the next request opens a new one).
  int Get(const std::string& path, const std::string& token,
          size_t* body_bytes) {
    try {
      if (!stream_) Connect();
      http::request<http::empty_body> req{http::verb::get, path, 11};
      req.set(http::field::host, host_);
      req.set(http::field::authorization, "Bearer " + token);
      req.keep_alive(keep_alive_);
      http::write(*stream_, req);
      http::response_parser<http::string_body> parser;
      parser.body_limit(256 << 20);
      http::read(*stream_, buffer_, parser);
      *body_bytes = parser.get().body().size();
      if (!parser.get().keep_alive()) Drop();
      return static_cast<int>(parser.get().result_int());
    } catch (const std::exception&) {
      Drop();
      return -1;
    }
  }

 private:
  void Connect() {
    asio::ip::tcp::resolver resolver(io_);
    stream_.emplace(io_, ctx_);
    beast::get_lowest_layer(*stream_).connect(resolver.resolve(host_, port_));
    stream_->handshake(ssl::stream_base::client);
    buffer_.clear();
  }
  void Drop() {
    if (!stream_) return;
    beast::error_code ignored;
    beast::get_lowest_layer(*stream_).socket().close(ignored);
    stream_.reset();
  }

  asio::io_context& io_;
  ssl::context& ctx_;
  std::string host_, port_;
  bool keep_alive_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> stream_;
  beast::flat_buffer buffer_;
};

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr,
                 "usage: HAVEN_TOKEN=... api_load HOST PORT CAFILE CLIENTS "
                 "SECONDS PATH...\n");
    return 2;
  }
  const char* token_env = std::getenv("HAVEN_TOKEN");
  if (!token_env || !*token_env) {
    std::fprintf(stderr, "api_load: set HAVEN_TOKEN\n");
    return 2;
  }
  std::string host = argv[1], port = argv[2], cafile = argv[3];
  int clients = std::atoi(argv[4]);
  double seconds = std::atof(argv[5]);
  std::vector<std::string> paths(argv + 6, argv + argc);
  std::string token = token_env;
  // API_LOAD_NEW_CONNECTIONS=1: a new TLS connection per request (the
  // worst case: clients that never keep a connection).
  const char* fresh = std::getenv("API_LOAD_NEW_CONNECTIONS");
  bool keep_alive = !(fresh && std::string(fresh) == "1");

  ssl::context ctx(ssl::context::tls_client);
  ctx.load_verify_file(cafile);
  ctx.set_verify_mode(ssl::verify_peer);

  std::mutex mu;
  std::map<std::string, Sample> samples;
  std::map<std::string, size_t> body_size;
  auto end = Clock::now() + std::chrono::duration<double>(seconds);
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      asio::io_context io;
      Client client(io, ctx, host, port, keep_alive);
      std::map<std::string, Sample> mine;
      size_t i = static_cast<size_t>(c);
      while (Clock::now() < end) {
        const std::string& path = paths[i++ % paths.size()];
        auto t0 = Clock::now();
        size_t bytes = 0;
        int status = client.Get(path, token, &bytes);
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0)
                        .count();
        Sample& s = mine[path];
        if (status < 0) {
          ++s.errors;
          continue;
        }
        if (status != 200) ++s.statuses_not_200;
        s.ms.push_back(ms);
        std::lock_guard lock(mu);
        body_size[path] = bytes;
      }
      std::lock_guard lock(mu);
      for (auto& [p, s] : mine) {
        Sample& all = samples[p];
        all.ms.insert(all.ms.end(), s.ms.begin(), s.ms.end());
        all.errors += s.errors;
        all.statuses_not_200 += s.statuses_not_200;
      }
    });
  }
  for (auto& t : threads) t.join();
  nlohmann::ordered_json out;
  out["clients"] = clients;
  out["seconds"] = seconds;
  out["keep_alive"] = keep_alive;
  for (auto& [path, s] : samples) {
    nlohmann::ordered_json j;
    j["requests"] = s.ms.size();
    j["errors"] = s.errors;
    j["not_200"] = s.statuses_not_200;
    j["body_bytes"] = body_size[path];
    j["rps"] = s.ms.size() / seconds;
    j["p50_ms"] = Percentile(s.ms, 0.50);
    j["p90_ms"] = Percentile(s.ms, 0.90);
    j["p99_ms"] = Percentile(s.ms, 0.99);
    j["max_ms"] = s.ms.empty() ? 0 : s.ms.back();
    out["paths"][path] = j;
  }
  std::printf("%s\n", out.dump(1).c_str());
  return 0;
}
