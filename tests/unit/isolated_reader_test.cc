// restore::RunIsolated: work that crashes kills a child, not the caller;
// the caller removes what the child was writing and keeps what it finished.
#include "restore/isolated_reader.h"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace haven::restore {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

void Touch(const std::string& path) { std::ofstream(path) << "x"; }

TEST(IsolatedReaderTest, ReturnsTheChildsCode) {
  auto rc = RunIsolated([] { return 7; }, {});
  ASSERT_THAT(rc, IsOk());
  EXPECT_EQ(*rc, 7);
}

// A crafted guest file system can make The Sleuth Kit allocate gigabytes;
// in the child such an allocation fails instead of taking the host's memory.
TEST(IsolatedReaderTest, TheChildCannotAllocateBeyondItsBudget) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space";
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space";
#endif
#endif
  auto rc = RunIsolated(
      [] {
        void* volatile p = std::malloc(size_t{8} << 30);
        const bool got = p != nullptr;
        std::free(p);
        return got ? 0 : 42;
      },
      {});
  ASSERT_THAT(rc, IsOk());
  EXPECT_EQ(*rc, 42) << "an 8 GiB allocation succeeded in the child";
  // The caller itself is not limited.
  void* volatile p = std::malloc(size_t{8} << 30);
  EXPECT_NE(p, nullptr);
  std::free(p);
}

TEST(IsolatedReaderTest, ACrashRemovesPartialFilesAndKeepsFinishedOnes) {
  TempDir tmp;
  const std::string dir = tmp.Sub("out");
  std::filesystem::create_directories(dir + "/sub");
  // Another process's partial file is not ours to remove.
  const std::string other = dir + "/.haven-partial.1.other";
  Touch(other);
  auto rc = RunIsolated(
      [&] {
        Touch(dir + "/done.txt");
        Touch(dir + "/sub/.haven-partial." + std::to_string(getpid()) + ".f");
        // The default action, also under AddressSanitizer (whose own SEGV
        // handler would report and exit 1 instead of dying by the signal).
        std::signal(SIGSEGV, SIG_DFL);
        std::raise(SIGSEGV);
        return 0;
      },
      {dir, {}});
  EXPECT_THAT(
      rc, StatusIs(Code::kInternal,
                   AllOf(HasSubstr("crashed (signal 11"),
                         HasSubstr("removed 1 partial file(s) under " + dir))));
  EXPECT_TRUE(PathExists(dir + "/done.txt"));
  EXPECT_TRUE(PathExists(other));
  int left = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir))
    left += e.path().filename().string().starts_with(".haven-partial.") &&
            e.path() != other;
  EXPECT_EQ(left, 0);
}

TEST(IsolatedReaderTest, ACrashRemovesThePartialArchive) {
  TempDir tmp;
  const std::string tar = tmp.Sub("out.tar");
  auto rc = RunIsolated(
      [&] {
        Touch(tar + ".haven-partial");
        std::abort();
        return 0;
      },
      {"", {tar}});
  EXPECT_THAT(
      rc, StatusIs(Code::kInternal, AllOf(HasSubstr("signal 6"),
                                          HasSubstr("no archive was written"),
                                          HasSubstr("removed " + tar))));
  EXPECT_FALSE(PathExists(tar + ".haven-partial"));
  EXPECT_FALSE(PathExists(tar));
}

// RunIsolatedResult: the child's value or error comes back; the caller's
// cancel reaches the child; a crash is reported as RunIsolated reports it.
TEST(IsolatedReaderTest, AResultComesBackFromTheChild) {
  const std::string big(300000, 'r');  // more than a pipe would buffer
  auto r = RunIsolatedResult(
      [&](const CancelToken&) -> Result<std::string> { return big; }, {});
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(*r, big);
  // The value is the child's: what it changes in its memory stays there.
  int seen = 0;
  r = RunIsolatedResult(
      [&](const CancelToken&) -> Result<std::string> {
        seen = 1;
        return std::string();
      },
      {});
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(*r, "");
  EXPECT_EQ(seen, 0);
  EXPECT_THAT(RunIsolatedResult(
                  [](const CancelToken&) -> Result<std::string> {
                    return NotFound("no such path /etc/x");
                  },
                  {}),
              StatusIs(Code::kNotFound, HasSubstr("no such path /etc/x")));
  EXPECT_THAT(
      RunIsolatedResult(
          [](const CancelToken&) -> Result<std::string> { std::abort(); }, {}),
      StatusIs(Code::kInternal, HasSubstr("signal 6")));
}

TEST(IsolatedReaderTest, TheCallersCancelReachesTheChild) {
  CancelToken cancel;
  std::thread canceller([cancel] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    cancel.Cancel();
  });
  auto r = RunIsolatedResult(
      [](const CancelToken& token) -> Result<std::string> {
        for (int i = 0; i < 600; ++i) {  // 60 s at most
          HAVEN_RETURN_IF_ERROR(token.Check("the child's work"));
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        return std::string("never cancelled");
      },
      {}, cancel);
  canceller.join();
  EXPECT_THAT(r, StatusIs(Code::kCancelled, HasSubstr("the child's work")));
}

// A child that never ends (a lock inherited at the fork, held by a thread
// the child does not have) is killed after kill_after_seconds.
TEST(IsolatedReaderTest, AStuckChildIsKilledAfterTheLimit) {
  const auto began = std::chrono::steady_clock::now();
  auto r = RunIsolatedResult(
      [](const CancelToken&) -> Result<std::string> {
        for (;;) ::pause();  // deaf to the cancel flag
      },
      {}, {}, 0.5);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began)
          .count();
  EXPECT_THAT(r, StatusIs(Code::kUnavailable,
                          AllOf(HasSubstr("did not finish within 0.5 s"),
                                HasSubstr("stopped"))));
  EXPECT_LT(took, 5);
}

}  // namespace
}  // namespace haven::restore
