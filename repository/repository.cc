#include "repository/repository.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>

#include "base/file.h"
#include "base/time.h"
#include "repository/chunk_tree.h"
#include "repository/local_backend.h"
#include "repository/manifest_file.h"
#include "repository/retention.h"
#include "repository/s3/s3_backend.h"

namespace haven::repository {
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxConfigFile = 64 * 1024;
constexpr size_t kMaxOpenPacksPerThread = 16;

std::string NewId() {
  uint8_t raw[16];
  RandomBytes(raw, sizeof raw);
  return HexEncode(ByteSpan(raw, sizeof raw));
}

}  // namespace

// ---------------------------------------------------------------- reading

Result<ObjectReader*> ReadContext::Pack(const Backend& backend,
                                        const std::string& pack) {
  for (auto it = readers_.begin(); it != readers_.end(); ++it) {
    if (it->first == pack) {
      readers_.splice(readers_.begin(), readers_, it);
      return readers_.front().second.get();
    }
  }
  auto reader = backend.OpenReader(PackKey(pack));
  if (!reader.ok()) {
    if (reader.status().code() == Code::kNotFound)
      return DataLoss("pack " + pack + " is missing");
    return reader.status();
  }
  readers_.emplace_front(pack, std::move(reader).value());
  if (readers_.size() > kMaxOpenPacksPerThread) readers_.pop_back();
  return readers_.front().second.get();
}

LoadNodeFn Repository::TreeNodeLoader(ReadContext& ctx) const {
  return [this, &ctx](const ChunkId& id) -> Result<Bytes> {
    Bytes node;
    HAVEN_RETURN_IF_ERROR(LoadTreeNode(id, node, ctx));
    return node;
  };
}

Status Repository::LoadTreeNode(const ChunkId& id, Bytes& out,
                                ReadContext& ctx) const {
  HAVEN_RETURN_IF_ERROR(ReadChunk(ChunkType::kTree, id, out, ctx));
  if (!(IdFor(ChunkType::kTree, out) == id))
    return DataLoss("chunk-list node " + id.Hex() + " does not match its id");
  return OkStatus();
}

Status Repository::ReadChunk(ChunkType type, const ChunkId& id, Bytes& out,
                             ReadContext& ctx) const {
  HAVEN_ASSIGN_OR_RETURN(auto loc, index_->Get(id));
  if (!loc)
    return DataLoss("chunk " + id.Hex() +
                    " is not in the index (missing from the repository, or the "
                    "index is stale: run 'haven rebuild-index')");
  std::string what = "pack " + loc->pack + ", chunk " + id.Hex();
  if (loc->type != type)
    return DataLoss(what + ": index says it is of another type");
  if (loc->raw_len > kMaxChunkSize || loc->stored_len > kMaxChunkSize + 1024)
    return DataLoss(what + ": index entry has an impossible length");
  HAVEN_ASSIGN_OR_RETURN(ObjectReader * pack, ctx.Pack(*backend_, loc->pack));
  ctx.sealed.resize(loc->stored_len);
  HAVEN_RETURN_IF_ERROR(
      pack->ReadAt(loc->offset, loc->stored_len, ctx.sealed.data(), what));
  return OpenChunk(data_key_, type, id, ctx.sealed, loc->raw_len,
                   ctx.decompressor, ctx.scratch, out, what);
}

Status Repository::ReadChunkEncoded(ChunkType type, const ChunkId& id,
                                    Bytes& raw, Bytes& encoded,
                                    ReadContext& ctx) const {
  HAVEN_RETURN_IF_ERROR(ReadChunk(type, id, raw, ctx));
  // OpenChunk left the authenticated plaintext (codec | payload) there.
  encoded.assign(ctx.scratch.begin(), ctx.scratch.end());
  return OkStatus();
}

// ---------------------------------------------------------------- writing

ChunkWriter::ChunkWriter(Repository* repo) : repo_(repo) {
  sealer_ = std::thread([this] { SealerLoop(); });
}

ChunkWriter::~ChunkWriter() {
  {
    std::lock_guard<std::mutex> f(finish_mu_);
    stop_ = true;
    finish_cv_.notify_all();
  }
  sealer_.join();
  // Sealed packs whose entries wait for a session (the index was busy): one
  // more try, so that the next backup reuses them. If the index is still
  // busy they stay unindexed until gc or rebuild-index (format rule 5).
  (void)IndexPending(/*wait=*/false);
}

void ChunkWriter::SealerLoop() {
  std::unique_lock<std::mutex> f(finish_mu_);
  while (true) {
    finish_cv_.wait(f, [&] { return stop_ || !sealing_.empty(); });
    if (sealing_.empty()) return;  // stop_ and nothing left
    std::unique_ptr<PackWriter> pack = std::move(sealing_.front());
    sealing_.pop_front();
    if (!seal_error_.ok()) continue;  // after a failure, discard the rest
    sealer_busy_ = true;
    f.unlock();
    Status s = FinishPack(std::move(pack));
    f.lock();
    sealer_busy_ = false;
    if (!s.ok() && seal_error_.ok()) seal_error_ = s;
    finish_cv_.notify_all();
  }
}

Status ChunkWriter::QueueForSealing(std::unique_ptr<PackWriter> pack) {
  std::unique_lock<std::mutex> f(finish_mu_);
  finish_cv_.wait(f, [&] { return sealing_.size() < 2 || !seal_error_.ok(); });
  if (!seal_error_.ok()) return seal_error_;
  sealing_.push_back(std::move(pack));
  finish_cv_.notify_all();
  return OkStatus();
}

