#include "repository/s3/s3_backend.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <future>
#include <thread>

#include "base/time.h"

namespace haven::repository::s3 {

namespace {

int64_t NowSeconds() { return static_cast<int64_t>(::time(nullptr)); }

std::string UtcTime(int64_t seconds) {
  return FormatTime(seconds * 1000000000, TimeStyle::kRfc3339Utc);
}

bool ParseSizeEnv(const char* name, long lo, long hi, long* out,
                  Status* error) {
  const char* v = std::getenv(name);
  if (!v || !*v) return false;
  char* end = nullptr;
  long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n < lo || n > hi) {
    *error = InvalidArgument(std::string(name) + "='" + v +
                             "' is not a number from " + std::to_string(lo) +
                             " to " + std::to_string(hi));
    return false;
  }
  *out = n;
  return true;
}

// HTTP dates (Last-Modified) to ns since the epoch; never 0 (backend.h).
int64_t HttpDateNs(const std::string& date) {
  time_t t = curl_getdate(date.c_str(), nullptr);
  return t <= 0 ? 1 : static_cast<int64_t>(t) * 1000000000;
}

}  // namespace

// --------------------------------------------------------- block cache

// Blocks of immutable objects (packs), least recently used dropped first.
class BlockCache {
 public:
  explicit BlockCache(size_t capacity) : capacity_(capacity) {}
  std::shared_ptr<const Bytes> Get(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    return it->second->second;
  }
  void Put(const std::string& key, std::shared_ptr<const Bytes> block) {
    std::lock_guard lock(mu_);
    if (map_.count(key) || block->size() > capacity_) return;
    lru_.emplace_front(key, block);
    map_[key] = lru_.begin();
    used_ += block->size();
    while (used_ > capacity_ && !lru_.empty()) {
      used_ -= lru_.back().second->size();
      map_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }

 private:
  using Entry = std::pair<std::string, std::shared_ptr<const Bytes>>;
  std::mutex mu_;
  size_t capacity_, used_ = 0;
  std::list<Entry> lru_;
  std::unordered_map<std::string, std::list<Entry>::iterator> map_;
};

// ------------------------------------------------------------ options

Result<S3BackendOptions> S3BackendOptionsFromEnvironment(
    S3ClientOptions* client) {
  S3BackendOptions o;
  Status error;
  long n = 0;
  if (ParseSizeEnv("HAVEN_S3_PARALLEL", 1, 64, &n, &error)) o.parallel = n;
  if (!error.ok()) return error;
  if (ParseSizeEnv("HAVEN_S3_CACHE_MB", 4, 1 << 20, &n, &error))
    o.cache_bytes = static_cast<size_t>(n) << 20;
  if (!error.ok()) return error;
  if (const char* ca = std::getenv("HAVEN_S3_CA_FILE"); ca && *ca && client)
    client->ca_file = ca;
  return o;
}

std::string S3CacheDir(const S3Location& location) {
  std::string root;
  if (const char* c = std::getenv("HAVEN_CACHE_DIR"); c && *c) {
    root = c;
  } else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) {
    root = std::string(x) + "/haven";
  } else if (::geteuid() == 0) {
    root = "/var/cache/haven";
  } else if (const char* h = std::getenv("HOME"); h && *h) {
    root = std::string(h) + "/.cache/haven";
  } else {
    root = "/tmp/haven-cache-" + std::to_string(::geteuid());
  }
  return root + "/s3-" + Sha256Hex(AsBytes(location.Spec())).substr(0, 16);
}

// ------------------------------------------------------------- reader

namespace {

class S3Reader : public ObjectReader {
 public:
  S3Reader(const S3Backend* backend, BlockCache* cache, size_t block,
           std::string name, uint64_t size)
      : backend_(backend),
        cache_(cache),
        block_(block),
        name_(std::move(name)),
        size_(size),
        cached_(name_.rfind("packs/", 0) == 0) {}
  uint64_t size() const override { return size_; }

