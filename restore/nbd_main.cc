// haven-nbd: serves the disks of one recovery point read-only over NBD on a
// unix socket, for instant recovery (restore/instant_restore.h starts it;
// it is not meant to be run by hand).
//
//   haven-nbd --repository LOC --point ID --socket PATH [--socket-owner
//             UID:GID] --pidfile PATH --stats PATH [--cache-mb N]
//
// The passphrase is read from stdin (to its end), never from argv or the
// environment. Once the repository is open, the point loaded and the socket
// listening, "ready" is written to stdout and stdout is closed; an error
// before that is written there as "error: MESSAGE" and the program exits 1.
// It then runs until SIGTERM or SIGINT, one thread per connection, and
// rewrites the stats file (JSON, atomically) at most once a second when a
// figure changed. Errors after start go to stderr (the launcher points it
// at a log file).
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "base/bytes.h"
#include "base/file.h"
#include "base/time.h"
#include "repository/repository.h"
#include "restore/disk_reader.h"
#include "restore/nbd_server.h"

namespace {

using haven::Result;
using haven::Status;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

void Ready(const std::string& line) {
  std::string out = line + "\n";
  ssize_t n = ::write(1, out.data(), out.size());
  (void)n;
  int null = ::open("/dev/null", O_WRONLY);
  if (null >= 0) {
    ::dup2(null, 1);
    ::close(null);
  }
}

[[noreturn]] void Die(const std::string& message) {
  Ready("error: " + message);
  std::exit(1);
}

void Log(const std::string& line) {
  std::string out =
      haven::FormatTime(static_cast<int64_t>(::time(nullptr)) * 1000000000,
                        haven::TimeStyle::kRfc3339Utc) +
      " haven-nbd: " + line + "\n";
  ssize_t n = ::write(2, out.data(), out.size());
  (void)n;
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> args;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0) Die("unexpected argument " + k);
    args[k.substr(2)] = argv[i + 1];
  }
  if (argc % 2 == 0) Die("every option takes a value");
  for (const char* need : {"repository", "point", "socket", "pidfile", "stats"})
    if (args[need].empty()) Die(std::string("--") + need + " is required");
  int uid = -1, gid = -1;
  if (!args["socket-owner"].empty() &&
      std::sscanf(args["socket-owner"].c_str(), "%d:%d", &uid, &gid) != 2)
    Die("--socket-owner takes UID:GID");
  size_t cache_mb = 256;
  if (!args["cache-mb"].empty())
    cache_mb = std::strtoul(args["cache-mb"].c_str(), nullptr, 10);
  if (cache_mb < 1 || cache_mb > 65536) Die("--cache-mb takes 1..65536");

  std::string passphrase;
  {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(0, buf, sizeof buf)) > 0) passphrase.append(buf, n);
    int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) {
      ::dup2(null, 0);
      ::close(null);
    }
  }
  haven::repository::OpenOptions open;
  open.write = false;
  open.lock_wait_seconds = 30;
  auto repo =
      haven::repository::Repository::Open(args["repository"], passphrase, open);
  std::fill(passphrase.begin(), passphrase.end(), '\0');
  if (!repo.ok()) Die(repo.status().message());
  auto point = (*repo)->LoadSnapshot(args["point"]);
  if (!point.ok()) Die(point.status().message());

  std::vector<std::unique_ptr<haven::restore::DiskReader>> readers;
  std::map<std::string, haven::restore::DiskBytes*> exports;
  for (const auto& d : point->disks) {
    if (!d.kind.empty()) continue;  // configuration files
    size_t chunks = std::max<size_t>(
        1, (cache_mb << 20) / std::max<uint32_t>(d.chunk_size, 4096));
    readers.push_back(
        std::make_unique<haven::restore::DiskReader>(**repo, d, chunks));
    exports[d.name] = readers.back().get();
  }
  if (exports.empty()) Die("recovery point " + point->id + " has no disk");

  auto listen = haven::restore::ListenUnix(args["socket"], uid, gid);
  if (!listen.ok()) Die(listen.status().message());
  {
    std::string pid = std::to_string(::getpid()) + "\n";
    if (!haven::WriteFileAtomic(args["pidfile"], haven::AsBytes(pid)).ok())
      Die("cannot write " + args["pidfile"]);
  }
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  haven::restore::NbdServer server(exports, Log);
  Log("serving " + std::to_string(exports.size()) + " disk(s) of point " +
      point->id + " on " + args["socket"]);
  Ready("ready");

  const std::string stats_path = args["stats"];
  std::thread stats_thread([&] {
    std::string last;
    while (!g_stop) {
      nlohmann::json j;
      const auto& s = server.stats();
      j["connections"] = s.connections.load();
      j["reads"] = s.reads.load();
      j["bytes_served"] = s.bytes_served.load();
      j["read_errors"] = s.read_errors.load();
      uint64_t chunks = 0, nodes = 0, bytes = 0, disk_bytes = 0;
      for (const auto& r : readers) {
        auto rs = r->stats();
        chunks += rs.chunks_fetched;
        nodes += rs.nodes_fetched;
        bytes += rs.chunks_fetched * r->disk().chunk_size;
        disk_bytes += r->size();
      }
      j["chunks_fetched"] = chunks;
      j["nodes_fetched"] = nodes;
      j["chunk_bytes_fetched"] = bytes;
      j["disk_bytes"] = disk_bytes;
      std::string text = j.dump() + "\n";
      if (text != last &&
          haven::WriteFileAtomic(stats_path, haven::AsBytes(text)).ok())
        last = text;
      for (int i = 0; i < 10 && !g_stop; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });

  const int lfd = *listen;
  while (!g_stop) {
    // The signal may reach any thread: the loop looks at the flag at least
    // every 200 ms.
    pollfd p{lfd, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    int c = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR) continue;
      Log(std::string("accept: ") + std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    std::thread([&server, c] { server.Serve(c); }).detach();
  }
  Log("stopping (signal)");
  ::close(lfd);
  ::unlink(args["socket"].c_str());
  stats_thread.join();
  // Connections still open end with the process.
  std::_Exit(0);
}
