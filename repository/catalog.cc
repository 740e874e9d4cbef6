#include "repository/catalog.h"

#include <time.h>

#include <algorithm>
#include <optional>
#include <unordered_set>

#include "repository/manifest_file.h"
#include "repository/retention.h"

namespace haven::repository {
namespace {

constexpr uint8_t kSummaryVersion = 1;
constexpr char kSummaryPrefix = 's';
constexpr char kManifestPrefix = 't';
constexpr size_t kIdBytes = 16;
// Entries a writer adds in one batch while it catches up (bounds memory).
constexpr size_t kBatchEntries = 512;
// File systems stamp mtimes from a coarse clock (a few ms), so a file
// changed in place just after its entry was written can keep its mtime.
// As git does for its index, an entry written less than this long after the
// file's mtime is "racy": the file is read again (and the entry rewritten
// by a writer) until the entry is comfortably younger than the file.
constexpr int64_t kRacyNs = 2'000'000'000;
constexpr size_t kStatBytes = 24;  // size, mtime, recorded
constexpr const char* kRebuildHint =
    " (the index is damaged or was altered; run 'haven rebuild-index')";

std::string EntryKey(char prefix, const std::string& id) {
  std::optional<Bytes> raw = HexDecode(id);  // ids are checked before
  std::string k(1, prefix);
  if (raw) k.append(raw->begin(), raw->end());
  return k;
}

// The id a catalog key names, or "" if the key is malformed.
std::string IdOf(std::string_view key) {
  if (key.size() != 1 + kIdBytes) return "";
  return HexEncode(ByteSpan(reinterpret_cast<const uint8_t*>(key.data()) + 1,
                            kIdBytes));
}

std::string SummaryAad(const std::string& id) {
  return "haven-catalog:" + id;
}

std::string CatalogWhat(const std::string& id) {
  return "snapshot " + id + ", its entry in the index catalog";
}

Status WithHint(const Status& s) {
  if (s.code() != Code::kDataLoss) return s;
  return DataLoss(s.message() + kRebuildHint);
}

bool PutField(Bytes& out, const std::string& s) {
  if (s.size() > 0xffff) return false;
  out.push_back(static_cast<uint8_t>(s.size()));
  out.push_back(static_cast<uint8_t>(s.size() >> 8));
  out.insert(out.end(), s.begin(), s.end());
  return true;
}

bool GetField(const Bytes& in, size_t& pos, std::string& s) {
  if (in.size() - pos < 2) return false;
  size_t n = in[pos] | (size_t{in[pos + 1]} << 8);
  pos += 2;
  if (in.size() - pos < n) return false;
  s.assign(in.begin() + pos, in.begin() + pos + n);
  pos += n;
  return true;
}

int64_t NowNs() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// Whether a summary entry describes the file as listed now.
// Without a change marker (mtime_ns 0: the backend cannot tell) an entry is
// never fresh: a size alone cannot show an in-place change of the same size.
bool Fresh(std::string_view value, const ListedPoint& listed) {
  if (listed.mtime_ns == 0 || value.size() < kStatBytes) return false;
  auto v = reinterpret_cast<const uint8_t*>(value.data());
  auto mtime = static_cast<int64_t>(GetU64(v + 8));
  auto recorded = static_cast<int64_t>(GetU64(v + 16));
  return GetU64(v) == listed.size && mtime == listed.mtime_ns &&
         recorded - mtime >= kRacyNs;
}

PointSummary SummaryOf(const Manifest& m) {
  return {m.id, m.name, m.kind, m.time};
}

template <typename T, typename TimeOf, typename IdOfT>
void SortOldestFirst(std::vector<T>& v, TimeOf time, IdOfT id) {
  std::sort(v.begin(), v.end(), [&](const T& a, const T& b) {
    return PointBefore(time(a), id(a), time(b), id(b));
  });
}

}  // namespace

bool PointBefore(const std::string& time_a, const std::string& id_a,
                 const std::string& time_b, const std::string& id_b) {
  if (TimeBefore(time_a, time_b)) return true;
  if (TimeBefore(time_b, time_a)) return false;
  return id_a < id_b;
}

Result<PointSummary> Catalog::OpenSummary(const std::string& id,
                                          std::string_view sealed) const {
  std::string what = CatalogWhat(id);
  Bytes plain;
  Status s = Unseal(key_, AsBytes(SummaryAad(id)), AsBytes(sealed), plain,
                    what);
  if (!s.ok()) return WithHint(s);
  PointSummary p;
  p.id = id;
  size_t pos = 1;
  if (plain.empty() || plain[0] != kSummaryVersion ||
      !GetField(plain, pos, p.name) || !GetField(plain, pos, p.kind) ||
      !GetField(plain, pos, p.time) || pos != plain.size())
    return DataLoss(what + ": malformed summary" + kRebuildHint);
  return p;
}

Status Catalog::Write(Batch& puts, std::vector<std::string>& deletes) {
  if (!index_.writable() || (puts.empty() && deletes.empty()))
    return OkStatus();
  // Not synced: a lost entry is read from its file next time.
  Status s = index_.WriteRaw(puts, deletes, /*sync=*/false);
  puts.clear();
  deletes.clear();
  return s;
}

Status Catalog::Entries(const Manifest& m, ByteSpan file,
                        const ListedPoint& listed, Batch& out) const {
  Bytes summary{kSummaryVersion}, sealed;
  if (!PutField(summary, m.name) || !PutField(summary, m.kind) ||
      !PutField(summary, m.time))
    return InvalidArgument("snapshot " + m.id + ": a field is too long");
  HAVEN_RETURN_IF_ERROR(
      Seal(key_, AsBytes(SummaryAad(m.id)), summary, sealed));
  Bytes value;
  PutU64(value, listed.size);
  PutU64(value, static_cast<uint64_t>(listed.mtime_ns));
  PutU64(value, static_cast<uint64_t>(NowNs()));
  value.insert(value.end(), sealed.begin(), sealed.end());
  out.push_back(
      {EntryKey(kSummaryPrefix, m.id), std::string(value.begin(), value.end())});
  out.push_back(
      {EntryKey(kManifestPrefix, m.id), std::string(file.begin(), file.end())});
  return OkStatus();
}

Result<Manifest> Catalog::FromFile(const ListedPoint& point, Batch* add) {
  auto file = read_file_(point.id);
  if (!file.ok()) {
    if (file.status().code() == Code::kNotFound)
      return NotFound("no snapshot " + point.id);
    return file.status();
  }
  HAVEN_ASSIGN_OR_RETURN(
      Manifest m, OpenManifest(key_, point.id, *file, "snapshot " + point.id,
                   &decompressor_));
  // A point the catalog cannot hold is still answered from its file.
  if (add && index_.writable()) (void)Entries(m, *file, point, *add);
  return m;
}

Status Catalog::ScanSummaries(const Listing& listed,
                              std::unordered_set<std::string>& fresh,
                              std::vector<PointSummary>* out,
                              std::vector<std::string>& deletes,
                              std::vector<std::string>* errors) const {
  return index_.ScanRaw(
      std::string(1, kSummaryPrefix),
      [&](std::string_view key, std::string_view value) -> Status {
        std::string id = IdOf(key);
        auto it = listed.find(id);
        if (it == listed.end()) {  // forgotten, or never committed
          deletes.emplace_back(key);
          if (!id.empty()) deletes.push_back(EntryKey(kManifestPrefix, id));
          return OkStatus();
        }
        // Changed (or racy): read the file again.
        if (!Fresh(value, *it->second)) return OkStatus();
        fresh.insert(id);
        if (!out) return OkStatus();
        auto p = OpenSummary(id, value.substr(kStatBytes));
        if (p.ok())
          out->push_back(std::move(p).value());
        else if (errors)
          errors->push_back(p.status().message());
        return OkStatus();
      });
}

void Catalog::FromFiles(const std::vector<ListedPoint>& points,
                        const std::unordered_set<std::string>& have,
                        std::vector<std::string>& deletes,
                        std::vector<std::string>* errors,
                        const std::function<void(Manifest&&)>& add) {
  Batch puts;
  for (const ListedPoint& p : points) {
    if (have.count(p.id)) continue;
    auto m = FromFile(p, &puts);
    if (m.ok())
      add(std::move(m).value());
    else if (errors)
      errors->push_back(m.status().message());
    if (puts.size() >= kBatchEntries) (void)Write(puts, deletes);
  }
  (void)Write(puts, deletes);
}

Result<std::vector<PointSummary>> Catalog::Summaries(
    const std::vector<ListedPoint>& points, std::vector<std::string>* errors) {
  Listing listed;
  for (const auto& p : points) listed.emplace(p.id, &p);
  std::unordered_set<std::string> fresh;
  std::vector<PointSummary> out;
  std::vector<std::string> deletes;
  std::vector<std::string> entry_errors;
  if (!ScanSummaries(listed, fresh, &out, deletes, &entry_errors).ok()) {
    // An index RocksDB cannot read: answer from the files. Chunk reads
    // report the damage, naming the index and 'haven rebuild-index'.
    fresh.clear();
    out.clear();
    entry_errors.clear();
    deletes.clear();
  }
  if (errors)
    errors->insert(errors->end(), entry_errors.begin(), entry_errors.end());
  FromFiles(points, fresh, deletes, errors,
            [&](Manifest&& m) { out.push_back(SummaryOf(m)); });
  SortOldestFirst(
      out, [](const PointSummary& p) -> const std::string& { return p.time; },
      [](const PointSummary& p) -> const std::string& { return p.id; });
  return out;
}

Result<std::vector<Manifest>> Catalog::Manifests(
    const std::vector<ListedPoint>& points, std::vector<std::string>* errors) {
  Listing listed;
  for (const auto& p : points) listed.emplace(p.id, &p);
  std::unordered_set<std::string> fresh, done;
  std::vector<Manifest> out;
  std::vector<std::string> deletes;
  std::vector<std::string> entry_errors;
  Status scanned = ScanSummaries(listed, fresh, nullptr, deletes, nullptr);
  if (scanned.ok())
    scanned = index_.ScanRaw(
        std::string(1, kManifestPrefix),
        [&](std::string_view key, std::string_view value) -> Status {
          std::string id = IdOf(key);
          if (!fresh.count(id)) return OkStatus();
          done.insert(id);
          auto m = OpenManifest(key_, id, AsBytes(value), CatalogWhat(id),
                                &decompressor_);
          if (m.ok())
            out.push_back(std::move(m).value());
          else
            entry_errors.push_back(WithHint(m.status()).message());
          return OkStatus();
        });
  if (!scanned.ok()) {  // unreadable index: from the files (see Summaries)
    done.clear();
    out.clear();
    entry_errors.clear();
    deletes.clear();
  }
  if (errors)
    errors->insert(errors->end(), entry_errors.begin(), entry_errors.end());
  FromFiles(points, done, deletes, errors,
            [&](Manifest&& m) { out.push_back(std::move(m)); });
  SortOldestFirst(
      out, [](const Manifest& m) -> const std::string& { return m.time; },
      [](const Manifest& m) -> const std::string& { return m.id; });
  return out;
}

Result<Manifest> Catalog::Load(const ListedPoint& point,
                               const PointSummary* expect) {
  const std::string& id = point.id;
  // An index RocksDB cannot read counts as no entry (see Summaries).
  auto summary = index_.GetRaw(EntryKey(kSummaryPrefix, id));
  std::optional<std::string> entry;
  if (summary.ok() && *summary && Fresh(**summary, point)) {
    auto got = index_.GetRaw(EntryKey(kManifestPrefix, id));
    if (got.ok()) entry = std::move(got).value();
  }
  Manifest m;
  if (entry) {
    auto opened = OpenManifest(key_, id, AsBytes(*entry), CatalogWhat(id),
                               &decompressor_);
    if (!opened.ok()) return WithHint(opened.status());
    m = std::move(opened).value();
  } else {
    Batch puts;
    std::vector<std::string> deletes;
    HAVEN_ASSIGN_OR_RETURN(m, FromFile(point, &puts));
    (void)Write(puts, deletes);
  }
  if (expect && (m.name != expect->name || m.kind != expect->kind ||
                 m.time != expect->time))
    return DataLoss("snapshot " + id +
                    ": its manifest does not match its catalog summary" +
                    kRebuildHint);
  return m;
}

Status Catalog::Add(const Manifest& m, ByteSpan file,
                    const ListedPoint& listed) {
  if (!index_.writable()) return OkStatus();
  Batch puts;
  std::vector<std::string> deletes;
  HAVEN_RETURN_IF_ERROR(Entries(m, file, listed, puts));
  return Write(puts, deletes);
}

Status Catalog::Remove(const std::string& id) {
  Batch puts;
  std::vector<std::string> deletes{EntryKey(kSummaryPrefix, id),
                                   EntryKey(kManifestPrefix, id)};
  return Write(puts, deletes);
}

Status Catalog::Clear(ChunkIndex& index) {
  HAVEN_RETURN_IF_ERROR(index.DeletePrefix(kSummaryPrefix));
  return index.DeletePrefix(kManifestPrefix);
}

}  // namespace haven::repository
