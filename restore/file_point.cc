#include "restore/file_point.h"

#include <sys/stat.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "base/glob.h"
#include "repository/chunk_tree.h"

namespace haven::restore {
namespace {

using repository::ChunkId;
using repository::FileRecord;
using repository::FileType;
using repository::FileTypeName;

GuestType ToGuest(FileType t) {
  switch (t) {
    case FileType::kFile:
      return GuestType::kFile;
    case FileType::kDir:
      return GuestType::kDir;
    case FileType::kSymlink:
      return GuestType::kSymlink;
    case FileType::kFifo:
      return GuestType::kFifo;
    case FileType::kCharDev:
      return GuestType::kCharDev;
    case FileType::kBlockDev:
      return GuestType::kBlockDev;
  }
  return GuestType::kOther;
}

bool IsGlob(const std::string& s) {
  return s.find_first_of("*?[") != std::string::npos;
}

// The reader's loader (a Repository checks each node against its id),
// keeping `ctx` alive as long as the loader.
repository::LoadNodeFn NodeLoader(
    const repository::PointReader& repo,
    std::shared_ptr<repository::ReadContext> ctx) {
  return [load = repo.TreeNodeLoader(*ctx), ctx](const ChunkId& id) {
    return load(id);
  };
}

// A catalog's records through `reader`, in order (repository::
// ForEachRecord for any PointReader). Each chunk is authenticated by the
// reader; a hole (a chunk a repair cleared) is DataLoss naming it. The
// catalog's byte count is checked against the manifest only when its
// chunks are stored plain: a sealed point's size counts sealed bytes.
Status ReadCatalog(const repository::PointReader& reader,
                   const repository::Manifest& m,
                   const std::function<Status(FileRecord&&)>& fn) {
  const repository::DiskManifest& stream = *m.FindStream("catalog");
  repository::CatalogParser parser(m.FindStream("content")->tree.count);
  repository::ReadContext ctx;
  Bytes chunk;
  uint64_t total = 0, next = 0;
  const bool sized = m.agent_key.empty();
  auto lost = [&](uint64_t index) {
    return DataLoss("catalog chunk " + std::to_string(index) +
                    " was lost (cleared by a repair)");
  };
  HAVEN_RETURN_IF_ERROR(repository::WalkTree(
      stream.tree, reader.TreeNodeLoader(ctx),
      [&](uint64_t index, const ChunkId& id) -> Status {
        if (index != next || id.IsZero()) return lost(next);
        ++next;
        HAVEN_RETURN_IF_ERROR(
            reader.ReadChunk(repository::ChunkType::kData, id, chunk, ctx));
        total += chunk.size();
        if (sized && total > stream.size)
          return DataLoss("catalog: longer than its manifest says");
        return parser.Feed(chunk, fn);
      }));
  if (next != stream.tree.count) return lost(next);
  if (sized && total != stream.size)
    return DataLoss("catalog: " + std::to_string(total) +
                    " bytes, its manifest says " + std::to_string(stream.size));
  return parser.Finish();
}

}  // namespace

// Fetches the chunks of a plan (content chunk ids in the order a restore
// reads them) on worker threads, at most `window` ahead of the reader.
class FilePoint::Prefetcher {
 public:
  Prefetcher(const repository::PointReader& repo, std::vector<ChunkId> plan,
             int threads, size_t window)
      : repo_(repo), plan_(std::move(plan)), window_(window) {
    for (int i = 0; i < threads; ++i)
      threads_.emplace_back([this] { Work(); });
  }
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  // Chunk `pos` of the plan, or nullopt when the reader went back (it then
  // reads the chunk itself). Positions skipped over are dropped.
  std::optional<Result<Bytes>> Take(size_t pos) {
    std::unique_lock<std::mutex> l(mu_);
    if (pos < next_ || pos >= plan_.size()) return std::nullopt;
    if (pos > next_) {
      next_ = pos;
      ready_.erase(ready_.begin(), ready_.lower_bound(pos));
      if (claimed_ < pos) claimed_ = pos;
      cv_.notify_all();
    }
    cv_.wait(l, [&] { return ready_.count(pos) > 0; });
    auto it = ready_.find(pos);
    Result<Bytes> r = std::move(it->second);
    ready_.erase(it);
    ++next_;
    cv_.notify_all();
    return r;
  }

 private:
  void Work() {
    repository::ReadContext ctx;
    while (true) {
      size_t pos;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] {
          return stop_ ||
                 (claimed_ < plan_.size() && claimed_ < next_ + window_);
        });
        if (stop_) return;
        pos = claimed_++;
      }
      Bytes data;
      Status s = repo_.ReadChunk(repository::ChunkType::kData, plan_[pos],
                                 data, ctx);
      std::lock_guard<std::mutex> l(mu_);
      if (pos >= next_)
        ready_.emplace(pos, s.ok() ? Result<Bytes>(std::move(data))
                                   : Result<Bytes>(s));
      cv_.notify_all();
    }
  }

  const repository::PointReader& repo_;
  std::vector<ChunkId> plan_;
  size_t window_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t next_ = 0, claimed_ = 0;
  std::map<size_t, Result<Bytes>> ready_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

