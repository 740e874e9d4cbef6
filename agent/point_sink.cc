#include "agent/point_sink.h"

#include "agent/image_backup.h"
#include "repository/latest_point.h"

namespace haven::agent {

using repository::ChunkId;
using repository::ChunkType;
using repository::Manifest;

LocalPointSink::LocalPointSink(repository::Repository& repo,
                               repository::Unreadable unreadable)
    : repo_(repo), unreadable_(unreadable), writer_(repo.NewWriter()) {}

ChunkId LocalPointSink::IdFor(ChunkType type, ByteSpan raw) const {
  return repo_.IdFor(type, raw);
}

int LocalPointSink::compression_level() const {
  return repo_.config().compression_level;
}

uint32_t LocalPointSink::chunk_size() const {
  return repo_.config().chunk_size;
}

Result<bool> LocalPointSink::Put(ChunkType type, const ChunkId& id,
                                 ByteSpan raw, repository::WriteContext& ctx) {
  return writer_->Put(type, id, raw, ctx);
}

Status LocalPointSink::Flush() { return writer_->Flush(); }

Status LocalPointSink::Abandon(Status why) {
  return KeepStoredChunks(*writer_, std::move(why));
}

uint64_t LocalPointSink::new_chunks() const { return writer_->new_chunks(); }
uint64_t LocalPointSink::new_raw_bytes() const {
  return writer_->new_raw_bytes();
}
uint64_t LocalPointSink::new_stored_bytes() const {
  return writer_->new_stored_bytes();
}

Result<std::optional<Manifest>> LocalPointSink::LatestPoint(
    const std::string& name, const std::string& kind) {
  return repository::LatestPoint(repo_, name, kind, unreadable_);
}

Status LocalPointSink::ForEachRecord(
    const Manifest& parent,
    const std::function<Status(repository::FileRecord&&)>& fn) {
  return repository::ForEachRecord(repo_, parent, fn);
}

repository::LoadNodeFn LocalPointSink::NodeLoader(
    repository::ReadContext& ctx) {
  return repo_.TreeNodeLoader(ctx);
}

Result<bool> LocalPointSink::Has(const ChunkId& id) {
  HAVEN_ASSIGN_OR_RETURN(auto where, repo_.index().Get(id));
  return where.has_value();
}

Status LocalPointSink::Commit(Manifest& m) { return repo_.CommitSnapshot(m); }

}  // namespace haven::agent
