#include "repository/backend.h"

#include <algorithm>

namespace haven::repository {

Status ValidateObjectName(const std::string& name) {
  // The name is untrusted: quote it only if every byte is printable, so a
  // message cannot be garbled by control bytes.
  bool printable = std::all_of(name.begin(), name.end(),
                               [](char c) { return c >= 0x20 && c < 0x7f; });
  std::string shown = printable ? "'" + name + "'"
                                : "of " + std::to_string(name.size()) +
                                      " bytes";
  auto bad = [&](const char* why) {
    return InvalidArgument("object name " + shown + " is refused: " + why);
  };
  if (name.empty()) return bad("empty");
  if (name.size() > 255) return bad("longer than 255 bytes");
  size_t start = 0;
  while (true) {
    size_t end = name.find('/', start);
    std::string_view seg(name.data() + start,
                         (end == std::string::npos ? name.size() : end) - start);
    if (seg.empty()) return bad("absolute, or an empty path segment");
    if (seg == "." || seg == "..") return bad("'.' or '..' segment");
    for (char c : seg) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
      if (!ok) return bad("a character outside [A-Za-z0-9._-]");
    }
    if (end == std::string::npos) return OkStatus();
    start = end + 1;
  }
}

Result<Bytes> Backend::Read(const std::string& name, size_t max_size) const {
  HAVEN_ASSIGN_OR_RETURN(auto reader, OpenReader(name));
  if (reader->size() > max_size)
    return DataLoss(name + ": object is " + std::to_string(reader->size()) +
                    " bytes, more than the limit of " +
                    std::to_string(max_size));
  Bytes data(static_cast<size_t>(reader->size()));
  HAVEN_RETURN_IF_ERROR(reader->ReadAt(0, data.size(), data.data(), name));
  return data;
}

Result<ObjectInfo> Backend::Info(const std::string& name) const {
  HAVEN_ASSIGN_OR_RETURN(uint64_t size, Stat(name));
  return ObjectInfo{name, size, 0};
}

bool RetainedKind(const std::string& name) {
  return name == "config" || name.rfind("keys/", 0) == 0 ||
         name.rfind("packs/", 0) == 0 || name.rfind("snapshots/", 0) == 0;
}

Status Backend::SetObjectLock(const ObjectLockPolicy& policy) {
  if (policy.seconds <= 0) return OkStatus();
  return FailedPrecondition(
      "object lock needs an object store with object lock enabled; " +
      Describe() + " has none");
}

Result<int64_t> Backend::RetainedUntil(const std::string& name) const {
  HAVEN_RETURN_IF_ERROR(Stat(name).status());
  return int64_t{0};
}

Status Backend::ExtendRetention(const std::string& name, int64_t) {
  return FailedPrecondition("object lock: " + Describe() + " cannot retain " +
                            name);
}

Result<uint64_t> Backend::RemoveAbandonedUploads(int64_t) {
  return uint64_t{0};
}

}  // namespace haven::repository
