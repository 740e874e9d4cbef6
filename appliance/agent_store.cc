#include "appliance/agent_store.h"

#include <openssl/evp.h>
#include <time.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "base/bytes.h"
#include "base/json.h"
#include "base/time.h"
#include "repository/chunk_tree.h"
#include "repository/compression.h"
#include "repository/file_tree.h"

namespace haven::appliance {
namespace {

using nlohmann::json;
using repository::ChunkId;
using repository::ChunkType;
using repository::Repository;

constexpr size_t kIdBytes = 32;
// upload_id[32] raw_len:u32 codec:u8 data_len:u32
constexpr size_t kFrameHeader = kIdBytes + 4 + 1 + 4;
constexpr uint8_t kCodecPlain = 0, kCodecZstd = 1;
// The codec byte's flag for a chunk-list tree node (docs/agents.md).
constexpr uint8_t kTreeFlag = 0x10;
// agent_chunks.kind
constexpr int64_t kKindData = 0, kKindTree = 1;
// A VM commit's body: the manifest names every disk and config file.
constexpr size_t kMaxVmCommitBytes = 1 << 20;
// Rows per SQL statement (SQLite's older limit is 999 parameters).
constexpr size_t kLookupBatch = 500;
constexpr size_t kInsertBatch = 120;  // 8 parameters a row (<= 999)
constexpr size_t kMaxNameBytes = 255;
constexpr size_t kMaxPaths = 10000, kMaxNotes = 2000, kMaxTextBytes = 4096;
// A commit's JSON (names, paths, notes, figures): parsed whole, so bounded
// well below the body's 64 MiB.
constexpr size_t kMaxCommitJsonBytes = 256 << 10;

constexpr const char* kTables = R"sql(
CREATE TABLE IF NOT EXISTS agent_chunks (
  agent_id TEXT NOT NULL,
  upload_id BLOB NOT NULL,
  chunk_id BLOB NOT NULL,
  raw_size INTEGER NOT NULL,
  kind INTEGER NOT NULL DEFAULT 0,
  tree_height INTEGER NOT NULL DEFAULT 0,
  tree_min INTEGER NOT NULL DEFAULT 0,
  tree_max INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (agent_id, upload_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agent_commits (
  agent_id TEXT NOT NULL,
  upload_id TEXT NOT NULL,
  repository TEXT NOT NULL,
  point_id TEXT NOT NULL,
  name TEXT NOT NULL,
  time TEXT NOT NULL,
  committed INTEGER NOT NULL,
  PRIMARY KEY (agent_id, upload_id)) WITHOUT ROWID;
)sql";

std::string Sha256(ByteSpan data) {
  std::string out(32, '\0');
  unsigned int len = 0;
  // EVP_Digest cannot fail for SHA-256 with a valid buffer but a NULL
  // engine; an impossible failure leaves zeros, which no frame matches.
  EVP_Digest(data.data(), data.size(),
             reinterpret_cast<unsigned char*>(out.data()), &len, EVP_sha256(),
             nullptr);
  return out;
}

std::string Hex(std::string_view raw) { return HexEncode(AsBytes(raw)); }

ChunkId ToChunkId(std::string_view raw) {
  ChunkId id;
  std::copy(raw.begin(), raw.begin() + kIdBytes, id.bytes.begin());
  return id;
}

std::string_view RawOf(const ChunkId& id) {
  return {reinterpret_cast<const char*>(id.bytes.data()), id.bytes.size()};
}

struct Frame {
  std::string_view upload_id;  // 32 raw bytes
  uint32_t raw_len = 0;
  uint8_t codec = 0;  // without the tree flag
  bool tree = false;  // a chunk-list tree node of upload ids
  ByteSpan data;
};

std::string FrameName(size_t k, const Frame& f) {
  return (f.tree ? "tree node " : "chunk ") + std::to_string(k) + " (" +
         Hex(f.upload_id) + ")";
}

// Splits an upload's body into frames, bounding every length.
Result<std::vector<Frame>> ParseFrames(std::string_view body) {
  std::vector<Frame> frames;
  const auto* p = reinterpret_cast<const uint8_t*>(body.data());
  size_t pos = 0;
  uint64_t raw_total = 0;
  while (pos < body.size()) {
    const size_t k = frames.size();
    if (body.size() - pos < kFrameHeader)
      return InvalidArgument("chunk " + std::to_string(k) +
                             ": the body ends inside its frame header (" +
                             std::to_string(kFrameHeader) + " bytes)");
    Frame f;
    f.upload_id = body.substr(pos, kIdBytes);
    f.raw_len = GetU32(p + pos + kIdBytes);
    const uint8_t codec_byte = p[pos + kIdBytes + 4];
    f.codec = codec_byte & 0x0f;
    f.tree = (codec_byte & kTreeFlag) != 0;
    const uint32_t data_len = GetU32(p + pos + kIdBytes + 5);
    pos += kFrameHeader;
    if (f.raw_len == 0 || f.raw_len > kMaxChunkRawBytes)
      return InvalidArgument(FrameName(k, f) + ": raw_len " +
                             std::to_string(f.raw_len) + " is not from 1 to " +
                             std::to_string(kMaxChunkRawBytes));
    if ((codec_byte & ~(kTreeFlag | 0x0f)) != 0 ||
        (f.codec != kCodecPlain && f.codec != kCodecZstd))
      return InvalidArgument(FrameName(k, f) + ": unknown codec byte " +
                             std::to_string(codec_byte) +
                             " (0 plain, 1 zstd, plus 0x10 for a tree node)");
    if (f.tree && (f.raw_len % kIdBytes != 0 ||
                   f.raw_len > repository::kTreeFanout * kIdBytes))
      return InvalidArgument(FrameName(k, f) + ": raw_len " +
                             std::to_string(f.raw_len) + " is not 1 to " +
                             std::to_string(repository::kTreeFanout) +
                             " ids of 32 bytes");
    if (data_len > body.size() - pos)
      return InvalidArgument(FrameName(k, f) + ": data_len " +
                             std::to_string(data_len) +
                             " runs past the end of the body");
    if (f.codec == kCodecPlain && data_len != f.raw_len)
      return InvalidArgument(FrameName(k, f) +
                             ": a plain chunk's data_len must equal raw_len");
    raw_total += f.raw_len;
    if (raw_total > kMaxBatchRawBytes)
      return InvalidArgument("the chunks of one upload may hold at most " +
                             std::to_string(kMaxBatchRawBytes >> 20) +
                             " MiB decoded; send fewer at once");
    f.data = ByteSpan(p + pos, data_len);
    pos += data_len;
    frames.push_back(f);
  }
  if (frames.empty()) return InvalidArgument("the upload holds no chunk");
  return frames;
}

// A frame's plain bytes: the data itself, or decompressed into `scratch`.
Result<ByteSpan> Decode(const Frame& f, repository::Decompressor& d,
                        Bytes& scratch, const std::string& what) {
  if (f.codec == kCodecPlain) return f.data;
  scratch.resize(f.raw_len);
  HAVEN_RETURN_IF_ERROR(d.Decompress(f.data, f.raw_len, scratch.data(), what));
  return ByteSpan(scratch.data(), scratch.size());
}

// What a chunk stands for in a chunk-list tree: a data chunk is one
// level-0 entry; a tree node of `height` covers between `min` and `max`
// level-0 entries (a hole as its last id may stand for 1 to a whole
// subtree). Recorded for every tree node an agent uploads, so a commit can
// tell, without reading the tree, that it is the shape WalkTree expects:
// gc walks every point's trees and stops at a malformed one.
struct Shape {
  int64_t height = 0;
  uint64_t min = 1, max = 1;
};

struct Row {
  ChunkId chunk;
  uint64_t raw_size = 0;
  int64_t kind = kKindData;
  Shape shape;  // tree nodes
};
using Rows = std::unordered_map<std::string, Row>;  // by raw upload id

// This agent's rows for `ids` (raw upload ids; repeats allowed).
Result<Rows> LookupRows(StateDb& db, const std::string& agent_id,
                        const std::vector<std::string_view>& ids) {
  Rows rows;
  for (size_t start = 0; start < ids.size(); start += kLookupBatch) {
    const size_t end = std::min(ids.size(), start + kLookupBatch);
    std::string sql =
        "SELECT upload_id, chunk_id, raw_size, kind, tree_height, tree_min, "
        "tree_max FROM agent_chunks WHERE "
        "agent_id = ? AND upload_id IN (";
    std::vector<SqlValue> params{agent_id};
    for (size_t i = start; i < end; ++i) {
      sql += (i == start ? "" : ", ");
      // Anonymous parameters: numbered ones cost sqlite a linear search
      // each while it parses the statement (quadratic in the batch).
      sql += "CAST(? AS BLOB)";
      params.emplace_back(std::string(ids[i]));
    }
    sql += ")";
    HAVEN_ASSIGN_OR_RETURN(std::vector<SqlRow> found, db.Query(sql, params));
    for (const SqlRow& r : found) {
      std::string upload = r.Text(0), chunk = r.Text(1);
      if (upload.size() != kIdBytes || chunk.size() != kIdBytes) continue;
      Row row{ToChunkId(chunk), static_cast<uint64_t>(r.Int(2)), r.Int(3), {}};
      if (row.kind == kKindTree)
        row.shape = {r.Int(4), static_cast<uint64_t>(r.Int(5)),
                     static_cast<uint64_t>(r.Int(6))};
      rows[upload] = row;
    }
  }
  return rows;
}

ChunkType TypeOf(int64_t kind) {
  return kind == kKindTree ? ChunkType::kTree : ChunkType::kData;
}

// Whether the repository still holds `row`'s chunk with the row's type and
// size (gc may have removed it since the agent uploaded it).
Result<bool> StillHeld(const Repository& repo, const Row& row) {
  HAVEN_ASSIGN_OR_RETURN(auto loc, repo.index().Get(row.chunk));
  return loc && loc->type == TypeOf(row.kind) && loc->raw_len == row.raw_size;
}

struct NewRow {
  std::string upload_id;
  ChunkId chunk;
  uint64_t raw_size;
  int64_t kind = kKindData;
  Shape shape;
};

Status InsertRows(StateDb& db, const std::string& agent_id,
                  const std::vector<NewRow>& rows) {
  StateDb::Transaction tx(db);
  HAVEN_RETURN_IF_ERROR(tx.status());
  for (size_t start = 0; start < rows.size(); start += kInsertBatch) {
    const size_t end = std::min(rows.size(), start + kInsertBatch);
    std::string sql =
        "INSERT OR REPLACE INTO agent_chunks (agent_id, upload_id, chunk_id, "
        "raw_size, kind, tree_height, tree_min, tree_max) VALUES ";
    std::vector<SqlValue> params;
    for (size_t i = start; i < end; ++i) {
      sql += (i == start ? "" : ", ");
      sql += "(?, CAST(? AS BLOB), CAST(? AS BLOB), ?, ?, ?, ?, ?)";
      params.emplace_back(agent_id);
      params.emplace_back(rows[i].upload_id);
      params.emplace_back(std::string(RawOf(rows[i].chunk)));
      params.emplace_back(static_cast<int64_t>(rows[i].raw_size));
      params.emplace_back(rows[i].kind);
      const bool tree = rows[i].kind == kKindTree;
      params.emplace_back(tree ? rows[i].shape.height : int64_t{0});
      params.emplace_back(tree ? static_cast<int64_t>(rows[i].shape.min) : 0);
      params.emplace_back(tree ? static_cast<int64_t>(rows[i].shape.max) : 0);
    }
    HAVEN_RETURN_IF_ERROR(db.Query(sql, params).status());
  }
  return tx.Commit();
}

// ------------------------------------------------------------ commit JSON

struct CommitRequest {
  std::string upload_id;
  repository::Manifest m;  // name, time, hostname, consistency, files, stats
  uint64_t catalog_count = 0, catalog_bytes = 0;
  uint64_t content_count = 0, content_bytes = 0;
};

bool Printable(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

Status Text(const json& j, const char* field, size_t max, bool required,
            std::string& out) {
  if (!j.contains(field)) {
    if (required) return InvalidArgument(std::string(field) + " is required");
    return OkStatus();
  }
  const json& v = j.at(field);
  if (!v.is_string() || v.get_ref<const std::string&>().size() > max ||
      (required && v.get_ref<const std::string&>().empty()) ||
      !Printable(v.get_ref<const std::string&>()))
    return InvalidArgument(
        std::string(field) + " must be a string of " + (required ? "1" : "0") +
        " to " + std::to_string(max) + " bytes without control characters");
  out = v.get<std::string>();
  return OkStatus();
}

Status CheckCommitId(const std::string& upload_id) {
  if (upload_id.size() != 32 ||
      upload_id.find_first_not_of("0123456789abcdef") != std::string::npos)
    return InvalidArgument("upload_id must be 32 lower-case hex digits");
  return OkStatus();
}

// A text field of an agent's VM manifest, already parsed.
Status CheckText(const std::string& value, const std::string& field, size_t max,
                 bool required) {
  if (value.size() > max || (required && value.empty()) || !Printable(value))
    return InvalidArgument(
        field + " must be a string of " + (required ? "1" : "0") + " to " +
        std::to_string(max) + " bytes without control characters");
  return OkStatus();
}

// The height TreeWriter gives a tree of `count` chunks (1 for none).
int TreeHeightFor(uint64_t count) {
  int h = 1;
  while (h < repository::kMaxTreeHeight && count > repository::TreeCapacity(h))
    ++h;
  return h;
}

// The checks of an agent's VM manifest beyond Manifest::FromJson's: what a
// point committed through the appliance may hold. Sanitizes notes.
Status CheckVmManifest(repository::Manifest& m) {
  static const std::set<std::string> kConsistency = {
      "application-consistent", "crash-consistent", "inconsistent", "offline"};
  HAVEN_RETURN_IF_ERROR(
      CheckText(m.name, "manifest.name", kMaxNameBytes, true));
  HAVEN_RETURN_IF_ERROR(
      CheckText(m.hostname, "manifest.hostname", kMaxNameBytes, false));
  if (!kConsistency.count(m.consistency))
    return InvalidArgument(
        "manifest.consistency must be application-consistent, "
        "crash-consistent, inconsistent or offline");
  HAVEN_RETURN_IF_ERROR(CheckText(m.consistency_reason,
                                  "manifest.consistency_reason", kMaxTextBytes,
                                  false));
  HAVEN_RETURN_IF_ERROR(CheckText(m.vm_uuid, "manifest.vm.uuid", 64, false));
  HAVEN_RETURN_IF_ERROR(
      CheckText(m.checkpoint, "manifest.vm.checkpoint", kMaxNameBytes, false));
  if (m.notes.size() > kMaxNotes)
    return InvalidArgument("manifest.notes must be a list of at most " +
                           std::to_string(kMaxNotes) + " strings");
  for (std::string& note : m.notes) {
    if (note.size() > kMaxTextBytes)
      return InvalidArgument("manifest.notes must hold strings of at most " +
                             std::to_string(kMaxTextBytes) + " bytes");
    for (char& c : note)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  for (size_t i = 0; i < m.disks.size(); ++i) {
    const repository::DiskManifest& d = m.disks[i];
    const std::string field = "manifest.disks[" + std::to_string(i) + "]";
    // An image disk is named by its target dev (vda), which a restore
    // puts in file names: no paths.
    if (!d.is_config() &&
        (d.name.empty() || d.name.size() > 64 || d.name[0] == '.' ||
         d.name.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
             std::string::npos))
      return InvalidArgument(field +
                             ".name must be a target dev: 1 to 64 of "
                             "[A-Za-z0-9._-], not starting with '.'");
    HAVEN_RETURN_IF_ERROR(
        CheckText(d.source, field + ".source", kMaxTextBytes, false));
    HAVEN_RETURN_IF_ERROR(
        CheckText(d.capture, field + ".capture", kMaxTextBytes, false));
    if (!d.lost.empty())
      return InvalidArgument(field + ".lost: a new point has no lost ranges");
    if (d.chunk_size == 0 || d.chunk_size > kMaxChunkRawBytes)
      return InvalidArgument(field + ".chunk_size must be 1 to " +
                             std::to_string(kMaxChunkRawBytes) + " bytes");
    if (d.tree.count != (d.size + d.chunk_size - 1) / d.chunk_size)
      return InvalidArgument(field +
                             ".chunks must be size / chunk_size, rounded up");
    if (d.tree.count == 0 && !d.tree.root.IsZero())
      return InvalidArgument(field +
                             ".tree.root must be zero for an empty disk");
    if (d.tree.height != TreeHeightFor(d.tree.count))
      return InvalidArgument(field + ".tree.height must be " +
                             std::to_string(TreeHeightFor(d.tree.count)) +
                             " for " + std::to_string(d.tree.count) +
                             " chunks");
  }
  return OkStatus();
}

Status Count(const json& j, const char* field, uint64_t& out) {
  if (!j.contains(field) || !j.at(field).is_number_unsigned())
    return InvalidArgument(std::string(field) +
                           " must be a non-negative integer");
  out = j.at(field).get<uint64_t>();
  return OkStatus();
}

Status Stream(const json& j, const char* field, uint64_t& count,
              uint64_t& bytes) {
  if (!j.contains(field) || !j.at(field).is_object() || j.at(field).size() != 2)
    return InvalidArgument(std::string(field) +
                           " must be {\"count\": chunks, \"bytes\": size}");
  HAVEN_RETURN_IF_ERROR(Count(j.at(field), "count", count).WithContext(field));
  return Count(j.at(field), "bytes", bytes).WithContext(field);
}

Status Stats(const json& j, repository::BackupStats& s) {
  if (!j.contains("stats")) return OkStatus();
  const json& sj = j.at("stats");
  if (!sj.is_object()) return InvalidArgument("stats must be an object");
  for (const auto& [key, value] : sj.items()) {
    uint64_t* field = key == "logical_bytes"      ? &s.logical_bytes
                      : key == "read_bytes"       ? &s.read_bytes
                      : key == "hole_bytes"       ? &s.hole_bytes
                      : key == "new_chunks"       ? &s.new_chunks
                      : key == "new_raw_bytes"    ? &s.new_raw_bytes
                      : key == "new_stored_bytes" ? &s.new_stored_bytes
                                                  : nullptr;
    if (field) {
      if (!value.is_number_unsigned())
        return InvalidArgument("stats." + key +
                               " must be a non-negative integer");
      *field = value.get<uint64_t>();
    } else if (key == "duration_seconds") {
      if (!value.is_number() || value.get<double>() < 0 ||
          value.get<double>() > 1e9)
        return InvalidArgument(
            "stats.duration_seconds must be a number of seconds");
      s.duration_seconds = value.get<double>();
    } else {
      return InvalidArgument("unknown field stats." + QuoteUntrusted(key));
    }
  }
  return OkStatus();
}

Status Strings(const json& j, const char* field, size_t max_count, bool paths,
               std::vector<std::string>& out) {
  if (!j.contains(field)) return OkStatus();
  const json& v = j.at(field);
  if (!v.is_array() || v.size() > max_count)
    return InvalidArgument(std::string(field) + " must be a list of at most " +
                           std::to_string(max_count) + " strings");
  for (const json& e : v) {
    if (!e.is_string() ||
        e.get_ref<const std::string&>().size() > kMaxTextBytes ||
        (paths && !Printable(e.get_ref<const std::string&>())))
      return InvalidArgument(std::string(field) +
                             " must hold strings of at "
                             "most " +
                             std::to_string(kMaxTextBytes) +
                             " bytes without control characters");
    if (paths && !repository::IsCatalogPath(e.get_ref<const std::string&>()))
      return InvalidArgument(std::string(field) + ": " +
                             QuoteUntrusted(e.get<std::string>()) +
                             " is not an absolute path");
    std::string text = e.get<std::string>();
    // A note names guest files, whose names may hold anything: control
    // characters become '?' so no log or terminal takes them as commands.
    for (char& c : text)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
    out.push_back(std::move(text));
  }
  return OkStatus();
}

Result<CommitRequest> ParseCommit(const json& j) {
  static const std::set<std::string> kFields = {
      "upload_id", "name",        "time",
      "hostname",  "consistency", "consistency_reason",
      "paths",     "entries",     "partial",
      "notes",     "stats",       "catalog",
      "content",   "agent_key"};  // agent-key
  static const std::set<std::string> kConsistency = {
      "file-level", "application-consistent", "crash-consistent",
      "inconsistent", "offline"};
  if (!j.is_object())
    return InvalidArgument("the point's JSON must be an object");
  for (const auto& [key, value] : j.items())
    if (!kFields.count(key))
      return InvalidArgument("unknown field " + QuoteUntrusted(key) +
                             " in the point's JSON");
  CommitRequest c;
  repository::Manifest& m = c.m;
  HAVEN_RETURN_IF_ERROR(Text(j, "upload_id", 32, true, c.upload_id));
  HAVEN_RETURN_IF_ERROR(CheckCommitId(c.upload_id));
  HAVEN_RETURN_IF_ERROR(Text(j, "name", kMaxNameBytes, true, m.name));
  HAVEN_RETURN_IF_ERROR(Text(j, "time", 64, true, m.time));
  if (auto t = ParseIsoTime(m.time); !t.ok())
    return t.status().WithContext("time");
  HAVEN_RETURN_IF_ERROR(Text(j, "hostname", kMaxNameBytes, false, m.hostname));
  HAVEN_RETURN_IF_ERROR(Text(j, "consistency", 64, true, m.consistency));
  if (!kConsistency.count(m.consistency))
    return InvalidArgument(
        "consistency must be file-level, application-consistent, "
        "crash-consistent, inconsistent or offline");
  HAVEN_RETURN_IF_ERROR(Text(j, "consistency_reason", kMaxTextBytes, false,
                             m.consistency_reason));
  HAVEN_RETURN_IF_ERROR(Strings(j, "paths", kMaxPaths, true, m.file_paths));
  HAVEN_RETURN_IF_ERROR(Strings(j, "notes", kMaxNotes, false, m.notes));
  if (j.contains("entries"))
    HAVEN_RETURN_IF_ERROR(Count(j, "entries", m.file_entries));
  if (j.contains("partial")) {
    if (!j.at("partial").is_boolean())
      return InvalidArgument("partial must be true or false");
    m.partial = j.at("partial").get<bool>();
  }
  // agent-key: the agent sealed the data with its own key (manifest.h).
  if (j.contains("agent_key")) {
    if (!j.at("agent_key").is_string() ||
        !repository::IsAgentKeyId(j.at("agent_key").get<std::string>()))
      return InvalidArgument("agent_key must be 16 lower-case hex digits");
    m.agent_key = j.at("agent_key").get<std::string>();
  }
  HAVEN_RETURN_IF_ERROR(Stats(j, m.stats));
  HAVEN_RETURN_IF_ERROR(Stream(j, "catalog", c.catalog_count, c.catalog_bytes));
  HAVEN_RETURN_IF_ERROR(Stream(j, "content", c.content_count, c.content_bytes));
  if (c.catalog_count == 0)
    return InvalidArgument(
        "catalog.count must be at least 1: a catalog "
        "starts with its header");
  return c;
}

// The latest point of `name` this agent committed ("" if none), or
// AlreadyExists when a point of that name belongs to another agent or to
// no agent (the appliance's own backups): names are not shared, since
// retention and NAME:latest go by name, and a point under another's name
// would push that owner's points out (keep_last) or stand in for them.
Result<std::string> ParentOf(const Repository& repo,
                             const std::string& agent_id,
                             const std::string& name, const std::string& kind) {
  std::vector<std::string> errors;  // an unreadable point is no parent
  HAVEN_ASSIGN_OR_RETURN(auto all, repo.ListSnapshots(&errors));
  std::string parent;
  for (auto it = all.rbegin(); it != all.rend(); ++it) {  // newest first
    if (it->name != name) continue;
    if (it->agent_id != agent_id)
      return AlreadyExists(
          "the backup name " + QuoteUntrusted(name) +
          " is taken by another agent's points or the appliance's own; "
          "choose another name (haven agent backup --name)");
    if (parent.empty() && it->kind == kind) parent = it->id;
  }
  return parent;
}

}  // namespace

// ------------------------------------------------------------ repositories

class AgentStore::Lease {
 public:
  Lease(AgentStore* store, std::string name,
        std::shared_ptr<repository::Repository> repo)
      : store_(store), name_(std::move(name)), repo_(std::move(repo)) {}
  ~Lease() { store_->Return(name_); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  repository::Repository& repo() { return *repo_; }
  const std::string& name() const { return name_; }

 private:
  AgentStore* store_;
  std::string name_;
  std::shared_ptr<repository::Repository> repo_;
};

AgentStore::AgentStore(StateDb& db, const RepositoryCatalog& catalog,
                       RepositoryOf repository_of, Options options)
    : db_(db),
      catalog_(catalog),
      repository_of_(std::move(repository_of)),
      options_(std::move(options)) {}

Result<std::unique_ptr<AgentStore>> AgentStore::Create(
    StateDb& db, const RepositoryCatalog& catalog, RepositoryOf repository_of,
    Options options) {
  HAVEN_RETURN_IF_ERROR(db.EnsureTable(kTables));
  // Databases from before tree nodes: every row there is data.
  HAVEN_ASSIGN_OR_RETURN(auto columns,
                         db.Query("PRAGMA table_info(agent_chunks)"));
  for (const char* column : {"kind", "tree_height", "tree_min", "tree_max"})
    if (std::none_of(columns.begin(), columns.end(),
                     [&](const SqlRow& c) { return c.Text(1) == column; }))
      HAVEN_RETURN_IF_ERROR(db.Exec("ALTER TABLE agent_chunks ADD COLUMN " +
                                    std::string(column) +
                                    " INTEGER NOT NULL DEFAULT 0"));
  std::unique_ptr<AgentStore> store(new AgentStore(
      db, catalog, std::move(repository_of), std::move(options)));
  store->reaper_ = std::thread([s = store.get()] { s->ReaperLoop(); });
  return store;
}

AgentStore::~AgentStore() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (reaper_.joinable()) reaper_.join();
}

Result<std::unique_ptr<AgentStore::Lease>> AgentStore::Acquire(
    const std::string& agent_id) {
  HAVEN_ASSIGN_OR_RETURN(std::string name, repository_of_(agent_id));
  auto take = [&]() -> std::unique_ptr<Lease> {
    auto it = open_.find(name);
    if (it == open_.end()) return nullptr;
    ++it->second.in_use;
    it->second.used = std::chrono::steady_clock::now();
    return std::make_unique<Lease>(this, name, it->second.repo);
  };
  std::shared_ptr<std::mutex> opening;
  {
    std::lock_guard lock(mu_);
    if (auto lease = take()) return lease;
    auto& slot = opening_[name];
    if (!slot) slot = std::make_shared<std::mutex>();
    opening = slot;
  }
  // One open at a time per repository (scrypt and the index: ~0.3 s); a
  // request that waited for another's open uses it.
  std::lock_guard open_lock(*opening);
  {
    std::lock_guard lock(mu_);
    if (auto lease = take()) return lease;
  }
  repository::OpenOptions o;
  o.write = true;
  o.lock_wait_seconds = options_.lock_wait_seconds;
  auto repo = catalog_.Open(name, o);
  // A repository gc holds alone is Unavailable (503): the agent tries
  // again later.
  if (!repo.ok()) return repo.status();
  std::lock_guard lock(mu_);
  Held& h = open_[name];
  h.repo = std::shared_ptr<repository::Repository>(std::move(repo).value());
  h.in_use = 0;
  return take();
}

void AgentStore::Return(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = open_.find(name);
  if (it == open_.end()) return;
  --it->second.in_use;
  it->second.used = std::chrono::steady_clock::now();
}

void AgentStore::Release(const std::string& name) {
  std::shared_ptr<repository::Repository> closing;  // closed outside mu_
  std::lock_guard lock(mu_);
  auto it = open_.find(name);
  if (it == open_.end() || it->second.in_use > 0) return;
  closing = std::move(it->second.repo);
  open_.erase(it);
}

void AgentStore::ReaperLoop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    stop_cv_.wait_for(lock, std::chrono::seconds(2));
    std::vector<std::shared_ptr<repository::Repository>> closing;
    const auto now = std::chrono::steady_clock::now();
    for (auto it = open_.begin(); it != open_.end();) {
      if (it->second.in_use == 0 &&
          (stop_ || now - it->second.used >= options_.max_idle)) {
        closing.push_back(std::move(it->second.repo));
        it = open_.erase(it);
      } else {
        ++it;
      }
    }
    lock.unlock();
    closing.clear();
    lock.lock();
  }
}

std::mutex& AgentStore::CommitMutex(const std::string& agent_id) {
  std::lock_guard lock(mu_);
  auto& m = commit_mu_[agent_id];
  if (!m) m = std::make_unique<std::mutex>();
  return *m;
}

// ------------------------------------------------------------ the protocol

Result<std::string> AgentStore::Missing(const std::string& agent_id,
                                        std::string_view body) {
  if (body.empty() || body.size() % kIdBytes != 0 ||
      body.size() / kIdBytes > kMaxMissingQuery)
    return InvalidArgument("the body must be 1 to " +
                           std::to_string(kMaxMissingQuery) +
                           " upload ids of 32 bytes each, not " +
                           std::to_string(body.size()) + " bytes");
  std::vector<std::string_view> ids;
  for (size_t pos = 0; pos < body.size(); pos += kIdBytes)
    ids.push_back(body.substr(pos, kIdBytes));
  HAVEN_ASSIGN_OR_RETURN(auto lease, Acquire(agent_id));
  HAVEN_ASSIGN_OR_RETURN(Rows rows, LookupRows(db_, agent_id, ids));
  std::string answer(ids.size(), '\1');
  for (size_t i = 0; i < ids.size(); ++i) {
    auto it = rows.find(std::string(ids[i]));
    if (it == rows.end()) continue;
    HAVEN_ASSIGN_OR_RETURN(bool held, StillHeld(lease->repo(), it->second));
    if (held) answer[i] = '\0';
  }
  return answer;
}

Result<AgentAnswer<ChunksReceived>> AgentStore::StoreChunks(
    const std::string& agent_id, std::string_view body) {
  using Answer = AgentAnswer<ChunksReceived>;
  HAVEN_ASSIGN_OR_RETURN(std::vector<Frame> frames, ParseFrames(body));
  HAVEN_ASSIGN_OR_RETURN(auto lease, Acquire(agent_id));
  Repository& repo = lease->repo();
  repository::Decompressor decompressor;
  Bytes scratch;
  // Every frame is checked before anything is stored; its keyed id is
  // computed from the same decoded bytes, so each frame is decoded once
  // and a data chunk is stored as the agent encoded it (not compressed
  // again). A tree node's upload ids are replaced by keyed ids, so it is
  // stored as translated here.
  std::vector<ChunkId> keyed(frames.size());
  std::vector<Bytes> translated(frames.size());  // tree nodes only
  for (size_t k = 0; k < frames.size(); ++k) {
    const Frame& f = frames[k];
    auto raw = Decode(f, decompressor, scratch, FrameName(k, f));
    if (!raw.ok())
      return Answer(AgentRefusal{
          422,
          FrameName(k, f) + ": its data is not a zstd frame of raw_len (" +
              std::to_string(f.raw_len) +
              ") bytes; nothing of this batch was stored",
          {}});
    if (Sha256(*raw) != f.upload_id)
      return Answer(AgentRefusal{
          422,
          FrameName(k, f) +
              ": its bytes do not match its id; nothing of this batch was "
              "stored",
          {}});
    if (f.tree)
      translated[k].assign(raw->begin(), raw->end());
    else
      keyed[k] = repo.IdFor(ChunkType::kData, *raw);
  }
  // The rows of the frames themselves and of every id a tree node names.
  std::vector<std::string_view> ids;
  std::unordered_set<std::string_view> asked;
  for (const Frame& f : frames)
    if (asked.insert(f.upload_id).second) ids.push_back(f.upload_id);
  for (size_t k = 0; k < frames.size(); ++k) {
    if (!frames[k].tree) continue;
    std::string_view node(reinterpret_cast<const char*>(translated[k].data()),
                          translated[k].size());
    for (size_t pos = 0; pos < node.size(); pos += kIdBytes) {
      std::string_view child = node.substr(pos, kIdBytes);
      if (ToChunkId(child).IsZero()) continue;
      if (asked.insert(child).second) ids.push_back(child);
    }
    // Bounds the lookups one body can ask for.
    if (ids.size() > kMaxIdsPerUpload)
      return InvalidArgument(
          "this upload names more than " + std::to_string(kMaxIdsPerUpload) +
          " distinct chunks (frames and the children of its tree nodes); "
          "send fewer tree nodes per request");
  }
  HAVEN_ASSIGN_OR_RETURN(Rows had, LookupRows(db_, agent_id, ids));

  // Translates the tree nodes in order: a node's children are chunks this
  // agent holds, or frames before it in this batch.
  struct Known {
    ChunkId keyed;
    int64_t kind;
    Shape shape;
  };
  std::vector<Shape> shapes(frames.size());
  std::unordered_map<std::string, std::optional<Known>> known;  // by upload id
  auto resolve = [&](std::string_view child) -> Result<std::optional<Known>> {
    auto it = known.find(std::string(child));
    if (it != known.end()) return it->second;
    std::optional<Known> out;
    auto row = had.find(std::string(child));
    if (row != had.end()) {
      HAVEN_ASSIGN_OR_RETURN(bool held, StillHeld(repo, row->second));
      if (held)
        out = Known{row->second.chunk, row->second.kind, row->second.shape};
    }
    known.emplace(std::string(child), out);
    return out;
  };
  AgentRefusal missing{409, "", {}};
  std::unordered_set<std::string_view> missing_seen;
  for (size_t k = 0; k < frames.size(); ++k) {
    const Frame& f = frames[k];
    if (f.tree) {
      Bytes& node = translated[k];
      const size_t n = node.size() / kIdBytes;
      int64_t child_height = -1;  // -1 until a non-zero id
      Shape last{0, 0, 0};        // of the last id; 0..0: a hole
      for (size_t pos = 0; pos < node.size(); pos += kIdBytes) {
        std::string_view child(reinterpret_cast<const char*>(&node[pos]),
                               kIdBytes);
        const bool is_last = pos + kIdBytes == node.size();
        if (ToChunkId(child).IsZero()) {  // a hole stays a hole
          if (is_last) last = {0, 0, 0};
          continue;
        }
        HAVEN_ASSIGN_OR_RETURN(std::optional<Known> c, resolve(child));
        if (!c) {
          if (missing_seen.insert(child).second &&
              missing.missing.size() < kMaxMissingListed)
            missing.missing.push_back(Hex(child));
          continue;
        }
        std::copy(c->keyed.bytes.begin(), c->keyed.bytes.end(),
                  node.begin() + pos);
        if (!missing_seen.empty()) continue;  // refused anyway: 409
        if (child_height >= 0 && c->shape.height != child_height)
          return InvalidArgument(
              FrameName(k, f) +
              ": it names ids of different levels (a node's ids are all data "
              "chunks or all tree nodes of one height)");
        child_height = c->shape.height;
        // All but the last child are whole subtrees, as TreeWriter makes
        // them (and as a reader finds chunk i by division).
        if (!is_last && c->shape.max != repository::TreeCapacity(
                                            static_cast<int>(child_height)))
          return InvalidArgument(FrameName(k, f) +
                                 ": a child before its last is not a full "
                                 "subtree");
        if (is_last) last = c->shape;
      }
      if (missing_seen.empty()) {
        if (child_height < 0)
          return InvalidArgument(FrameName(k, f) +
                                 ": a node of holes only is sent as the zero "
                                 "id, not as a node");
        if (child_height + 1 > repository::kMaxTreeHeight)
          return InvalidArgument(FrameName(k, f) + ": a tree over " +
                                 std::to_string(repository::kMaxTreeHeight) +
                                 " levels");
        const uint64_t cap =
            repository::TreeCapacity(static_cast<int>(child_height));
        if (last.max == 0) last = {child_height, 1, cap};  // a hole
        shapes[k] = {child_height + 1, (n - 1) * cap + last.min,
                     (n - 1) * cap + last.max};
      }
      keyed[k] = repo.IdFor(ChunkType::kTree, node);
    }
    // Later nodes may name this frame; a repeated upload id keeps its first.
    std::string id(f.upload_id);
    auto it = known.find(id);
    if (it == known.end() || !it->second)
      known[id] = Known{keyed[k], f.tree ? kKindTree : kKindData,
                        f.tree ? shapes[k] : Shape{}};
  }
  if (!missing_seen.empty()) {
    missing.error =
        std::to_string(missing_seen.size()) +
        " of the ids the tree nodes name are chunks this agent does not hold "
        "(never uploaded, removed since, or sent later in the batch): upload "
        "them first; nothing of this batch was stored";
    return Answer(std::move(missing));
  }

  auto writer = repo.NewWriter();
  repository::WriteContext ctx(repo.config().compression_level);
  std::vector<NewRow> rows;
  std::unordered_set<std::string_view> seen;
  ChunksReceived out;
  out.received = frames.size();
  std::vector<std::pair<ChunkId, ChunkType>> fresh;  // new for this agent
  for (size_t k = 0; k < frames.size(); ++k) {
    const Frame& f = frames[k];
    if (!seen.insert(f.upload_id).second) continue;
    const ChunkId& id = keyed[k];
    const ChunkType type = f.tree ? ChunkType::kTree : ChunkType::kData;
    if (f.tree) {
      HAVEN_RETURN_IF_ERROR(
          writer->Put(ChunkType::kTree, id, translated[k], ctx).status());
    } else {
      HAVEN_RETURN_IF_ERROR(
          writer
              ->PutEncoded(ChunkType::kData, id, f.raw_len,
                           f.codec == kCodecZstd
                               ? repository::kChunkCodecZstd
                               : repository::kChunkCodecStored,
                           f.data, ctx)
              .status());
    }
    const int64_t kind = f.tree ? kKindTree : kKindData;
    rows.push_back({std::string(f.upload_id), id, f.raw_len, kind, shapes[k]});
    auto it = had.find(std::string(f.upload_id));
    bool is_known = false;
    if (it != had.end() && it->second.kind == kind && it->second.chunk == id) {
      HAVEN_ASSIGN_OR_RETURN(is_known, StillHeld(repo, it->second));
    }
    if (!is_known) fresh.push_back({id, type});
  }
  // Durable before the agent is told, and before the rows name them.
  HAVEN_RETURN_IF_ERROR(writer->Flush());
  // The figures count what is new for this agent, stored now or earlier
  // (by anyone): the answer does not tell whether another agent had the
  // bytes.
  for (const auto& [id, type] : fresh) {
    HAVEN_ASSIGN_OR_RETURN(auto loc, repo.index().Get(id));
    ++out.new_chunks;
    if (loc) out.new_stored_bytes += loc->stored_len;
  }
  HAVEN_RETURN_IF_ERROR(InsertRows(db_, agent_id, rows));
  return Answer(out);
}

Result<AgentAnswer<AgentCommit>> AgentStore::Commit(const std::string& agent_id,
                                                    std::string_view body) {
  using Answer = AgentAnswer<AgentCommit>;
  if (body.size() < 4)
    return InvalidArgument("the body must start with json_len (u32)");
  const uint32_t json_len =
      GetU32(reinterpret_cast<const uint8_t*>(body.data()));
  if (json_len > body.size() - 4)
    return InvalidArgument("json_len " + std::to_string(json_len) +
                           " runs past the end of the body");
  if (json_len > kMaxCommitJsonBytes)
    return InvalidArgument("the point's JSON is " + std::to_string(json_len) +
                           " bytes, over the limit of " +
                           std::to_string(kMaxCommitJsonBytes));
  if (!JsonNestingWithin(body.substr(4, json_len)))
    return InvalidArgument("the point's JSON nests deeper than " +
                           std::to_string(kMaxJsonDepth) + " levels");
  auto j = json::parse(body.substr(4, json_len), nullptr, false);
  if (j.is_discarded())
    return InvalidArgument("the point's JSON does not parse");
  HAVEN_ASSIGN_OR_RETURN(CommitRequest req, ParseCommit(j));
  const size_t id_bytes = body.size() - 4 - json_len;
  const uint64_t ids_given = id_bytes / kIdBytes;
  if (id_bytes % kIdBytes != 0 || req.catalog_count > ids_given ||
      req.content_count != ids_given - req.catalog_count)
    return InvalidArgument(
        "the body holds " + std::to_string(id_bytes) +
        " bytes of ids after the JSON; catalog.count + content.count (" +
        std::to_string(req.catalog_count) + " + " +
        std::to_string(req.content_count) + ") ids of 32 bytes need " +
        "exactly that many");
  std::string_view all = body.substr(4 + json_len);
  std::vector<std::string_view> ids;
  ids.reserve(ids_given);
  for (size_t pos = 0; pos < all.size(); pos += kIdBytes)
    ids.push_back(all.substr(pos, kIdBytes));

  std::lock_guard commit_lock(CommitMutex(agent_id));
  HAVEN_ASSIGN_OR_RETURN(auto done, EarlierCommit(agent_id, req.upload_id));
  if (done) return Answer(*done);

  HAVEN_ASSIGN_OR_RETURN(auto lease, Acquire(agent_id));
  Repository& repo = lease->repo();
  HAVEN_ASSIGN_OR_RETURN(Rows rows, LookupRows(db_, agent_id, ids));
  // Every id must be a chunk this agent uploaded and the repository still
  // holds; each distinct one is looked up once.
  AgentRefusal missing{409, "", {}};
  uint64_t missing_count = 0;
  std::unordered_set<std::string_view> checked;
  for (std::string_view id : ids) {
    if (!checked.insert(id).second) continue;
    auto it = rows.find(std::string(id));
    bool held = false;
    // A file backup's lists name data chunks only.
    if (it != rows.end() && it->second.kind == kKindData) {
      HAVEN_ASSIGN_OR_RETURN(held, StillHeld(repo, it->second));
    }
    if (held) continue;
    if (it != rows.end()) rows.erase(it);
    ++missing_count;
    if (missing.missing.size() < kMaxMissingListed)
      missing.missing.push_back(Hex(id));
  }
  if (missing_count > 0) {
    missing.error = std::to_string(missing_count) +
                    " of the point's chunks are not held for this agent "
                    "(never uploaded, or removed since): upload them and "
                    "commit again; nothing was committed";
    return Answer(std::move(missing));
  }
  uint64_t catalog_bytes = 0, content_bytes = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    (i < req.catalog_count ? catalog_bytes : content_bytes) +=
        rows.at(std::string(ids[i])).raw_size;
  // agent-key: the agent counts its plain bytes, the appliance holds sealed
  // ones (of unchanged files sealed by earlier runs): the streams' sizes
  // are those of the chunks stored (docs/repository-format.md).
  if (!req.m.agent_key.empty()) {
    req.catalog_bytes = catalog_bytes;
    req.content_bytes = content_bytes;
  }
  if (catalog_bytes != req.catalog_bytes || content_bytes != req.content_bytes)
    return InvalidArgument("catalog.bytes and content.bytes (" +
                           std::to_string(req.catalog_bytes) + ", " +
                           std::to_string(req.content_bytes) +
                           ") must be the sizes of their "
                           "chunks (" +
                           std::to_string(catalog_bytes) + ", " +
                           std::to_string(content_bytes) + ")");

  // The chunk lists, built here: only the appliance knows the chunk ids.
  auto writer = repo.NewWriter();
  repository::WriteContext ctx(repo.config().compression_level);
  auto store = [&](ByteSpan node) -> Result<ChunkId> {
    ChunkId id = repo.IdFor(ChunkType::kTree, node);
    HAVEN_RETURN_IF_ERROR(
        writer->Put(ChunkType::kTree, id, node, ctx).status());
    return id;
  };
  repository::TreeWriter catalog(store), content(store);
  for (size_t i = 0; i < ids.size(); ++i)
    HAVEN_RETURN_IF_ERROR((i < req.catalog_count ? catalog : content)
                              .Add(rows.at(std::string(ids[i])).chunk));
  HAVEN_ASSIGN_OR_RETURN(repository::TreeRoot catalog_root, catalog.Finish());
  HAVEN_ASSIGN_OR_RETURN(repository::TreeRoot content_root, content.Finish());
  HAVEN_RETURN_IF_ERROR(writer->Flush());

  repository::Manifest& m = req.m;
  m.kind = "files";
  repository::DiskManifest cat;
  cat.name = cat.kind = "catalog";
  cat.size = req.catalog_bytes;
  cat.tree = catalog_root;
  repository::DiskManifest con;
  con.name = con.kind = "content";
  con.size = req.content_bytes;
  con.tree = content_root;
  m.disks = {cat, con};
  return FinishCommit(*lease, agent_id, req.upload_id, m);
}

Result<std::optional<AgentCommit>> AgentStore::EarlierCommit(
    const std::string& agent_id, const std::string& upload_id) {
  HAVEN_ASSIGN_OR_RETURN(
      auto done, db_.QueryOne("SELECT point_id, name, time FROM agent_commits "
                              "WHERE agent_id = ?1 AND upload_id = ?2",
                              {agent_id, upload_id}));
  if (!done) return std::optional<AgentCommit>();
  return std::optional<AgentCommit>(
      AgentCommit{done->Text(0), done->Text(1), done->Text(2), false});
}

Result<AgentAnswer<AgentCommit>> AgentStore::FinishCommit(
    Lease& lease, const std::string& agent_id, const std::string& upload_id,
    repository::Manifest& m) {
  using Answer = AgentAnswer<AgentCommit>;
  Repository& repo = lease.repo();
  m.id.clear();
  m.tool = options_.tool;
  m.agent_id = agent_id;
  // The point's time is the appliance's clock at the commit: retention
  // orders points by time, and an agent must not date one into the future
  // to make the real ones look old.
  m.time = NowIso8601();
  // One commit at a time across agents: the name check and the commit go
  // together.
  std::lock_guard names_lock(names_mu_);
  auto parent = ParentOf(repo, agent_id, m.name, m.kind);
  if (!parent.ok()) {
    if (parent.status().code() == Code::kAlreadyExists)
      return Answer(AgentRefusal{409, parent.status().message(), {}});
    return parent.status();
  }
  m.parent = *parent;
  HAVEN_RETURN_IF_ERROR(repo.CommitSnapshot(m));  // the commit point
  // A crash here loses only the retry's answer: a retry then commits the
  // same point again under a new id.
  HAVEN_RETURN_IF_ERROR(
      db_.Query("INSERT OR REPLACE INTO agent_commits (agent_id, upload_id, "
                "repository, point_id, name, time, committed) VALUES (?1, "
                "?2, ?3, ?4, ?5, ?6, ?7)",
                {agent_id, upload_id, lease.name(), m.id, m.name, m.time,
                 static_cast<int64_t>(::time(nullptr))})
          .status());
  return Answer(AgentCommit{m.id, m.name, m.time, true});
}

Result<AgentAnswer<AgentCommit>> AgentStore::CommitVm(
    const std::string& agent_id, std::string_view body) {
  using Answer = AgentAnswer<AgentCommit>;
  if (body.size() > kMaxVmCommitBytes)
    return InvalidArgument("the body is " + std::to_string(body.size()) +
                           " bytes, over the limit of " +
                           std::to_string(kMaxVmCommitBytes));
  if (!JsonNestingWithin(body))
    return InvalidArgument("the point's JSON nests deeper than " +
                           std::to_string(kMaxJsonDepth) + " levels");
  auto j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return InvalidArgument(
        "the body must be a JSON object {\"upload_id\", \"manifest\"}");
  for (const auto& [key, value] : j.items())
    if (key != "upload_id" && key != "manifest")
      return InvalidArgument("unknown field " + QuoteUntrusted(key) +
                             " in the body");
  std::string upload_id;
  HAVEN_RETURN_IF_ERROR(Text(j, "upload_id", 32, true, upload_id));
  HAVEN_RETURN_IF_ERROR(CheckCommitId(upload_id));
  if (!j.contains("manifest") || !j.at("manifest").is_object())
    return InvalidArgument("manifest must be an object: the point's manifest");
  json mj = std::move(j.at("manifest"));
  if (!mj.contains("kind") || mj.at("kind") != "vm")
    return InvalidArgument("manifest.kind must be \"vm\"");
  if (mj.contains("repaired"))
    return InvalidArgument("manifest.repaired: a new point is no repair");
  // What the appliance decides; an agent's values are ignored.
  mj.erase("agent_id");
  mj["id"] = "";
  mj["time"] = "";
  mj["tool"] = "";
  mj["parent"] = "";
  auto parsed = repository::Manifest::FromJson(mj.dump(), "manifest");
  if (!parsed.ok()) return InvalidArgument(parsed.status().message());
  repository::Manifest m = std::move(parsed).value();
  HAVEN_RETURN_IF_ERROR(CheckVmManifest(m));

  std::lock_guard commit_lock(CommitMutex(agent_id));
  HAVEN_ASSIGN_OR_RETURN(auto done, EarlierCommit(agent_id, upload_id));
  if (done) return Answer(*done);

  HAVEN_ASSIGN_OR_RETURN(auto lease, Acquire(agent_id));
  Repository& repo = lease->repo();
  // Every non-zero root must be a tree node this agent uploaded and the
  // repository still holds; it becomes the node's keyed id.
  std::vector<std::string_view> roots;
  for (const auto& d : m.disks)
    if (!d.tree.root.IsZero()) roots.push_back(RawOf(d.tree.root));
  HAVEN_ASSIGN_OR_RETURN(Rows rows, LookupRows(db_, agent_id, roots));
  AgentRefusal missing{409, "", {}};
  std::set<std::string> missing_ids;
  for (size_t i = 0; i < m.disks.size(); ++i) {
    repository::DiskManifest& d = m.disks[i];
    if (d.tree.root.IsZero()) continue;
    const std::string raw(RawOf(d.tree.root));
    auto it = rows.find(raw);
    bool held = false;
    if (it != rows.end() && it->second.kind == kKindTree) {
      HAVEN_ASSIGN_OR_RETURN(held, StillHeld(repo, it->second));
    }
    if (!held) {
      if (missing_ids.insert(Hex(raw)).second &&
          missing.missing.size() < kMaxMissingListed)
        missing.missing.push_back(Hex(raw));
      continue;
    }
    // The tree under the root must be the one the manifest describes.
    const Shape& shape = it->second.shape;
    if (shape.height != d.tree.height || d.tree.count < shape.min ||
        d.tree.count > shape.max)
      return InvalidArgument(
          "manifest.disks[" + std::to_string(i) +
          "].tree.root: a tree of height " + std::to_string(shape.height) +
          " holding " + std::to_string(shape.min) + " to " +
          std::to_string(shape.max) + " chunks, not " +
          std::to_string(d.tree.count) + " chunks at height " +
          std::to_string(d.tree.height));
    d.tree.root = it->second.chunk;
  }
  if (!missing_ids.empty()) {
    missing.error = std::to_string(missing_ids.size()) +
                    " of the point's tree roots are not tree nodes held for "
                    "this agent (never uploaded, or removed since): upload "
                    "them and commit again; nothing was committed";
    return Answer(std::move(missing));
  }
  return FinishCommit(*lease, agent_id, upload_id, m);
}

}  // namespace haven::appliance
