#include "agent/copy_wire.h"

#include <cstring>

#include "base/bytes.h"

namespace haven::agent {
namespace {

using repository::ChunkId;
using repository::ChunkType;
using repository::CopyChunk;

void PutLe32(std::string& out, uint32_t v) {
  char b[4] = {static_cast<char>(v & 0xff), static_cast<char>((v >> 8) & 0xff),
               static_cast<char>((v >> 16) & 0xff),
               static_cast<char>((v >> 24) & 0xff)};
  out.append(b, 4);
}

uint32_t GetLe32(std::string_view s, size_t at) {
  return GetU32(reinterpret_cast<const uint8_t*>(s.data() + at));
}

std::string ErrorText(const CopyChunk& chunk) {
  std::string text = chunk.status.message();
  if (text.empty()) text = "damaged";
  if (text.size() > kMaxCopyErrorBytes) text.resize(kMaxCopyErrorBytes);
  return text;
}

// The remote's words, kept printable and short: they end up in reports
// and logs.
std::string PrintableText(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 512))
    out += (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) ? c : '?';
  return out;
}

}  // namespace

size_t ReadEntrySize(const CopyChunk& chunk) {
  return kReadEntryHeader +
         (chunk.status.ok() ? chunk.raw.size() : ErrorText(chunk).size());
}

void AppendReadEntry(std::string& out, const CopyChunk& chunk) {
  if (chunk.status.ok()) {
    out.push_back(0);
    PutLe32(out, static_cast<uint32_t>(chunk.raw.size()));
    out.append(reinterpret_cast<const char*>(chunk.raw.data()),
               chunk.raw.size());
  } else {
    std::string text = ErrorText(chunk);
    out.push_back(1);
    PutLe32(out, static_cast<uint32_t>(text.size()));
    out += text;
  }
}

Result<std::vector<CopyChunk>> ParseReadAnswer(
    std::string_view body, const std::vector<ChunkId>& asked) {
  if (body.size() > kMaxCopyBodyBytes)
    return DataLoss("the chunks answer is larger than " +
                    std::to_string(kMaxCopyBodyBytes >> 20) + " MiB");
  std::vector<CopyChunk> out;
  size_t at = 0;
  while (at < body.size()) {
    const size_t n = out.size();
    const std::string entry = "entry " + std::to_string(n);
    if (n >= asked.size())
      return DataLoss("the chunks answer holds more entries than the " +
                      std::to_string(asked.size()) + " ids asked");
    if (body.size() - at < kReadEntryHeader)
      return DataLoss("the chunks answer ends inside the header of " + entry);
    const uint8_t status = static_cast<uint8_t>(body[at]);
    const uint32_t len = GetLe32(body, at + 1);
    at += kReadEntryHeader;
    if (status > 1)
      return DataLoss(entry + " of the chunks answer has status " +
                      std::to_string(status) + " (0 ok, 1 damaged)");
    const uint32_t limit =
        status == 0 ? kMaxCopyChunkBytes : kMaxCopyErrorBytes;
    if (len > limit)
      return DataLoss(entry + " of the chunks answer claims " +
                      std::to_string(len) + " bytes, over the limit of " +
                      std::to_string(limit));
    if (body.size() - at < len)
      return DataLoss("the chunks answer ends inside " + entry + " (" +
                      std::to_string(len) + " bytes claimed, " +
                      std::to_string(body.size() - at) + " left)");
    CopyChunk c;
    c.id = asked[n];
    std::string_view bytes = body.substr(at, len);
    if (status == 0) {
      c.raw.assign(bytes.begin(), bytes.end());
    } else {
      c.status = DataLoss("chunk " + c.id.Hex() + ": " + PrintableText(bytes));
    }
    out.push_back(std::move(c));
    at += len;
  }
  if (out.empty() && !asked.empty())
    return DataLoss("the chunks answer holds no entry for the " +
                    std::to_string(asked.size()) + " ids asked");
  return out;
}

void AppendPutFrame(std::string& out, ChunkType type, const CopyChunk& chunk) {
  out.push_back(static_cast<char>(type));
  out.append(reinterpret_cast<const char*>(chunk.id.bytes.data()),
             chunk.id.bytes.size());
  PutLe32(out, static_cast<uint32_t>(chunk.raw.size()));
  out.append(reinterpret_cast<const char*>(chunk.raw.data()), chunk.raw.size());
}

Result<std::vector<PutRun>> ParsePutBody(std::string_view body) {
  if (body.empty()) return InvalidArgument("the body holds no chunk frame");
  if (body.size() > kMaxCopyBodyBytes)
    return InvalidArgument("the body is larger than " +
                           std::to_string(kMaxCopyBodyBytes >> 20) + " MiB");
  std::vector<PutRun> runs;
  size_t at = 0, frames = 0;
  while (at < body.size()) {
    const std::string frame = "frame " + std::to_string(frames);
    if (body.size() - at < kPutFrameHeader)
      return InvalidArgument("the body ends inside the header of " + frame);
    const uint8_t type = static_cast<uint8_t>(body[at]);
    if (type > 1)
      return InvalidArgument(frame + " has type " + std::to_string(type) +
                             " (0 data, 1 tree)");
    CopyChunk c;
    std::memcpy(c.id.bytes.data(), body.data() + at + 1, c.id.bytes.size());
    const uint32_t len = GetLe32(body, at + 1 + 32);
    at += kPutFrameHeader;
    if (len > kMaxCopyChunkBytes)
      return InvalidArgument(
          frame + " (chunk " + c.id.Hex() + ") claims " + std::to_string(len) +
          " bytes, over the limit of " + std::to_string(kMaxCopyChunkBytes));
    if (body.size() - at < len)
      return InvalidArgument("the body ends inside " + frame + " (" +
                             std::to_string(len) + " bytes claimed, " +
                             std::to_string(body.size() - at) + " left)");
    if (c.id.IsZero())
      return InvalidArgument(frame + " names the all-zero id (a hole)");
    c.raw.assign(body.begin() + at, body.begin() + at + len);
    at += len;
    const ChunkType t = type == 0 ? ChunkType::kData : ChunkType::kTree;
    if (runs.empty() || runs.back().type != t) runs.push_back({t, {}});
    runs.back().chunks.push_back(std::move(c));
    ++frames;
  }
  return runs;
}

Result<ChunkId> ParseChunkIdHex(std::string_view hex) {
  ChunkId id;
  auto bytes = hex.size() == 64 ? HexDecode(hex) : std::nullopt;
  if (!bytes || bytes->size() != id.bytes.size())
    return InvalidArgument("a chunk id is 64 lower-case hex digits");
  std::memcpy(id.bytes.data(), bytes->data(), id.bytes.size());
  return id;
}

}  // namespace haven::agent
