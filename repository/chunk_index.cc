#include "repository/chunk_index.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include "base/time.h"

namespace haven::repository {
namespace {

constexpr size_t kValueSize = 16 + 8 + 4 + 4 + 1;

Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return OkStatus();
  if (s.IsCorruption())
    return DataLoss(what + ": index is damaged (" + s.ToString() +
                    "); run 'haven rebuild-index'");
  if (s.IsIOError() && s.ToString().find("No space") != std::string::npos)
    return IoError(what + ": " + s.ToString());
  return IoError(what + ": " + s.ToString());
}

std::string IndexKey(const ChunkId& id) {
  std::string k(33, 'c');
  std::memcpy(k.data() + 1, id.bytes.data(), 32);
  return k;
}

std::string EncodeValue(const ChunkLocation& loc) {
  auto pack = HexDecode(loc.pack);
  Bytes v = pack ? *pack : Bytes(16, 0);
  PutU64(v, loc.offset);
  PutU32(v, loc.stored_len);
  PutU32(v, loc.raw_len);
  v.push_back(static_cast<uint8_t>(loc.type));
  return std::string(v.begin(), v.end());
}

rocksdb::Options MakeOptions() {
  rocksdb::Options o;
  o.create_if_missing = true;
  // Memory stays flat whatever the repository size: a small block cache,
  // small memtables, bloom filters so misses (new chunks) rarely touch disk.
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = rocksdb::NewLRUCache(16 << 20);
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  t.cache_index_and_filter_blocks = true;
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  o.write_buffer_size = 8 << 20;
  o.max_write_buffer_number = 2;
  o.max_open_files = 256;
  o.keep_log_file_num = 2;
  o.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  return o;
}

// A read-only open can race with a writer that is replacing its MANIFEST or
// deleting a WAL it just flushed; such a failure is retried.
Status OpenReadOnly(const rocksdb::Options& o, const std::string& dir,
                    rocksdb::DB** db) {
  rocksdb::Status s;
  for (int attempt = 0; attempt < 5; ++attempt) {
    s = rocksdb::DB::OpenForReadOnly(o, dir, db);
    if (s.ok() || !(s.IsIOError() || s.IsPathNotFound() || s.IsCorruption()))
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20 << attempt));
  }
  return FromRocks(s, "open index " + dir);
}

// Scans of the chunk entries stop at "d": keys of other kinds (and blocks
// that only hold them) are never read, so a damaged block of the catalog
// cannot fail a chunk scan.
const rocksdb::Slice kChunkScanEnd("d");
rocksdb::ReadOptions ChunkScan() {
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &kChunkScanEnd;
  return ro;
}

bool IsLockError(const rocksdb::Status& s) {
  std::string m = s.ToString();
  return s.IsIOError() &&
         (m.find("lock") != std::string::npos ||
          m.find("Resource temporarily unavailable") != std::string::npos);
}

}  // namespace

