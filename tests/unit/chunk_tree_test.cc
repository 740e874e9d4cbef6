// Tests for repository/chunk_tree.h with an in-memory node store.
#include "repository/chunk_tree.h"

#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::StatusIs;
using ::testing::HasSubstr;

// Small, distinct, never-zero data ids: i + 1 in the first 8 bytes.
ChunkId DataId(uint64_t i) {
  ChunkId id;
  uint64_t v = i + 1;
  std::memcpy(id.bytes.data(), &v, sizeof v);
  id.bytes[31] = 0xd;
  return id;
}

// A content-addressed in-memory node store that records every call.
class MemStore {
 public:
  MemStore() : hasher_(MakeKey()) {}

  StoreNodeFn StoreFn() {
    return [this](ByteSpan node) -> Result<ChunkId> {
      ++store_calls_;
      if (IsAllZero(node.data(), node.size())) ++all_zero_nodes_stored_;
      if (node.empty() || node.size() % 32 != 0 ||
          node.size() > kTreeFanout * 32)
        ++malformed_nodes_stored_;
      ChunkId id = hasher_.Hash(node);
      nodes_[id] = Bytes(node.begin(), node.end());
      return id;
    };
  }
  LoadNodeFn LoadFn() {
    return [this](const ChunkId& id) -> Result<Bytes> {
      ++load_calls_;
      if (id.IsZero()) ++zero_loads_;
      auto it = nodes_.find(id);
      if (it == nodes_.end())
        return NotFound("node " + id.Hex() + " not stored");
      return it->second;
    };
  }

  std::unordered_map<ChunkId, Bytes, ChunkIdHash>& nodes() { return nodes_; }
  int store_calls() const { return store_calls_; }
  int all_zero_nodes_stored() const { return all_zero_nodes_stored_; }
  int malformed_nodes_stored() const { return malformed_nodes_stored_; }
  int load_calls() const { return load_calls_; }
  int zero_loads() const { return zero_loads_; }

 private:
  static Key MakeKey() {
    Key k;
    k.fill(0x42);
    return k;
  }
  KeyedHasher hasher_;
  std::unordered_map<ChunkId, Bytes, ChunkIdHash> nodes_;
  int store_calls_ = 0, all_zero_nodes_stored_ = 0, malformed_nodes_stored_ = 0;
  int load_calls_ = 0, zero_loads_ = 0;
};

Result<TreeRoot> BuildTree(MemStore& store, const std::vector<ChunkId>& ids) {
  TreeWriter w(store.StoreFn());
  for (const auto& id : ids) HAVEN_RETURN_IF_ERROR(w.Add(id));
  return w.Finish();
}

// Walks and returns every visited (index, id), checking the order.
Result<std::vector<std::pair<uint64_t, ChunkId>>> Collect(
    MemStore& store, const TreeRoot& root) {
  std::vector<std::pair<uint64_t, ChunkId>> out;
  Status s =
      WalkTree(root, store.LoadFn(), [&](uint64_t index, const ChunkId& id) {
        if (!out.empty() && index <= out.back().first)
          return Internal("visit out of order at " + std::to_string(index));
        out.push_back({index, id});
        return OkStatus();
      });
  if (!s.ok()) return s;
  return out;
}

struct CountCase {
  uint64_t count;
  int height;
  int nodes;  // store calls expected (no holes, all ids distinct)
};

class TreeRoundTripTest : public ::testing::TestWithParam<CountCase> {};