  Status ReadAt(uint64_t offset, size_t len, uint8_t* out,
                const std::string& what) override {
    if (offset > size_ || len > size_ - offset)
      return DataLoss(what + ": bytes " + std::to_string(offset) + "+" +
                      std::to_string(len) + " run past the end of " + name_ +
                      " (" + std::to_string(size_) + " bytes)");
    if (len == 0) return OkStatus();
    if (!cached_) return Fetch(offset, len, out, what);
    uint64_t first = offset / block_, last = (offset + len - 1) / block_;
    uint64_t b = first;
    while (b <= last) {
      auto hit = cache_->Get(BlockKey(b));
      if (hit) {
        Copy(b, *hit, offset, len, out);
        ++b;
        continue;
      }
      // One request for the run of missing blocks from here; a reader
      // going through the object in order (a restore, a check) gets the
      // next blocks in the same request.
      uint64_t e = b;
      while (e < last && !cache_->Get(BlockKey(e + 1))) ++e;
      // In order: this read starts where the last ended, or a little
      // further on (chunks of the pack that other threads read, or that
      // this reader skips). The read-ahead doubles with each such read, so
      // a file restore that reads two neighbouring chunks fetches a block
      // more, and a restore going through the whole pack 7 more.
      bool forward = has_read_ && offset >= next_ && offset - next_ <= block_;
      streak_ = forward ? std::min(streak_ + 1, 3) : 0;
      uint64_t ahead = (uint64_t{1} << streak_) - 1;
      if (e == last && ahead > 0) {
        uint64_t blocks = (size_ + block_ - 1) / block_;
        while (e < last + ahead && e + 1 < blocks &&
               !cache_->Get(BlockKey(e + 1)))
          ++e;
      }
      uint64_t start = b * block_;
      uint64_t end = std::min<uint64_t>(size_, (e + 1) * block_);
      Bytes run(end - start);
      HAVEN_RETURN_IF_ERROR(Fetch(start, run.size(), run.data(), what));
      for (uint64_t i = b; i <= e; ++i) {
        uint64_t s = i * block_ - start;
        uint64_t n = std::min<uint64_t>(block_, run.size() - s);
        auto block =
            std::make_shared<const Bytes>(run.begin() + s, run.begin() + s + n);
        Copy(i, *block, offset, len, out);
        cache_->Put(BlockKey(i), std::move(block));
      }
      b = e + 1;
    }
    next_ = offset + len;
    has_read_ = true;
    return OkStatus();
  }

 private:
  std::string BlockKey(uint64_t b) const {
    return name_ + "#" + std::to_string(b);
  }
  // Copies the part of block `b` that falls in [offset, offset+len).
  void Copy(uint64_t b, const Bytes& block, uint64_t offset, size_t len,
            uint8_t* out) const {
    uint64_t bs = b * block_, be = bs + block.size();
    uint64_t s = std::max(bs, offset), e = std::min(be, offset + len);
    if (s < e) std::memcpy(out + (s - offset), block.data() + (s - bs), e - s);
  }
  Status Fetch(uint64_t offset, size_t len, uint8_t* out,
               const std::string& what) const {
    S3Request r;
    r.key = backend_->Key(name_);
    r.range = {{offset, len}};
    r.max_body = len;
    auto got = backend_->client().Send(r);
    if (!got.ok()) {
      if (got.status().code() == Code::kNotFound)
        return DataLoss(what + ": " + name_ + " is gone from the bucket");
      return got.status().WithContext(what);
    }
    if (got->body.size() != len)
      return DataLoss(what + ": " + name_ + " gave " +
                      std::to_string(got->body.size()) + " bytes where " +
                      std::to_string(len) + " were asked for");
    std::memcpy(out, got->body.data(), len);
    return OkStatus();
  }

