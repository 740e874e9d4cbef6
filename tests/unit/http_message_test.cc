// Request paths as handlers see them (appliance/http_message.h) and --listen
// parsing. The request head itself is parsed by Boost.Beast; its limits and
// refusals are tested through the server in https_server_test.cc.
#include "appliance/http_message.h"

#include <string>

#include "appliance/https_server.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::testing::HasSubstr;
using testing_util::StatusIs;

TEST(TargetPath, DecodesAndDropsTheQuery) {
  EXPECT_EQ(DecodeTargetPath("/api/v1/points%20x?vm=a%20b"),
            "/api/v1/points x");
  EXPECT_EQ(DecodeTargetPath("/a%2Fb"), "/a/b");
  EXPECT_EQ(DecodeTargetPath("/"), "/");
  EXPECT_EQ(DecodeTargetPath("/a/..b/c."), "/a/..b/c.");
}

TEST(TargetPath, RefusesDotSegmentsNulAndBadEscapes) {
  for (const char* bad : {"/a/../etc/passwd", "/a/%2e%2e/b", "/.", "/a/./b",
                          "/a%00b", "/a%zz", "/a%", "/a%4"})
    EXPECT_EQ(DecodeTargetPath(bad), std::nullopt) << bad;
}

TEST(Messages, HeaderLookupAndJsonResponse) {
  Request req;
  req.headers = {{"host", "h"}, {"x-a", "1"}, {"x-a", "2"}};
  ASSERT_NE(req.Header("x-a"), nullptr);
  EXPECT_EQ(*req.Header("x-a"), "1");
  EXPECT_EQ(req.Header("x-b"), nullptr);
  Response r = Response::Json(413, "{}");
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.body, "{}");
  EXPECT_EQ(ReasonPhrase(413), "Content Too Large");
  EXPECT_EQ(ReasonPhrase(599), "Unknown");
}

TEST(ListenAddress, Forms) {
  auto a = ParseListenAddress("127.0.0.1:9000");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 9000);
  auto b = ParseListenAddress("[::1]:0");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 0);
  auto c = ParseListenAddress("10.1.2.3");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->port, kDefaultPort);
  auto d = ParseListenAddress(":8443");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->host, "0.0.0.0");
  EXPECT_THAT(ParseListenAddress("localhost:80"),
              StatusIs(Code::kInvalidArgument, HasSubstr("not a numeric")));
  EXPECT_THAT(ParseListenAddress("127.0.0.1:65536"),
              StatusIs(Code::kInvalidArgument, HasSubstr("0 to 65535")));
  EXPECT_THAT(ParseListenAddress("127.0.0.1:"),
              StatusIs(Code::kInvalidArgument, HasSubstr("0 to 65535")));
  EXPECT_THAT(ParseListenAddress("::1:80"),
              StatusIs(Code::kInvalidArgument, HasSubstr("[ADDR]:PORT")));
  EXPECT_THAT(ParseListenAddress("[::1"),
              StatusIs(Code::kInvalidArgument, HasSubstr("missing ']'")));
}

}  // namespace
}  // namespace haven::appliance
