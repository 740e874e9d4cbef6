// The request-head parser's limits and refusals (appliance/http_message.h)
// and --listen parsing: every byte it reads comes from untrusted clients.
#include "appliance/http_message.h"

#include <string>

#include "appliance/https_server.h"
#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::testing::HasSubstr;
using testing_util::StatusIs;

RequestLimits Limits() {
  RequestLimits l;
  l.max_head_bytes = 16 * 1024;
  l.max_body_bytes = 1000;
  return l;
}

int ErrorOf(const std::string& head) {
  HeadParse p = ParseRequestHead(head, Limits());
  EXPECT_FALSE(p.head) << head;
  return p.error ? p.error->status : 0;
}

TEST(RequestHead, ParsesMethodPathQueryAndHeaders) {
  std::string text =
      "GET /api/v1/points%20x?vm=a%20b HTTP/1.1\r\nHost: h\r\n"
      "X-Thing:  padded value \t\r\n\r\nextra";
  HeadParse p = ParseRequestHead(text, Limits());
  ASSERT_TRUE(p.head);
  const Request& r = p.head->request;
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.target, "/api/v1/points%20x?vm=a%20b");
  EXPECT_EQ(r.path, "/api/v1/points x");
  EXPECT_EQ(r.query, "vm=a%20b");
  ASSERT_NE(r.Header("x-thing"), nullptr);  // names are lower-cased
  EXPECT_EQ(*r.Header("x-thing"), "padded value");
  EXPECT_EQ(p.head->head_bytes, text.size() - 5);
  EXPECT_EQ(p.head->content_length, 0u);
}

TEST(RequestHead, IncompleteHeadAsksForMore) {
  for (std::string part : {"", "GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\nHost: h\r\n\r"}) {
    HeadParse p = ParseRequestHead(part, Limits());
    EXPECT_FALSE(p.head);
    EXPECT_FALSE(p.error) << part;
  }
}

TEST(RequestHead, HeadOfExactlyTheLimitIsAcceptedOneMoreByteIs431) {
  std::string start = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: ";
  std::string end = "\r\n\r\n";
  std::string fits = start + std::string(16 * 1024 - start.size() - end.size(), 'a') + end;
  ASSERT_EQ(fits.size(), 16u * 1024);
  EXPECT_TRUE(ParseRequestHead(fits, Limits()).head);
  std::string over = start + std::string(16 * 1024 - start.size() - end.size() + 1, 'a') + end;
  EXPECT_EQ(ErrorOf(over), 431);
  // Refused as soon as the limit is reached, before the head ends.
  EXPECT_EQ(ErrorOf(over.substr(0, 16 * 1024)), 431);
}

TEST(RequestHead, EndlessRequestLineIs414) {
  EXPECT_EQ(ErrorOf("GET /" + std::string(16 * 1024, 'a')), 414);
}

TEST(RequestHead, TooManyHeaderLinesIs431) {
  std::string text = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 100; ++i) text += "X-" + std::to_string(i) + ": v\r\n";
  HeadParse p = ParseRequestHead(text + "\r\n", Limits());
  ASSERT_TRUE(p.error);
  EXPECT_EQ(p.error->status, 431);
  EXPECT_THAT(p.error->reason, HasSubstr("100 header lines"));
}

TEST(RequestHead, BodyOverTheLimitIs413AtTheLimitAccepted) {
  HeadParse ok = ParseRequestHead(
      "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n", Limits());
  ASSERT_TRUE(ok.head);
  EXPECT_EQ(ok.head->content_length, 1000u);
  HeadParse big = ParseRequestHead(
      "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n", Limits());
  ASSERT_TRUE(big.error);
  EXPECT_EQ(big.error->status, 413);
  EXPECT_THAT(big.error->reason, HasSubstr("1001 bytes is over the limit of 1000"));
  // 20 digits would overflow: malformed, not a huge number.
  EXPECT_EQ(ErrorOf("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: "
                    "99999999999999999999\r\n\r\n"),
            400);
}

TEST(RequestHead, ChunkedAndMissingLengthRefused) {
  EXPECT_EQ(ErrorOf("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"), 501);
  // Transfer-Encoding wins over Content-Length (request smuggling).
  EXPECT_EQ(ErrorOf("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n"),
            501);
  EXPECT_EQ(ErrorOf("POST /x HTTP/1.1\r\nHost: h\r\n\r\n"), 411);
  EXPECT_EQ(ErrorOf("PUT /x HTTP/1.1\r\nHost: h\r\n\r\n"), 411);
  EXPECT_TRUE(ParseRequestHead("GET /x HTTP/1.1\r\nHost: h\r\n\r\n", Limits()).head);
}

TEST(RequestHead, BadSyntaxIs400) {
  const char* bad[] = {
      "GET / HTTP/1.1\nHost: h\r\n\r\n",                 // bare LF
      "GET / HTTP/1.1\r\nHost: h\r\n continued\r\n\r\n",  // obsolete folding
      "GET /  HTTP/1.1\r\nHost: h\r\n\r\n",               // two spaces
      "get / HTTP/1.1\r\nHost: h\r\n\r\n",                // method case
      "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",        // absolute form
      "GET / HTTP/1.1\r\n\r\n",                           // no Host
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",     // two Hosts
      "GET / HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n",    // control character
      "GET /a/../etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n",  // dot segment
      "GET /a/%2e%2e/b HTTP/1.1\r\nHost: h\r\n\r\n",       // encoded dot segment
      "GET /a%00b HTTP/1.1\r\nHost: h\r\n\r\n",            // NUL
      "GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n",             // bad escape
      "GET /a% HTTP/1.1\r\nHost: h\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "GET / FTP/1.1\r\nHost: h\r\n\r\n",
  };
  for (const char* text : bad) EXPECT_EQ(ErrorOf(text), 400) << text;
  EXPECT_EQ(ErrorOf("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
}

TEST(RequestHead, ExpectContinueFlaggedOtherExpectations417) {
  HeadParse p = ParseRequestHead(
      "PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n",
      Limits());
  ASSERT_TRUE(p.head);
  EXPECT_TRUE(p.head->expect_continue);
  EXPECT_EQ(ErrorOf("GET / HTTP/1.1\r\nHost: h\r\nExpect: magic\r\n\r\n"), 417);
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