  const S3Backend* backend_;
  BlockCache* cache_;
  size_t block_;
  std::string name_;
  uint64_t size_;
  bool cached_;
  uint64_t next_ = 0;  // where a read in order would start
  bool has_read_ = false;
  int streak_ = 0;  // reads in order in a row that missed the cache
};

// ------------------------------------------------------------- writer

class S3Writer : public ObjectWriter {
 public:
  S3Writer(S3Backend* backend, std::string name, size_t part_size)
      : backend_(backend), name_(std::move(name)), part_size_(part_size) {}
  ~S3Writer() override {
    for (auto& f : parts_)
      if (f.valid()) f.wait();
    if (!committed_ && !upload_id_.empty()) {  // abort: frees the parts
      S3Request r;
      r.method = "DELETE";
      r.key = backend_->Key(name_);
      r.query = {{"uploadId", upload_id_}};
      (void)backend_->client().Send(r);
    }
  }

  Status Append(ByteSpan data) override {
    if (!error_.ok()) return error_;
    buffer_.insert(buffer_.end(), data.begin(), data.end());
    size_ += data.size();
    if (buffer_.size() >= part_size_) return StartPart();
    return OkStatus();
  }
  uint64_t size() const override { return size_; }

  Status Commit() override {
    if (!error_.ok()) return error_;
    if (upload_id_.empty()) {  // one PUT; WriteAtomic checks it is new
      Status s = backend_->WriteAtomic(name_, buffer_, WriteMode::kCreate);
      if (s.ok()) committed_ = true;
      return s;
    }
    auto exists = backend_->Stat(name_);
    if (exists.ok()) return AlreadyExists(name_ + " already exists");
    if (exists.status().code() != Code::kNotFound) return exists.status();
    if (!buffer_.empty()) HAVEN_RETURN_IF_ERROR(StartPart());
    std::string xml = "<CompleteMultipartUpload>";
    for (size_t i = 0; i < parts_.size(); ++i) {
      Result<std::string> etag = parts_[i].get();
      if (!etag.ok()) return error_ = etag.status();
      xml += "<Part><PartNumber>" + std::to_string(i + 1) +
             "</PartNumber><ETag>" + *etag + "</ETag></Part>";
    }
    xml += "</CompleteMultipartUpload>";
    S3Request r;
    r.method = "POST";
    r.key = backend_->Key(name_);
    r.query = {{"uploadId", upload_id_}};
    r.body = AsBytes(xml);
    r.headers = {"Content-MD5: " + Md5Base64(r.body)};
    auto done = backend_->client().Send(r);
    if (!done.ok() && done.status().code() == Code::kNotFound) {
      // A completion retried after the first one was applied finds no
      // upload: the object is there, whole, if its size is ours.
      auto there = backend_->Stat(name_);
      if (there.ok() && *there == size_) done = S3Response{};
    }
    if (!done.ok())
      return error_ = done.status().WithContext("upload " + name_);
    // A completion can answer 200 with an error in its body.
    std::string_view body(reinterpret_cast<const char*>(done->body.data()),
                          done->body.size());
    if (body.find("<Error>") != std::string_view::npos)
      return error_ = IoError("upload " + name_ +
                              ": the store refused the "
                              "completion: " +
                              XmlFirst(body, "Code"));
    committed_ = true;
    // Stores may ignore lock headers given when a multipart upload starts
    // (Ceph RGW 16 does): the retention is set on the finished object.
    if (int64_t until = backend_->RetainUntilFor(name_); until > 0)
      HAVEN_RETURN_IF_ERROR(backend_->ExtendRetention(name_, until));
    return OkStatus();
  }

