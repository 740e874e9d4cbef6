// Fuzzes the catalog of file backups (repository/file_tree.h).
//
// Input: byte 0 picks the content stream's chunk count, byte 1 seeds the
// piece sizes; the rest is a catalog, fed to CatalogParser in pieces of 1
// to 64 bytes and, separately, all at once (both must give the same
// records and the same status), and also decoded as one record body by
// DecodeRecord. Every record decoded must satisfy what the format promises
// (well-formed paths, extents sorted and inside size, content inside the
// stream, ...), re-encode with AppendRecord to the very bytes it came from
// (the encoding is canonical), and decode again to the same record.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "repository/file_tree.h"

namespace {

using haven::Bytes;
using haven::ByteSpan;
using haven::Status;
using haven::repository::FileRecord;
using haven::repository::FileType;

bool Same(const FileRecord& a, const FileRecord& b) {
  return a.type == b.type && a.flags == b.flags && a.path == b.path && a.mode == b.mode &&
         a.uid == b.uid && a.gid == b.gid && a.user == b.user && a.group == b.group &&
         a.atime_ns == b.atime_ns && a.mtime_ns == b.mtime_ns && a.ctime_ns == b.ctime_ns &&
         a.size == b.size && a.inode == b.inode && a.dev == b.dev && a.nlink == b.nlink &&
         a.rdev == b.rdev && a.target == b.target && a.xattrs == b.xattrs &&
         a.extents == b.extents && a.content_first == b.content_first &&
         a.content_count == b.content_count;
}

// What DecodeRecord promises about every record it returns.
void CheckInvariants(const FileRecord& r, uint64_t chunks) {
  using namespace haven::repository;
  if (!IsCatalogPath(r.path)) __builtin_trap();
  if (static_cast<uint8_t>(r.type) < 1 || static_cast<uint8_t>(r.type) > 6) __builtin_trap();
  if (r.flags & ~(kFlagPartial | kFlagHardLink | kFlagChanged)) __builtin_trap();
  uint64_t end = 0;
  for (const auto& [offset, length] : r.extents) {
    if (length == 0 || offset < end || offset > r.size || length > r.size - offset)
      __builtin_trap();
    end = offset + length;
  }
  if (r.content_first > chunks || r.content_count > chunks - r.content_first) __builtin_trap();
  if (r.type != FileType::kFile && (r.content_count != 0 || !r.extents.empty()))
    __builtin_trap();
  if (r.content_count > r.DataBytes()) __builtin_trap();
  if (r.hard_link() &&
      (r.type != FileType::kFile || r.content_count != 0 || !IsCatalogPath(r.target)))
    __builtin_trap();
}

// `body`: the bytes `r` was decoded from (without its length prefix).
void CheckRoundTrip(const FileRecord& r, ByteSpan body, uint64_t chunks) {
  using namespace haven::repository;
  CheckInvariants(r, chunks);
  Bytes out;
  Status s = AppendRecord(r, out);
  if (!s.ok()) {
    // The encoder is stricter than the decoder only here.
    bool big_xattr = false;
    for (const auto& x : r.xattrs) big_xattr |= x.second.size() > kMaxRecordBytes / 4;
    if (r.target.size() > kMaxRecordBytes / 2 || big_xattr) return;
    __builtin_trap();
  }
  if (out.size() < 4 || haven::GetU32(out.data()) != out.size() - 4) __builtin_trap();
  ByteSpan again(out.data() + 4, out.size() - 4);
  if (again.size() != body.size() || std::memcmp(again.data(), body.data(), body.size()) != 0)
    __builtin_trap();  // not the bytes it was decoded from
  auto d = DecodeRecord(again, chunks);
  if (!d.ok() || !Same(*d, r)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace haven::repository;
  if (size < 2) return 0;
  const uint64_t chunks = data[0] == 0xff ? UINT64_MAX : data[0] & 0x80 ? data[0] << 8 : data[0];
  uint32_t seed = data[1];
  const ByteSpan in(data + 2, size - 2);

  // All at once: each record with the bytes it came from.
  std::vector<FileRecord> whole_records;
  CatalogParser whole(chunks);
  Status whole_status = whole.Feed(in, [&](FileRecord&& r) {
    whole_records.push_back(std::move(r));
    return haven::OkStatus();
  });
  if (whole_status.ok()) whole_status = whole.Finish();
  if (whole.records() != whole_records.size()) __builtin_trap();

  // In pieces.
  std::vector<FileRecord> piece_records;
  CatalogParser pieces(chunks);
  Status piece_status;
  for (size_t pos = 0; pos < in.size() && piece_status.ok();) {
    seed = seed * 1103515245u + 12345u;
    const size_t n = std::min<size_t>(1 + (seed >> 16) % 64, in.size() - pos);
    piece_status = pieces.Feed(in.subspan(pos, n), [&](FileRecord&& r) {
      piece_records.push_back(std::move(r));
      return haven::OkStatus();
    });
    pos += n;
  }
  if (piece_status.ok()) piece_status = pieces.Finish();
  if (piece_status.code() != whole_status.code() ||
      piece_status.message() != whole_status.message())
    __builtin_trap();
  if (piece_records.size() != whole_records.size()) __builtin_trap();
  for (size_t i = 0; i < whole_records.size(); ++i)
    if (!Same(piece_records[i], whole_records[i])) __builtin_trap();

  // Each record's body, found again from the length prefixes (the parser
  // consumed them in order after the 5-byte header).
  size_t pos = 5;
  for (const FileRecord& r : whole_records) {
    if (pos + 4 > in.size()) __builtin_trap();
    const uint32_t len = haven::GetU32(in.data() + pos);
    if (pos + 4 + len > in.size()) __builtin_trap();
    CheckRoundTrip(r, in.subspan(pos + 4, len), chunks);
    pos += 4 + len;
  }

  // The whole input as one record body.
  auto one = DecodeRecord(in, chunks);
  if (one.ok()) CheckRoundTrip(*one, in, chunks);
  return 0;
}
