// The checks havend applies to what clients and points send before any
// lookup (appliance/point_files.h).
#include "appliance/point_files.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::testing::HasSubstr;

TEST(CheckGuestPath, CanonicalAbsolutePathsPass) {
  EXPECT_EQ(*CheckGuestPath("/"), "/");
  EXPECT_EQ(*CheckGuestPath("/etc"), "/etc");
  EXPECT_EQ(*CheckGuestPath("/etc/"), "/etc");
  EXPECT_EQ(*CheckGuestPath("//etc//ssh/"), "/etc/ssh");
  // Names that only look like dots are names.
  EXPECT_EQ(*CheckGuestPath("/a/...b/..c/c.."), "/a/...b/..c/c..");
  EXPECT_EQ(*CheckGuestPath("/etc\\..\\x"), "/etc\\..\\x");
}

TEST(CheckGuestPath, TraversalAndBadBytesAreRefused) {
  for (std::string p : {"../etc", "etc/passwd", "/..", "/etc/..", "/etc/../x",
                        "/./etc", "/etc/.", "/a/b/../../../root"}) {
    auto r = CheckGuestPath(p);
    EXPECT_FALSE(r.ok()) << p;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << p;
  }
  EXPECT_THAT(CheckGuestPath("/etc/../x").status().message(),
              HasSubstr("'..' component"));
  EXPECT_THAT(CheckGuestPath("etc").status().message(), HasSubstr("absolute"));
  EXPECT_THAT(CheckGuestPath(std::string("/etc/\0x", 7)).status().message(),
              HasSubstr("NUL or control"));
  EXPECT_THAT(CheckGuestPath("/etc/a\nb").status().message(),
              HasSubstr("control"));
  EXPECT_THAT(CheckGuestPath("").status().message(), HasSubstr("empty"));
  EXPECT_THAT(CheckGuestPath("/" + std::string(5000, 'a')).status().message(),
              HasSubstr("longer than 4096"));
}

TEST(SafeDownloadName, OnlyPlainBytesReachTheHeader) {
  EXPECT_EQ(SafeDownloadName("passwd"), "passwd");
  EXPECT_EQ(SafeDownloadName("a b\"c\r\nSet-Cookie: x"),
            "a_b_c__Set-Cookie__x");
  EXPECT_EQ(SafeDownloadName("caf\xc3\xa9.txt"), "caf__.txt");
  EXPECT_EQ(SafeDownloadName(".."), "download");
  EXPECT_EQ(SafeDownloadName(""), "download");
  EXPECT_EQ(SafeDownloadName(std::string(300, 'x')).size(), 100u);
}

TEST(ParseKind, TheApiNames) {
  EXPECT_EQ(ParseKind("file"), "files");
  EXPECT_EQ(ParseKind("files"), "files");
  EXPECT_EQ(ParseKind("vm"), "vm");
  EXPECT_EQ(ParseKind("image"), "image");
  EXPECT_EQ(ParseKind("disk"), std::nullopt);
}

}  // namespace
}  // namespace haven::appliance
