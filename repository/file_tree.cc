#include "repository/file_tree.h"

#include <cstring>
#include <functional>

#include "repository/repository.h"

namespace haven::repository {
namespace {

void Put8(Bytes& out, uint8_t v) { out.push_back(v); }
void Put16(Bytes& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}
void PutStr(Bytes& out, std::string_view s) {
  out.insert(out.end(), s.begin(), s.end());
}

// Bounds-checked reads over one record body.
class Reader {
 public:
  explicit Reader(ByteSpan b) : b_(b) {}
  bool ok() const { return ok_; }
  bool done() const { return pos_ == b_.size(); }
  uint8_t U8() { return Need(1) ? b_[pos_++] : 0; }
  uint16_t U16() {
    if (!Need(2)) return 0;
    uint16_t v = static_cast<uint16_t>(b_[pos_] | (b_[pos_ + 1] << 8));
    pos_ += 2;
    return v;
  }
  uint32_t U32() {
    if (!Need(4)) return 0;
    uint32_t v = GetU32(b_.data() + pos_);
    pos_ += 4;
    return v;
  }
  uint64_t U64() {
    if (!Need(8)) return 0;
    uint64_t v = GetU64(b_.data() + pos_);
    pos_ += 8;
    return v;
  }
  std::string Str(uint64_t n) {
    if (!Need(n)) return {};
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  bool Need(uint64_t n) {
    if (!ok_ || n > b_.size() - pos_) ok_ = false;
    return ok_;
  }
  ByteSpan b_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace

uint64_t FileRecord::DataBytes() const {
  uint64_t n = 0;
  for (const auto& e : extents) n += e.second;
  return n;
}

const char* FileTypeName(FileType t) {
  switch (t) {
    case FileType::kFile:
      return "file";
    case FileType::kDir:
      return "dir";
    case FileType::kSymlink:
      return "symlink";
    case FileType::kFifo:
      return "fifo";
    case FileType::kCharDev:
      return "chardev";
    case FileType::kBlockDev:
      return "blockdev";
  }
  return "other";
}

void AppendCatalogHeader(Bytes& out) {
  out.insert(out.end(), kCatalogMagic, kCatalogMagic + 4);
  out.push_back(kCatalogVersion);
}

Status AppendRecord(const FileRecord& r, Bytes& out) {
  if (r.path.size() > 0xffff || r.user.size() > 0xff ||
      r.group.size() > 0xff || r.xattrs.size() > 0xffff ||
      r.target.size() > kMaxRecordBytes / 2)
    return InvalidArgument("entry " + r.path + ": a field is too long");
  const size_t start = out.size();
  PutU32(out, 0);  // body length, set below
  Put8(out, static_cast<uint8_t>(r.type));
  Put8(out, r.flags);
  Put16(out, static_cast<uint16_t>(r.path.size()));
  PutStr(out, r.path);
  PutU32(out, r.mode);
  PutU32(out, r.uid);
  PutU32(out, r.gid);
  Put8(out, static_cast<uint8_t>(r.user.size()));
  PutStr(out, r.user);
  Put8(out, static_cast<uint8_t>(r.group.size()));
  PutStr(out, r.group);
  PutU64(out, static_cast<uint64_t>(r.atime_ns));
  PutU64(out, static_cast<uint64_t>(r.mtime_ns));
  PutU64(out, static_cast<uint64_t>(r.ctime_ns));
  PutU64(out, r.size);
  PutU64(out, r.inode);
  PutU64(out, r.dev);
  PutU32(out, r.nlink);
  PutU64(out, r.rdev);
  PutU32(out, static_cast<uint32_t>(r.target.size()));
  PutStr(out, r.target);
  Put16(out, static_cast<uint16_t>(r.xattrs.size()));
  for (const auto& [name, value] : r.xattrs) {
    if (name.size() > 0xffff || value.size() > kMaxRecordBytes / 4) {
      out.resize(start);
      return InvalidArgument("entry " + r.path + ": xattr too long");
    }
    Put16(out, static_cast<uint16_t>(name.size()));
    PutStr(out, name);
    PutU32(out, static_cast<uint32_t>(value.size()));
    PutStr(out, value);
  }
  PutU32(out, static_cast<uint32_t>(r.extents.size()));
  for (const auto& [offset, length] : r.extents) {
    PutU64(out, offset);
    PutU64(out, length);
  }
  PutU64(out, r.content_first);
  PutU64(out, r.content_count);
  const size_t body = out.size() - start - 4;
  if (body > kMaxRecordBytes) {
    out.resize(start);
    return InvalidArgument("entry " + r.path + ": metadata larger than " +
                           std::to_string(kMaxRecordBytes) + " bytes");
  }
  const uint32_t len = static_cast<uint32_t>(body);
  std::memcpy(out.data() + start, &len, 4);  // little-endian hosts only
  return OkStatus();
}

Result<FileRecord> DecodeRecord(ByteSpan body, uint64_t content_chunks) {
  Reader in(body);
  FileRecord r;
  const uint8_t type = in.U8();
  r.flags = in.U8();
  r.path = in.Str(in.U16());
  r.mode = in.U32();
  r.uid = in.U32();
  r.gid = in.U32();
  r.user = in.Str(in.U8());
  r.group = in.Str(in.U8());
  r.atime_ns = static_cast<int64_t>(in.U64());
  r.mtime_ns = static_cast<int64_t>(in.U64());
  r.ctime_ns = static_cast<int64_t>(in.U64());
  r.size = in.U64();
  r.inode = in.U64();
  r.dev = in.U64();
  r.nlink = in.U32();
  r.rdev = in.U64();
  r.target = in.Str(in.U32());
  const uint16_t xattrs = in.U16();
  for (uint16_t i = 0; i < xattrs && in.ok(); ++i) {
    std::string name = in.Str(in.U16());
    std::string value = in.Str(in.U32());
    r.xattrs.emplace_back(std::move(name), std::move(value));
  }
  const uint32_t extents = in.U32();
  // Each extent takes 16 bytes of the body: a count beyond that is a lie.
  if (in.ok() && extents > body.size() / 16)
    return DataLoss("catalog entry " + r.path + ": impossible extent count");
  uint64_t end = 0;
  for (uint32_t i = 0; i < extents && in.ok(); ++i) {
    uint64_t offset = in.U64(), length = in.U64();
    if (in.ok() && (length == 0 || offset < end || offset > r.size ||
                    length > r.size - offset))
      return DataLoss("catalog entry " + r.path +
                      ": a data range lies outside the file or out of order");
    end = offset + length;
    r.extents.emplace_back(offset, length);
  }
  r.content_first = in.U64();
  r.content_count = in.U64();
  if (!in.ok() || !in.done())
    return DataLoss("catalog entry " + r.path + ": truncated or too long");
  if (type < 1 || type > 6)
    return DataLoss("catalog entry " + r.path + ": unknown type " +
                    std::to_string(type));
  r.type = static_cast<FileType>(type);
  if (r.flags & ~(kFlagPartial | kFlagHardLink | kFlagChanged))
    return DataLoss("catalog entry " + r.path + ": unknown flags");
  if (!IsCatalogPath(r.path))
    return DataLoss("catalog entry: malformed path");
  if (r.content_first > content_chunks ||
      r.content_count > content_chunks - r.content_first)
    return DataLoss("catalog entry " + r.path +
                    ": content lies beyond the content list");
  if (r.type != FileType::kFile &&
      (r.content_count != 0 || !r.extents.empty()))
    return DataLoss("catalog entry " + r.path + ": content on a non-file");
  if (r.content_count > r.DataBytes())
    return DataLoss("catalog entry " + r.path +
                    ": more chunks than content bytes");
  if (r.hard_link() && (r.type != FileType::kFile || r.content_count != 0 ||
                        !IsCatalogPath(r.target)))
    return DataLoss("catalog entry " + r.path + ": malformed hard link");
  return r;
}

Status CatalogParser::Feed(
    ByteSpan data, const std::function<Status(FileRecord&&)>& on_record) {
  pending_.insert(pending_.end(), data.begin(), data.end());
  size_t pos = 0;
  if (!header_) {
    if (pending_.size() < 5) return OkStatus();
    if (std::memcmp(pending_.data(), kCatalogMagic, 4) != 0)
      return DataLoss("catalog: bad magic");
    if (pending_[4] != kCatalogVersion)
      return DataLoss("catalog: unsupported version " +
                      std::to_string(pending_[4]));
    header_ = true;
    pos = 5;
  }
  Status s;
  while (pending_.size() - pos >= 4) {
    const uint32_t len = GetU32(pending_.data() + pos);
    if (len > kMaxRecordBytes)
      return DataLoss("catalog: record " + std::to_string(records_) +
                      " claims " + std::to_string(len) + " bytes");
    if (pending_.size() - pos - 4 < len) break;
    HAVEN_ASSIGN_OR_RETURN(
        FileRecord r,
        DecodeRecord(ByteSpan(pending_.data() + pos + 4, len),
                     content_chunks_));
    pos += 4 + len;
    ++records_;
    s = on_record(std::move(r));
    if (!s.ok()) break;
  }
  pending_.erase(pending_.begin(), pending_.begin() + pos);
  return s;
}

Status CatalogParser::Finish() const {
  if (!header_) return DataLoss("catalog: no header");
  if (!pending_.empty())
    return DataLoss("catalog: ends inside a record");
  return OkStatus();
}

bool IsCatalogPath(std::string_view path) {
  if (path == "/") return true;
  if (path.empty() || path[0] != '/' || path.back() == '/') return false;
  return path.find("//") == std::string_view::npos;
}

std::string_view ParentPath(std::string_view path) {
  if (path == "/" || path.empty()) return "";
  size_t slash = path.rfind('/');
  return slash == 0 ? std::string_view("/") : path.substr(0, slash);
}

std::string_view BaseName(std::string_view path) {
  if (path == "/") return path;
  return path.substr(path.rfind('/') + 1);
}

Status ReadStream(const Repository& repo, const DiskManifest& stream,
                  const std::function<Status(ByteSpan)>& fn) {
  ReadContext ctx;
  Bytes chunk;
  uint64_t total = 0, next = 0;
  // WalkTree skips holes: a gap in the indexes is a chunk a repair cleared.
  auto lost = [&](uint64_t index) {
    return DataLoss(stream.name + " chunk " + std::to_string(index) +
                    " was lost (cleared by a repair)");
  };
  HAVEN_RETURN_IF_ERROR(WalkTree(
      stream.tree, repo.TreeNodeLoader(ctx),
      [&](uint64_t index, const ChunkId& id) -> Status {
        if (index != next || id.IsZero()) return lost(next);
        ++next;
        HAVEN_RETURN_IF_ERROR(repo.ReadChunk(ChunkType::kData, id, chunk, ctx));
        total += chunk.size();
        if (total > stream.size)
          return DataLoss(stream.name + ": longer than its manifest says");
        return fn(chunk);
      }));
  if (next != stream.tree.count) return lost(next);
  if (total != stream.size)
    return DataLoss(stream.name + ": " + std::to_string(total) +
                    " bytes, its manifest says " + std::to_string(stream.size));
  return OkStatus();
}

Status ForEachRecord(const Repository& repo, const Manifest& m,
                     const std::function<Status(FileRecord&&)>& fn) {
  const DiskManifest* catalog = m.FindStream("catalog");
  const DiskManifest* content = m.FindStream("content");
  if (!catalog || !content)
    return InvalidArgument("snapshot " + m.id.substr(0, 8) +
                           " is not a file backup");
  CatalogParser parser(content->tree.count);
  HAVEN_RETURN_IF_ERROR(ReadStream(
      repo, *catalog, [&](ByteSpan b) { return parser.Feed(b, fn); }));
  return parser.Finish();
}

}  // namespace haven::repository