Result<bool> ChunkWriter::Claim(const ChunkId& id) {
  {
    std::lock_guard<std::mutex> l(pending_mu_);
    if (pending_.count(id)) return false;
  }
  HAVEN_ASSIGN_OR_RETURN(auto loc, repo_->index().Get(id));
  if (loc) return false;
  std::lock_guard<std::mutex> l(pending_mu_);
  return pending_.insert(id).second;  // false: another thread has it
}

Status ChunkWriter::Append(ChunkType type, const ChunkId& id, uint32_t raw_len,
                           WriteContext& ctx) {
  std::unique_ptr<PackWriter> full;
  {
    std::lock_guard<std::mutex> l(pack_mu_);
    if (!current_) {
      HAVEN_ASSIGN_OR_RETURN(current_, PackWriter::Create(repo_->backend()));
    }
    HAVEN_RETURN_IF_ERROR(current_->Append(type, id, raw_len, ctx.sealed));
    if (current_->size() >= repo_->config().pack_size)
      full = std::move(current_);
  }
  new_chunks_ += 1;
  new_raw_bytes_ += raw_len;
  new_stored_bytes_ += ctx.sealed.size() + kPackEntrySize;
  if (full) HAVEN_RETURN_IF_ERROR(QueueForSealing(std::move(full)));
  return OkStatus();
}

Result<bool> ChunkWriter::Put(ChunkType type, const ChunkId& id, ByteSpan raw,
                              WriteContext& ctx) {
  HAVEN_ASSIGN_OR_RETURN(bool claimed, Claim(id));
  if (!claimed) return false;
  HAVEN_RETURN_IF_ERROR(SealChunk(repo_->data_key(), type, id, raw,
                                  ctx.compressor, ctx.scratch, ctx.sealed));
  HAVEN_RETURN_IF_ERROR(
      Append(type, id, static_cast<uint32_t>(raw.size()), ctx));
  return true;
}

Result<bool> ChunkWriter::PutEncoded(ChunkType type, const ChunkId& id,
                                     uint32_t raw_len, uint8_t codec,
                                     ByteSpan payload, WriteContext& ctx) {
  HAVEN_ASSIGN_OR_RETURN(bool claimed, Claim(id));
  if (!claimed) return false;
  HAVEN_RETURN_IF_ERROR(SealEncodedChunk(repo_->data_key(), type, id, codec,
                                         payload, ctx.scratch, ctx.sealed));
  HAVEN_RETURN_IF_ERROR(Append(type, id, raw_len, ctx));
  return true;
}

Status ChunkWriter::FinishPack(std::unique_ptr<PackWriter> pack) {
  HAVEN_RETURN_IF_ERROR(pack->Finish(repo_->data_key()));
  std::vector<std::pair<ChunkId, ChunkLocation>> batch;
  batch.reserve(pack->count());
  for (const auto& e : pack->entries())
    batch.push_back(
        {e.id, {pack->name(), e.offset, e.stored_len, e.raw_len, e.type}});
  {
    std::lock_guard<std::mutex> l(index_mu_);
    unindexed_.insert(unindexed_.end(), batch.begin(), batch.end());
  }
  return IndexPending(/*wait=*/false);
}

Status ChunkWriter::IndexPending(bool wait) {
  std::lock_guard<std::mutex> l(index_mu_);
  if (unindexed_.empty()) return OkStatus();
  Status s = wait ? repo_->index().Put(unindexed_, /*sync=*/true)
                  : repo_->index().TryPut(unindexed_);
  if (!wait && s.code() == Code::kUnavailable) return OkStatus();  // later
  HAVEN_RETURN_IF_ERROR(s);
  {
    std::lock_guard<std::mutex> p(pending_mu_);
    for (const auto& e : unindexed_) pending_.erase(e.first);
  }
  unindexed_.clear();
  return OkStatus();
}

Status ChunkWriter::Flush() {
  std::unique_ptr<PackWriter> last;
  {
    std::lock_guard<std::mutex> l(pack_mu_);
    last = std::move(current_);
  }
  if (last) HAVEN_RETURN_IF_ERROR(QueueForSealing(std::move(last)));
  {
    std::unique_lock<std::mutex> f(finish_mu_);
    finish_cv_.wait(f, [&] { return sealing_.empty() && !sealer_busy_; });
    if (!seal_error_.ok()) return seal_error_;
  }
  // Rule 2: the index is durable before a manifest names these chunks.
  HAVEN_RETURN_IF_ERROR(IndexPending(/*wait=*/true));
  return repo_->index().Sync();
}

// ---------------------------------------------------------------- lifecycle

namespace {

Result<Config> NewConfig(const InitOptions& options) {
  Config config;
  config.id = NewId();
  config.chunk_size = options.chunk_size;
  config.pack_size = options.pack_size;
  config.compression_level = options.compression_level;
  config.created = NowIso8601();
  HAVEN_RETURN_IF_ERROR(config.Validate());
  return config;
}

}  // namespace

Result<std::unique_ptr<Backend>> Repository::OpenStore(const std::string& spec,
                                                       std::string* local_dir) {
  if (!s3::IsS3Spec(spec)) {
    *local_dir = spec;
    return std::unique_ptr<Backend>(std::make_unique<LocalBackend>(spec));
  }
  HAVEN_ASSIGN_OR_RETURN(s3::S3Location loc, s3::ParseS3Spec(spec));
  HAVEN_ASSIGN_OR_RETURN(s3::S3Credentials creds,
                         s3::S3CredentialsFromEnvironment());
  s3::S3ClientOptions client;
  HAVEN_ASSIGN_OR_RETURN(s3::S3BackendOptions options,
                         s3::S3BackendOptionsFromEnvironment(&client));
  *local_dir = s3::S3CacheDir(loc);
  HAVEN_RETURN_IF_ERROR(MakeDirs(*local_dir));
  HAVEN_ASSIGN_OR_RETURN(auto backend,
                         s3::S3Backend::Open(std::move(loc), std::move(creds),
                                             std::move(client), options));
  return std::unique_ptr<Backend>(std::move(backend));
}

