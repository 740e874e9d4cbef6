// Chunk-list trees: how an image's "offset -> chunk id" array is stored.
//
// Level 0 is the array of data chunk ids, one per chunk_size bytes of the
// image (the all-zero id is a hole). Every kTreeFanout consecutive ids at
// level L are stored as one node (a kTree chunk whose bytes are the ids
// concatenated); the node's id goes to level L+1. The root is the single id
// at the top; `height` is the number of node levels (>= 1). A node whose ids
// are all zero is not stored: the zero id stands for it, so a hole of any
// size costs nothing.
//
// Nodes are deduplicated like data, so a nightly point of a large disk costs
// its changed leaves and their path to the root, not a whole new list. All
// nodes but the last at each level are full, so chunk i is found by
// division: O(height) node reads.
#ifndef HAVEN_REPOSITORY_CHUNK_TREE_H_
#define HAVEN_REPOSITORY_CHUNK_TREE_H_

#include <functional>
#include <vector>

#include "base/status.h"
#include "repository/crypto.h"

namespace haven::repository {

inline constexpr size_t kTreeFanout = 1024;
// 1024^6 chunks of 4 KiB is 4 EiB: no disk needs more, and 1024^6 still
// fits in 64 bits.
inline constexpr int kMaxTreeHeight = 6;

// Number of level-0 entries a tree of `height` can hold (1024^height).
uint64_t TreeCapacity(int height);

struct TreeRoot {
  ChunkId root;
  int height = 1;
  uint64_t count = 0;  // number of level-0 entries (chunks)
};

// Stores a node and returns its id.
using StoreNodeFn = std::function<Result<ChunkId>(ByteSpan node)>;
// Loads a node's bytes (authenticated).
using LoadNodeFn = std::function<Result<Bytes>(const ChunkId& id)>;

class TreeWriter {
 public:
  explicit TreeWriter(StoreNodeFn store) : store_(std::move(store)) {}
  Status Add(const ChunkId& id);
  Result<TreeRoot> Finish();

 private:
  Status Flush(size_t level);
  StoreNodeFn store_;
  std::vector<std::vector<ChunkId>> levels_;
  uint64_t count_ = 0;
};

// Calls `visit(index, id)` for every level-0 entry in order, skipping whole
// hole subtrees (visit is not called for their entries). Validates node sizes
// against `root.count`; a mismatch is DataLoss.
// A node that cannot be loaded is reported with the chunks it covered (and
// their image offsets when `chunk_size` is given).
struct WalkHooks {
  // Instead of failing on a bad node, called with the level-0 range
  // [first, end) it covered; the walk goes on unless it returns an error.
  std::function<Status(uint64_t first, uint64_t end, const Status& error)>
      on_bad;
  // Before a node is loaded: false skips the node and its whole subtree.
  std::function<Result<bool>(const ChunkId& node)> enter;
  // After a node's whole subtree was walked without error.
  std::function<Status(const ChunkId& node)> leave;
};
Status WalkTree(
    const TreeRoot& root, const LoadNodeFn& load,
    const std::function<Status(uint64_t index, const ChunkId& id)>& visit,
    uint64_t chunk_size = 0, const WalkHooks& hooks = {});

// Random access to the level-0 ids of a tree: O(height) node loads for the
// first lookup, none for further lookups under the same leaf. Each level
// keeps its last node, so a scan in increasing order loads each node once.
// Node sizes are validated against `root.count` as in WalkTree.
class TreeReader {
 public:
  TreeReader(const TreeRoot& root, LoadNodeFn load);
  // The id of chunk `index` (< root.count); the zero id for a hole.
  Result<ChunkId> Get(uint64_t index);

 private:
  struct Cached {
    uint64_t first = UINT64_MAX;  // level-0 index of the node's first entry
    ChunkId id;
    Bytes bytes;
  };
  TreeRoot root_;
  LoadNodeFn load_;
  std::vector<Cached> levels_;  // [level - 1]: the last node read there
};

}  // namespace haven::repository

#endif  // HAVEN_REPOSITORY_CHUNK_TREE_H_