FilePoint::~FilePoint() = default;

Status FilePoint::Prefetch(int threads, size_t window) {
  prefetcher_.reset();
  plan_start_.clear();
  std::vector<ChunkId> all;  // the content list
  {
    HAVEN_RETURN_IF_ERROR(repository::WalkTree(
        content_.tree, NodeLoader(repo_, ctx_),
        [&](uint64_t index, const ChunkId& id) {
          if (all.size() < index) all.resize(index);  // lost: zero ids
          all.push_back(id);
          return OkStatus();
        }));
    all.resize(content_.tree.count);
  }
  std::vector<ChunkId> plan;
  for (size_t i = 0; i < records_.size(); ++i) {
    const FileRecord& r = records_[i];
    if ((!selected_.empty() && !selected_[i]) || r.type != FileType::kFile ||
        r.hard_link() || r.partial() || r.content_count == 0)
      continue;
    bool usable = true;
    for (uint64_t c = 0; c < r.content_count; ++c)
      if (all[r.content_first + c].IsZero()) usable = false;
    if (!usable) continue;  // lost chunks: ReadFile reports them
    plan_start_.emplace(i, plan.size());
    for (uint64_t c = 0; c < r.content_count; ++c)
      plan.push_back(all[r.content_first + c]);
  }
  if (threads < 1) threads = 1;
  prefetcher_ = std::make_unique<Prefetcher>(repo_, std::move(plan), threads,
                                             std::max<size_t>(window, 1));
  return OkStatus();
}

FilePoint::FilePoint(const repository::PointReader& repo,
                     const repository::Manifest& m)
    : repo_(repo),
      content_(*m.FindStream("content")),
      ctx_(std::make_shared<repository::ReadContext>()) {}

Result<std::unique_ptr<FilePoint>> FilePoint::Open(
    const repository::PointReader& repo, const repository::Manifest& m,
    AgentKeyed keyed) {
  if (m.kind != "files")
    return InvalidArgument("snapshot " + m.id.substr(0, 8) + " (" + m.name +
                           ") is a " + m.kind +
                           " backup, not a file backup; use `haven ls` / "
                           "`haven restore file` with it");
  if (!m.FindStream("content") || !m.FindStream("catalog"))
    return DataLoss("snapshot " + m.id.substr(0, 8) +
                    ": a file backup without its catalog or content list");
  if (!m.agent_key.empty() && keyed == AgentKeyed::kRefuse)
    return FailedPrecondition(
        "point " + m.id + " is encrypted with agent key " + m.agent_key +
        ", which the appliance does not hold: restore it with `haven agent "
        "restore` on the agent");
  std::unique_ptr<FilePoint> p(new FilePoint(repo, m));
  HAVEN_RETURN_IF_ERROR(ReadCatalog(repo, m, [&](FileRecord&& r) -> Status {
    p->records_.push_back(std::move(r));
    return OkStatus();
  }));
  // The first record of a path wins; a second one is listed as a clash by
  // the restore (both are children of the same directory).
  for (size_t i = 0; i < p->records_.size(); ++i) {
    const FileRecord& r = p->records_[i];
    p->by_path_.emplace(r.path, i);
    if (r.path != "/")
      p->children_[std::string(repository::ParentPath(r.path))].push_back(i);
  }
  // Sparse files may claim far more than their content: the bound is
  // what no file system holds.
  p->max_size_ = 1ull << 56;
  return p;
}

std::vector<std::pair<std::string, std::string>> FilePoint::Unreachable()
    const {
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < records_.size(); ++i) {
    const FileRecord& r = records_[i];
    if (r.path == "/" || (!selected_.empty() && !selected_[i])) continue;
    const FileRecord* parent = Find(std::string(repository::ParentPath(r.path)));
    if (parent && parent->type == FileType::kDir) continue;
    out.emplace_back(r.path, parent ? "its parent in the backup is a " +
                                          std::string(FileTypeName(parent->type)) +
                                          ", not a directory"
                                    : "its parent directory is not in the "
                                      "backup");
  }
  return out;
}

const FileRecord* FilePoint::Find(const std::string& path) const {
  auto it = by_path_.find(path);
  return it == by_path_.end() ? nullptr : &records_[it->second];
}