Status Repository::Init(const std::string& dir, std::string_view passphrase,
                        const InitOptions& options) {
  if (passphrase.empty()) return InvalidArgument("the passphrase is empty");
  // Invalid options are refused before anything is created.
  HAVEN_RETURN_IF_ERROR(NewConfig(options).status());
  if (s3::IsS3Spec(dir)) {
    std::string local;
    HAVEN_ASSIGN_OR_RETURN(auto backend, OpenStore(dir, &local));
    if (backend->Stat("config").ok())
      return AlreadyExists("a repository already exists in " +
                           backend->Describe());
    // The cache of an earlier repository at this location would name packs
    // this one does not have.
    std::error_code ec;
    for (const char* stale :
         {"index", "packs.known", "retention", "object-lock"})
      fs::remove_all(local + "/" + stale, ec);
    return Init(std::move(backend), local, passphrase, options);
  }
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    return AlreadyExists(dir +
                         " exists and is not a directory; a repository is a "
                         "directory: give a path that does not exist yet or "
                         "an empty directory");
  if (fs::exists(dir + "/config", ec))
    return AlreadyExists("a repository already exists at " + dir);
  if (fs::exists(dir, ec) && !fs::is_empty(dir, ec))
    return AlreadyExists(dir +
                         " exists and is not empty; refusing to create a "
                         "repository in it");
  auto backend = std::make_unique<LocalBackend>(dir);
  HAVEN_RETURN_IF_ERROR(backend->CreateLayout());
  return Init(std::move(backend), dir, passphrase, options);
}

Status Repository::Init(std::unique_ptr<Backend> backend,
                        const std::string& local_dir,
                        std::string_view passphrase,
                        const InitOptions& options) {
  if (passphrase.empty()) return InvalidArgument("the passphrase is empty");
  HAVEN_ASSIGN_OR_RETURN(Config config, NewConfig(options));
  auto existing = backend->Stat("config");
  if (existing.ok())
    return AlreadyExists("a repository already exists in " +
                         backend->Describe());
  if (existing.status().code() != Code::kNotFound) return existing.status();
  if (options.object_lock.seconds > 0) {
    HAVEN_RETURN_IF_ERROR(backend->SetObjectLock(options.object_lock));
    config.object_lock_seconds = options.object_lock.seconds;
    config.object_lock_mode = options.object_lock.mode;
  }
  for (const char* sub : {"locks", "tmp"})
    HAVEN_RETURN_IF_ERROR(MakeDirs(local_dir + "/" + sub));
  RepositorySecret secret;
  RandomBytes(secret.master.data(), secret.master.size());
  secret.shared_ids = options.shared_ids;
  secret.chunk_id_key = options.chunk_id_key;
  secret.tree_id_key = options.tree_id_key;
  KeySlots slots(backend.get(), "keys/", config.id);
  HAVEN_ASSIGN_OR_RETURN(std::string slot,
                         slots.Add(secret, passphrase, options.scrypt));
  (void)slot;
  {
    HAVEN_ASSIGN_OR_RETURN(auto index,
                           ChunkIndex::Open(local_dir + "/index", {}));
    HAVEN_RETURN_IF_ERROR(index->SetRepositoryId(config.id));
  }
  // The config is written last: its presence is what makes a repository.
  return backend->WriteAtomic("config", AsBytes(config.ToJson()),
                              WriteMode::kCreate);
}

Result<std::unique_ptr<Repository>> Repository::Open(
    const std::string& dir, std::string_view passphrase,
    const OpenOptions& options) {
  if (s3::IsS3Spec(dir)) {
    std::string local;
    HAVEN_ASSIGN_OR_RETURN(auto backend, OpenStore(dir, &local));
    return Open(std::move(backend), local, passphrase, options);
  }
  // The usual mistakes with a path, named before anything is opened: a
  // path that is wrong or not mounted must not read as "create one".
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR)
      return NotFound(
          "no Haven repository at " + dir +
          ": the path does not exist. Check the repository path, and that "
          "the file system holding it is mounted ('haven init' is only for "
          "creating a new repository)");
    return ErrnoStatus("open the repository at " + dir, errno);
  }
  if (!S_ISDIR(st.st_mode))
    return FailedPrecondition(
        dir +
        " is a file, not a repository: a Haven repository is a "
        "directory (holding config, keys/, snapshots/ and packs/); "
        "check the repository path");
  return Open(std::make_unique<LocalBackend>(dir), dir, passphrase, options);
}

