#include "appliance/point_files.h"

#include <algorithm>
#include <unordered_set>

#include "base/glob.h"
#include "base/time.h"
#include "restore/file_restore.h"

namespace haven::appliance {

Result<std::string> CheckGuestPath(const std::string& path) {
  if (path.empty()) return InvalidArgument("path is empty");
  if (path.size() > kMaxGuestPath)
    return InvalidArgument("path is longer than " +
                           std::to_string(kMaxGuestPath) + " bytes");
  if (path.front() != '/')
    return InvalidArgument("path must be absolute (start with '/'), not " +
                           QuoteUntrusted(path));
  for (unsigned char c : path)
    if (c < 0x20 || c == 0x7f)
      return InvalidArgument("path holds a NUL or control character");
  std::string out;
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    std::string_view seg(path.data() + start, end - start);
    if (seg == "." || seg == "..")
      return InvalidArgument("path holds a '" + std::string(seg) +
                             "' component: name entries as they are, "
                             "from the root ('/etc/hosts')");
    if (!seg.empty()) {
      out += '/';
      out += seg;
    }
    start = end + 1;
  }
  return out.empty() ? std::string("/") : out;
}

namespace {

Result<int> ParsePartition(const std::string& text) {
  if (text.empty()) return -1;
  char* end = nullptr;
  long n = std::strtol(text.c_str(), &end, 10);
  if (*end != '\0' || n < 0 || n > 1024)
    return InvalidArgument(
        "partition must be a number (0 for a disk "
        "without a partition table), not " +
        QuoteUntrusted(text));
  return static_cast<int>(n);
}

}  // namespace

Result<std::shared_ptr<PointTree>> OpenPointTree(RepositoryCache& cache,
                                                 const std::string& repo,
                                                 const std::string& id,
                                                 const std::string& disk,
                                                 const std::string& partition) {
  HAVEN_ASSIGN_OR_RETURN(FoundPoint found, FindPoint(cache, repo, id));
  return OpenPointTree(std::move(found), repo, disk, partition);
}

Result<std::shared_ptr<PointTree>> OpenPointTree(FoundPoint found,
                                                 const std::string& repo,
                                                 const std::string& disk,
                                                 const std::string& partition) {
  HAVEN_ASSIGN_OR_RETURN(int part, ParsePartition(partition));
  auto t = std::make_shared<PointTree>();
  t->found = std::move(found);
  t->repository = repo;
  const repository::Manifest& m = *t->found.point;
  const repository::Repository& r = t->found.open->repo();
  if (m.kind == "files") {
    if (!disk.empty() || part >= 0)
      return InvalidArgument(
          "point " + m.id.substr(0, 8) +
          " is a file backup: it has no disks or partitions (leave out disk "
          "and partition)");
    HAVEN_ASSIGN_OR_RETURN(t->file_point, restore::FilePoint::Open(r, m));
    t->tree = t->file_point.get();
    t->fs_type = "files";
    return t;
  }
  const repository::DiskManifest* d = m.FindDisk(disk);
  if (!d) {
    std::string names;
    for (const auto* x : m.ImageDisks())
      names += (names.empty() ? "" : ", ") + x->name;
    return InvalidArgument(
        "point " + m.id.substr(0, 8) +
        (disk.empty()
             ? " has several disks: " + names + "; choose one with disk="
             : " has no disk " + QuoteUntrusted(disk) + "; it has: " + names));
  }
  t->disk = d->name;
  t->reader = std::make_unique<restore::DiskReader>(r, *d);
  HAVEN_ASSIGN_OR_RETURN(restore::GuestLayout layout,
                         restore::ReadGuestLayout(*t->reader));
  HAVEN_ASSIGN_OR_RETURN(restore::GuestVolume volume,
                         restore::ChooseVolume(layout, part, d->name));
  HAVEN_ASSIGN_OR_RETURN(t->guest_fs,
                         restore::GuestFs::Open(*t->reader, volume));
  t->partition = volume.number;
  t->fs_type = t->guest_fs->type();
  t->tree = t->guest_fs.get();
  return t;
}

nlohmann::ordered_json GuestEntryJson(const restore::GuestEntry& e,
                                      bool unix_metadata) {
  nlohmann::ordered_json j;
  // Names are raw bytes; JSON needs valid UTF-8: the escaped form.
  j["name"] = restore::PrintableName(e.name);
  j["type"] = restore::GuestTypeName(e.type);
  j["size"] = e.size;
  j["mode"] = restore::ModeString(e);
  j["mode_bits"] = e.mode & 07777;
  if (unix_metadata) {
    j["uid"] = e.uid;
    j["gid"] = e.gid;
    if (!e.user.empty()) j["user"] = restore::PrintableName(e.user);
    if (!e.group.empty()) j["group"] = restore::PrintableName(e.group);
  }
  j["mtime"] = FormatTime(e.mtime_ns, TimeStyle::kRfc3339Utc);
  if (e.type == restore::GuestType::kSymlink) {
    j["link_target"] = restore::PrintableName(e.link_target);
    if (!e.link_problem.empty())
      j["link_problem"] = restore::PrintableName(e.link_problem);
  }
  return j;
}

SearchResult SearchTree(restore::GuestTree& tree,
                        const restore::GuestEntry& start,
                        const std::string& start_path, const std::string& glob,
                        const SearchLimits& limits) {
  using restore::GuestEntry;
  using restore::GuestType;
  struct Todo {
    std::string path;
    GuestEntry dir;
    int depth;
  };
  std::vector<Todo> todo{{start_path == "/" ? "" : start_path, start, 0}};
  std::unordered_set<uint64_t> entered;
  SearchResult out;
  const double began = MonotonicSeconds();
  while (!todo.empty() && out.truncated.empty()) {
    Todo d = std::move(todo.back());
    todo.pop_back();
    if (d.dir.type != GuestType::kDir) continue;
    if (d.dir.inode != 0 && !entered.insert(d.dir.inode).second) continue;
    auto list = tree.List(d.dir);
    if (!list.ok()) continue;  // a damaged directory: search the rest
    std::sort(list->begin(), list->end(),
              [](const GuestEntry& a, const GuestEntry& b) {
                return a.name < b.name;
              });
    std::vector<Todo> below;
    for (GuestEntry& e : *list) {
      if (out.visited >= limits.visited) {
        out.truncated =
            "looked at " + std::to_string(limits.visited) + " entries";
        break;
      }
      ++out.visited;
      std::string p = d.path + "/" + restore::PrintableName(e.name);
      if (MatchesGlob(glob, e.name)) {
        if (out.hits.size() >= limits.results) {
          out.truncated =
              "more than " + std::to_string(limits.results) + " results";
          break;
        }
        out.hits.push_back({p, e});
      }
      if (e.type == GuestType::kDir && d.depth + 1 < limits.depth &&
          restore::InvalidNameReason(e.name).empty())
        below.push_back({p, std::move(e), d.depth + 1});
    }
    // Popped from the back: the first name is searched first.
    todo.insert(todo.end(), std::make_move_iterator(below.rbegin()),
                std::make_move_iterator(below.rend()));
    if (out.truncated.empty() && MonotonicSeconds() - began > limits.seconds)
      out.truncated =
          "searched for " + std::to_string(int(limits.seconds)) + " s";
  }
  return out;
}

std::string SafeDownloadName(std::string_view name) {
  std::string out;
  for (unsigned char c : name.substr(0, 100)) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                    (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                    c == '+' || c == '-';
    out += ok ? static_cast<char>(c) : '_';
  }
  if (out.find_first_not_of("._") == std::string::npos) return "download";
  return out;
}

}  // namespace haven::appliance