 private:
  Status StartPart() {
    if (upload_id_.empty()) {
      S3Request r;
      r.method = "POST";
      r.key = backend_->Key(name_);
      r.query = {{"uploads", ""}};
      r.headers = backend_->LockHeaders(name_);
      auto created = backend_->client().Send(r);
      if (!created.ok())
        return error_ = created.status().WithContext("start upload " + name_);
      std::string_view body(reinterpret_cast<const char*>(created->body.data()),
                            created->body.size());
      upload_id_ = XmlFirst(body, "UploadId");
      if (upload_id_.empty())
        return error_ = IoError("start upload " + name_ +
                                ": the store gave no upload id");
    }
    int number = static_cast<int>(parts_.size()) + 1;
    auto part = std::make_shared<Bytes>(std::move(buffer_));
    buffer_ = Bytes();
    backend_->AcquireSlot();
    S3Backend* backend = backend_;
    std::string key = backend_->Key(name_), upload = upload_id_;
    parts_.push_back(std::async(std::launch::async, [backend, key, upload,
                                                     number, part]() {
      S3Request r;
      r.method = "PUT";
      r.key = key;
      r.query = {{"partNumber", std::to_string(number)}, {"uploadId", upload}};
      r.body = *part;
      r.headers = {"Content-MD5: " + Md5Base64(*part)};
      auto sent = backend->client().Send(r);
      backend->ReleaseSlot();
      if (!sent.ok())
        return Result<std::string>(
            sent.status().WithContext("upload part " + std::to_string(number)));
      std::string etag = sent->Header("etag");
      if (etag.empty())
        return Result<std::string>(IoError("upload part " +
                                           std::to_string(number) +
                                           ": the store gave no ETag"));
      return Result<std::string>(etag);
    }));
    return OkStatus();
  }

  S3Backend* backend_;
  std::string name_;
  size_t part_size_;
  Bytes buffer_;
  uint64_t size_ = 0;
  std::string upload_id_;
  std::vector<std::future<Result<std::string>>> parts_;
  Status error_;
  bool committed_ = false;
};

}  // namespace

// ------------------------------------------------------------ backend

Result<std::unique_ptr<S3Backend>> S3Backend::Open(S3Location location,
                                                   S3Credentials credentials,
                                                   S3ClientOptions client,
                                                   S3BackendOptions options) {
  if (options.part_size < (5u << 20))
    return InvalidArgument("the multipart part size must be at least 5 MiB");
  std::unique_ptr<S3Backend> b(new S3Backend);
  b->client_ = std::make_unique<S3Client>(
      std::move(location), std::move(credentials), std::move(client));
  b->options_ = options;
  b->cache_ = std::make_unique<BlockCache>(options.cache_bytes);
  S3Request r;
  r.query = {{"versioning", ""}};
  auto v = b->client_->Send(r);
  if (!v.ok()) {
    std::string where = b->client_->location().Spec();
    if (v.status().code() == Code::kNotFound)
      return NotFound("the bucket of " + where +
                      " does not exist: create it first (with object lock "
                      "enabled if you want immutable points)");
    if (v.status().code() == Code::kPermissionDenied)
      return PermissionDenied(
          "the object store refused these credentials for " + where + " (" +
          v.status().message() +
          "); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the region");
    return v.status().WithContext("reach " + where);
  }
  std::string_view body(reinterpret_cast<const char*>(v->body.data()),
                        v->body.size());
  b->versioned_ = XmlFirst(body, "Status") == "Enabled";
  return b;
}

S3Backend::~S3Backend() = default;

std::string S3Backend::Describe() const {
  return "object store " + client_->location().Spec();
}

std::string S3Backend::Key(const std::string& name) const {
  const std::string& p = client_->location().prefix;
  return p.empty() ? name : p + "/" + name;
}

int64_t S3Backend::RetainUntilFor(const std::string& name) const {
  if (lock_.seconds <= 0 || !RetainedKind(name)) return 0;
  // Packs get the renewal on top, so that a backup shorter than it commits
  // a point whose new packs outlive its manifest (object_lock.h).
  int64_t period = lock_.seconds;
  if (name.rfind("packs/", 0) == 0) period += lock_.seconds / 4;
  return NowSeconds() + period;
}

std::vector<std::string> S3Backend::LockHeaders(const std::string& name) const {
  int64_t until = RetainUntilFor(name);
  if (until == 0) return {};
  return {"x-amz-object-lock-mode: " + lock_.mode,
          "x-amz-object-lock-retain-until-date: " + UtcTime(until)};
}

