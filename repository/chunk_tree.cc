#include "repository/chunk_tree.h"

#include <algorithm>
#include <cstring>

namespace haven::repository {

uint64_t TreeCapacity(int height) {  // level-0 entries under a node at `height`
  uint64_t c = 1;
  for (int i = 0; i < height && i < kMaxTreeHeight; ++i) c *= kTreeFanout;
  return c;
}

Status TreeWriter::Flush(size_t level) {
  auto& ids = levels_[level];
  ChunkId node_id;  // zero: the whole node is a hole
  bool all_zero = true;
  for (const auto& id : ids)
    if (!id.IsZero()) {
      all_zero = false;
      break;
    }
  if (!all_zero) {
    Bytes node(ids.size() * 32);
    for (size_t i = 0; i < ids.size(); ++i)
      std::memcpy(node.data() + 32 * i, ids[i].bytes.data(), 32);
    HAVEN_ASSIGN_OR_RETURN(node_id, store_(node));
  }
  ids.clear();
  if (levels_.size() <= level + 1) levels_.emplace_back();
  levels_[level + 1].push_back(node_id);
  if (levels_[level + 1].size() == kTreeFanout) return Flush(level + 1);
  return OkStatus();
}

Status TreeWriter::Add(const ChunkId& id) {
  if (levels_.empty()) levels_.emplace_back();
  levels_[0].push_back(id);
  ++count_;
  if (levels_[0].size() == kTreeFanout) return Flush(0);
  return OkStatus();
}

Result<TreeRoot> TreeWriter::Finish() {
  if (levels_.empty()) levels_.emplace_back();
  for (size_t level = 0;; ++level) {
    bool higher = false;
    for (size_t k = level + 1; k < levels_.size(); ++k)
      if (!levels_[k].empty()) higher = true;
    if (!higher) {
      if (level == 0 && levels_[0].empty()) return TreeRoot{ChunkId{}, 1, 0};
      if (level > 0 && levels_[level].size() == 1) {
        TreeRoot r{levels_[level][0], static_cast<int>(level), count_};
        if (r.height > kMaxTreeHeight) return Internal("chunk tree too tall");
        return r;
      }
    }
    // A partial node is only ever the last one of its level.
    if (!levels_[level].empty()) HAVEN_RETURN_IF_ERROR(Flush(level));
  }
}

namespace {

Status Walk(const ChunkId& node_id, int level, uint64_t first, uint64_t total,
            uint64_t unit_bytes, const LoadNodeFn& load,
            const std::function<Status(uint64_t, const ChunkId&)>& visit,
            const WalkHooks& hooks) {
  if (node_id.IsZero()) return OkStatus();
  if (hooks.enter) {
    HAVEN_ASSIGN_OR_RETURN(bool go, hooks.enter(node_id));
    if (!go) return OkStatus();
  }
  uint64_t child_cap = TreeCapacity(level - 1);
  uint64_t remaining = total - first;
  uint64_t expected =
      std::min<uint64_t>(kTreeFanout, (remaining + child_cap - 1) / child_cap);
  auto loaded = load(node_id);
  Status bad;
  if (!loaded.ok())
    bad = loaded.status();
  else if (loaded->size() != expected * 32)
    bad = DataLoss("chunk-list node " + node_id.Hex() + " holds " +
                   std::to_string(loaded->size() / 32) + " entries, expected " +
                   std::to_string(expected));
  if (!bad.ok()) {
    // Say which part of the image the lost node described.
    uint64_t last = std::min(total, first + TreeCapacity(level)) - 1;
    std::string where =
        "chunks " + std::to_string(first) + "-" + std::to_string(last);
    if (unit_bytes)
      where += " (image offsets " + std::to_string(first * unit_bytes) + "-" +
               std::to_string((last + 1) * unit_bytes - 1) + ")";
    if (hooks.on_bad)
      return hooks.on_bad(first, last + 1, bad.WithContext(where));
    return bad.WithContext(where);
  }
  const Bytes& node = *loaded;
  for (uint64_t i = 0; i < expected; ++i) {
    ChunkId child;
    std::memcpy(child.bytes.data(), node.data() + 32 * i, 32);
    uint64_t child_first = first + i * child_cap;
    if (level == 1) {
      if (!child.IsZero()) HAVEN_RETURN_IF_ERROR(visit(child_first, child));
    } else {
      HAVEN_RETURN_IF_ERROR(Walk(child, level - 1, child_first, total,
                                 unit_bytes, load, visit, hooks));
    }
  }
  return hooks.leave ? hooks.leave(node_id) : OkStatus();
}

}  // namespace

Status WalkTree(const TreeRoot& root, const LoadNodeFn& load,
                const std::function<Status(uint64_t, const ChunkId&)>& visit,
                uint64_t chunk_size, const WalkHooks& hooks) {
  if (root.height < 1 || root.height > kMaxTreeHeight)
    return DataLoss("chunk-list tree height " + std::to_string(root.height) +
                    " is out of range");
  if (root.count == 0) return OkStatus();
  if (root.count > TreeCapacity(root.height))
    return DataLoss("chunk-list tree of height " + std::to_string(root.height) +
                    " cannot hold " + std::to_string(root.count) + " chunks");
  return Walk(root.root, root.height, 0, root.count, chunk_size, load, visit,
              hooks);
}

TreeReader::TreeReader(const TreeRoot& root, LoadNodeFn load)
    : root_(root), load_(std::move(load)) {
  levels_.resize(std::clamp(root.height, 1, kMaxTreeHeight));
}

Result<ChunkId> TreeReader::Get(uint64_t index) {
  if (root_.height < 1 || root_.height > kMaxTreeHeight ||
      root_.count > TreeCapacity(root_.height))
    return DataLoss("chunk-list tree of height " +
                    std::to_string(root_.height) + " cannot hold " +
                    std::to_string(root_.count) + " chunks");
  if (index >= root_.count)
    return InvalidArgument("chunk " + std::to_string(index) + " is past the " +
                           std::to_string(root_.count) + " chunks of the tree");
  ChunkId node = root_.root;
  uint64_t first = 0;
  for (int level = root_.height; level >= 1; --level) {
    if (node.IsZero()) return ChunkId{};  // a hole subtree
    const uint64_t child_cap = TreeCapacity(level - 1);
    Cached& c = levels_[level - 1];
    if (c.first != first || c.id != node) {
      HAVEN_ASSIGN_OR_RETURN(Bytes bytes, load_(node));
      const uint64_t expected = std::min<uint64_t>(
          kTreeFanout, (root_.count - first + child_cap - 1) / child_cap);
      if (bytes.size() != expected * 32)
        return DataLoss("chunk-list node " + node.Hex() + " holds " +
                        std::to_string(bytes.size() / 32) +
                        " entries, expected " + std::to_string(expected));
      c = {first, node, std::move(bytes)};
    }
    const uint64_t slot = (index - first) / child_cap;
    std::memcpy(node.bytes.data(), c.bytes.data() + 32 * slot, 32);
    first += slot * child_cap;
  }
  return node;
}

}  // namespace haven::repository
