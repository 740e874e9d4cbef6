// Helpers shared by the fuzz targets.
#ifndef HAVEN_TESTS_FUZZ_FUZZ_UTIL_H_
#define HAVEN_TESTS_FUZZ_FUZZ_UTIL_H_

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace haven::fuzz {

// A private directory for targets that parse files, made once per process.
inline const std::string& ScratchDir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/haven-fuzz.XXXXXX";
    const char* d = ::mkdtemp(tmpl);
    if (!d) std::abort();
    return std::string(d);
  }();
  return dir;
}

inline void WriteWhole(const std::string& path, const uint8_t* data, size_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) std::abort();
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n <= 0) std::abort();
    data += n;
    size -= static_cast<size_t>(n);
  }
  ::close(fd);
}

}  // namespace haven::fuzz

#endif  // HAVEN_TESTS_FUZZ_FUZZ_UTIL_H_