void S3Backend::AcquireSlot() {
  std::unique_lock lock(slot_mu_);
  slot_cv_.wait(lock, [&] { return slots_in_use_ < options_.parallel; });
  ++slots_in_use_;
}

void S3Backend::ReleaseSlot() {
  {
    std::lock_guard lock(slot_mu_);
    --slots_in_use_;
  }
  slot_cv_.notify_one();
}

Result<S3Response> S3Backend::Head(const std::string& name) const {
  HAVEN_RETURN_IF_ERROR(ValidateObjectName(name));
  S3Request r;
  r.method = "HEAD";
  r.key = Key(name);
  auto got = client_->Send(r);
  if (!got.ok() && got.status().code() == Code::kNotFound)
    return NotFound(name + " is not in " + Describe());
  return got;
}

Result<std::vector<ObjectInfo>> S3Backend::List(
    const std::string& prefix) const {
  std::string full = client_->location().prefix.empty()
                         ? prefix
                         : client_->location().prefix + "/" + prefix;
  std::vector<ObjectInfo> out;
  std::string token;
  for (int page = 0;; ++page) {
    S3Request r;
    r.query = {{"list-type", "2"}, {"max-keys", "1000"}, {"prefix", full}};
    if (!token.empty()) r.query.push_back({"continuation-token", token});
    auto got = client_->Send(r);
    if (!got.ok()) return got.status().WithContext("list " + prefix);
    std::string_view body(reinterpret_cast<const char*>(got->body.data()),
                          got->body.size());
    for (const std::string& c : XmlAll(body, "Contents")) {
      std::string key = XmlFirst(c, "Key");
      std::string strip = Key("");
      if (!client_->location().prefix.empty()) {
        if (key.rfind(strip, 0) != 0) continue;
        key = key.substr(strip.size());
      }
      // Names come from the store: only well-formed ones are objects here.
      if (!ValidateObjectName(key).ok()) continue;
      ObjectInfo info;
      info.name = key;
      char* end = nullptr;
      std::string size = XmlFirst(c, "Size");
      info.size = std::strtoull(size.c_str(), &end, 10);
      auto t = ParseIsoTime(XmlFirst(c, "LastModified"));
      info.mtime_ns = t.ok() ? *t * 1000000000 + 1 : 0;
      out.push_back(std::move(info));
    }
    if (XmlFirst(body, "IsTruncated") != "true") break;
    std::string next = XmlFirst(body, "NextContinuationToken");
    if (next.empty() || next == token || page > 1000000)
      return IoError("list " + prefix +
                     ": the store said the listing goes on but gave no "
                     "new continuation token");
    token = next;
  }
  return out;
}

Result<uint64_t> S3Backend::Stat(const std::string& name) const {
  HAVEN_ASSIGN_OR_RETURN(ObjectInfo info, Info(name));
  return info.size;
}

Result<ObjectInfo> S3Backend::Info(const std::string& name) const {
  HAVEN_ASSIGN_OR_RETURN(S3Response h, Head(name));
  ObjectInfo info;
  info.name = name;
  info.size = std::strtoull(h.Header("content-length").c_str(), nullptr, 10);
  info.mtime_ns = HttpDateNs(h.Header("last-modified"));
  return info;
}

Result<std::unique_ptr<ObjectReader>> S3Backend::OpenReader(
    const std::string& name) const {
  HAVEN_ASSIGN_OR_RETURN(uint64_t size, Stat(name));
  return std::unique_ptr<ObjectReader>(std::make_unique<S3Reader>(
      this, cache_.get(), options_.block_size, name, size));
}

Result<Bytes> S3Backend::Read(const std::string& name, size_t max_size) const {
  HAVEN_RETURN_IF_ERROR(ValidateObjectName(name));
  S3Request r;
  r.key = Key(name);
  r.max_body = max_size;
  auto got = client_->Send(r);
  if (!got.ok()) {
    if (got.status().code() == Code::kNotFound)
      return NotFound(name + " is not in " + Describe());
    return got.status();
  }
  return std::move(got->body);
}