Result<std::unique_ptr<Repository>> Repository::Open(
    std::unique_ptr<Backend> backend, const std::string& dir,
    std::string_view passphrase, const OpenOptions& options) {
  std::unique_ptr<Repository> r(new Repository);
  r->dir_ = dir;
  r->backend_ = std::move(backend);
  auto raw = r->backend_->Read("config", kMaxConfigFile);
  if (!raw.ok()) {
    if (raw.status().code() == Code::kNotFound)
      return NotFound(
          "no Haven repository at " + dir +
          " (it has no config file): check the repository path, and that "
          "the right file system is mounted there ('haven init' is only for "
          "creating a new repository)");
    return raw.status();
  }
  HAVEN_ASSIGN_OR_RETURN(
      r->config_, Config::FromJson(std::string(raw->begin(), raw->end())));
  r->slots_ =
      std::make_unique<KeySlots>(r->backend_.get(), "keys/", r->config_.id);
  HAVEN_ASSIGN_OR_RETURN(r->secret_, r->slots_->Unlock(passphrase, &r->slot_));
  r->data_key_ = DeriveKey(r->secret_.master, "haven/v1/data-encryption");
  r->hasher_ = std::make_unique<KeyedHasher>(r->secret_.ChunkIdKey());
  r->tree_hasher_ = std::make_unique<KeyedHasher>(r->secret_.TreeIdKey());
  {
    // The config is in the store, where anyone holding its credentials can
    // put a new version: a period shorter than this machine saw, no period,
    // or governance where it saw compliance, is refused.
    std::string pin = dir + "/object-lock";
    auto seen = ReadFile(pin, 64);
    std::string text = seen.ok() ? std::string(seen->begin(), seen->end()) : "";
    int64_t pinned = std::atoll(text.c_str());
    bool pinned_compliance = text.find("COMPLIANCE") != std::string::npos;
    const Config& c = r->config_;
    if (c.object_lock_seconds < pinned ||
        (pinned_compliance && c.object_lock_mode != "COMPLIANCE"))
      return FailedPrecondition(
          "the object lock of the repository in " + r->backend_->Describe() +
          " is now " +
          (c.object_lock_seconds > 0 ? std::to_string(c.object_lock_seconds) +
                                           " s " + c.object_lock_mode
                                     : std::string("off")) +
          ", less than the " + std::to_string(pinned) + " s " +
          (pinned_compliance ? "COMPLIANCE" : "GOVERNANCE") +
          " this machine saw before: its config was replaced. Nothing was "
          "read or written; restore the config's earlier version in the "
          "bucket");
    if (c.object_lock_seconds > 0 &&
        (c.object_lock_seconds > pinned ||
         (c.object_lock_mode == "COMPLIANCE") != pinned_compliance))
      HAVEN_RETURN_IF_ERROR(
          WriteFileAtomic(pin,
                          AsBytes(std::to_string(c.object_lock_seconds) + " " +
                                  c.object_lock_mode),
                          0600));
    // A reader writes nothing, so it needs no retention (nor the right to
    // read the bucket's lock configuration).
    if (options.write || options.exclusive)
      HAVEN_RETURN_IF_ERROR(r->EnableObjectLock());
  }
  HAVEN_RETURN_IF_ERROR(MakeDirs(dir + "/locks"));
  HAVEN_RETURN_IF_ERROR(MakeDirs(dir + "/tmp"));
  HAVEN_ASSIGN_OR_RETURN(
      r->lock_, RepositoryLock::Acquire(
                    dir,
                    options.exclusive ? RepositoryLock::Mode::kExclusive
                                      : RepositoryLock::Mode::kShared,
                    options.lock_wait_seconds, options.on_wait));
  if (r->backend_->Shared())
    HAVEN_RETURN_IF_ERROR(r->TakeStoreLock(options.exclusive, options));
  std::error_code ec;
  bool have_index = fs::exists(dir + "/index/CURRENT", ec);
  ChunkIndex::OpenOptions io;
  io.lock_wait_seconds = options.lock_wait_seconds;
  io.on_wait = options.on_wait;
  bool hold = options.write && options.hold_index;
  if (!have_index || hold) {
    HAVEN_RETURN_IF_ERROR(r->OpenIndexForRepair(io, have_index, options));
    // Repair must not call chunks another machine wrote missing.
    if (r->backend_->Shared() && have_index)
      HAVEN_RETURN_IF_ERROR(r->IndexNewPacks(io, r->index_.get()));
  } else {
    if (r->backend_->Shared()) HAVEN_RETURN_IF_ERROR(r->IndexNewPacks(io));
    io.read_only = true;
    io.write_sessions = options.write;
    HAVEN_ASSIGN_OR_RETURN(r->index_, ChunkIndex::Open(dir + "/index", io));
    HAVEN_ASSIGN_OR_RETURN(std::string owner, r->index_->RepositoryId());
    if (owner != r->config_.id) {
      if (!options.write)
        return FailedPrecondition("the index in " + dir +
                                  "/index belongs to another repository; run "
                                  "'haven rebuild-index'");
      r->index_.reset();
      io.read_only = io.write_sessions = false;
      HAVEN_RETURN_IF_ERROR(r->OpenIndexForRepair(io, true, options));
    }
  }
  if (options.write) RemoveAbandonedTempFiles(dir);
  if (!hold && !r->index_->read_only()) {
    // Rebuilt: from here on, a view and write sessions like any writer.
    r->index_.reset();
    io.read_only = true;
    io.write_sessions = options.write;
    HAVEN_ASSIGN_OR_RETURN(r->index_, ChunkIndex::Open(dir + "/index", io));
  }
  return r;
}

Status Repository::OpenIndexForRepair(const ChunkIndex::OpenOptions& io,
                                      bool had_index,
                                      const OpenOptions& options) {
  HAVEN_ASSIGN_OR_RETURN(index_, ChunkIndex::Open(dir_ + "/index", io));
  HAVEN_ASSIGN_OR_RETURN(std::string owner, index_->RepositoryId());
  if (owner == config_.id) return OkStatus();
  if (options.on_wait)
    options.on_wait(had_index
                        ? "index belongs to another repository; rebuilding it"
                        : "index is missing; rebuilding it from the packs");
  return RebuildIndexLocked().status();
}

Status Repository::BecomeExclusiveWriter(const OpenOptions& options) {
  index_.reset();
  HAVEN_RETURN_IF_ERROR(
      lock_->Upgrade(options.lock_wait_seconds, options.on_wait));
  if (store_lock_) {
    store_lock_.reset();
    HAVEN_RETURN_IF_ERROR(TakeStoreLock(true, options));
  }
  ChunkIndex::OpenOptions io;
  io.lock_wait_seconds = options.lock_wait_seconds;
  io.on_wait = options.on_wait;
  HAVEN_ASSIGN_OR_RETURN(index_, ChunkIndex::Open(dir_ + "/index", io));
  HAVEN_ASSIGN_OR_RETURN(std::string owner, index_->RepositoryId());
  if (owner != config_.id)
    return FailedPrecondition("the index in " + dir_ +
                              "/index belongs to another repository; run "
                              "'haven rebuild-index'");
  HAVEN_RETURN_IF_ERROR(EnableObjectLock());  // gc's rewritten packs
  // What other machines committed before this one held the store alone.
  if (backend_->Shared())
    HAVEN_RETURN_IF_ERROR(IndexNewPacks(io, index_.get()));
  RemoveAbandonedTempFiles(dir_);
  return OkStatus();
}