Result<std::unique_ptr<ChunkIndex>> ChunkIndex::Open(
    const std::string& dir, const OpenOptions& options) {
  rocksdb::Options o = MakeOptions();
  rocksdb::DB* db = nullptr;
  if (options.read_only) {
    o.create_if_missing = false;
    HAVEN_RETURN_IF_ERROR(OpenReadOnly(o, dir, &db));
    return std::unique_ptr<ChunkIndex>(new ChunkIndex(db, dir, true));
  }
  double deadline = MonotonicSeconds() + options.lock_wait_seconds;
  bool told = false;
  while (true) {
    rocksdb::Status s = rocksdb::DB::Open(o, dir, &db);
    if (s.ok()) break;
    if (!IsLockError(s)) return FromRocks(s, "open index " + dir);
    if (MonotonicSeconds() > deadline)
      return Unavailable(
          "the index is held by another haven process (a backup "
          "or maintenance job) for longer than the wait limit");
    if (!told && options.on_wait) {
      options.on_wait("waiting for another haven process to release the index");
      told = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return std::unique_ptr<ChunkIndex>(new ChunkIndex(db, dir, false));
}

Result<ChunkLocation> DecodeIndexValue(std::string_view v, const ChunkId& id) {
  if (v.size() != kValueSize || static_cast<uint8_t>(v[32]) > 1)
    return DataLoss("index entry for chunk " + id.Hex() +
                    " is malformed; run 'haven rebuild-index'");
  auto p = reinterpret_cast<const uint8_t*>(v.data());
  ChunkLocation loc;
  loc.pack = HexEncode(ByteSpan(p, 16));
  loc.offset = GetU64(p + 16);
  loc.stored_len = GetU32(p + 24);
  loc.raw_len = GetU32(p + 28);
  loc.type = static_cast<ChunkType>(p[32]);
  return loc;
}

namespace {
// A writer flushes its memtable on close: otherwise every later open,
// read-only ones included, replays the whole write-ahead log to rebuild it
// (after a first backup, every chunk entry: about 0.07 s per command per
// 30,000 chunks, more as the log grows). A failed flush loses nothing; the
// log still holds the entries.
std::shared_ptr<rocksdb::DB> Shared(rocksdb::DB* db, bool flush_on_close) {
  return std::shared_ptr<rocksdb::DB>(db, [flush_on_close](rocksdb::DB* d) {
    if (flush_on_close)
      d->Flush(rocksdb::FlushOptions()).PermitUncheckedError();
    d->Close().PermitUncheckedError();
    delete d;
  });
}
}  // namespace

ChunkIndex::ChunkIndex(rocksdb::DB* db, std::string dir, bool read_only)
    : db_(Shared(db, !read_only)),
      dir_(std::move(dir)),
      read_only_(read_only) {}

ChunkIndex::~ChunkIndex() = default;

std::shared_ptr<rocksdb::DB> ChunkIndex::Db() const {
  std::lock_guard<std::mutex> l(mu_);
  return db_;
}

Result<bool> ChunkIndex::Refresh() const {
  if (!read_only_) return false;
  std::lock_guard<std::mutex> l(mu_);
  double now = MonotonicSeconds();
  // Many misses in a row (a damaged repository) reopen at most every 2 s.
  if (now - last_refresh_ < 2) return false;
  rocksdb::Options o = MakeOptions();
  o.create_if_missing = false;
  rocksdb::DB* db = nullptr;
  HAVEN_RETURN_IF_ERROR(OpenReadOnly(o, dir_, &db));
  db_ = Shared(db, false);  // readers still holding the old one keep it alive
  last_refresh_ = MonotonicSeconds();
  return true;
}

Result<std::optional<ChunkLocation>> ChunkIndex::Get(const ChunkId& id) const {
  std::string v;
  rocksdb::Status s = Db()->Get(rocksdb::ReadOptions(), IndexKey(id), &v);
  if (s.IsNotFound()) {
    HAVEN_ASSIGN_OR_RETURN(bool refreshed, Refresh());
    if (refreshed) s = Db()->Get(rocksdb::ReadOptions(), IndexKey(id), &v);
  }
  if (s.IsNotFound()) return std::optional<ChunkLocation>();
  HAVEN_RETURN_IF_ERROR(FromRocks(s, "index lookup"));
  HAVEN_ASSIGN_OR_RETURN(ChunkLocation loc, DecodeIndexValue(v, id));
  return std::optional<ChunkLocation>(loc);
}

Status ChunkIndex::Put(
    const std::vector<std::pair<ChunkId, ChunkLocation>>& entries, bool sync) {
  rocksdb::WriteBatch batch;
  for (const auto& [id, loc] : entries) {
    rocksdb::Status s = batch.Put(IndexKey(id), EncodeValue(loc));
    HAVEN_RETURN_IF_ERROR(FromRocks(s, "index batch"));
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(Db()->Write(wo, &batch), "index write");
}

Status ChunkIndex::SetRepositoryId(const std::string& id) {
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(Db()->Put(wo, "m:repository", id), "index write");
}

Result<std::string> ChunkIndex::RepositoryId() const {
  std::string v;
  rocksdb::Status s = Db()->Get(rocksdb::ReadOptions(), "m:repository", &v);
  if (s.IsNotFound()) {  // a view taken while the first writer was flushing?
    HAVEN_ASSIGN_OR_RETURN(bool refreshed, Refresh());
    if (refreshed) s = Db()->Get(rocksdb::ReadOptions(), "m:repository", &v);
  }
  if (s.IsNotFound()) return std::string();
  HAVEN_RETURN_IF_ERROR(FromRocks(s, "index lookup"));
  return v;
}

Status ChunkIndex::Delete(const std::vector<ChunkId>& ids, bool sync) {
  rocksdb::WriteBatch batch;
  for (const auto& id : ids)
    HAVEN_RETURN_IF_ERROR(FromRocks(batch.Delete(IndexKey(id)), "index batch"));
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(Db()->Write(wo, &batch), "index write");
}

Status ChunkIndex::Sync() {
  return FromRocks(Db()->FlushWAL(true), "index sync");
}

Status ChunkIndex::DeleteAllChunks() {
  auto db = Db();
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(db->DeleteRange(wo, db->DefaultColumnFamily(), "c", "d"),
                   "index clear");
}

Status ChunkIndex::ForEach(
    const std::function<Status(const ChunkId&, const ChunkLocation&)>& fn,
    const std::function<void(const Status&)>& bad) const {
  auto db = Db();  // kept alive while iterating, even across a Refresh
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ChunkScan()));
  for (it->Seek("c"); it->Valid() && it->key().starts_with("c"); it->Next()) {
    if (it->key().size() != 33) {
      bad(DataLoss("index has a malformed key; run 'haven rebuild-index'"));
      continue;
    }
    ChunkId id;
    std::memcpy(id.bytes.data(), it->key().data() + 1, 32);
    auto loc = DecodeIndexValue(
        std::string_view(it->value().data(), it->value().size()), id);
    if (!loc.ok()) {
      bad(loc.status());
      continue;
    }
    HAVEN_RETURN_IF_ERROR(fn(id, *loc));
  }
  return FromRocks(it->status(), "index scan");
}

Result<uint64_t> ChunkIndex::CountChunks() const {
  auto db = Db();  // kept alive while iterating, even across a Refresh
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ChunkScan()));
  uint64_t n = 0;
  for (it->Seek("c"); it->Valid() && it->key().starts_with("c"); it->Next())
    ++n;
  HAVEN_RETURN_IF_ERROR(FromRocks(it->status(), "index scan"));
  return n;
}

