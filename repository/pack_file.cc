#include "repository/pack_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace haven::repository {

namespace {
constexpr size_t kWriteBufferSize = 1 << 20;  // blobs are written in 1 MiB runs
}  // namespace

std::string PackPath(const std::string& repo_dir, const std::string& name) {
  return repo_dir + "/packs/" + name.substr(0, 2) + "/" + name;
}

Result<std::unique_ptr<PackWriter>> PackWriter::Create(
    const std::string& repo_dir) {
  std::unique_ptr<PackWriter> w(new PackWriter);
  uint8_t raw[16];
  RandomBytes(raw, sizeof raw);
  w->repo_dir_ = repo_dir;
  w->name_ = HexEncode(ByteSpan(raw, sizeof raw));
  w->tmp_path_ = repo_dir + "/tmp/pack-" + w->name_ + ".tmp";
  HAVEN_ASSIGN_OR_RETURN(
      w->fd_, OpenFile(w->tmp_path_, O_RDWR | O_CREAT | O_EXCL, 0600));
  if (::flock(w->fd_.get(), LOCK_EX | LOCK_NB) != 0)
    return ErrnoStatus("lock " + w->tmp_path_, errno);
  HAVEN_RETURN_IF_ERROR(PWriteAll(w->fd_.get(),
                                  reinterpret_cast<const uint8_t*>(kPackMagic),
                                  sizeof kPackMagic, 0, w->tmp_path_));
  w->offset_ = w->written_ = sizeof kPackMagic;
  return w;
}

PackWriter::~PackWriter() {
  if (!finished_ && !tmp_path_.empty()) ::unlink(tmp_path_.c_str());
}

Status PackWriter::FlushBuffer() {
  if (buffer_.empty()) return OkStatus();
  HAVEN_RETURN_IF_ERROR(PWriteAll(fd_.get(), buffer_.data(), buffer_.size(),
                                  written_, tmp_path_));
  // Start writeback now so the fsync in Finish() has little left to wait for.
  ::sync_file_range(fd_.get(), static_cast<off_t>(written_),
                    static_cast<off_t>(buffer_.size()), SYNC_FILE_RANGE_WRITE);
  written_ += buffer_.size();
  buffer_.clear();
  return OkStatus();
}

Status PackWriter::Append(ChunkType type, const ChunkId& id, uint32_t raw_len,
                          ByteSpan sealed) {
  buffer_.insert(buffer_.end(), sealed.begin(), sealed.end());
  if (buffer_.size() >= kWriteBufferSize) HAVEN_RETURN_IF_ERROR(FlushBuffer());
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
  buffer_.insert(buffer_.end(), header.begin(), header.end());
  offset_ += header.size();
  HAVEN_RETURN_IF_ERROR(FlushBuffer());
  HAVEN_RETURN_IF_ERROR(FsyncFd(fd_.get(), tmp_path_));
  std::string dest = PackPath(repo_dir_, name_);
  if (::rename(tmp_path_.c_str(), dest.c_str()) != 0)
    return ErrnoStatus("rename pack to " + dest, errno);
  finished_ = true;
  return FsyncDir(std::filesystem::path(dest).parent_path().string());
}

Result<std::vector<PackEntry>> ReadPackHeader(const std::string& path,
                                              const std::string& name,
                                              const Key& data_key) {
  std::string what = "pack " + name;
  HAVEN_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, O_RDONLY));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat " + path, errno);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < sizeof kPackMagic + kPackTrailerSize + kSealOverhead)
    return DataLoss(what + ": truncated (" + std::to_string(size) + " bytes)");
  uint8_t trailer[kPackTrailerSize];
  HAVEN_RETURN_IF_ERROR(PReadExact(fd.get(), trailer, sizeof trailer,
                                   size - kPackTrailerSize, what));
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
  HAVEN_RETURN_IF_ERROR(
      PReadExact(fd.get(), sealed.data(), header_len, header_off, what));
  HAVEN_RETURN_IF_ERROR(Unseal(data_key, AsBytes(PackHeaderAad(name)), sealed,
                               plain, what + " header"));
  return DecodePackHeader(plain, header_off, what);
}

std::vector<std::string> ListPackNames(const std::string& repo_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& sub :
       std::filesystem::directory_iterator(repo_dir + "/packs", ec)) {
    if (!sub.is_directory()) continue;
    std::string prefix = sub.path().filename().string();
    for (const auto& e : std::filesystem::directory_iterator(sub.path(), ec)) {
      std::string name = e.path().filename().string();
      if (IsPackName(name) && name.compare(0, 2, prefix) == 0)
        out.push_back(name);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

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