GuestEntry FilePoint::Entry(size_t i) const {
  const FileRecord& r = records_[i];
  GuestEntry e;
  e.name = std::string(repository::BaseName(r.path));
  e.inode = i;  // unique per record: the catalog cannot loop
  e.type = ToGuest(r.type);
  e.size = r.size;
  e.mode = r.mode;
  e.uid = r.uid;
  e.gid = r.gid;
  e.mtime_ns = r.mtime_ns;
  e.atime_ns = r.atime_ns;
  e.ctime_ns = r.ctime_ns;
  e.rdev = r.rdev;
  e.user = r.user;
  e.group = r.group;
  e.xattrs = r.xattrs;
  if (r.type == FileType::kSymlink) e.link_target = r.target;
  if (r.type == FileType::kFile && r.hard_link()) {
    e.hardlink = r.target;
  } else if (r.type == FileType::kFile && r.nlink > 1) {
    e.hardlink = r.path;
  }
  return e;
}

Status FilePoint::Select(const std::vector<std::string>& patterns) {
  selected_.clear();
  if (patterns.empty()) return OkStatus();
  selected_.assign(records_.size(), false);
  auto select = [&](size_t i) {
    selected_[i] = true;
    // Its parents lead to it.
    for (std::string_view a = repository::ParentPath(records_[i].path);
         !a.empty(); a = repository::ParentPath(a)) {
      auto it = by_path_.find(std::string(a));
      if (it == by_path_.end() || selected_[it->second]) break;
      selected_[it->second] = true;
    }
  };
  std::vector<std::string> roots;  // selected whole, with their subtrees
  for (std::string p : patterns) {
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    if (!IsGlob(p)) {
      if (!by_path_.count(p))
        return NotFound(p + ": not in this recovery point");
      roots.push_back(p);
      continue;
    }
    size_t matched = 0;
    for (const FileRecord& r : records_) {
      if (MatchesGlob(p, r.path)) {
        roots.push_back(r.path);
        ++matched;
      }
    }
    if (matched == 0)
      return NotFound(p + ": matches nothing in this recovery point");
  }
  std::sort(roots.begin(), roots.end());
  for (size_t i = 0; i < records_.size(); ++i) {
    const std::string& path = records_[i].path;
    // Under a selected root: the root itself, or path starts with root/.
    auto it = std::upper_bound(roots.begin(), roots.end(), path);
    bool under = false;
    for (auto r = roots.begin(); r != it && !under; ++r)
      under = path == *r || *r == "/" ||
              (path.size() > r->size() && path.compare(0, r->size(), *r) == 0 &&
               path[r->size()] == '/');
    if (under) select(i);
  }
  return OkStatus();
}

Result<GuestEntry> FilePoint::Lookup(const std::string& given) {
  std::string path = given.empty() ? "/" : given;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  auto it = by_path_.find(path);
  if (it == by_path_.end())
    return NotFound(path + ": not in this recovery point");
  GuestEntry e = Entry(it->second);
  if (path == "/") e.name = "/";
  return e;
}

Result<std::vector<GuestEntry>> FilePoint::List(const GuestEntry& dir) {
  if (dir.inode >= records_.size() ||
      records_[dir.inode].type != FileType::kDir)
    return InvalidArgument(dir.name + ": not a directory");
  std::vector<GuestEntry> out;
  auto it = children_.find(records_[dir.inode].path);
  if (it == children_.end()) return out;
  for (size_t i : it->second)
    if (selected_.empty() || selected_[i]) out.push_back(Entry(i));
  return out;
}

std::optional<std::vector<std::pair<uint64_t, uint64_t>>>
FilePoint::DataRanges(const GuestEntry& file) {
  if (file.inode >= records_.size()) return std::nullopt;
  const FileRecord* r = &records_[file.inode];
  if (r->hard_link()) r = Find(r->target);
  if (!r || r->type != FileType::kFile || r->hard_link() || r->partial() ||
      r->size != file.size)
    return std::nullopt;
  std::vector<std::pair<uint64_t, uint64_t>> out;
  uint64_t end = 0;
  for (const auto& [offset, length] : r->extents) {
    if (offset < end || offset > file.size || length > file.size - offset)
      return std::nullopt;  // ReadFile reports what is wrong
    if (length == 0) continue;
    out.emplace_back(offset, length);
    end = offset + length;
  }
  return out;
}

