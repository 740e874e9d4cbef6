// Shared helpers for Haven's unit tests: status matchers, temporary
// directories and small file utilities. Header-only; every *_test.cc is its
// own binary.
#ifndef HAVEN_TESTS_UNIT_TEST_UTIL_H_
#define HAVEN_TESTS_UNIT_TEST_UTIL_H_

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <cstdint>
#include <filesystem>
#include <map>
#include <ostream>
#include <random>
#include <string>
#include <utility>

#include "base/bytes.h"
#include "base/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/repository.h"

namespace haven {

// Lets gtest print a Status (and thus a failed matcher) readably.
inline void PrintTo(const Status& s, std::ostream* os) {
  *os << (s.ok() ? std::string("OK") : s.ToString());
}

inline void PrintTo(Code code, std::ostream* os) { *os << CodeName(code); }

template <typename T>
void PrintTo(const Result<T>& r, std::ostream* os) {
  *os << (r.ok() ? std::string("OK result") : r.status().ToString());
}

namespace testing_util {

inline const Status& GetStatus(const Status& s) { return s; }
template <typename T>
const Status& GetStatus(const Result<T>& r) {
  return r.status();
}

// Matches a Status or Result<T> whose code is `code` and whose message
// matches `message_matcher` (a gmock string matcher).
MATCHER_P2(StatusIs, code, message_matcher,
           std::string("has code ") + std::string(CodeName(code))) {
  const Status& s = ::haven::testing_util::GetStatus(arg);
  *result_listener << "status is " << (s.ok() ? std::string("OK") : s.ToString());
  if (s.code() != code) return false;
  return ::testing::ExplainMatchResult(message_matcher, s.message(),
                                       result_listener);
}

MATCHER(IsOk, "is OK") {
  const Status& s = ::haven::testing_util::GetStatus(arg);
  *result_listener << "status is " << (s.ok() ? std::string("OK") : s.ToString());
  return s.ok();
}

// A directory under ::testing::TempDir(), removed with its contents when the
// object goes out of scope.
class TempDir {
 public:
  TempDir() {
    std::string base = ::testing::TempDir();
    if (base.empty() || base.back() != '/') base += '/';
    std::string tmpl = base + "haven-unit-XXXXXX";
    char* made = ::mkdtemp(tmpl.data());
    if (made == nullptr) {
      ADD_FAILURE() << "mkdtemp " << tmpl << " failed";
      return;
    }
    path_ = made;
  }
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline Bytes RandomData(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  Bytes out(n);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    for (int k = 0; k < 8; ++k) out[i + k] = static_cast<uint8_t>(v >> (8 * k));
  }
  for (; i < n; ++i) out[i] = static_cast<uint8_t>(rng());
  return out;
}

inline Bytes ReadWholeFile(const std::string& path) {
  Bytes out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ADD_FAILURE() << "open " << path << " failed";
    return out;
  }
  struct stat st;
  ::fstat(fd, &st);
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::pread(fd, out.data() + done, out.size() - done,
                        static_cast<off_t>(done));
    if (n <= 0) {
      ADD_FAILURE() << "read " << path << " failed";
      break;
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return out;
}

inline void WriteWholeFile(const std::string& path, ByteSpan data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << "open " << path;
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done,
                         static_cast<off_t>(done));
    ASSERT_GT(n, 0) << "write " << path;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

// XORs one byte of a file in place.
inline void FlipByte(const std::string& path, uint64_t offset, uint8_t mask = 0x01) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << "open " << path;
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
  b ^= mask;
  ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
}

inline uint64_t FileSize(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_size);
}

inline bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Every entry under `dir` (recursively) -> "type size mtime_ns".
inline std::map<std::string, std::string> SnapshotTree(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    struct stat st;
    if (::lstat(e.path().c_str(), &st) != 0) continue;
    int64_t mtime = st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
    std::string desc = std::to_string(st.st_mode & S_IFMT) + " " +
                       (S_ISDIR(st.st_mode) ? std::string("-")
                                            : std::to_string(st.st_size)) +
                       " " + std::to_string(mtime);
    out[std::filesystem::relative(e.path(), dir).string()] = desc;
  }
  return out;
}

// Init options that keep scrypt fast in tests.
inline repository::InitOptions FastInitOptions(uint32_t chunk_size =
                                                   repository::kDefaultChunkSize) {
  repository::InitOptions o;
  o.chunk_size = chunk_size;
  o.pack_size = 1u << 20;  // the minimum the config allows
  o.scrypt.n = 1024;
  return o;
}

inline constexpr char kTestPassphrase[] = "unit test passphrase";

// Puts a fresh, never-opened repository (passphrase kTestPassphrase) at
// `dest`, which must not exist. Repository::Init runs once per chunk size and
// process; later calls copy that template, which skips Init's many fsyncs and
// keeps each test binary fast. Copies share the repository id and keys.
inline Status CloneFreshRepository(const std::string& dest,
                                   uint32_t chunk_size = repository::kDefaultChunkSize) {
  static TempDir templates;
  static std::map<uint32_t, std::string> made;
  auto it = made.find(chunk_size);
  if (it == made.end()) {
    std::string dir = templates.Sub("template-" + std::to_string(chunk_size));
    HAVEN_RETURN_IF_ERROR(repository::Repository::Init(dir, kTestPassphrase,
                                                       FastInitOptions(chunk_size)));
    it = made.emplace(chunk_size, dir).first;
  }
  std::error_code ec;
  std::filesystem::copy(it->second, dest, std::filesystem::copy_options::recursive, ec);
  if (ec) return IoError("copy template repository to " + dest + ": " + ec.message());
  return OkStatus();
}

inline repository::OpenOptions ReadOptions() {
  repository::OpenOptions o;
  o.write = false;
  o.lock_wait_seconds = 5;
  return o;
}

inline repository::OpenOptions WriteOptions() {
  repository::OpenOptions o;
  o.write = true;
  o.lock_wait_seconds = 5;
  return o;
}

// Runs a shell command, its output discarded; its exit code (-1 if it did
// not exit).
inline int Sh(const std::string& cmd) {
  int rc = std::system((cmd + " >/dev/null 2>&1").c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Output of a shell command (stdout only).
inline std::string ShOut(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

}  // namespace testing_util
}  // namespace haven

#define HAVEN_ASSERT_OK(expr)                                          \
  do {                                                                 \
    const ::haven::Status haven_test_s_ =                             \
        ::haven::testing_util::GetStatus(expr);                        \
    ASSERT_TRUE(haven_test_s_.ok()) << #expr << ": " << haven_test_s_.ToString(); \
  } while (0)

#define HAVEN_EXPECT_OK(expr)                                          \
  do {                                                                 \
    const ::haven::Status haven_test_s_ =                             \
        ::haven::testing_util::GetStatus(expr);                        \
    EXPECT_TRUE(haven_test_s_.ok()) << #expr << ": " << haven_test_s_.ToString(); \
  } while (0)

#define HAVEN_ASSERT_OK_AND_ASSIGN_IMPL(tmp, lhs, expr)                \
  auto tmp = (expr);                                                   \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status().ToString();   \
  lhs = std::move(tmp).value()

#define HAVEN_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  HAVEN_ASSERT_OK_AND_ASSIGN_IMPL(HAVEN_CONCAT(haven_test_r_, __LINE__), lhs, expr)

#endif  // HAVEN_TESTS_UNIT_TEST_UTIL_H_
