// Pieces of verified restores that need no libvirt: the screenshot made
// into a PNG (from an untrusted PPM), and the verification record sealed
// beside a point (Repository::WriteVerification, gc removing it with the
// point).
#include <zlib.h>

#include <filesystem>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/gc.h"
#include "restore/screenshot.h"
#include "restore/verify_restore.h"
#include "tests/unit/repository_test_util.h"
#include "tests/unit/test_util.h"

namespace haven {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::StatusIs;
using ::testing::HasSubstr;

uint32_t Be32(const std::string& s, size_t at) {
  return (uint32_t(uint8_t(s[at])) << 24) |
         (uint32_t(uint8_t(s[at + 1])) << 16) |
         (uint32_t(uint8_t(s[at + 2])) << 8) | uint32_t(uint8_t(s[at + 3]));
}

TEST(ScreenshotTest, PpmBecomesAPngWithTheSamePixels) {
  const int w = 3, h = 2;
  std::string pixels;
  for (int i = 0; i < w * h * 3; ++i) pixels.push_back(char(i * 11));
  std::string ppm = "P6\n# QEMU\n3 2\n255\n" + pixels;
  auto png = restore::PpmToPng(ppm);
  ASSERT_THAT(png, IsOk());
  ASSERT_EQ(png->substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  // IHDR: width, height, 8-bit RGB.
  EXPECT_EQ(png->substr(12, 4), "IHDR");
  EXPECT_EQ(Be32(*png, 16), 3u);
  EXPECT_EQ(Be32(*png, 20), 2u);
  EXPECT_EQ((*png)[24], 8);
  EXPECT_EQ((*png)[25], 2);
  // Every chunk's CRC holds; IDAT inflates to the rows behind filter 0.
  size_t at = 8;
  std::string idat;
  while (at + 12 <= png->size()) {
    uint32_t len = Be32(*png, at);
    std::string body = png->substr(at + 4, 4 + len);
    EXPECT_EQ(Be32(*png, at + 8 + len),
              uint32_t(crc32(0, reinterpret_cast<const Bytef*>(body.data()),
                             uInt(body.size()))));
    if (body.substr(0, 4) == "IDAT") idat += body.substr(4);
    at += 12 + len;
  }
  EXPECT_EQ(at, png->size());
  std::string rows(h * (w * 3 + 1), '\0');
  uLongf rlen = rows.size();
  ASSERT_EQ(uncompress(reinterpret_cast<Bytef*>(rows.data()), &rlen,
                       reinterpret_cast<const Bytef*>(idat.data()),
                       uLong(idat.size())),
            Z_OK);
  EXPECT_EQ(rows, std::string(1, '\0') + pixels.substr(0, 9) +
                      std::string(1, '\0') + pixels.substr(9));
}

TEST(ScreenshotTest, BadPpmIsRefusedNamingWhy) {
  EXPECT_THAT(restore::PpmToPng("P5\n1 1\n255\n\0"),
              StatusIs(Code::kInvalidArgument, ::testing::_));
  EXPECT_THAT(restore::PpmToPng("P6\n2 2\n255\nabc"),
              StatusIs(Code::kInvalidArgument, HasSubstr("fewer pixel bytes")));
  EXPECT_THAT(restore::PpmToPng("P6\n99999 2\n255\n"),
              StatusIs(Code::kInvalidArgument, HasSubstr("16384")));
  EXPECT_THAT(restore::PpmToPng("P6\n2 2\n65535\n"),
              StatusIs(Code::kInvalidArgument, ::testing::_));
  EXPECT_THAT(restore::PpmToPng("P6\nx"),
              StatusIs(Code::kInvalidArgument, ::testing::_));
}

class VerificationRecordTest : public testing_util::RepositoryTest {};

TEST_F(VerificationRecordTest, StoredSealedReadBackAndTamperingIsDataLoss) {
  auto repo = OpenRepo(true);
  ASSERT_NE(repo, nullptr);
  const std::string id(32, 'a');
  auto none = repo->ReadVerification(id);
  ASSERT_THAT(none, IsOk());
  EXPECT_FALSE(none->has_value());
  const std::string record = R"({"passed":true,"reason":"secret console"})";
  ASSERT_THAT(repo->WriteVerification(id, record), IsOk());
  auto back = repo->ReadVerification(id);
  ASSERT_THAT(back, IsOk());
  ASSERT_TRUE(back->has_value());
  EXPECT_EQ(**back, record);
  auto ids = repo->VerifiedIds();
  ASSERT_THAT(ids, IsOk());
  EXPECT_EQ(*ids, std::set<std::string>{id});
  // What `haven show` and the API read: no screenshot in the summary, and
  // the PNG only when one was stored.
  EXPECT_EQ(restore::VerificationSummary(*repo, id)["reason"], "secret console");
  EXPECT_TRUE(restore::VerificationSummary(*repo, std::string(32, 'c')).is_null());
  EXPECT_THAT(restore::VerificationScreenshot(*repo, id),
              StatusIs(Code::kNotFound, ::testing::_));
  const std::string png = std::string("\x89PNG\r\n\x1a\n", 8) + "pixels";
  restore::VerifyResult r;
  r.point = id;
  r.screenshot_png = png;
  ASSERT_THAT(repo->WriteVerification(
                  id, restore::VerifyResultJson(r, true).dump()),
              IsOk());
  EXPECT_FALSE(restore::VerificationSummary(*repo, id).contains(
      "screenshot_png_base64"));
  auto shot = restore::VerificationScreenshot(*repo, id);
  ASSERT_THAT(shot, IsOk());
  EXPECT_EQ(*shot, png);
  ASSERT_THAT(repo->WriteVerification(id, record), IsOk());
  // Sealed: the text is not in the file, and it is bound to its id.
  const std::string file = repo_dir_ + "/verified/" + id;
  Bytes raw = testing_util::ReadWholeFile(file);
  EXPECT_EQ(std::string(raw.begin(), raw.end()).find("secret console"),
            std::string::npos);
  const std::string other(32, 'b');
  std::filesystem::copy_file(file, repo_dir_ + "/verified/" + other);
  EXPECT_THAT(repo->ReadVerification(other),
              StatusIs(Code::kDataLoss, ::testing::_));
  testing_util::FlipByte(file, 20);
  EXPECT_THAT(repo->ReadVerification(id),
              StatusIs(Code::kDataLoss, ::testing::_));
  EXPECT_THAT(repo->WriteVerification("not-an-id", record),
              StatusIs(Code::kInvalidArgument, ::testing::_));
  // gc removes the records of points that do not exist.
  repo.reset();
  repository::GcOptions o;
  o.open.lock_wait_seconds = 5;
  ASSERT_THAT(repository::CollectGarbage(repo_dir_, testing_util::kPass, o),
              IsOk());
  EXPECT_FALSE(std::filesystem::exists(file));
  EXPECT_FALSE(std::filesystem::exists(repo_dir_ + "/verified/" + other));
}

}  // namespace
}  // namespace haven