Status S3Backend::WriteAtomic(const std::string& name, ByteSpan data,
                              WriteMode mode) {
  HAVEN_RETURN_IF_ERROR(ValidateObjectName(name));
  if (mode == WriteMode::kCreate) {
    auto exists = Head(name);
    if (exists.ok()) return AlreadyExists(name + " already exists");
    if (exists.status().code() != Code::kNotFound) return exists.status();
  }
  S3Request r;
  r.method = "PUT";
  r.key = Key(name);
  r.body = data;
  r.headers = LockHeaders(name);
  r.headers.push_back("Content-MD5: " + Md5Base64(data));
  if (mode == WriteMode::kCreate) r.headers.push_back("If-None-Match: *");
  auto put = client_->Send(r);
  if (!put.ok() && put.status().code() == Code::kAlreadyExists) {
    // A retried PUT whose first try arrived finds its own object: the same
    // bytes (a single PUT's ETag is the MD5 of its body) are success.
    auto h = Head(name);
    std::string etag = h.ok() ? h->Header("etag") : "";
    etag.erase(std::remove(etag.begin(), etag.end(), '"'), etag.end());
    unsigned char md[16];
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), md, &len, EVP_md5(), nullptr);
    if (!etag.empty() && etag == HexEncode(ByteSpan(md, len)))
      return OkStatus();
    return AlreadyExists(name + " already exists");
  }
  if (!put.ok()) return put.status().WithContext("write " + name);
  return OkStatus();
}

Result<std::unique_ptr<ObjectWriter>> S3Backend::NewObjectWriter(
    const std::string& name) {
  HAVEN_RETURN_IF_ERROR(ValidateObjectName(name));
  return std::unique_ptr<ObjectWriter>(
      std::make_unique<S3Writer>(this, name, options_.part_size));
}

Status S3Backend::DeleteAllVersions(const std::string& name) {
  // Objects rewritten in place (lock objects, protection markers) have a
  // version per write; deleting only the newest would bring back the one
  // before.
  HAVEN_RETURN_IF_ERROR(ValidateObjectName(name));
  S3Request l;
  l.query = {{"prefix", Key(name)}, {"versions", ""}};
  auto listed = client_->Send(l);
  if (!listed.ok()) return listed.status().WithContext("delete " + name);
  std::string_view body(reinterpret_cast<const char*>(listed->body.data()),
                        listed->body.size());
  std::vector<std::string> entries = XmlAll(body, "Version");
  for (auto& m : XmlAll(body, "DeleteMarker")) entries.push_back(std::move(m));
  bool any = false;
  for (const std::string& v : entries) {
    if (XmlFirst(v, "Key") != Key(name)) continue;
    S3Request d;
    d.method = "DELETE";
    d.key = Key(name);
    d.query = {{"versionId", XmlFirst(v, "VersionId")}};
    auto del = client_->Send(d);
    if (!del.ok()) return del.status().WithContext("delete " + name);
    any = true;
  }
  if (!any) return NotFound(name + " is not in " + Describe());
  return OkStatus();
}

Status S3Backend::Delete(const std::string& name) {
  // The version listing tells NotFound itself.
  if (versioned_ && !RetainedKind(name)) return DeleteAllVersions(name);
  HAVEN_ASSIGN_OR_RETURN(S3Response h, Head(name));
  S3Request r;
  r.method = "DELETE";
  r.key = Key(name);
  // On a versioned bucket a plain DELETE only hides the object behind a
  // delete marker; removing the version itself frees the space.
  std::string version = h.Header("x-amz-version-id");
  if (versioned_ && (version.empty() || version == "null"))
    return FailedPrecondition(
        "delete " + name +
        ": the versioned bucket gave no version id, and a plain delete "
        "would only hide the object; nothing was deleted");
  if (versioned_) r.query = {{"versionId", version}};
  auto del = client_->Send(r);
  if (!del.ok()) {
    if (del.status().code() == Code::kPermissionDenied) {
      std::string until = h.Header("x-amz-object-lock-retain-until-date");
      if (!until.empty())
        return FailedPrecondition(name + " is retained by object lock until " +
                                  until + "; it can be removed after that");
    }
    return del.status().WithContext("delete " + name);
  }
  return OkStatus();
}

