#include "restore/tar_extract.h"

#include <archive.h>
#include <archive_entry.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <set>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

#include "restore/file_restore.h"

namespace haven::restore {
namespace {

constexpr size_t kMaxQueued = 16u << 20;

struct ReadFree {
  void operator()(struct archive* a) const { archive_read_free(a); }
};
struct WriteFree {
  void operator()(struct archive* a) const { archive_write_free(a); }
};

// Why a tar entry's name (relative, '/'-separated) may not be written;
// "" when it may.
std::string BadEntryName(std::string_view name) {
  if (name.empty()) return "an empty name";
  if (name.front() == '/')
    return "an absolute name; nothing outside the target is written";
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view part = name.substr(start, end - start);
    // A trailing '/' (directories) leaves an empty last part.
    if (!(part.empty() && end == name.size())) {
      std::string why = InvalidNameReason(part);
      if (!why.empty())
        return "an invalid name (a component is " + why +
               "); nothing outside the target is written";
    }
    start = end + 1;
  }
  return "";
}

}  // namespace

struct TarExtractor::Impl {
  std::string root;  // the target's real path, no symlink in it
  // Names this extraction wrote: a hard link may only point at one of them
  // (never at a file that was in the target before).
  std::set<std::string> written_names;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> pieces;
  std::string current;
  size_t queued = 0;
  bool closed = false, reader_done = false;
  TarExtractResult result;
  Status error;
  std::thread thread;

  static la_ssize_t Read(struct archive*, void* self, const void** buf) {
    auto* q = static_cast<Impl*>(self);
    std::unique_lock<std::mutex> l(q->mu);
    q->cv.wait(l, [&] { return !q->pieces.empty() || q->closed; });
    if (q->pieces.empty()) return 0;
    q->current = std::move(q->pieces.front());
    q->pieces.pop_front();
    q->queued -= q->current.size();
    q->cv.notify_all();
    *buf = q->current.data();
    return static_cast<la_ssize_t>(q->current.size());
  }

  void Done(Status s) {
    std::lock_guard<std::mutex> l(mu);
    error = std::move(s);
    reader_done = true;
    cv.notify_all();
  }

  void Run();
  Status Entry(struct archive* in, struct archive* out,
               struct archive_entry* e);
};

// One entry: its name checked, then written under the root.
Status TarExtractor::Impl::Entry(struct archive* in, struct archive* out,
                                 struct archive_entry* e) {
  const char* raw = archive_entry_pathname(e);
  const std::string name = raw ? raw : "";
  std::string why = BadEntryName(name);
  const char* link = archive_entry_hardlink(e);
  if (why.empty() && link != nullptr) why = BadEntryName(link);
  if (!why.empty()) {
    result.problems.push_back(PrintableName(name) + ": " + why);
    return OkStatus();  // its data is skipped by the next header read
  }
  if (link != nullptr && !written_names.count(link)) {
    result.problems.push_back(PrintableName(name) + ": a hard link to " +
                              PrintableName(link) +
                              ", which this restore did not write; skipped");
    return OkStatus();
  }
  const auto type = archive_entry_filetype(e);
  if (type == AE_IFCHR || type == AE_IFBLK) {
    result.problems.push_back(PrintableName(name) +
                              ": a device node; not made by an agent's "
                              "restore");
    return OkStatus();
  }
  // Set-id bits and file capabilities (security.* attributes) are not
  // given back by an agent's restore: what it restores runs with the
  // rights of whoever runs it. ACLs and user attributes are.
  archive_entry_set_perm(e, archive_entry_perm(e) & 07777 & ~06000);
  if (archive_entry_xattr_reset(e) > 0) {
    std::vector<std::tuple<std::string, std::string>> keep;
    const char* xname;
    const void* value;
    size_t size;
    while (archive_entry_xattr_next(e, &xname, &value, &size) == ARCHIVE_OK)
      if (xname && std::string_view(xname).rfind("security.", 0) != 0)
        keep.emplace_back(xname, std::string(static_cast<const char*>(value),
                                             size));
    archive_entry_xattr_clear(e);
    for (const auto& [n, v] : keep)
      archive_entry_xattr_add_entry(e, n.c_str(), v.data(), v.size());
  }
  const std::string path = root + "/" + name;
  // NO_OVERWRITE keeps what is there, silently: say so. (A directory that
  // exists is entered.)
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 &&
      !(S_ISDIR(st.st_mode) && archive_entry_filetype(e) == AE_IFDIR)) {
    result.problems.push_back(PrintableName(name) +
                              ": exists in the target; kept, not replaced");
    return OkStatus();
  }
  archive_entry_copy_pathname(e, path.c_str());
  if (link != nullptr)
    archive_entry_copy_hardlink(e, (root + "/" + std::string(link)).c_str());
  int rc = archive_write_header(out, e);
  if (rc < ARCHIVE_WARN) {
    result.problems.push_back(PrintableName(name) + ": " +
                              archive_error_string(out));
    if (rc == ARCHIVE_FATAL) return IoError(result.problems.back());
    return OkStatus();
  }
  const void* buf;
  size_t size;
  la_int64_t offset;
  bool written = true;
  while ((rc = archive_read_data_block(in, &buf, &size, &offset)) ==
         ARCHIVE_OK) {
    if (written &&
        archive_write_data_block(out, buf, size, offset) < ARCHIVE_WARN) {
      result.problems.push_back(PrintableName(name) + ": " +
                                archive_error_string(out));
      written = false;  // the rest of its data is read and dropped
    }
    if (written) result.bytes += size;
  }
  if (rc != ARCHIVE_EOF)
    return DataLoss("the archive is cut off or damaged in " +
                    PrintableName(name) + ": " + archive_error_string(in));
  if (archive_write_finish_entry(out) < ARCHIVE_WARN && written)
    result.problems.push_back(PrintableName(name) + ": " +
                              archive_error_string(out));
  ++result.entries;
  written_names.insert(name);
  return OkStatus();
}

