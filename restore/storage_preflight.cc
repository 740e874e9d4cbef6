#include "restore/storage_preflight.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>

namespace haven::restore {
namespace {

std::string Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

std::string Mode(mode_t m) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(m & 07777));
  return text;
}

std::string UserName(uid_t uid) {
  struct passwd pw, *found = nullptr;
  char buf[4096];
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found)
    return found->pw_name;
  return "uid " + std::to_string(uid);
}

// "+64055" -> 64055; "libvirt-qemu" -> its uid (group names likewise).
std::optional<unsigned> Id(const std::string& text, bool group) {
  if (text.empty()) return std::nullopt;
  std::string s = text[0] == '+' ? text.substr(1) : text;
  if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos &&
      s.size() < 10)
    return static_cast<unsigned>(std::stoul(s));
  if (text[0] == '+') return std::nullopt;
  char buf[4096];
  if (group) {
    struct group gr, *found = nullptr;
    if (getgrnam_r(s.c_str(), &gr, buf, sizeof buf, &found) == 0 && found)
      return found->gr_gid;
  } else {
    struct passwd pw, *found = nullptr;
    if (getpwnam_r(s.c_str(), &pw, buf, sizeof buf, &found) == 0 && found)
      return found->pw_uid;
  }
  return std::nullopt;
}

std::vector<gid_t> Groups(uid_t uid, gid_t gid) {
  std::vector<gid_t> groups = {gid};
  struct passwd pw, *found = nullptr;
  char buf[4096];
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) != 0 || !found)
    return groups;
  int n = 64;
  std::vector<gid_t> list(n);
  if (getgrouplist(found->pw_name, gid, list.data(), &n) < 0) {
    list.resize(n);
    if (getgrouplist(found->pw_name, gid, list.data(), &n) < 0) return groups;
  }
  list.resize(n);
  groups.insert(groups.end(), list.begin(), list.end());
  return groups;
}

}  // namespace

StorageCheck CheckStorageFolder(const std::string& dir) {
  StorageCheck check;
  std::string at = dir;
  struct stat st;
  while (::stat(at.c_str(), &st) != 0) {
    if (errno != ENOENT && errno != ENOTDIR) {
      check.problems.push_back("cannot look at " + at + ": " +
                               std::strerror(errno));
      return check;
    }
    check.create.insert(check.create.begin(), at);
    if (at == "/") break;
    at = Parent(at);
  }
  check.existing = at;
  if (!S_ISDIR(st.st_mode)) {
    check.problems.push_back(
        at + " is not a folder" +
        (at == dir ? ""
                   : std::string(" (the storage folder would be made in "
                                 "it)")) +
        "; choose another --storage-dir");
    return check;
  }
  check.device = st.st_dev;
  struct statvfs vfs;
  if (::statvfs(at.c_str(), &vfs) == 0) {
    check.free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
    if (vfs.f_flag & ST_RDONLY) {
      check.problems.push_back(at +
                               " is on a read-only file system; remount it "
                               "read-write or choose another --storage-dir");
      return check;
    }
  }
  if (::access(at.c_str(), W_OK | X_OK) != 0) {
    const int err = errno;
    check.problems.push_back(
        err == EROFS ? at + " is on a read-only file system; remount it "
                            "read-write or choose another --storage-dir"
                     : "this process (" + UserName(geteuid()) +
                           ") cannot write to " + at + " (mode " +
                           Mode(st.st_mode) + ", owner " + UserName(st.st_uid) +
                           "); run as its owner or root, or choose another "
                           "--storage-dir");
  }
  return check;
}

std::string QemuAccessProblem(const std::string& dir,
                              const std::string& dac_label) {
  const size_t colon = dac_label.find(':');
  if (colon == std::string::npos) return "";
  auto uid = Id(dac_label.substr(0, colon), false);
  auto gid = Id(dac_label.substr(colon + 1), true);
  if (!uid || !gid || *uid == 0) return "";
  const std::vector<gid_t> groups = Groups(*uid, *gid);
  // Every existing folder from / down to `dir`.
  std::vector<std::string> chain;
  for (std::string at = dir;; at = Parent(at)) {
    chain.insert(chain.begin(), at);
    if (at == "/") break;
  }
  for (const auto& folder : chain) {
    struct stat st;
    if (::stat(folder.c_str(), &st) != 0) break;  // made by the restore
    mode_t need = S_IXOTH;
    if (st.st_uid == *uid) {
      need = S_IXUSR;
    } else {
      for (gid_t g : groups)
        if (g == st.st_gid) need = S_IXGRP;
    }
    if (!(st.st_mode & need))
      return "QEMU runs as " + UserName(*uid) + " and cannot enter " + folder +
             " (mode " + Mode(st.st_mode) + ", owner " + UserName(st.st_uid) +
             "): the VM could not open its disks. Give it search permission "
             "(chmod o+x " +
             folder + ") or choose another --storage-dir";
  }
  return "";
}

}  // namespace haven::restore
