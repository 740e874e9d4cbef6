#include "repository/chunk_index.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
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

// Opens the index for writing, retrying while another process (or another
// instance in this one) holds RocksDB's lock, for up to `wait_seconds` (0:
// one try). `on_wait` is told once the wait has lasted `quiet_seconds`.
Status OpenWriter(const rocksdb::Options& o, const std::string& dir,
                  double wait_seconds, double quiet_seconds,
                  const std::function<void(const std::string&)>& on_wait,
                  rocksdb::DB** db) {
  double start = MonotonicSeconds();
  bool told = false;
  while (true) {
    rocksdb::Status s = rocksdb::DB::Open(o, dir, db);
    if (s.ok()) return OkStatus();
    if (!IsLockError(s)) return FromRocks(s, "open index " + dir);
    double waited = MonotonicSeconds() - start;
    if (waited >= wait_seconds)
      return Unavailable(
          "the index is held by another haven process (a backup "
          "or maintenance job) for longer than the wait limit");
    if (!told && on_wait && waited >= quiet_seconds) {
      on_wait("waiting for another haven process to release the index");
      told = true;
    }
    // A session lasts milliseconds: poll often. A held index is held for a
    // whole job.
    std::this_thread::sleep_for(
        std::chrono::milliseconds(quiet_seconds > 0 ? 10 : 200));
  }
}

// Sessions write no LOG file: each open would otherwise rotate one (more
// I/O per pack), and a LOG write that fails on a full disk leaves RocksDB's
// file writer in a state that its next log line aborts the process on
// (an assertion in Debian's build). Errors still come back as statuses.
class SilentLogger : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};

// A session does not flush on close, so the next open (a session's or a
// reader's) replays its write-ahead log; once the memtable holds this much
// (about 20,000 entries, some 50 ms of replay) the session flushes it.
constexpr uint64_t kSessionFlushBytes = 2 << 20;
// Nor more logs than this: each small session (a point's catalog entry, a
// pack's few entries) leaves one, and every open reads each of them (about
// 0.3 ms apiece here), so a nightly job of many VMs would pay for all the
// points written since the last flush, again at every open.
constexpr size_t kSessionMaxLogs = 16;
// A session waits this long at most for the compactions its flush made due.
constexpr double kSessionCompactionSeconds = 120;