Status S3Backend::SetObjectLock(const ObjectLockPolicy& policy) {
  if (policy.seconds > 0 && policy.mode != "GOVERNANCE" &&
      policy.mode != "COMPLIANCE")
    return InvalidArgument(
        "object lock mode must be GOVERNANCE or "
        "COMPLIANCE, not '" +
        policy.mode + "'");
  if (policy.seconds > 0 && lock_.seconds <= 0) {
    HAVEN_ASSIGN_OR_RETURN(bool enabled, BucketHasObjectLock());
    if (!enabled)
      return FailedPrecondition(
          "the bucket of " + client_->location().Spec() +
          " does not have object lock enabled, so nothing written there "
          "could be retained; object lock can only be enabled when a bucket "
          "is created: create one with it (x-amz-bucket-object-lock-enabled) "
          "or leave out --object-lock");
  }
  lock_ = policy;
  return OkStatus();
}

Result<int64_t> S3Backend::RetainedUntil(const std::string& name) const {
  HAVEN_ASSIGN_OR_RETURN(S3Response h, Head(name));
  std::string until = h.Header("x-amz-object-lock-retain-until-date");
  if (until.empty()) return int64_t{0};
  auto t = ParseIsoTime(until);
  if (!t.ok())
    return IoError(name +
                   ": the store gave a retention date that does not "
                   "parse: " +
                   until.substr(0, 40));
  return *t;
}

Status S3Backend::ExtendRetention(const std::string& name, int64_t until) {
  if (lock_.seconds <= 0)
    return FailedPrecondition("object lock is not set for " + Describe());
  std::string xml = "<Retention><Mode>" + lock_.mode +
                    "</Mode><RetainUntilDate>" + UtcTime(until) +
                    "</RetainUntilDate></Retention>";
  S3Request r;
  r.method = "PUT";
  r.key = Key(name);
  r.query = {{"retention", ""}};
  r.body = AsBytes(xml);
  r.headers = {"Content-MD5: " + Md5Base64(r.body)};
  auto put = client_->Send(r);
  if (!put.ok()) return put.status().WithContext("extend retention of " + name);
  return OkStatus();
}

Result<uint64_t> S3Backend::RemoveAbandonedUploads(int64_t age_seconds) {
  S3Request r;
  r.query = {{"uploads", ""}, {"prefix", Key("")}};
  auto got = client_->Send(r);
  if (!got.ok()) return got.status().WithContext("list unfinished uploads");
  std::string_view body(reinterpret_cast<const char*>(got->body.data()),
                        got->body.size());
  uint64_t removed = 0;
  for (const std::string& u : XmlAll(body, "Upload")) {
    auto started = ParseIsoTime(XmlFirst(u, "Initiated"));
    if (!started.ok() || *started > NowSeconds() - age_seconds) continue;
    S3Request d;
    d.method = "DELETE";
    d.key = XmlFirst(u, "Key");
    d.query = {{"uploadId", XmlFirst(u, "UploadId")}};
    if (d.key.rfind(Key(""), 0) != 0) continue;
    if (client_->Send(d).ok()) ++removed;
  }
  return removed;
}

Result<bool> S3Backend::BucketHasObjectLock() const {
  S3Request r;
  r.query = {{"object-lock", ""}};
  r.accept = {404};
  auto got = client_->Send(r);
  if (!got.ok())
    return got.status().WithContext("read the bucket's object lock");
  std::string_view body(reinterpret_cast<const char*>(got->body.data()),
                        got->body.size());
  return got->status == 200 && XmlFirst(body, "ObjectLockEnabled") == "Enabled";
}

}  // namespace haven::repository::s3
