#include "repository/pack_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "repository/local_backend.h"

namespace haven::repository {

std::string PackKey(const std::string& name) {
  return "packs/" + name.substr(0, 2) + "/" + name;
}

std::string PackPath(const std::string& repo_dir, const std::string& name) {
  return repo_dir + "/" + PackKey(name);
}

Result<std::unique_ptr<PackWriter>> PackWriter::Create(Backend& backend) {
  std::unique_ptr<PackWriter> w(new PackWriter);
  uint8_t raw[16];
  RandomBytes(raw, sizeof raw);
  w->name_ = HexEncode(ByteSpan(raw, sizeof raw));
  HAVEN_ASSIGN_OR_RETURN(w->out_, backend.NewObjectWriter(PackKey(w->name_)));
  HAVEN_RETURN_IF_ERROR(w->out_->Append(
      ByteSpan(reinterpret_cast<const uint8_t*>(kPackMagic), sizeof kPackMagic)));
  w->offset_ = sizeof kPackMagic;
  return w;
}

Status PackWriter::Append(ChunkType type, const ChunkId& id, uint32_t raw_len,
                          ByteSpan sealed) {
  HAVEN_RETURN_IF_ERROR(out_->Append(sealed));
  entries_.push_back(
      {type, raw_len, offset_, static_cast<uint32_t>(sealed.size()), id});
  offset_ += sealed.size();
  return OkStatus();
}

Status PackWriter::Finish(const Key& data_key) {
  Bytes header;
  HAVEN_RETURN_IF_ERROR(Seal(data_key, AsBytes(PackHeaderAad(name_)),
                             EncodePackHeader(entries_), header));
  PutU32(header, static_cast<uint32_t>(header.size()));
  header.insert(header.end(), kPackEndMagic, kPackEndMagic + 8);
  HAVEN_RETURN_IF_ERROR(out_->Append(header));
  offset_ += header.size();
  return out_->Commit();
}

Result<std::vector<PackEntry>> ReadPackHeader(ObjectReader& pack,
                                              const std::string& name,
                                              const Key& data_key) {
  std::string what = "pack " + name;
  uint64_t size = pack.size();
  if (size < sizeof kPackMagic + kPackTrailerSize + kSealOverhead)
    return DataLoss(what + ": truncated (" + std::to_string(size) + " bytes)");
  uint8_t trailer[kPackTrailerSize];
  HAVEN_RETURN_IF_ERROR(
      pack.ReadAt(size - kPackTrailerSize, sizeof trailer, trailer, what));
  if (std::memcmp(trailer + 4, kPackEndMagic, 8) != 0)
    return DataLoss(what + ": no end marker (truncated or not a pack)");
  uint32_t header_len = GetU32(trailer);
  if (header_len < kSealOverhead || header_len > kMaxPackHeader ||
      header_len > size - kPackTrailerSize - sizeof kPackMagic)
    return DataLoss(what + ": header length " + std::to_string(header_len) +
                    " is impossible for a " + std::to_string(size) +
                    "-byte pack");
  uint64_t header_off = size - kPackTrailerSize - header_len;
  Bytes sealed(header_len), plain;
  HAVEN_RETURN_IF_ERROR(pack.ReadAt(header_off, header_len, sealed.data(), what));
  HAVEN_RETURN_IF_ERROR(Unseal(data_key, AsBytes(PackHeaderAad(name)), sealed,
                               plain, what + " header"));
  return DecodePackHeader(plain, header_off, what);
}

Result<std::vector<PackEntry>> ReadPackHeader(const Backend& backend,
                                              const std::string& name,
                                              const Key& data_key) {
  HAVEN_ASSIGN_OR_RETURN(auto reader, backend.OpenReader(PackKey(name)));
  return ReadPackHeader(*reader, name, data_key);
}

Result<std::vector<PackEntry>> ReadPackHeader(const std::string& path,
                                              const std::string& name,
                                              const Key& data_key) {
  HAVEN_ASSIGN_OR_RETURN(auto reader, OpenLocalFile(path));
  return ReadPackHeader(*reader, name, data_key);
}

Result<std::vector<std::string>> ListPackNames(const Backend& backend) {
  HAVEN_ASSIGN_OR_RETURN(auto objects, backend.List("packs/"));
  std::vector<std::string> out;
  for (const auto& o : objects) {
    // packs/<xx>/<name>, with xx the first two digits of name.
    if (o.name.size() != 6 + 3 + 32) continue;
    std::string name = o.name.substr(9);
    if (IsPackName(name) && o.name == PackKey(name)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> ListPackNames(const std::string& repo_dir) {
  auto names = ListPackNames(LocalBackend(repo_dir));
  return names.ok() ? std::move(names).value() : std::vector<std::string>{};
}

namespace {
// Whether `path` was modified within the last `seconds`. Backups now open
// (and clean up) beside running writers, and a writer in another PID
// namespace has a PID this process cannot see: young manifest and key temp
// files are left to a later cleanup. (Temp packs are safe without this:
// see LocalWriter::Create.)
bool Young(const std::string& path, double seconds) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return true;  // gone or unknown: keep
  return std::difftime(std::time(nullptr), st.st_mtime) < seconds;
}
}  // namespace

void RemoveAbandonedTempFiles(const std::string& repo_dir) {
  // Manifests and key slots are written as NAME.tmp-PID-N and linked into
  // place; a writer killed in between leaves the temp file. Remove those
  // whose writer process is gone.
  for (const char* dir : {"/snapshots", "/keys"}) {
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator(repo_dir + dir, ec)) {
      std::string name = e.path().filename().string();
      size_t at = name.find(".tmp-");
      if (at == std::string::npos) continue;
      long pid = std::strtol(name.c_str() + at + 5, nullptr, 10);
      if (Young(e.path().string(), 600)) continue;
      if (pid <= 0 ||
          (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH))
        ::unlink(e.path().c_str());
    }
  }
  RemoveAbandonedTempPacks(repo_dir);
}

void RemoveAbandonedTempPacks(const std::string& repo_dir) {
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator(repo_dir + "/tmp", ec)) {
    std::string path = e.path().string();
    if (e.path().extension() != ".tmp") continue;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    // A live writer holds LOCK_EX; getting it means the writer is gone.
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) ::unlink(path.c_str());
    ::close(fd);
  }
}

}  // namespace haven::repository