// After a session's writes: bounds what later opens replay. Compactions that
// a flush makes due run to the end here, while the lock is held, because a
// close aborts them: short sessions would otherwise pile up level-0 files
// until RocksDB stalls writes. The work is what a long-lived writer would do
// in the background, done in the session that made it due.
Status SettleSession(rocksdb::DB* db) {
  uint64_t mem = 0;
  db->GetIntProperty("rocksdb.cur-size-all-mem-tables", &mem);
  rocksdb::VectorLogPtr logs;
  const bool many_logs =
      db->GetSortedWalFiles(logs).ok() && logs.size() > kSessionMaxLogs;
  if (mem < kSessionFlushBytes && !many_logs) return OkStatus();
  HAVEN_RETURN_IF_ERROR(
      FromRocks(db->Flush(rocksdb::FlushOptions()), "index flush"));
  double deadline = MonotonicSeconds() + kSessionCompactionSeconds;
  while (MonotonicSeconds() < deadline) {
    uint64_t pending = 0, running = 0;
    db->GetIntProperty("rocksdb.compaction-pending", &pending);
    db->GetIntProperty("rocksdb.num-running-compactions", &running);
    if (pending == 0 && running == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return OkStatus();
}

}  // namespace

Result<std::unique_ptr<ChunkIndex>> ChunkIndex::Open(
    const std::string& dir, const OpenOptions& options) {
  rocksdb::Options o = MakeOptions();
  rocksdb::DB* db = nullptr;
  if (options.read_only || options.write_sessions) {
    o.create_if_missing = false;
    HAVEN_RETURN_IF_ERROR(OpenReadOnly(o, dir, &db));
  } else {
    HAVEN_RETURN_IF_ERROR(
        OpenWriter(o, dir, options.lock_wait_seconds, 0, options.on_wait, &db));
  }
  return std::unique_ptr<ChunkIndex>(new ChunkIndex(db, dir, options));
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

ChunkIndex::ChunkIndex(rocksdb::DB* db, std::string dir,
                       const OpenOptions& options)
    : dir_(std::move(dir)),
      read_only_(options.read_only || options.write_sessions),
      sessions_(options.write_sessions),
      lock_wait_seconds_(options.lock_wait_seconds),
      on_wait_(options.on_wait) {
  db_ = Shared(db, !read_only_);
}

ChunkIndex::~ChunkIndex() = default;

std::shared_ptr<rocksdb::DB> ChunkIndex::Db() const {
  std::lock_guard<std::mutex> l(mu_);
  return db_;
}

Result<bool> ChunkIndex::Refresh(bool force) const {
  if (!read_only_) return false;
  std::lock_guard<std::mutex> l(mu_);
  double now = MonotonicSeconds();
  // Many misses in a row (a damaged repository) reopen at most every 2 s.
  if (!force && now - last_refresh_ < 2) return false;
  // Sessions finished before this open are in the new view.
  uint64_t seen = sessions_done_;
  rocksdb::Options o = MakeOptions();
  o.create_if_missing = false;
  rocksdb::DB* db = nullptr;
  HAVEN_RETURN_IF_ERROR(OpenReadOnly(o, dir_, &db));
  db_ = Shared(db, false);  // readers still holding the old one keep it alive
  last_refresh_ = MonotonicSeconds();
  std::erase_if(recent_,
                [seen](const auto& e) { return e.second.second <= seen; });
  return true;
}

Status ChunkIndex::SeeOwnWrites() const {
  bool stale;
  {
    std::lock_guard<std::mutex> l(mu_);
    stale = !recent_.empty();
  }
  if (stale) HAVEN_RETURN_IF_ERROR(Refresh(/*force=*/true).status());
  return OkStatus();
}

std::optional<ChunkLocation> ChunkIndex::Recent(const ChunkId& id) const {
  if (!sessions_) return std::nullopt;
  std::lock_guard<std::mutex> l(mu_);
  auto it = recent_.find(id);
  if (it == recent_.end()) return std::nullopt;
  return it->second.first;
}

Status ChunkIndex::Lookup(const std::string& key, std::string* v) const {
  rocksdb::Status s = Db()->Get(rocksdb::ReadOptions(), key, v);
  bool retry = false;
  if (s.IsNotFound()) {
    HAVEN_ASSIGN_OR_RETURN(retry, Refresh());
  } else if (!s.ok() && read_only_ && (s.IsIOError() || s.IsPathNotFound())) {
    // A table file this view had not opened yet was compacted away by a
    // writer: a fresh view names its replacement.
    HAVEN_ASSIGN_OR_RETURN(retry, Refresh(/*force=*/true));
  }
  if (retry) s = Db()->Get(rocksdb::ReadOptions(), key, v);
  if (s.IsNotFound()) return NotFound("not in the index");
  return FromRocks(s, "index lookup");
}

Result<std::optional<ChunkLocation>> ChunkIndex::Get(const ChunkId& id) const {
  if (auto recent = Recent(id)) return recent;
  std::string v;
  Status s = Lookup(IndexKey(id), &v);
  if (s.code() == Code::kNotFound) return std::optional<ChunkLocation>();
  HAVEN_RETURN_IF_ERROR(s);
  HAVEN_ASSIGN_OR_RETURN(ChunkLocation loc, DecodeIndexValue(v, id));
  return std::optional<ChunkLocation>(loc);
}

Status ChunkIndex::InSession(double wait_seconds,
                             const std::function<Status(rocksdb::DB*)>& fn) {
  std::unique_lock<std::mutex> one(session_mu_, std::defer_lock);
  if (wait_seconds > 0) {
    one.lock();
  } else if (!one.try_lock()) {
    return Unavailable("the index is being written by another job");
  }
  rocksdb::Options o = MakeOptions();
  o.create_if_missing = false;
  // Recovering the last session's log must not write a table file per
  // session; SettleSession decides when to flush.
  o.avoid_flush_during_recovery = true;
  // A session opens the index once per pack: skip what an open would read
  // of every table file (statistics, sizes) that a batch of puts never uses.
  o.skip_stats_update_on_db_open = true;
  o.skip_checking_sst_file_sizes_on_db_open = true;
  o.info_log = std::make_shared<SilentLogger>();
  rocksdb::DB* raw = nullptr;
  HAVEN_RETURN_IF_ERROR(
      OpenWriter(o, dir_, wait_seconds, /*quiet_seconds=*/2, on_wait_, &raw));
  std::unique_ptr<rocksdb::DB> db(raw);
  Status s = fn(db.get());
  if (s.ok()) s = SettleSession(db.get());
  if (!s.ok() && s.code() == Code::kIoError) {
    // A write that failed (ENOSPC) leaves RocksDB's log writer in an error
    // state that closing it trips over (an assertion in Debian's build):
    // the handle is dropped unclosed. Nothing is lost (what was synced is
    // in the log); the kernel releases the lock when this process exits,
    // and until then this process's other writes fail and other
    // processes' sessions wait. The job ends on this error anyway.
    (void)db.release();
    return s;
  }
  rocksdb::Status closed = db->Close();
  if (s.ok()) s = FromRocks(closed, "close index");
  return s;
}

Status ChunkIndex::Write(rocksdb::WriteBatch* batch, bool sync, bool wait) {
  rocksdb::WriteOptions wo;
  // A session's log is closed when the session ends; a later sync would not
  // reach it, so each session syncs its own.
  wo.sync = sync || sessions_;
  if (!sessions_) return FromRocks(Db()->Write(wo, batch), "index write");
  return InSession(wait ? lock_wait_seconds_ : 0, [&](rocksdb::DB* db) {
    return FromRocks(db->Write(wo, batch), "index write");
  });
}

Status ChunkIndex::PutEntries(
    const std::vector<std::pair<ChunkId, ChunkLocation>>& entries, bool sync,
    bool wait) {
  if (entries.empty()) return OkStatus();
  rocksdb::WriteBatch batch;
  for (const auto& [id, loc] : entries) {
    rocksdb::Status s = batch.Put(IndexKey(id), EncodeValue(loc));
    HAVEN_RETURN_IF_ERROR(FromRocks(s, "index batch"));
  }
  HAVEN_RETURN_IF_ERROR(Write(&batch, sync, wait));
  if (sessions_) {  // the view shows them after its next refresh
    std::lock_guard<std::mutex> l(mu_);
    uint64_t n = ++sessions_done_;
    for (const auto& [id, loc] : entries) recent_[id] = {loc, n};
  }
  return OkStatus();
}

Status ChunkIndex::Put(
    const std::vector<std::pair<ChunkId, ChunkLocation>>& entries, bool sync) {
  return PutEntries(entries, sync, /*wait=*/true);
}

Status ChunkIndex::TryPut(
    const std::vector<std::pair<ChunkId, ChunkLocation>>& entries) {
  return PutEntries(entries, /*sync=*/false, /*wait=*/false);
}

Status ChunkIndex::SetRepositoryId(const std::string& id) {
  rocksdb::WriteBatch batch;
  HAVEN_RETURN_IF_ERROR(
      FromRocks(batch.Put("m:repository", id), "index batch"));
  return Write(&batch, /*sync=*/true, /*wait=*/true);
}

Result<std::string> ChunkIndex::RepositoryId() const {
  std::string v;
  // NotFound refreshes once: a view taken while the first writer flushed?
  Status s = Lookup("m:repository", &v);
  if (s.code() == Code::kNotFound) return std::string();
  HAVEN_RETURN_IF_ERROR(s);
  return v;
}

Status ChunkIndex::Delete(const std::vector<ChunkId>& ids, bool sync) {
  rocksdb::WriteBatch batch;
  for (const auto& id : ids)
    HAVEN_RETURN_IF_ERROR(FromRocks(batch.Delete(IndexKey(id)), "index batch"));
  HAVEN_RETURN_IF_ERROR(Write(&batch, sync, /*wait=*/true));
  if (!sessions_) return OkStatus();
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& id : ids) recent_.erase(id);
  }
  // Deletions are rare (repair): a fresh view stops showing them at once.
  return Refresh(/*force=*/true).status();
}