Status FilePoint::ReadFile(
    const GuestEntry& file,
    const std::function<Status(uint64_t, const uint8_t*, size_t)>& sink,
    size_t block) {
  if (file.inode >= records_.size())
    return InvalidArgument(file.name + ": not in this recovery point");
  const FileRecord* r = &records_[file.inode];
  if (r->hard_link()) {  // the content is with the first link
    const FileRecord* first = Find(r->target);
    if (!first || first->type != FileType::kFile || first->hard_link() ||
        first->size != r->size)
      return DataLoss("a hard link to " + r->target +
                      ", which does not hold its content");
    r = first;
  }
  if (r->partial())
    return DataLoss(
        "its content was not captured: it could not be read when the "
        "backup ran");
  if (r->content_count > 0 && r->DataBytes() == 0)
    return DataLoss("content without data ranges");
  repository::TreeReader& ids = Ids();
  static const std::vector<uint8_t> zeros(1 << 20, 0);
  block = std::max<size_t>(1, std::min(block, zeros.size()));
  uint64_t pos = 0;  // file offset written up to
  auto holes_to = [&](uint64_t end) -> Status {
    while (pos < end) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(block, end - pos));
      HAVEN_RETURN_IF_ERROR(sink(pos, zeros.data(), n));
      pos += n;
    }
    return OkStatus();
  };
  size_t extent = 0;
  uint64_t in_extent = 0;  // bytes of extents[extent] delivered
  Bytes chunk;
  auto plan = prefetcher_ ? plan_start_.find(r - records_.data())
                          : plan_start_.end();
  for (uint64_t c = 0; c < r->content_count; ++c) {
    std::optional<Result<Bytes>> ahead;
    if (plan != plan_start_.end()) ahead = prefetcher_->Take(plan->second + c);
    if (ahead) {
      if (!ahead->ok()) return ahead->status();
      chunk = std::move(ahead->value());
    } else {
      HAVEN_ASSIGN_OR_RETURN(ChunkId id, ids.Get(r->content_first + c));
      if (id.IsZero())
        return DataLoss("chunk " + std::to_string(c) +
                        " of its content was lost (a repair cleared it)");
      HAVEN_RETURN_IF_ERROR(
          repo_.ReadChunk(repository::ChunkType::kData, id, chunk, *ctx_));
    }
    ++chunks_read_;
    size_t used = 0;
    while (used < chunk.size()) {
      if (extent >= r->extents.size())
        return DataLoss("more content than its data ranges hold");
      const auto& [offset, length] = r->extents[extent];
      HAVEN_RETURN_IF_ERROR(holes_to(offset + in_extent));
      size_t n = static_cast<size_t>(
          std::min<uint64_t>(chunk.size() - used, length - in_extent));
      for (size_t done = 0; done < n;) {
        size_t piece = std::min(block, n - done);
        HAVEN_RETURN_IF_ERROR(sink(pos, chunk.data() + used + done, piece));
        pos += piece;
        done += piece;
      }
      used += n;
      in_extent += n;
      if (in_extent == length) ++extent, in_extent = 0;
    }
  }
  if (extent != r->extents.size())
    return DataLoss("its content is shorter than its data ranges");
  return holes_to(r->size);
}

repository::TreeReader& FilePoint::Ids() {
  if (!ids_)
    ids_ = std::make_unique<repository::TreeReader>(content_.tree,
                                                    NodeLoader(repo_, ctx_));
  return *ids_;
}

Result<std::vector<ChunkId>> FilePoint::ContentIds(const FileRecord& rec) {
  const FileRecord* r = &rec;
  if (r->hard_link()) r = Find(r->target);
  std::vector<ChunkId> out;
  if (!r || r->content_count == 0) return out;
  for (uint64_t c = 0; c < r->content_count; ++c) {
    HAVEN_ASSIGN_OR_RETURN(ChunkId id, Ids().Get(r->content_first + c));
    out.push_back(id);
  }
  return out;
}

Result<FileDiff> DiffPoints(FilePoint& a, FilePoint& b) {
  FileDiff d;
  for (const FileRecord& r : a.records()) {
    const FileRecord* o = b.Find(r.path);
    if (!o) {
      d.removed.push_back(r.path);
      continue;
    }
    if (o->type != r.type) {
      d.type.push_back(r.path);
      continue;
    }
    bool data_changed = r.size != o->size || r.extents != o->extents ||
                        r.target != o->target || r.rdev != o->rdev ||
                        r.partial() != o->partial();
    if (!data_changed && r.type == FileType::kFile) {
      HAVEN_ASSIGN_OR_RETURN(auto ours, a.ContentIds(r));
      HAVEN_ASSIGN_OR_RETURN(auto theirs, b.ContentIds(*o));
      data_changed = ours != theirs;
    }
    const bool meta_changed = r.mode != o->mode || r.uid != o->uid ||
                              r.gid != o->gid || r.mtime_ns != o->mtime_ns ||
                              r.xattrs != o->xattrs;
    if (data_changed)
      d.modified.push_back(r.path);
    else if (meta_changed)
      d.metadata.push_back(r.path);
  }
  for (const FileRecord& r : b.records())
    if (!a.Find(r.path)) d.added.push_back(r.path);
  for (auto* v : {&d.added, &d.removed, &d.modified, &d.metadata, &d.type})
    std::sort(v->begin(), v->end());
  return d;
}

}  // namespace haven::restore
