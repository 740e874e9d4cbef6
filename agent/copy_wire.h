// The binary bodies of havend's copy routes (docs/copies.md, "Between
// appliances"): chunks crossing between two appliances, plain, over TLS.
// Both ends use these functions: appliance/routes_copy.cc serves them and
// agent/appliance_copy.cc asks for them. Every byte is untrusted on both
// sides: a length is checked against what is left and against the limits
// below before it is used.
//
// POST /api/v1/copy/chunks/read answers, for the first k of the n ids asked
// (1 <= k <= n; the server stops early, before an entry that would pass
// kCopyBatchBytes, and never passes kMaxCopyBodyBytes; the client asks
// again for the rest), one entry each, in order:
//
//   status (1 byte: 0 ok, 1 damaged) | length (u32 LE) | bytes
//
// where the bytes are the chunk's raw (plain, decompressed) bytes, at most
// kMaxCopyChunkBytes, or for a damaged chunk the error in words, at most
// kMaxCopyErrorBytes.
//
// POST /api/v1/copy/chunks/put takes frames:
//
//   type (1 byte: 0 data, 1 tree) | id (32 bytes) | length (u32 LE) | raw
//
// the whole body at most kMaxCopyBodyBytes, each raw at most
// kMaxCopyChunkBytes.
#ifndef HAVEN_AGENT_COPY_WIRE_H_
#define HAVEN_AGENT_COPY_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "repository/chunk_codec.h"
#include "repository/config.h"
#include "repository/copy.h"

namespace haven::agent {

// One read answer or one put body, headers included.
inline constexpr uint64_t kMaxCopyBodyBytes = 64ull << 20;
// What each side aims for per request (a read answer stops before an entry
// that would pass it, a put body is cut there): havend gives a request body
// 60 s and each write of an answer 30 s, so at this size a link of 1 MB/s
// still finishes every request in time.
inline constexpr uint64_t kCopyBatchBytes = 16ull << 20;
// One chunk's raw bytes: the largest chunk a repository reads
// (repository/config.h).
inline constexpr uint32_t kMaxCopyChunkBytes = repository::kMaxChunkSize;
// A damaged chunk's error text in a read answer.
inline constexpr uint32_t kMaxCopyErrorBytes = 4096;
// Ids one chunks/read may ask for (each at most once), and one chunks/has.
inline constexpr size_t kMaxCopyReadIds = 1024;
inline constexpr size_t kMaxCopyHasIds = 65536;
// Bytes of an entry's or a frame's header.
inline constexpr size_t kReadEntryHeader = 1 + 4;
inline constexpr size_t kPutFrameHeader = 1 + 32 + 4;

// Appends one read-answer entry for `chunk`: its raw bytes when its status
// is OK, else its error (cut to kMaxCopyErrorBytes).
void AppendReadEntry(std::string& out, const repository::CopyChunk& chunk);
// The size AppendReadEntry adds for `chunk`.
size_t ReadEntrySize(const repository::CopyChunk& chunk);

// Parses a read answer to a request for `asked`: one CopyChunk per entry
// (1 to asked.size() of them, each with its asked id), a damaged one with
// DataLoss and the remote's words. DataLoss naming what is wrong for a
// truncated entry, bytes after the last entry, more entries than ids, an
// unknown status, a length over the limits, or no entry at all.
Result<std::vector<repository::CopyChunk>> ParseReadAnswer(
    std::string_view body, const std::vector<repository::ChunkId>& asked);

// Appends one put frame. The caller keeps the body within
// kMaxCopyBodyBytes (PutFrameSize) and each chunk within kMaxCopyChunkBytes.
void AppendPutFrame(std::string& out, repository::ChunkType type,
                    const repository::CopyChunk& chunk);
inline size_t PutFrameSize(size_t raw_bytes) {
  return kPutFrameHeader + raw_bytes;
}

// The frames of a put body, as runs of consecutive frames of one type, in
// order. InvalidArgument naming the frame for a body over
// kMaxCopyBodyBytes, a truncated frame, an unknown type, a length over
// kMaxCopyChunkBytes, or an empty body.
struct PutRun {
  repository::ChunkType type = repository::ChunkType::kData;
  std::vector<repository::CopyChunk> chunks;
};
Result<std::vector<PutRun>> ParsePutBody(std::string_view body);

// A chunk id from 64 lower-case hex digits; InvalidArgument otherwise.
Result<repository::ChunkId> ParseChunkIdHex(std::string_view hex);

}  // namespace haven::agent

#endif  // HAVEN_AGENT_COPY_WIRE_H_