Status ChunkIndex::Sync() {
  if (sessions_) return OkStatus();
  return FromRocks(Db()->FlushWAL(true), "index sync");
}

Status ChunkIndex::DeleteAllChunks() {
  auto clear = [](rocksdb::DB* db) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    return FromRocks(db->DeleteRange(wo, db->DefaultColumnFamily(), "c", "d"),
                     "index clear");
  };
  if (!sessions_) return clear(Db().get());
  HAVEN_RETURN_IF_ERROR(InSession(lock_wait_seconds_, clear));
  {
    std::lock_guard<std::mutex> l(mu_);
    recent_.clear();
  }
  return Refresh(/*force=*/true).status();
}

Status ChunkIndex::ForEach(
    const std::function<Status(const ChunkId&, const ChunkLocation&)>& fn,
    const std::function<void(const Status&)>& bad) const {
  HAVEN_RETURN_IF_ERROR(SeeOwnWrites());
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
  HAVEN_RETURN_IF_ERROR(SeeOwnWrites());
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
  if (!writable())
    return FailedPrecondition("the index is open read-only; not written");
  if (puts.empty() && deletes.empty()) return OkStatus();
  rocksdb::WriteBatch batch;
  for (const auto& [k, v] : puts)
    HAVEN_RETURN_IF_ERROR(FromRocks(batch.Put(k, v), "index batch"));
  for (const auto& k : deletes)
    HAVEN_RETURN_IF_ERROR(FromRocks(batch.Delete(k), "index batch"));
  HAVEN_RETURN_IF_ERROR(Write(&batch, sync, /*wait=*/true));
  if (!sessions_) return OkStatus();
  // The view does not show the session's batch until it is reopened.
  return Refresh(/*force=*/true).status();
}

Result<std::optional<std::string>> ChunkIndex::GetRaw(
    const std::string& key) const {
  std::string v;
  Status s = Lookup(key, &v);
  if (s.code() == Code::kNotFound) return std::optional<std::string>();
  HAVEN_RETURN_IF_ERROR(s);
  return std::optional<std::string>(std::move(v));
}

Status ChunkIndex::ScanRaw(
    const std::string& prefix,
    const std::function<Status(std::string_view, std::string_view)>& fn)
    const {
  HAVEN_RETURN_IF_ERROR(SeeOwnWrites());
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
  if (!writable())
    return FailedPrecondition("the index is open read-only; not written");
  std::string from(1, prefix), to(1, static_cast<char>(prefix + 1));
  auto clear = [&](rocksdb::DB* db) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    return FromRocks(db->DeleteRange(wo, db->DefaultColumnFamily(), from, to),
                     "index clear");
  };
  if (!sessions_) return clear(Db().get());
  HAVEN_RETURN_IF_ERROR(InSession(lock_wait_seconds_, clear));
  return Refresh(/*force=*/true).status();
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