Status ChunkIndex::VerifyChecksums() const {
  return FromRocks(Db()->VerifyChecksum(), "verify index");
}

Status ChunkIndex::WriteRaw(
    const std::vector<std::pair<std::string, std::string>>& puts,
    const std::vector<std::string>& deletes, bool sync) {
  rocksdb::WriteBatch batch;
  for (const auto& [k, v] : puts)
    HAVEN_RETURN_IF_ERROR(FromRocks(batch.Put(k, v), "index batch"));
  for (const auto& k : deletes)
    HAVEN_RETURN_IF_ERROR(FromRocks(batch.Delete(k), "index batch"));
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(Db()->Write(wo, &batch), "index write");
}

Result<std::optional<std::string>> ChunkIndex::GetRaw(
    const std::string& key) const {
  std::string v;
  rocksdb::Status s = Db()->Get(rocksdb::ReadOptions(), key, &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  HAVEN_RETURN_IF_ERROR(FromRocks(s, "index lookup"));
  return std::optional<std::string>(std::move(v));
}

Status ChunkIndex::ScanRaw(
    const std::string& prefix,
    const std::function<Status(std::string_view, std::string_view)>& fn)
    const {
  auto db = Db();  // kept alive while iterating, even across a Refresh
  std::string end = prefix;  // the first key after the prefix
  while (!end.empty() && static_cast<uint8_t>(end.back()) == 0xff)
    end.pop_back();
  if (!end.empty()) end.back() = static_cast<char>(end.back() + 1);
  rocksdb::Slice bound(end);
  rocksdb::ReadOptions ro;
  if (!end.empty()) ro.iterate_upper_bound = &bound;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next())
    HAVEN_RETURN_IF_ERROR(
        fn(std::string_view(it->key().data(), it->key().size()),
           std::string_view(it->value().data(), it->value().size())));
  return FromRocks(it->status(), "index scan");
}

Status ChunkIndex::DeletePrefix(char prefix) {
  auto db = Db();
  rocksdb::WriteOptions wo;
  wo.sync = true;
  std::string from(1, prefix), to(1, static_cast<char>(prefix + 1));
  return FromRocks(db->DeleteRange(wo, db->DefaultColumnFamily(), from, to),
                   "index clear");
}

// ---------------------------------------------------------------- ChunkSet

Result<std::unique_ptr<ChunkSet>> ChunkSet::Create(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec))
    return AlreadyExists("scratch set " + dir + " already exists");
  rocksdb::Options o = MakeOptions();
  o.error_if_exists = true;
  o.write_buffer_size = 16 << 20;
  rocksdb::DB* db = nullptr;
  HAVEN_RETURN_IF_ERROR(
      FromRocks(rocksdb::DB::Open(o, dir, &db), "create scratch set " + dir));
  return std::unique_ptr<ChunkSet>(new ChunkSet(db, dir));
}

ChunkSet::ChunkSet(rocksdb::DB* db, std::string dir)
    : db_(db), dir_(std::move(dir)) {}

ChunkSet::~ChunkSet() {
  if (db_) db_->Close().PermitUncheckedError();
  db_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

Status ChunkSet::Add(const std::vector<ChunkId>& ids) {
  if (ids.empty()) return OkStatus();
  rocksdb::WriteBatch batch;
  for (const auto& id : ids)
    HAVEN_RETURN_IF_ERROR(FromRocks(
        batch.Put(
            rocksdb::Slice(reinterpret_cast<const char*>(id.bytes.data()), 32),
            rocksdb::Slice()),
        "scratch batch"));
  rocksdb::WriteOptions wo;
  wo.disableWAL = true;  // scratch: a crash discards the whole set anyway
  added_ += ids.size();
  return FromRocks(db_->Write(wo, &batch), "scratch write");
}

Result<bool> ChunkSet::Contains(const ChunkId& id) const {
  std::string v;
  rocksdb::Status s = db_->Get(
      rocksdb::ReadOptions(),
      rocksdb::Slice(reinterpret_cast<const char*>(id.bytes.data()), 32), &v);
  if (s.IsNotFound()) return false;
  HAVEN_RETURN_IF_ERROR(FromRocks(s, "scratch lookup"));
  return true;
}

}  // namespace haven::repository
