#include "appliance/agent_store.h"

#include <openssl/evp.h>
#include <time.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "base/bytes.h"
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
// Rows per SQL statement (SQLite's older limit is 999 parameters).
constexpr size_t kLookupBatch = 500;
constexpr size_t kInsertBatch = 200;
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
  uint8_t codec = 0;
  ByteSpan data;
};

std::string FrameName(size_t k, const Frame& f) {
  return "chunk " + std::to_string(k) + " (" + Hex(f.upload_id) + ")";
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
    f.codec = p[pos + kIdBytes + 4];
    const uint32_t data_len = GetU32(p + pos + kIdBytes + 5);
    pos += kFrameHeader;
    if (f.raw_len == 0 || f.raw_len > kMaxChunkRawBytes)
      return InvalidArgument(FrameName(k, f) + ": raw_len " +
                             std::to_string(f.raw_len) + " is not from 1 to " +
                             std::to_string(kMaxChunkRawBytes));
    if (f.codec != kCodecPlain && f.codec != kCodecZstd)
      return InvalidArgument(FrameName(k, f) + ": unknown codec " +
                             std::to_string(f.codec) + " (0 plain, 1 zstd)");
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

struct Row {
  ChunkId chunk;
  uint64_t raw_size = 0;
};
using Rows = std::unordered_map<std::string, Row>;  // by raw upload id

// This agent's rows for `ids` (raw upload ids; repeats allowed).
Result<Rows> LookupRows(StateDb& db, const std::string& agent_id,
                        const std::vector<std::string_view>& ids) {
  Rows rows;
  for (size_t start = 0; start < ids.size(); start += kLookupBatch) {
    const size_t end = std::min(ids.size(), start + kLookupBatch);
    std::string sql =
        "SELECT upload_id, chunk_id, raw_size FROM agent_chunks WHERE "
        "agent_id = ?1 AND upload_id IN (";
    std::vector<SqlValue> params{agent_id};
    for (size_t i = start; i < end; ++i) {
      sql += (i == start ? "" : ", ");
      sql += "CAST(?" + std::to_string(params.size() + 1) + " AS BLOB)";
      params.emplace_back(std::string(ids[i]));
    }
    sql += ")";
    HAVEN_ASSIGN_OR_RETURN(std::vector<SqlRow> found, db.Query(sql, params));
    for (const SqlRow& r : found) {
      std::string upload = r.Text(0), chunk = r.Text(1);
      if (upload.size() != kIdBytes || chunk.size() != kIdBytes) continue;
      rows[upload] = {ToChunkId(chunk), static_cast<uint64_t>(r.Int(2))};
    }
  }
  return rows;
}

// Whether the repository still holds `row`'s chunk as data of its size
// (gc may have removed it since the agent uploaded it).
Result<bool> StillHeld(const Repository& repo, const Row& row) {
  HAVEN_ASSIGN_OR_RETURN(auto loc, repo.index().Get(row.chunk));
  return loc && loc->type == ChunkType::kData && loc->raw_len == row.raw_size;
}

struct NewRow {
  std::string upload_id;
  ChunkId chunk;
  uint64_t raw_size;
};

Status InsertRows(StateDb& db, const std::string& agent_id,
                  const std::vector<NewRow>& rows) {
  StateDb::Transaction tx(db);
  HAVEN_RETURN_IF_ERROR(tx.status());
  for (size_t start = 0; start < rows.size(); start += kInsertBatch) {
    const size_t end = std::min(rows.size(), start + kInsertBatch);
    std::string sql =
        "INSERT OR REPLACE INTO agent_chunks (agent_id, upload_id, chunk_id, "
        "raw_size) VALUES ";
    std::vector<SqlValue> params{agent_id};
    for (size_t i = start; i < end; ++i) {
      const size_t n = params.size();
      sql += (i == start ? "" : ", ");
      sql += "(?1, CAST(?" + std::to_string(n + 1) + " AS BLOB), CAST(?" +
             std::to_string(n + 2) + " AS BLOB), ?" + std::to_string(n + 3) +
             ")";
      params.emplace_back(rows[i].upload_id);
      params.emplace_back(std::string(RawOf(rows[i].chunk)));
      params.emplace_back(static_cast<int64_t>(rows[i].raw_size));
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
      "content"};
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
  if (c.upload_id.size() != 32 ||
      c.upload_id.find_first_not_of("0123456789abcdef") != std::string::npos)
    return InvalidArgument("upload_id must be 32 lower-case hex digits");
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
                             const std::string& name) {
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
    if (parent.empty() && it->kind == "files") parent = it->id;
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
  HAVEN_ASSIGN_OR_RETURN(std::vector<Frame> frames, ParseFrames(body));
  HAVEN_ASSIGN_OR_RETURN(auto lease, Acquire(agent_id));
  Repository& repo = lease->repo();
  repository::Decompressor decompressor;
  Bytes scratch;
  // Every frame is checked before anything is stored; its keyed id is
  // computed from the same decoded bytes, so each frame is decoded once
  // and stored as the agent encoded it (not compressed again).
  std::vector<ChunkId> keyed(frames.size());
  for (size_t k = 0; k < frames.size(); ++k) {
    const Frame& f = frames[k];
    auto raw = Decode(f, decompressor, scratch, FrameName(k, f));
    if (!raw.ok())
      return AgentAnswer<ChunksReceived>(AgentRefusal{
          422,
          FrameName(k, f) + ": its data is not a zstd frame of raw_len (" +
              std::to_string(f.raw_len) +
              ") bytes; nothing of this batch was stored",
          {}});
    if (Sha256(*raw) != f.upload_id)
      return AgentAnswer<ChunksReceived>(AgentRefusal{
          422,
          FrameName(k, f) +
              ": its bytes do not match its id; nothing of this batch was "
              "stored",
          {}});
    keyed[k] = repo.IdFor(ChunkType::kData, *raw);
  }
  std::vector<std::string_view> ids;
  for (const Frame& f : frames) ids.push_back(f.upload_id);
  HAVEN_ASSIGN_OR_RETURN(Rows had, LookupRows(db_, agent_id, ids));

  auto writer = repo.NewWriter();
  repository::WriteContext ctx(repo.config().compression_level);
  std::vector<NewRow> rows;
  std::unordered_set<std::string_view> seen;
  ChunksReceived out;
  out.received = frames.size();
  std::vector<ChunkId> fresh;  // new for this agent
  for (size_t k = 0; k < frames.size(); ++k) {
    const Frame& f = frames[k];
    if (!seen.insert(f.upload_id).second) continue;
    const ChunkId& id = keyed[k];
    HAVEN_RETURN_IF_ERROR(
        writer
            ->PutEncoded(ChunkType::kData, id, f.raw_len,
                         f.codec == kCodecZstd ? repository::kChunkCodecZstd
                                               : repository::kChunkCodecStored,
                         f.data, ctx)
            .status());
    rows.push_back({std::string(f.upload_id), id, f.raw_len});
    auto it = had.find(std::string(f.upload_id));
    bool known = false;
    if (it != had.end()) {
      HAVEN_ASSIGN_OR_RETURN(known, StillHeld(repo, it->second));
    }
    if (!known) fresh.push_back(id);
  }
  // Durable before the agent is told, and before the rows name them.
  HAVEN_RETURN_IF_ERROR(writer->Flush());
  // The figures count what is new for this agent, stored now or earlier
  // (by anyone): the answer does not tell whether another agent had the
  // bytes.
  for (const ChunkId& id : fresh) {
    HAVEN_ASSIGN_OR_RETURN(auto loc, repo.index().Get(id));
    ++out.new_chunks;
    if (loc) out.new_stored_bytes += loc->stored_len;
  }
  HAVEN_RETURN_IF_ERROR(InsertRows(db_, agent_id, rows));
  return AgentAnswer<ChunksReceived>(out);
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
  HAVEN_ASSIGN_OR_RETURN(
      auto done, db_.QueryOne("SELECT point_id, name, time FROM agent_commits "
                              "WHERE agent_id = ?1 AND upload_id = ?2",
                              {agent_id, req.upload_id}));
  if (done)
    return Answer(
        AgentCommit{done->Text(0), done->Text(1), done->Text(2), false});

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
    if (it != rows.end()) {
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
  m.tool = options_.tool;
  m.agent_id = agent_id;
  // The point's time is the appliance's clock at the commit: retention
  // orders points by time, and an agent must not date one into the future
  // to make the real ones look old.
  m.time = NowIso8601();
  // One commit at a time across agents: the name check and the commit go
  // together.
  std::lock_guard names_lock(names_mu_);
  auto parent = ParentOf(repo, agent_id, m.name);
  if (!parent.ok()) {
    if (parent.status().code() == Code::kAlreadyExists)
      return Answer(AgentRefusal{409, parent.status().message(), {}});
    return parent.status();
  }
  m.parent = *parent;
  repository::DiskManifest cat;
  cat.name = cat.kind = "catalog";
  cat.size = req.catalog_bytes;
  cat.tree = catalog_root;
  repository::DiskManifest con;
  con.name = con.kind = "content";
  con.size = req.content_bytes;
  con.tree = content_root;
  m.disks = {cat, con};
  HAVEN_RETURN_IF_ERROR(repo.CommitSnapshot(m));  // the commit point
  // A crash here loses only the retry's answer: a retry then commits the
  // same point again under a new id.
  HAVEN_RETURN_IF_ERROR(
      db_.Query("INSERT OR REPLACE INTO agent_commits (agent_id, upload_id, "
                "repository, point_id, name, time, committed) VALUES (?1, "
                "?2, ?3, ?4, ?5, ?6, ?7)",
                {agent_id, req.upload_id, lease->name(), m.id, m.name, m.time,
                 static_cast<int64_t>(::time(nullptr))})
          .status());
  return Answer(AgentCommit{m.id, m.name, m.time, true});
}

}  // namespace haven::appliance
