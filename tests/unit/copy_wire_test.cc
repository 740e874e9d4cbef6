// The binary bodies of the copy routes (agent/copy_wire.h): read answers
// and put bodies round-trip, and truncated, oversized or malformed ones are
// refused with what is wrong named.
#include "agent/copy_wire.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/unit/test_util.h"

namespace haven::agent {
namespace {

using repository::ChunkId;
using repository::ChunkType;
using repository::CopyChunk;
using ::testing::HasSubstr;
using testing_util::IsOk;
using testing_util::StatusIs;

ChunkId Id(uint8_t b) {
  ChunkId id;
  id.bytes.fill(b);
  return id;
}

CopyChunk Ok(uint8_t b, size_t n) {
  CopyChunk c;
  c.id = Id(b);
  c.raw.assign(n, b);
  return c;
}

CopyChunk Damaged(uint8_t b, std::string why) {
  CopyChunk c;
  c.id = Id(b);
  c.status = DataLoss(std::move(why));
  return c;
}

void SetLe32(std::string& s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    s[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

TEST(CopyWireTest, ReadAnswerRoundTrips) {
  std::vector<CopyChunk> chunks = {Ok(1, 100),
                                   Damaged(2, "pack p, chunk x: bad tag"),
                                   Ok(3, 0), Ok(4, 65536)};
  std::string body;
  size_t expected = 0;
  for (const CopyChunk& c : chunks) {
    AppendReadEntry(body, c);
    expected += ReadEntrySize(c);
  }
  EXPECT_EQ(body.size(), expected);
  std::vector<ChunkId> asked = {Id(1), Id(2), Id(3), Id(4)};
  auto got = ParseReadAnswer(body, asked);
  ASSERT_THAT(got, IsOk());
  ASSERT_EQ(got->size(), 4u);
  EXPECT_EQ((*got)[0].raw, chunks[0].raw);
  EXPECT_EQ((*got)[0].id, Id(1));
  EXPECT_THAT((*got)[1].status,
              StatusIs(Code::kDataLoss, HasSubstr("bad tag")));
  EXPECT_TRUE((*got)[1].raw.empty());
  EXPECT_THAT((*got)[2].status, IsOk());
  EXPECT_TRUE((*got)[2].raw.empty());
  EXPECT_EQ((*got)[3].raw.size(), 65536u);
}

TEST(CopyWireTest, ShortenedReadAnswerGivesThePrefix) {
  std::string body;
  AppendReadEntry(body, Ok(1, 10));
  auto got = ParseReadAnswer(body, {Id(1), Id(2), Id(3)});
  ASSERT_THAT(got, IsOk());
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].id, Id(1));
}

TEST(CopyWireTest, ReadAnswerRefusesTruncationAndExcess) {
  std::string body;
  AppendReadEntry(body, Ok(1, 10));
  // Cut inside the bytes, inside the header, and nothing at all.
  EXPECT_THAT(ParseReadAnswer(body.substr(0, body.size() - 1), {Id(1)}),
              StatusIs(Code::kDataLoss, HasSubstr("ends inside entry 0")));
  EXPECT_THAT(ParseReadAnswer(body.substr(0, 3), {Id(1)}),
              StatusIs(Code::kDataLoss, HasSubstr("inside the header")));
  EXPECT_THAT(ParseReadAnswer("", {Id(1)}),
              StatusIs(Code::kDataLoss, HasSubstr("no entry")));
  // More entries than ids asked.
  std::string two = body;
  AppendReadEntry(two, Ok(2, 1));
  EXPECT_THAT(ParseReadAnswer(two, {Id(1)}),
              StatusIs(Code::kDataLoss, HasSubstr("more entries")));
}

TEST(CopyWireTest, ReadAnswerRefusesBadStatusAndOversizedLengths) {
  std::string body;
  AppendReadEntry(body, Ok(1, 10));
  std::string bad = body;
  bad[0] = 7;
  EXPECT_THAT(ParseReadAnswer(bad, {Id(1)}),
              StatusIs(Code::kDataLoss, HasSubstr("status 7")));
  // A length over the chunk limit is refused before any allocation,
  // even when that many bytes would not follow.
  std::string huge = body;
  SetLe32(huge, 1, kMaxCopyChunkBytes + 1);
  EXPECT_THAT(ParseReadAnswer(huge, {Id(1)}),
              StatusIs(Code::kDataLoss, HasSubstr("over the limit")));
  SetLe32(huge, 1, 0xffffffffu);
  EXPECT_THAT(ParseReadAnswer(huge, {Id(1)}),
              StatusIs(Code::kDataLoss, HasSubstr("over the limit")));
  // An error text over its own limit.
  std::string err;
  AppendReadEntry(err, Damaged(1, "x"));
  SetLe32(err, 1, kMaxCopyErrorBytes + 1);
  err.append(kMaxCopyErrorBytes + 1, 'x');
  EXPECT_THAT(ParseReadAnswer(err, {Id(1)}),
              StatusIs(Code::kDataLoss, HasSubstr("over the limit")));
}

TEST(CopyWireTest, DamagedTextIsCutAndMadePrintable) {
  std::string body;
  AppendReadEntry(body, Damaged(1, std::string(10000, 'e')));
  EXPECT_EQ(body.size(), kReadEntryHeader + kMaxCopyErrorBytes);
  body.clear();
  AppendReadEntry(body, Damaged(1, "bad\n\x1b[2Jtext"));
  auto got = ParseReadAnswer(body, {Id(1)});
  ASSERT_THAT(got, IsOk());
  EXPECT_THAT((*got)[0].status.message(), HasSubstr("bad??[2Jtext"));
}

TEST(CopyWireTest, PutBodyRoundTripsInRuns) {
  std::string body;
  AppendPutFrame(body, ChunkType::kData, Ok(1, 5));
  AppendPutFrame(body, ChunkType::kData, Ok(2, 0));
  AppendPutFrame(body, ChunkType::kTree, Ok(3, 64));
  AppendPutFrame(body, ChunkType::kData, Ok(4, 7));
  EXPECT_EQ(body.size(), PutFrameSize(5) + PutFrameSize(0) + PutFrameSize(64) +
                             PutFrameSize(7));
  auto runs = ParsePutBody(body);
  ASSERT_THAT(runs, IsOk());
  ASSERT_EQ(runs->size(), 3u);
  EXPECT_EQ((*runs)[0].type, ChunkType::kData);
  ASSERT_EQ((*runs)[0].chunks.size(), 2u);
  EXPECT_EQ((*runs)[0].chunks[0].id, Id(1));
  EXPECT_EQ((*runs)[0].chunks[0].raw, Bytes(5, 1));
  EXPECT_TRUE((*runs)[0].chunks[1].raw.empty());
  EXPECT_EQ((*runs)[1].type, ChunkType::kTree);
  EXPECT_EQ((*runs)[1].chunks[0].raw.size(), 64u);
  EXPECT_EQ((*runs)[2].chunks[0].id, Id(4));
}

TEST(CopyWireTest, PutBodyRefusesTruncatedAndMalformedFrames) {
  std::string body;
  AppendPutFrame(body, ChunkType::kData, Ok(1, 5));
  EXPECT_THAT(ParsePutBody(""),
              StatusIs(Code::kInvalidArgument, HasSubstr("no chunk frame")));
  EXPECT_THAT(
      ParsePutBody(body.substr(0, body.size() - 1)),
      StatusIs(Code::kInvalidArgument, HasSubstr("ends inside frame 0")));
  EXPECT_THAT(ParsePutBody(body.substr(0, 20)),
              StatusIs(Code::kInvalidArgument, HasSubstr("inside the header")));
  std::string second = body + body.substr(0, kPutFrameHeader - 1);
  EXPECT_THAT(ParsePutBody(second),
              StatusIs(Code::kInvalidArgument, HasSubstr("header of frame 1")));
  std::string bad = body;
  bad[0] = 2;
  EXPECT_THAT(ParsePutBody(bad),
              StatusIs(Code::kInvalidArgument, HasSubstr("type 2")));
  std::string hole;
  AppendPutFrame(hole, ChunkType::kData, Ok(0, 5));
  EXPECT_THAT(ParsePutBody(hole),
              StatusIs(Code::kInvalidArgument, HasSubstr("all-zero id")));
}

TEST(CopyWireTest, PutBodyRefusesOversizedFramesAndBodies) {
  std::string body;
  AppendPutFrame(body, ChunkType::kData, Ok(1, 5));
  SetLe32(body, 33, kMaxCopyChunkBytes + 1);
  EXPECT_THAT(ParsePutBody(body),
              StatusIs(Code::kInvalidArgument, HasSubstr("over the limit")));
  SetLe32(body, 33, 0xffffffffu);
  EXPECT_THAT(ParsePutBody(body),
              StatusIs(Code::kInvalidArgument, HasSubstr("over the limit")));
  std::string big(kMaxCopyBodyBytes + 1, '\0');
  EXPECT_THAT(ParsePutBody(big), StatusIs(Code::kInvalidArgument,
                                          HasSubstr("larger than 64 MiB")));
}

TEST(CopyWireTest, ChunkIdHex) {
  EXPECT_THAT(ParseChunkIdHex(Id(0xab).Hex()), IsOk());
  EXPECT_EQ(*ParseChunkIdHex(Id(0xab).Hex()), Id(0xab));
  EXPECT_THAT(ParseChunkIdHex("ab"),
              StatusIs(Code::kInvalidArgument, HasSubstr("64")));
  EXPECT_THAT(ParseChunkIdHex(std::string(64, 'G')),
              StatusIs(Code::kInvalidArgument, HasSubstr("hex")));
  EXPECT_THAT(ParseChunkIdHex(std::string(64, 'A')),
              StatusIs(Code::kInvalidArgument, HasSubstr("hex")));
}

}  // namespace
}  // namespace haven::agent