void TarExtractor::Impl::Run() {
  std::unique_ptr<struct archive, ReadFree> in(archive_read_new());
  std::unique_ptr<struct archive, WriteFree> out(archive_write_disk_new());
  if (!in || !out) return Done(Internal("libarchive: out of memory"));
  archive_read_support_format_tar(in.get());
  // The names are made absolute under `root` here, after the checks above;
  // libarchive still refuses ".." and any symlink on the way.
  int flags = ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
              ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
              ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_NO_OVERWRITE;
  if (geteuid() == 0) flags |= ARCHIVE_EXTRACT_OWNER;
  archive_write_disk_set_options(out.get(), flags);
  archive_write_disk_set_standard_lookup(out.get());
  if (archive_read_open(in.get(), this, nullptr, Read, nullptr) != ARCHIVE_OK)
    return Done(DataLoss(std::string("the archive cannot be read: ") +
                         archive_error_string(in.get())));
  struct archive_entry* e;
  while (true) {
    int rc = archive_read_next_header(in.get(), &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN)
      return Done(DataLoss(std::string("the archive is damaged or cut off: ") +
                           archive_error_string(in.get())));
    if (Status s = Entry(in.get(), out.get(), e); !s.ok())
      return Done(std::move(s));
  }
  // Directory times and modes are set at close.
  if (archive_write_close(out.get()) < ARCHIVE_WARN)
    result.problems.push_back(std::string("finishing: ") +
                              archive_error_string(out.get()));
  Done(OkStatus());
}

TarExtractor::TarExtractor(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}

TarExtractor::~TarExtractor() {
  if (impl_->thread.joinable()) {
    {
      std::lock_guard<std::mutex> l(impl_->mu);
      impl_->closed = true;
      impl_->cv.notify_all();
    }
    impl_->thread.join();
  }
}

Result<std::unique_ptr<TarExtractor>> TarExtractor::Start(
    const std::string& dir) {
  char real[PATH_MAX];
  if (realpath(dir.c_str(), real) == nullptr)
    return ErrnoStatus("resolve " + dir, errno);
  auto impl = std::make_unique<Impl>();
  impl->root = real;
  if (impl->root == "/") impl->root.clear();  // "/" + name
  std::unique_ptr<TarExtractor> x(new TarExtractor(std::move(impl)));
  Impl* p = x->impl_.get();
  p->thread = std::thread([p] { p->Run(); });
  return x;
}

Status TarExtractor::Write(std::string_view bytes) {
  Impl& q = *impl_;
  std::unique_lock<std::mutex> l(q.mu);
  q.cv.wait(l, [&] { return q.queued < kMaxQueued || q.reader_done; });
  if (q.reader_done) {
    if (!q.error.ok()) return q.error;
    return OkStatus();  // after the archive's end: padding
  }
  q.queued += bytes.size();
  q.pieces.emplace_back(bytes);
  q.cv.notify_all();
  return OkStatus();
}

Result<TarExtractResult> TarExtractor::Finish() {
  {
    std::lock_guard<std::mutex> l(impl_->mu);
    impl_->closed = true;
    impl_->cv.notify_all();
  }
  if (impl_->thread.joinable()) impl_->thread.join();
  if (!impl_->error.ok()) return impl_->error;
  return impl_->result;
}

}  // namespace haven::restore