// ---------------------------------------------------------------- snapshots

namespace {

// The points in snapshots/ with their sizes and change markers (the
// catalog's staleness check), in no particular order; other names are
// ignored.
Result<std::vector<ListedPoint>> ListPoints(const Backend& backend) {
  auto listed = backend.List("snapshots/");
  if (!listed.ok()) return listed.status().WithContext("list snapshots");
  std::vector<ListedPoint> out;
  out.reserve(listed->size());
  for (ObjectInfo& o : *listed) {
    std::string id = o.name.substr(sizeof "snapshots/" - 1);
    if (!IsSnapshotId(id)) continue;
    out.push_back({std::move(id), o.size, o.mtime_ns});
  }
  return out;
}

}  // namespace

Catalog Repository::PointCatalog() const {
  return Catalog(*index_, data_key_, [this](const std::string& id) {
    return backend_->Read("snapshots/" + id, kMaxManifestFile);
  });
}

Status Repository::TakeStoreLock(bool exclusive, const OpenOptions& options) {
  StoreLockOptions so = StoreLockOptionsFromEnvironment();
  so.wait_seconds = options.lock_wait_seconds;
  so.on_wait = options.on_wait;
  HAVEN_ASSIGN_OR_RETURN(
      store_lock_, StoreLock::Acquire(*backend_,
                                      exclusive ? StoreLock::Mode::kExclusive
                                                : StoreLock::Mode::kShared,
                                      std::move(so)));
  return OkStatus();
}

Status Repository::EnableObjectLock() {
  if (config_.object_lock_seconds <= 0 || retention_) return OkStatus();
  HAVEN_RETURN_IF_ERROR(backend_->SetObjectLock(
      {config_.object_lock_seconds, config_.object_lock_mode}));
  retention_ = std::make_unique<PackRetention>(dir_ + "/retention");
  return OkStatus();
}

Status Repository::StoreLockValid() const {
  return store_lock_ ? store_lock_->Valid() : OkStatus();
}

Status Repository::BeforeCommit(const Manifest& m) {
  HAVEN_RETURN_IF_ERROR(StoreLockValid());
  if (!retention_) return OkStatus();
  // The packs this point's chunks are in; a chunk not yet in the index was
  // written by this job, into a pack retained from its upload (object_lock.h).
  std::set<std::string> keys;
  ReadContext ctx;
  for (const auto& d : m.disks) {
    auto note = [&](const ChunkId& id) -> Status {
      HAVEN_ASSIGN_OR_RETURN(auto loc, index_->Get(id));
      if (loc) keys.insert(PackKey(loc->pack));
      return OkStatus();
    };
    WalkHooks hooks;
    hooks.enter = [&](const ChunkId& node) -> Result<bool> {
      HAVEN_RETURN_IF_ERROR(note(node));
      return true;
    };
    HAVEN_RETURN_IF_ERROR(
        WalkTree(
            d.tree, TreeNodeLoader(ctx),
            [&](uint64_t, const ChunkId& id) { return note(id); }, d.chunk_size,
            hooks)
            .WithContext("retain the packs of disk " + d.name));
  }
  // Without its key slots and config no point can be read: they are kept
  // retained as long as the newest point too.
  keys.insert("config");
  HAVEN_ASSIGN_OR_RETURN(auto slots, backend_->List("keys/"));
  for (const auto& o : slots) keys.insert(o.name);
  // A margin over the manifest's own retention, which starts a moment
  // later, when it is written.
  int64_t now = static_cast<int64_t>(::time(nullptr));
  int64_t period = config_.object_lock_seconds;
  int64_t margin = std::min<int64_t>(3600, period / 10);
  auto kept = retention_->Ensure(*backend_, keys, now + period + margin,
                                 now + period + period / 4);
  if (!kept.ok())
    return kept.status().WithContext(
        "object lock: extend the retention of the point's packs (nothing was "
        "committed)");
  return OkStatus();
}

Status Repository::CommitSnapshot(Manifest& m) {
  HAVEN_RETURN_IF_ERROR(BeforeCommit(m));
  m.id = NewId();
  HAVEN_ASSIGN_OR_RETURN(Bytes file, SealManifest(data_key_, m));
  HAVEN_RETURN_IF_ERROR(
      backend_->WriteAtomic("snapshots/" + m.id, file, WriteMode::kCreate));
  // The point is committed; the catalog is a cache, and a point it lacks is
  // read from its file (and added by the next writer).
  auto info = backend_->Info("snapshots/" + m.id);
  if (info.ok())
    (void)PointCatalog().Add(m, file, {m.id, info->size, info->mtime_ns});
  return OkStatus();
}

Status Repository::CommitCopiedSnapshot(const Manifest& m) {
  if (!IsSnapshotId(m.id))
    return InvalidArgument("'" + m.id + "' is not a snapshot id");
  HAVEN_RETURN_IF_ERROR(BeforeCommit(m));
  HAVEN_ASSIGN_OR_RETURN(Bytes file, SealManifest(data_key_, m));
  Status written =
      backend_->WriteAtomic("snapshots/" + m.id, file, WriteMode::kCreate);
  if (written.code() == Code::kAlreadyExists)
    return AlreadyExists("recovery point " + m.id + " is already in " +
                         backend_->Describe());
  HAVEN_RETURN_IF_ERROR(written);
  auto info = backend_->Info("snapshots/" + m.id);
  if (info.ok())
    (void)PointCatalog().Add(m, file, {m.id, info->size, info->mtime_ns});
  return OkStatus();
}

