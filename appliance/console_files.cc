#include "appliance/console_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string_view>
#include <utility>

namespace haven::appliance {
namespace {

constexpr off_t kMaxFileBytes = 8 << 20;

struct Type {
  std::string_view extension, content_type;
};
constexpr Type kTypes[] = {
    {".html", "text/html; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".json", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
};

std::string_view ContentType(std::string_view path) {
  for (const Type& t : kTypes)
    if (path.size() > t.extension.size() &&
        path.substr(path.size() - t.extension.size()) == t.extension)
      return t.content_type;
  return {};
}

Response Text(int status, std::string text) {
  Response r;
  r.status = status;
  r.headers.push_back({"Content-Type", "text/plain; charset=utf-8"});
  r.body = std::move(text);
  return r;
}

// Opens `relative` under the directory `dir_fd` one segment at a time with
// O_NOFOLLOW, so neither a link nor a "." segment leads out of it.
int OpenBelow(int dir_fd, std::string_view relative) {
  int fd = dup(dir_fd);
  if (fd < 0) return -1;
  size_t start = 0;
  while (start <= relative.size()) {
    size_t slash = relative.find('/', start);
    if (slash == std::string_view::npos) slash = relative.size();
    std::string segment(relative.substr(start, slash - start));
    bool last = slash == relative.size();
    if (segment.empty() || segment[0] == '.') {
      close(fd);
      return -1;
    }
    int next =
        openat(fd, segment.c_str(),
               O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (last ? 0 : O_DIRECTORY));
    close(fd);
    if (next < 0) return -1;
    fd = next;
    start = slash + 1;
    if (last) break;
  }
  return fd;
}

Response ServeFile(const std::string& dir, std::string_view path) {
  std::string relative =
      path == "/" ? "index.html" : std::string(path.substr(1));
  std::string_view type = ContentType(relative);
  if (type.empty()) return Text(404, "not found\n");
  int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    if (path == "/")
      return Text(404, "The web console is not installed: " + dir +
                           " is missing. Set ConsoleDirectory= in [Server] of "
                           "havend.conf (or --console-dir) to where its files "
                           "are.\n");
    return Text(404, "not found\n");
  }
  int fd = OpenBelow(dir_fd, relative);
  close(dir_fd);
  if (fd < 0) return Text(404, "not found\n");
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      st.st_size > kMaxFileBytes) {
    close(fd);
    return Text(404, "not found\n");
  }
  std::string body(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < body.size()) {
    ssize_t n = read(fd, body.data() + done, body.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  close(fd);
  if (done != body.size()) return Text(500, "could not read the file\n");
  Response r;
  r.headers.push_back({"Content-Type", std::string(type)});
  r.headers.push_back(
      {"Content-Security-Policy", kConsoleContentSecurityPolicy});
  r.body = std::move(body);
  return r;
}

}  // namespace

Handler MakeConsoleHandler(std::string dir, Handler api) {
  return [dir = std::move(dir), api = std::move(api)](const Request& req) {
    const std::string& p = req.path;
    if (p.rfind("/api/", 0) == 0 || p == "/api" || p == "/metrics")
      return api(req);
    if (req.method != "GET" && req.method != "HEAD") {
      Response r = Text(405, "the console's files are read with GET\n");
      r.headers.push_back({"Allow", "GET, HEAD"});
      return r;
    }
    // HEAD: the server sends the head of this response without its body.
    return ServeFile(dir, p);
  };
}

}  // namespace haven::appliance
