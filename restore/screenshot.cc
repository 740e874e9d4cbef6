#include "restore/screenshot.h"

#include <zlib.h>

#include <cctype>
#include <cstdint>
#include <vector>

namespace haven::restore {
namespace {

void Be32(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
}

void Chunk(std::string& out, const char* type, const std::string& data) {
  Be32(out, static_cast<uint32_t>(data.size()));
  std::string body = std::string(type, 4) + data;
  out += body;
  Be32(out, static_cast<uint32_t>(
                ::crc32(0, reinterpret_cast<const Bytef*>(body.data()),
                        static_cast<uInt>(body.size()))));
}

// The next whitespace-separated header field of a PPM (comments skipped).
bool Field(const std::string& s, size_t& pos, uint64_t* value) {
  for (;;) {
    while (pos < s.size() && std::isspace(static_cast<unsigned char>(s[pos])))
      ++pos;
    if (pos < s.size() && s[pos] == '#') {
      while (pos < s.size() && s[pos] != '\n') ++pos;
      continue;
    }
    break;
  }
  size_t start = pos;
  uint64_t v = 0;
  while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos])) &&
         pos - start < 9)
    v = v * 10 + static_cast<uint64_t>(s[pos++] - '0');
  *value = v;
  return pos > start;
}

}  // namespace

Result<std::string> PpmToPng(const std::string& ppm) {
  if (ppm.size() < 2 || ppm[0] != 'P' || ppm[1] != '6')
    return InvalidArgument("the screenshot is not a binary PPM (P6)");
  size_t pos = 2;
  uint64_t w = 0, h = 0, maxval = 0;
  if (!Field(ppm, pos, &w) || !Field(ppm, pos, &h) ||
      !Field(ppm, pos, &maxval) || pos >= ppm.size() ||
      !std::isspace(static_cast<unsigned char>(ppm[pos])))
    return InvalidArgument("the screenshot's PPM header does not parse");
  ++pos;  // the single whitespace before the pixels
  if (w == 0 || h == 0 || w > 16384 || h > 16384 || maxval != 255)
    return InvalidArgument("the screenshot is " + std::to_string(w) + "x" +
                           std::to_string(h) + " with maxval " +
                           std::to_string(maxval) +
                           "; 1..16384 pixels each way and 255 are read");
  if (ppm.size() - pos < w * h * 3)
    return InvalidArgument(
        "the screenshot has fewer pixel bytes than its "
        "header announces");
  // Rows, each after filter byte 0 (none).
  std::string raw;
  raw.reserve((w * 3 + 1) * h);
  for (uint64_t y = 0; y < h; ++y) {
    raw.push_back('\0');
    raw.append(ppm, pos + y * w * 3, w * 3);
  }
  uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
  std::vector<Bytef> z(zlen);
  if (compress2(z.data(), &zlen, reinterpret_cast<const Bytef*>(raw.data()),
                static_cast<uLong>(raw.size()), 6) != Z_OK)
    return Internal("compressing the screenshot failed");
  std::string png = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  Be32(ihdr, static_cast<uint32_t>(w));
  Be32(ihdr, static_cast<uint32_t>(h));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB, no interlace
  Chunk(png, "IHDR", ihdr);
  Chunk(png, "IDAT", std::string(reinterpret_cast<char*>(z.data()), zlen));
  Chunk(png, "IEND", "");
  return png;
}

}  // namespace haven::restore