Result<Manifest> Repository::LoadSnapshot(const std::string& id) const {
  std::string what = "snapshot " + id;
  if (!IsSnapshotId(id))
    return InvalidArgument("'" + id + "' is not a snapshot id");
  auto file = backend_->Read("snapshots/" + id, kMaxManifestFile);
  if (!file.ok()) {
    if (file.status().code() == Code::kNotFound) return NotFound("no " + what);
    return file.status();
  }
  return OpenManifest(data_key_, id, *file, what);
}

Result<std::vector<PointSummary>> Repository::ListSummaries(
    std::vector<std::string>* errors) const {
  HAVEN_ASSIGN_OR_RETURN(std::vector<ListedPoint> points, ListPoints(*backend_));
  return PointCatalog().Summaries(points, errors);
}

Result<std::vector<Manifest>> Repository::ListSnapshots(
    std::vector<std::string>* errors, SnapshotSource from) const {
  HAVEN_ASSIGN_OR_RETURN(std::vector<ListedPoint> points, ListPoints(*backend_));
  if (from == SnapshotSource::kCatalog)
    return PointCatalog().Manifests(points, errors);
  std::vector<Manifest> out;
  for (const ListedPoint& p : points) {
    auto m = LoadSnapshot(p.id);
    if (m.ok())
      out.push_back(std::move(m).value());
    else if (errors)
      errors->push_back(m.status().message());
  }
  std::sort(out.begin(), out.end(), [](const Manifest& a, const Manifest& b) {
    return PointBefore(a.time, a.id, b.time, b.id);
  });
  return out;
}

namespace {

// "file" for "files", "VM" for "vm", "image".
std::string KindWord(const std::string& kind) {
  if (kind == "files") return "file";
  if (kind == "vm") return "VM";
  return kind;
}

// "image or VM backup" for {"image", "vm"}; "...backups" with `plural`.
std::string KindNouns(const std::vector<std::string>& kinds, bool plural) {
  std::string out;
  for (size_t k = 0; k < kinds.size(); ++k)
    out += (k == 0                  ? ""
            : k + 1 == kinds.size() ? " or "
                                    : ", ") +
           KindWord(kinds[k]);
  return out + (plural ? " backups" : " backup");
}

// Why "latest" / "NAME:latest" found nothing among `summaries`, naming what
// is there instead (at most 20 names).
std::string LatestNotFound(const std::vector<PointSummary>& summaries,
                           const std::string& name,
                           const std::vector<std::string>& kinds) {
  auto usable = [&](const PointSummary& p) {
    return kinds.empty() ||
           std::find(kinds.begin(), kinds.end(), p.kind) != kinds.end();
  };
  std::set<std::string> names, other_kinds;
  for (const PointSummary& p : summaries) {
    if (usable(p))
      names.insert(p.name);
    else if (name.empty() || p.name == name)
      other_kinds.insert(p.kind);
  }
  const std::string what = kinds.empty() ? "snapshot" : KindNouns(kinds, false);
  const std::string others = KindNouns(
      std::vector<std::string>(other_kinds.begin(), other_kinds.end()), true);
  if (name.empty())
    return summaries.empty()
               ? "the repository has no snapshots"
               : "the repository has no " + what + " (it holds only " + others +
                     "; see 'haven snapshots')";
  std::string msg = "no " + what + " named '" + name + "'";
  if (!other_kinds.empty()) msg += ": its points are " + others;
  if (names.empty()) return msg + "; the repository has no " + what;
  msg +=
      "; the names " +
      (kinds.empty() ? std::string() : "of " + KindNouns(kinds, true) + " ") +
      "in this repository are: ";
  size_t shown = 0;
  for (const std::string& n : names) {
    if (shown == 20) {
      msg += ", ... (" + std::to_string(names.size() - 20) +
             " more: see 'haven snapshots')";
      break;
    }
    msg += (shown++ == 0 ? "" : ", ") + n;
  }
  return msg + " (use NAME:latest)";
}

}  // namespace

