#include "repository/object_lock.h"

#include <cstdlib>

#include "base/file.h"

namespace haven::repository {

PackRetention::PackRetention(std::string cache_file)
    : file_(std::move(cache_file)) {}

void PackRetention::Load() {
  if (loaded_) return;
  loaded_ = true;
  auto raw = ReadFile(file_, 256u << 20);
  if (!raw.ok()) return;  // no cache yet: HEAD what is needed
  std::string_view text(reinterpret_cast<const char*>(raw->data()),
                        raw->size());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) continue;
    std::string pack(line.substr(0, sp));
    int64_t until = std::atoll(std::string(line.substr(sp + 1)).c_str());
    if (until > 0) until_[pack] = until;
  }
}

Status PackRetention::Save() {
  std::string text;
  text.reserve(until_.size() * 80);
  for (const auto& [pack, until] : until_)
    text += pack + " " + std::to_string(until) + "\n";
  return WriteFileAtomic(file_, AsBytes(text), 0600);
}

void PackRetention::Note(const std::string& pack, int64_t until) {
  std::lock_guard lock(mu_);
  Load();
  int64_t& u = until_[pack];
  if (until > u) u = until;
}

Result<RetentionReport> PackRetention::Ensure(Backend& backend,
                                              const std::set<std::string>& keys,
                                              int64_t required,
                                              int64_t target) {
  std::lock_guard lock(mu_);
  Load();
  RetentionReport report;
  report.packs = keys.size();
  for (const std::string& key : keys) {
    auto it = until_.find(key);
    if (it != until_.end() && it->second >= required) continue;
    ++report.asked;
    HAVEN_ASSIGN_OR_RETURN(int64_t until, backend.RetainedUntil(key));
    if (until < required) {
      HAVEN_RETURN_IF_ERROR(backend.ExtendRetention(key, target));
      until = target;
      ++report.extended;
    }
    until_[key] = until;
  }
  HAVEN_RETURN_IF_ERROR(Save());
  return report;
}

}  // namespace haven::repository