TEST_P(TreeRoundTripTest, WriteThenWalkVisitsEveryEntryInOrder) {
  const CountCase c = GetParam();
  MemStore store;
  TreeWriter w(store.StoreFn());
  for (uint64_t i = 0; i < c.count; ++i) ASSERT_THAT(w.Add(DataId(i)), IsOk());
  auto root = w.Finish();
  ASSERT_THAT(root, IsOk());
  EXPECT_EQ(root->count, c.count);
  EXPECT_EQ(root->height, c.height);
  EXPECT_EQ(store.store_calls(), c.nodes);
  EXPECT_EQ(store.malformed_nodes_stored(), 0);
  EXPECT_EQ(root->root.IsZero(), c.count == 0);
  if (c.count > 0) {
    EXPECT_TRUE(store.nodes().count(root->root)) << "root node not stored";
  }

  uint64_t next = 0;
  bool in_order = true;
  Status s =
      WalkTree(*root, store.LoadFn(), [&](uint64_t index, const ChunkId& id) {
        if (index != next || !(id == DataId(index))) {
          in_order = false;
          return Internal("unexpected entry at " + std::to_string(index));
        }
        ++next;
        return OkStatus();
      });
  ASSERT_THAT(s, IsOk());
  EXPECT_TRUE(in_order);
  EXPECT_EQ(next, c.count);
  // O(nodes) loads: each stored node is read exactly once by a full walk.
  EXPECT_EQ(store.load_calls(), c.nodes);
  EXPECT_EQ(store.zero_loads(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Counts, TreeRoundTripTest,
    ::testing::Values(CountCase{0, 1, 0}, CountCase{1, 1, 1},
                      CountCase{1023, 1, 1}, CountCase{1024, 1, 1},
                      CountCase{1025, 2, 3}, CountCase{2048, 2, 3},
                      CountCase{1024 * 1024, 2, 1025},
                      // 1025 leaves, 2 level-2 nodes, 1 root.
                      CountCase{1024 * 1024 + 1, 3, 1028}),
    [](const ::testing::TestParamInfo<CountCase>& info) {
      return "Count" + std::to_string(info.param.count);
    });

TEST(TreeTest, LeafNodesAreFullExceptTheLast) {
  MemStore store;
  std::vector<ChunkId> ids;
  for (uint64_t i = 0; i < 2 * 1024 + 5; ++i) ids.push_back(DataId(i));
  auto root = BuildTree(store, ids);
  ASSERT_THAT(root, IsOk());
  ASSERT_EQ(root->height, 2);
  const Bytes& top = store.nodes().at(root->root);
  ASSERT_EQ(top.size(), 3u * 32);
  std::vector<size_t> leaf_sizes;
  for (int i = 0; i < 3; ++i) {
    ChunkId child;
    std::memcpy(child.bytes.data(), top.data() + 32 * i, 32);
    leaf_sizes.push_back(store.nodes().at(child).size());
  }
  EXPECT_EQ(leaf_sizes, (std::vector<size_t>{1024 * 32, 1024 * 32, 5 * 32}));
  // The first leaf holds ids 0..1023 concatenated.
  ChunkId first_leaf;
  std::memcpy(first_leaf.bytes.data(), top.data(), 32);
  const Bytes& leaf = store.nodes().at(first_leaf);
  for (uint64_t i = 0; i < 1024; ++i)
    ASSERT_EQ(std::memcmp(leaf.data() + 32 * i, DataId(i).bytes.data(), 32), 0)
        << i;
}

TEST(TreeTest, HolesAreSkippedAndAllZeroNodesAreNotStored) {
  // Layout (1024 entries per leaf):
  //   leaf 0: data with a few single holes
  //   leaf 1, leaf 2: all holes (whole nodes)
  //   leaf 3: data
  //   leaf 4: holes except entry 4096 + 500
  //   leaf 5: 10 entries, all holes (a partial all-zero last node)
  const uint64_t count = 5 * 1024 + 10;
  std::vector<ChunkId> ids(count);
  std::vector<uint64_t> expected_indices;
  for (uint64_t i = 0; i < count; ++i) {
    bool data = (i < 1024 && i % 100 != 7) || (i >= 3072 && i < 4096) ||
                i == 4096 + 500;
    if (data) {
      ids[i] = DataId(i);
      expected_indices.push_back(i);
    }
  }
  MemStore store;
  auto root = BuildTree(store, ids);
  ASSERT_THAT(root, IsOk());
  EXPECT_EQ(root->height, 2);
  EXPECT_EQ(root->count, count);
  // Leaves 0, 3 and 4 plus the root; never a node of zeros.
  EXPECT_EQ(store.all_zero_nodes_stored(), 0);
  EXPECT_EQ(store.store_calls(), 4);

  // The root names the skipped leaves with the zero id.
  const Bytes& top = store.nodes().at(root->root);
  ASSERT_EQ(top.size(), 6u * 32);
  for (int leaf : {1, 2, 5})
    EXPECT_TRUE(IsAllZero(top.data() + 32 * leaf, 32)) << "leaf " << leaf;
  for (int leaf : {0, 3, 4})
    EXPECT_FALSE(IsAllZero(top.data() + 32 * leaf, 32)) << "leaf " << leaf;

  auto visited = Collect(store, *root);
  ASSERT_THAT(visited, IsOk());
  std::vector<uint64_t> indices;
  for (const auto& [index, id] : *visited) {
    indices.push_back(index);
    EXPECT_FALSE(id.IsZero()) << "visit called for a hole at " << index;
    EXPECT_EQ(id, DataId(index)) << index;
  }
  EXPECT_EQ(indices, expected_indices);
  // Hole subtrees are never loaded.
  EXPECT_EQ(store.zero_loads(), 0);
  EXPECT_EQ(store.load_calls(), 4);
}

TEST(TreeTest, AllHoleImageStoresNothing) {
  for (uint64_t count : {1ull, 1024ull, 3000ull, 1024ull * 1024 + 3}) {
    SCOPED_TRACE("count " + std::to_string(count));
    MemStore store;
    TreeWriter w(store.StoreFn());
    for (uint64_t i = 0; i < count; ++i) ASSERT_THAT(w.Add(ChunkId{}), IsOk());
    auto root = w.Finish();
    ASSERT_THAT(root, IsOk());
    EXPECT_EQ(store.store_calls(), 0);
    EXPECT_TRUE(root->root.IsZero());
    EXPECT_EQ(root->count, count);
    int visits = 0;
    ASSERT_THAT(WalkTree(*root, store.LoadFn(),
                         [&](uint64_t, const ChunkId&) {
                           ++visits;
                           return OkStatus();
                         }),
                IsOk());
    EXPECT_EQ(visits, 0);
    EXPECT_EQ(store.load_calls(), 0);
  }
}

TEST(TreeTest, HoleSpanningAWholeLevelTwoSubtreeIsNotStored) {
  // 1024 * 1024 + 1024 entries: the first 1024 * 1024 (a whole level-2
  // subtree) are holes, the last leaf holds data.
  const uint64_t count = 1024 * 1024 + 1024;
  MemStore store;
  TreeWriter w(store.StoreFn());
  for (uint64_t i = 0; i < count; ++i)
    ASSERT_THAT(w.Add(i >= 1024 * 1024 ? DataId(i) : ChunkId{}), IsOk());
  auto root = w.Finish();
  ASSERT_THAT(root, IsOk());
  EXPECT_EQ(root->height, 3);
  // One leaf, its level-2 parent, the root.
  EXPECT_EQ(store.store_calls(), 3);
  EXPECT_EQ(store.all_zero_nodes_stored(), 0);
  auto visited = Collect(store, *root);
  ASSERT_THAT(visited, IsOk());
  ASSERT_EQ(visited->size(), 1024u);
  EXPECT_EQ(visited->front().first, 1024u * 1024);
  EXPECT_EQ(visited->back().first, count - 1);
  EXPECT_EQ(store.load_calls(), 3);
}

TEST(TreeTest, NodeWithWrongLengthIsDataLoss) {
  std::vector<ChunkId> ids;
  for (uint64_t i = 0; i < 1025; ++i) ids.push_back(DataId(i));
  MemStore store;
  auto root = BuildTree(store, ids);
  ASSERT_THAT(root, IsOk());
  ASSERT_EQ(root->height, 2);
  ChunkId first_leaf;
  std::memcpy(first_leaf.bytes.data(), store.nodes().at(root->root).data(), 32);

  // A leaf one entry short.
  Bytes original = store.nodes().at(first_leaf);
  store.nodes()[first_leaf].resize(original.size() - 32);
  EXPECT_THAT(Collect(store, *root),
              StatusIs(Code::kDataLoss,
                       AllOf(HasSubstr(first_leaf.Hex()),
                             HasSubstr("holds 1023 entries, expected 1024"))));
  // A leaf one entry long.
  store.nodes()[first_leaf] = original;
  store.nodes()[first_leaf].resize(original.size() + 32);
  EXPECT_THAT(Collect(store, *root),
              StatusIs(Code::kDataLoss,
                       HasSubstr("holds 1025 entries, expected 1024")));
  // Not a multiple of 32 bytes.
  store.nodes()[first_leaf] = original;
  store.nodes()[first_leaf].pop_back();
  EXPECT_THAT(Collect(store, *root),
              StatusIs(Code::kDataLoss, HasSubstr("chunk-list node")));
  // An empty node.
  store.nodes()[first_leaf].clear();
  EXPECT_THAT(
      Collect(store, *root),
      StatusIs(Code::kDataLoss, HasSubstr("holds 0 entries, expected 1024")));
  store.nodes()[first_leaf] = original;
  EXPECT_THAT(Collect(store, *root), IsOk());
}

TEST(TreeTest, CountThatDisagreesWithNodesIsDataLoss) {
  std::vector<ChunkId> ids;
  for (uint64_t i = 0; i < 1025; ++i) ids.push_back(DataId(i));
  MemStore store;
  auto root = BuildTree(store, ids);
  ASSERT_THAT(root, IsOk());
  TreeRoot bad = *root;
  bad.count = 1026;  // the last leaf would need two entries
  EXPECT_THAT(
      Collect(store, bad),
      StatusIs(Code::kDataLoss, HasSubstr("holds 1 entries, expected 2")));
  bad.count = 1024;  // the root would need one entry
  EXPECT_THAT(
      Collect(store, bad),
      StatusIs(Code::kDataLoss, HasSubstr("holds 2 entries, expected 1")));
  bad.count = 3000;  // the root would need three entries
  EXPECT_THAT(Collect(store, bad),
              StatusIs(Code::kDataLoss, HasSubstr("expected 3")));
}

TEST(TreeTest, HeightOutOfRangeIsDataLoss) {
  MemStore store;
  auto root = BuildTree(store, {DataId(0), DataId(1)});
  ASSERT_THAT(root, IsOk());
  for (int height : {0, -1, kMaxTreeHeight + 1, 1000}) {
    TreeRoot bad = *root;
    bad.height = height;
    EXPECT_THAT(Collect(store, bad),
                StatusIs(Code::kDataLoss,
                         AllOf(HasSubstr("height"), HasSubstr("out of range"))))
        << "height " << height;
  }
  EXPECT_EQ(store.load_calls(), 0);
}

TEST(TreeTest, CountBeyondHeightCapacityIsDataLoss) {
  MemStore store;
  auto root = BuildTree(store, {DataId(0), DataId(1)});
  ASSERT_THAT(root, IsOk());
  TreeRoot bad = *root;
  bad.count = kTreeFanout + 1;
  EXPECT_THAT(Collect(store, bad),
              StatusIs(Code::kDataLoss, HasSubstr("cannot hold 1025 chunks")));
  bad.height = 2;
  bad.count = kTreeFanout * kTreeFanout + 1;
  EXPECT_THAT(Collect(store, bad),
              StatusIs(Code::kDataLoss, HasSubstr("cannot hold")));
  bad.height = kMaxTreeHeight;
  bad.count = ~0ull;
  EXPECT_THAT(Collect(store, bad),
              StatusIs(Code::kDataLoss, HasSubstr("cannot hold")));
  EXPECT_EQ(store.load_calls(), 0);
}

TEST(TreeTest, WrongHeightForTheNodesIsDetected) {
  // A height-2 tree walked as height 3: a height-3 root of a 1025-entry list
  // would hold a single entry, the stored root holds two.
  std::vector<ChunkId> ids;
  for (uint64_t i = 0; i < 1025; ++i) ids.push_back(DataId(i));
  MemStore store;
  auto root = BuildTree(store, ids);
  ASSERT_THAT(root, IsOk());
  TreeRoot bad = *root;
  bad.height = 3;  // root node would have to hold ceil(1025 / 1M) = 1 entry
  EXPECT_THAT(
      Collect(store, bad),
      StatusIs(Code::kDataLoss, HasSubstr("holds 2 entries, expected 1")));
}

TEST(TreeTest, LoadErrorIsPropagated) {
  std::vector<ChunkId> ids;
  for (uint64_t i = 0; i < 1025; ++i) ids.push_back(DataId(i));
  MemStore store;
  auto root = BuildTree(store, ids);
  ASSERT_THAT(root, IsOk());
  ChunkId second_leaf;
  std::memcpy(second_leaf.bytes.data(),
              store.nodes().at(root->root).data() + 32, 32);
  store.nodes().erase(second_leaf);
  EXPECT_THAT(Collect(store, *root),
              StatusIs(Code::kNotFound, HasSubstr(second_leaf.Hex())));
}

TEST(TreeTest, VisitErrorStopsTheWalk) {
  std::vector<ChunkId> ids;
  for (uint64_t i = 0; i < 3000; ++i) ids.push_back(DataId(i));
  MemStore store;
  auto root = BuildTree(store, ids);
  ASSERT_THAT(root, IsOk());
  uint64_t visits = 0;
  Status s =
      WalkTree(*root, store.LoadFn(), [&](uint64_t index, const ChunkId&) {
        ++visits;
        if (index == 1500) return IoError("disk full at 1500");
        return OkStatus();
      });
  EXPECT_THAT(s, StatusIs(Code::kIoError, HasSubstr("disk full at 1500")));
  EXPECT_EQ(visits, 1501u);
}

TEST(TreeTest, StoreErrorIsPropagated) {
  int calls = 0;
  TreeWriter w([&](ByteSpan) -> Result<ChunkId> {
    ++calls;
    return IoError("no space left for node");
  });
  Status last;
  for (uint64_t i = 0; i < 1024 && last.ok(); ++i) last = w.Add(DataId(i));
  EXPECT_THAT(last,
              StatusIs(Code::kIoError, HasSubstr("no space left for node")));
  EXPECT_EQ(calls, 1);

  TreeWriter w2(
      [&](ByteSpan) -> Result<ChunkId> { return IoError("store failed"); });
  ASSERT_THAT(w2.Add(DataId(0)), IsOk());
  EXPECT_THAT(w2.Finish(), StatusIs(Code::kIoError, HasSubstr("store failed")));
}

TEST(TreeTest, IdenticalSubtreesShareNodes) {
  // Two identical 1024-entry halves: the same leaf id twice in the root.
  std::vector<ChunkId> ids;
  for (int half = 0; half < 2; ++half)
    for (uint64_t i = 0; i < 1024; ++i) ids.push_back(DataId(i));
  MemStore store;
  auto root = BuildTree(store, ids);
  ASSERT_THAT(root, IsOk());
  EXPECT_EQ(store.nodes().size(), 2u);  // one distinct leaf + the root
  auto visited = Collect(store, *root);
  ASSERT_THAT(visited, IsOk());
  ASSERT_EQ(visited->size(), 2048u);
  EXPECT_EQ((*visited)[1024].first, 1024u);
  EXPECT_EQ((*visited)[1024].second, DataId(0));
}

}  // namespace
// The hooks gc's mark relies on: `enter` returning false skips a node and
// everything under it (not loaded, not visited); `leave` comes after a
// node's whole subtree, children before parents.
TEST(ChunkTreeHooksTest, EnterSkipsSubtreesAndLeaveIsPostOrder) {
  MemStore store;
  std::vector<ChunkId> ids;
  for (uint64_t i = 0; i < 3000; ++i) ids.push_back(DataId(i));
  auto root = BuildTree(store, ids);  // height 2: three leaf nodes
  ASSERT_THAT(root, IsOk());
  ASSERT_EQ(root->height, 2);
  Bytes top = store.nodes().at(root->root);
  ChunkId second;
  std::memcpy(second.bytes.data(), top.data() + 32, 32);

  std::vector<uint64_t> visited;
  std::vector<ChunkId> left;
  WalkHooks hooks;
  hooks.enter = [&](const ChunkId& node) -> Result<bool> {
    return !(node == second);
  };
  hooks.leave = [&](const ChunkId& node) {
    left.push_back(node);
    return OkStatus();
  };
  ASSERT_THAT(WalkTree(
                  *root, store.LoadFn(),
                  [&](uint64_t index, const ChunkId&) {
                    visited.push_back(index);
                    return OkStatus();
                  },
                  0, hooks),
              IsOk());
  ASSERT_EQ(visited.size(), 3000u - 1024u);
  EXPECT_EQ(visited[1023], 1023u);
  EXPECT_EQ(visited[1024], 2048u);   // 1024..2047 skipped with their node
  EXPECT_EQ(store.load_calls(), 3);  // root and two leaves, not the skipped one
  ASSERT_EQ(left.size(), 3u);        // two leaves, then the root
  EXPECT_FALSE(left[0] == second);
  EXPECT_FALSE(left[1] == second);
  EXPECT_TRUE(left[2] == root->root);
}

}  // namespace haven::repository