Result<Manifest> Repository::FindSnapshot(
    const std::string& spec, const std::vector<std::string>& kinds) const {
  if (spec.empty()) return InvalidArgument("empty snapshot name");
  std::string name;
  bool latest = false;
  if (spec == "latest") {
    latest = true;
  } else if (spec.size() > 7 &&
             spec.compare(spec.size() - 7, 7, ":latest") == 0) {
    latest = true;
    name = spec.substr(0, spec.size() - 7);
  }
  HAVEN_ASSIGN_OR_RETURN(std::vector<ListedPoint> points, ListPoints(*backend_));
  Catalog catalog = PointCatalog();
  std::vector<std::string> errors;
  if (latest) {
    HAVEN_ASSIGN_OR_RETURN(auto summaries, catalog.Summaries(points, &errors));
    if (!errors.empty()) {
      // A manifest that cannot be read might be the newest one: answering
      // with an older point would restore the wrong data without a word.
      std::sort(errors.begin(), errors.end());
      std::string msg =
          std::to_string(errors.size()) +
          " snapshot manifest(s) cannot be read, so '" + spec +
          "' cannot be resolved safely; name the recovery point by its id. "
          "Unreadable:";
      for (size_t k = 0; k < errors.size() && k < 20; ++k)
        msg += "\n  " + errors[k];
      if (errors.size() > 20)
        msg += "\n  ... and " + std::to_string(errors.size() - 20) + " more";
      return DataLoss(msg);
    }
    for (auto it = summaries.rbegin(); it != summaries.rend(); ++it) {
      if (!name.empty() && it->name != name) continue;
      if (!kinds.empty() &&
          std::find(kinds.begin(), kinds.end(), it->kind) == kinds.end())
        continue;
      for (const ListedPoint& p : points)
        if (p.id == it->id) return catalog.Load(p, &*it);
    }
    return NotFound(LatestNotFound(summaries, name, kinds));
  }
  std::vector<Manifest> hits;
  for (const ListedPoint& p : points) {
    if (p.id.compare(0, spec.size(), spec) != 0) continue;
    auto m = catalog.Load(p);
    if (m.ok())
      hits.push_back(std::move(m).value());
    else
      errors.push_back(m.status().message());
  }
  if (hits.size() == 1) return std::move(hits[0]);
  if (hits.size() > 1)
    return InvalidArgument("snapshot id prefix '" + spec + "' matches " +
                           std::to_string(hits.size()) +
                           " snapshots; give more digits");
  std::string msg = "no snapshot matches '" + spec +
                    "' (use an id prefix, latest or NAME:latest)";
  if (hits.empty() && errors.empty()) {
    // A backup name given alone: say how to name its latest point.
    auto summaries = catalog.Summaries(points, nullptr);
    if (summaries.ok())
      for (const PointSummary& p : *summaries)
        if (p.name == spec)
          return NotFound("no snapshot id starts with '" + spec + "'; '" +
                          spec + "' is a backup name: its latest point is '" +
                          spec + ":latest'");
  }
  if (!errors.empty()) msg += "; unreadable snapshots: " + errors.front();
  return NotFound(msg);
}

Status Repository::SetProtected(const std::string& id, bool on) {
  if (!IsSnapshotId(id))
    return InvalidArgument("'" + id + "' is not a snapshot id");
  std::string key = "protected/" + id;
  if (on) {
    if (IsProtected(id)) return OkStatus();
    std::string text = "{\"protected\": \"" + NowIso8601() + "\"}\n";
    return backend_->WriteAtomic(key, AsBytes(text), WriteMode::kReplace);
  }
  Status s = backend_->Delete(key);
  if (s.code() == Code::kNotFound) return OkStatus();
  return s.WithContext("unprotect " + id);
}

bool Repository::IsProtected(const std::string& id) const {
  return IsSnapshotId(id) && backend_->Stat("protected/" + id).ok();
}

namespace {
constexpr size_t kMaxVerification = 16u << 20;
std::string VerificationAad(const std::string& id) {
  return "haven-verified:" + id;
}
}  // namespace

Status Repository::WriteVerification(const std::string& id,
                                     const std::string& json) {
  if (!IsSnapshotId(id))
    return InvalidArgument("'" + id + "' is not a snapshot id");
  if (json.size() + kSealOverhead > kMaxVerification)
    return InvalidArgument("the verification record of " + id +
                           " is over 16 MiB");
  Bytes sealed;
  HAVEN_RETURN_IF_ERROR(
      Seal(data_key_, AsBytes(VerificationAad(id)), AsBytes(json), sealed));
  return backend_->WriteAtomic("verified/" + id, sealed, WriteMode::kReplace);
}

Result<std::optional<std::string>> Repository::ReadVerification(
    const std::string& id) const {
  if (!IsSnapshotId(id))
    return InvalidArgument("'" + id + "' is not a snapshot id");
  auto file = backend_->Read("verified/" + id, kMaxVerification);
  if (!file.ok()) {
    if (file.status().code() == Code::kNotFound)
      return std::optional<std::string>();
    return file.status();
  }
  Bytes plain;
  HAVEN_RETURN_IF_ERROR(Unseal(data_key_, AsBytes(VerificationAad(id)), *file,
                               plain, "verification record of " + id));
  return std::optional<std::string>(std::string(plain.begin(), plain.end()));
}

Result<std::set<std::string>> Repository::VerifiedIds() const {
  HAVEN_ASSIGN_OR_RETURN(auto objects, backend_->List("verified/"));
  std::set<std::string> ids;
  for (const auto& o : objects) {
    std::string id = o.name.substr(sizeof "verified/" - 1);
    if (IsSnapshotId(id)) ids.insert(std::move(id));
  }
  return ids;
}

Status Repository::DeleteSnapshot(const std::string& id) {
  if (!IsSnapshotId(id))
    return InvalidArgument("'" + id + "' is not a snapshot id");
  if (IsProtected(id))
    return FailedPrecondition("snapshot " + id +
                              " is protected; run 'haven unprotect' first");
  Status s = backend_->Delete("snapshots/" + id);
  if (s.code() == Code::kNotFound) return NotFound("no snapshot " + id);
  HAVEN_RETURN_IF_ERROR(s);
  // Listings ignore an entry whose file is gone; a failure here only leaves
  // the next writer something to clean.
  (void)PointCatalog().Remove(id);
  return OkStatus();
}

// ---------------------------------------------------------------- index

Result<RebuildReport> Repository::RebuildIndexLocked() {
  RebuildReport report;
  std::vector<std::pair<ChunkId, ChunkLocation>> batch;
  HAVEN_ASSIGN_OR_RETURN(auto packs, ListPackNames(*backend_));
  for (const std::string& name : packs) {
    auto entries = ReadPackHeader(*backend_, name, data_key_);
    if (!entries.ok()) {
      report.damaged.push_back(entries.status().message());
      continue;
    }
    ++report.packs;
    for (const auto& pe : *entries) {
      batch.push_back(
          {pe.id, {name, pe.offset, pe.stored_len, pe.raw_len, pe.type}});
      ++report.chunks;
    }
    if (batch.size() > 10000) {
      HAVEN_RETURN_IF_ERROR(index_->Put(batch, false));
      batch.clear();
    }
  }
  HAVEN_RETURN_IF_ERROR(index_->Put(batch, false));
  HAVEN_RETURN_IF_ERROR(index_->SetRepositoryId(config_.id));
  HAVEN_RETURN_IF_ERROR(index_->Sync());
  if (backend_->Shared()) HAVEN_RETURN_IF_ERROR(SaveKnownPacks(packs));
  return report;
}

Status Repository::SaveKnownPacks(const std::vector<std::string>& packs) const {
  std::string text;
  for (const auto& p : packs) text += p + "\n";
  return WriteFileAtomic(dir_ + "/packs.known", AsBytes(text), 0600);
}

Status Repository::IndexNewPacks(const ChunkIndex::OpenOptions& io,
                                 ChunkIndex* open_index) {
  HAVEN_ASSIGN_OR_RETURN(auto listed, ListPackNames(*backend_));
  std::set<std::string> packs(listed.begin(), listed.end()), known;
  auto raw = ReadFile(dir_ + "/packs.known", 1u << 30);
  if (raw.ok()) {
    std::string_view text(reinterpret_cast<const char*>(raw->data()),
                          raw->size());
    size_t pos = 0;
    while (pos < text.size()) {
      size_t nl = text.find('\n', pos);
      if (nl == std::string_view::npos) nl = text.size();
      if (nl > pos) known.emplace(text.substr(pos, nl - pos));
      pos = nl + 1;
    }
  }
  // A pack another machine's gc removed: entries here may name it, and a
  // backup would deduplicate against chunks that are gone. The index is
  // then filled again from the packs there are.
  bool vanished = false;
  for (const auto& k : known)
    if (!packs.count(k)) vanished = true;
  std::vector<std::string> fresh;
  for (const auto& p : packs)
    if (vanished || !known.count(p)) fresh.push_back(p);
  if (fresh.empty() && !vanished) return OkStatus();
  std::unique_ptr<ChunkIndex> owned;
  ChunkIndex* index = open_index;
  if (!index) {
    ChunkIndex::OpenOptions wio = io;
    wio.read_only = false;
    wio.write_sessions = false;
    HAVEN_ASSIGN_OR_RETURN(owned, ChunkIndex::Open(dir_ + "/index", wio));
    index = owned.get();
  }
  if (vanished) HAVEN_RETURN_IF_ERROR(index->DeleteAllChunks());
  std::set<std::string> unread;  // looked at again at the next open
  std::vector<std::pair<ChunkId, ChunkLocation>> batch;
  for (const std::string& name : fresh) {
    auto entries = ReadPackHeader(*backend_, name, data_key_);
    if (!entries.ok()) {
      // A damaged pack is check's to report; anything else (the store
      // unreachable) must not make its chunks look missing.
      if (entries.status().code() != Code::kDataLoss)
        return entries.status().WithContext("index the packs of " +
                                            backend_->Describe());
      unread.insert(name);
      continue;
    }
    for (const auto& pe : *entries) {
      HAVEN_ASSIGN_OR_RETURN(auto have, index->Get(pe.id));
      // Kept: an entry naming a pack that exists (this machine's own
      // copy, or a duplicate).
      if (have && packs.count(have->pack)) continue;
      batch.push_back(
          {pe.id, {name, pe.offset, pe.stored_len, pe.raw_len, pe.type}});
    }
    if (batch.size() > 10000) {
      HAVEN_RETURN_IF_ERROR(index->Put(batch, false));
      batch.clear();
    }
  }
  HAVEN_RETURN_IF_ERROR(index->Put(batch, true));
  HAVEN_RETURN_IF_ERROR(index->Sync());
  owned.reset();
  std::vector<std::string> now_known;
  for (const auto& p : packs)
    if (!unread.count(p)) now_known.push_back(p);
  return SaveKnownPacks(now_known);
}

Result<RebuildReport> Repository::RebuildIndex(const std::string& dir,
                                               std::string_view passphrase,
                                               const OpenOptions& options) {
  OpenOptions o = options;
  o.write = true;
  o.hold_index = true;  // no backup's entries between the clear and the refill
  auto repo = Open(dir, passphrase, o);
  if (repo.ok()) {
    // Opening reads few blocks; a damaged one it missed would outlive an
    // in-place rebuild (the catalog's keys share blocks with the chunks').
    Status verified = (*repo)->index_->VerifyChecksums();
    if (!verified.ok()) repo = verified;  // closes the index and the lock
  }
  if (!repo.ok() && repo.status().code() == Code::kDataLoss &&
      repo.status().message().find("index") != std::string::npos) {
    // RocksDB itself is unreadable: set it aside and start from nothing.
    std::error_code ec;
    std::string local = dir;
    if (s3::IsS3Spec(dir)) {
      auto loc = s3::ParseS3Spec(dir);
      if (!loc.ok()) return loc.status();
      local = s3::S3CacheDir(*loc);
    }
    std::string aside = local + "/index.damaged-" + NewId().substr(0, 8);
    fs::rename(local + "/index", aside, ec);
    if (ec) return IoError("move damaged index aside: " + ec.message());
    repo = Open(dir, passphrase, o);
  }
  if (!repo.ok()) return repo.status();
  // Drop every chunk entry first so entries for vanished packs go away; the
  // index lock stays held throughout.
  HAVEN_RETURN_IF_ERROR((*repo)->index_->DeleteAllChunks());
  HAVEN_RETURN_IF_ERROR(Catalog::Clear(*(*repo)->index_));
  HAVEN_ASSIGN_OR_RETURN(RebuildReport report, (*repo)->RebuildIndexLocked());
  // Fill the catalog again now, so readers do not fall back to the files.
  HAVEN_RETURN_IF_ERROR((*repo)->ListSnapshots(nullptr).status());
  return report;
}

}  // namespace haven::repository
