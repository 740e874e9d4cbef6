// Tests for repository/chunk_tree.h TreeReader: random access to the ids a
// TreeWriter stored, over an in-memory node store.
#include <algorithm>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/chunk_tree.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr uint64_t kLeaf = kTreeFanout;  // entries per leaf
constexpr uint64_t kLevel2 =
    kTreeFanout * kTreeFanout;  // entries per level-2 node

// Distinct, never-zero data ids.
ChunkId DataId(uint64_t i) {
  ChunkId id;
  uint64_t v = i + 1;
  std::memcpy(id.bytes.data(), &v, sizeof v);
  id.bytes[31] = 0xd;
  return id;
}

// A content-addressed in-memory node store counting loads, with a switch to
// fail every load.
class MemStore {
 public:
  MemStore() : hasher_(MakeKey()) {}

  StoreNodeFn StoreFn() {
    return [this](ByteSpan node) -> Result<ChunkId> {
      ChunkId id = hasher_.Hash(node);
      nodes_[id] = Bytes(node.begin(), node.end());
      return id;
    };
  }
  LoadNodeFn LoadFn() {
    return [this](const ChunkId& id) -> Result<Bytes> {
      ++loads_;
      if (id.IsZero()) ++zero_loads_;
      if (fail_loads_) return IoError("injected load failure for " + id.Hex());
      auto it = nodes_.find(id);
      if (it == nodes_.end())
        return NotFound("node " + id.Hex() + " not stored");
      return it->second;
    };
  }

  std::unordered_map<ChunkId, Bytes, ChunkIdHash>& nodes() { return nodes_; }
  int loads() const { return loads_; }
  int zero_loads() const { return zero_loads_; }
  void set_fail_loads(bool f) { fail_loads_ = f; }

 private:
  static Key MakeKey() {
    Key k;
    k.fill(0x42);
    return k;
  }
  KeyedHasher hasher_;
  std::unordered_map<ChunkId, Bytes, ChunkIdHash> nodes_;
  int loads_ = 0, zero_loads_ = 0;
  bool fail_loads_ = false;
};

// Writes `count` entries whose ids are `id_of(i)`.
TreeRoot Build(MemStore& store, uint64_t count,
               const std::function<ChunkId(uint64_t)>& id_of) {
  TreeWriter w(store.StoreFn());
  for (uint64_t i = 0; i < count; ++i) {
    Status s = w.Add(id_of(i));
    EXPECT_THAT(s, IsOk()) << "add " << i;
    if (!s.ok()) return {};
  }
  auto root = w.Finish();
  EXPECT_THAT(root, IsOk());
  return root.ok() ? *root : TreeRoot{};
}

ChunkId ChildOf(MemStore& store, const ChunkId& node, size_t slot) {
  ChunkId child;
  std::memcpy(child.bytes.data(), store.nodes().at(node).data() + 32 * slot,
              32);
  return child;
}

// Get(i) for every i in `order`; stops at the first mismatch.
void ExpectGetAll(TreeReader& reader, const std::vector<uint64_t>& order,
                  const std::function<ChunkId(uint64_t)>& id_of) {
  for (uint64_t i : order) {
    auto got = reader.Get(i);
    ASSERT_THAT(got, IsOk()) << "index " << i;
    ASSERT_EQ(got->Hex(), id_of(i).Hex()) << "index " << i;
  }
}

std::vector<uint64_t> Sequence(uint64_t count) {
  std::vector<uint64_t> v(count);
  for (uint64_t i = 0; i < count; ++i) v[i] = i;
  return v;
}

struct ShapeCase {
  uint64_t count;
  int height;
  int nodes;  // stored nodes (no holes, distinct ids)
};

class TreeReaderShapeTest : public ::testing::TestWithParam<ShapeCase> {};

TEST_P(TreeReaderShapeTest, SequentialScanReturnsEveryIdAndLoadsEachNodeOnce) {
  const ShapeCase c = GetParam();
  MemStore store;
  TreeRoot root = Build(store, c.count, DataId);
  ASSERT_EQ(root.height, c.height);
  ASSERT_EQ(root.count, c.count);
  ASSERT_EQ(store.nodes().size(), static_cast<size_t>(c.nodes));
  TreeReader reader(root, store.LoadFn());
  ExpectGetAll(reader, Sequence(c.count), DataId);
  // "a scan in increasing order loads each node once"
  EXPECT_EQ(store.loads(), c.nodes);
  EXPECT_EQ(store.zero_loads(), 0);
}

TEST_P(TreeReaderShapeTest, RandomOrderReturnsEveryId) {
  const ShapeCase c = GetParam();
  MemStore store;
  TreeRoot root = Build(store, c.count, DataId);
  ASSERT_EQ(root.height, c.height);
  TreeReader reader(root, store.LoadFn());
  std::vector<uint64_t> order = Sequence(c.count);
  std::mt19937_64 rng(c.count);
  std::shuffle(order.begin(), order.end(), rng);
  // Random access over a million leaves reloads a leaf per lookup: sample.
  if (order.size() > 20000) order.resize(20000);
  order.push_back(c.count - 1);
  order.push_back(0);
  ExpectGetAll(reader, order, DataId);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, TreeReaderShapeTest,
    ::testing::Values(ShapeCase{1, 1, 1}, ShapeCase{2, 1, 1},
                      ShapeCase{1023, 1, 1}, ShapeCase{1024, 1, 1},
                      ShapeCase{1025, 2, 3}, ShapeCase{3000, 2, 4},
                      ShapeCase{kLevel2, 2, 1025},
                      // 1025 leaves, 2 level-2 nodes, the root.
                      ShapeCase{kLevel2 + 1, 3, 1028}),
    [](const ::testing::TestParamInfo<ShapeCase>& info) {
      return "Count" + std::to_string(info.param.count);
    });

// Height 3 with every kind of hole:
//   level-2 subtree 0: leaf 0 data with single holes, leaves 1..1022 holes
//     except one entry in leaf 500, leaf 1023 all data
//   level-2 subtree 1: all holes (not stored at all)
//   level-2 subtree 2: 1500 entries, data except every 7th, the last leaf
//     partial
constexpr uint64_t kHoleyCount = 2 * kLevel2 + 1500;

ChunkId HoleyId(uint64_t i) {
  if (i < kLevel2) {
    const uint64_t leaf = i / kLeaf;
    if (leaf == 0) return i % 100 == 7 ? ChunkId{} : DataId(i);
    if (leaf == 1023) return DataId(i);
    if (i == 500 * kLeaf + 333) return DataId(i);
    return ChunkId{};
  }
  if (i < 2 * kLevel2) return ChunkId{};
  return i % 7 == 0 ? ChunkId{} : DataId(i);
}

TEST(TreeReaderTest, HeightThreeWithHolesSequential) {
  MemStore store;
  TreeRoot root = Build(store, kHoleyCount, HoleyId);
  ASSERT_EQ(root.height, 3);
  // Stored: leaves 0, 500, 1023 of subtree 0, their level-2 node; two leaves
  // and their level-2 node in subtree 2; the root.
  ASSERT_EQ(store.nodes().size(), 8u);
  EXPECT_TRUE(ChildOf(store, root.root, 1).IsZero());
  TreeReader reader(root, store.LoadFn());
  ExpectGetAll(reader, Sequence(kHoleyCount), HoleyId);
  EXPECT_EQ(store.zero_loads(), 0) << "a hole subtree was loaded";
  EXPECT_EQ(store.loads(), 8);
}

TEST(TreeReaderTest, HeightThreeWithHolesRandomOrder) {
  MemStore store;
  TreeRoot root = Build(store, kHoleyCount, HoleyId);
  ASSERT_EQ(root.height, 3);
  TreeReader reader(root, store.LoadFn());
  std::mt19937_64 rng(7);
  std::vector<uint64_t> order;
  std::uniform_int_distribution<uint64_t> any(0, kHoleyCount - 1);
  for (int k = 0; k < 20000; ++k) order.push_back(any(rng));
  // Every data entry of the sparse leaf and each boundary.
  for (uint64_t i : {uint64_t{0}, kLeaf - 1, kLeaf, 500 * kLeaf + 333,
                     1023 * kLeaf, kLevel2 - 1, kLevel2, 2 * kLevel2 - 1,
                     2 * kLevel2, 2 * kLevel2 + kLeaf, kHoleyCount - 1})
    order.push_back(i);
  std::shuffle(order.begin(), order.end(), rng);
  ExpectGetAll(reader, order, HoleyId);
  EXPECT_EQ(store.zero_loads(), 0);
}

TEST(TreeReaderTest, AllHoleTreeLoadsNothing) {
  for (uint64_t count : {uint64_t{1}, uint64_t{3000}, kLevel2 + 3}) {
    SCOPED_TRACE("count " + std::to_string(count));
    MemStore store;
    TreeRoot root = Build(store, count, [](uint64_t) { return ChunkId{}; });
    ASSERT_TRUE(root.root.IsZero());
    TreeReader reader(root, store.LoadFn());
    for (uint64_t i : {uint64_t{0}, count / 2, count - 1}) {
      auto got = reader.Get(i);
      ASSERT_THAT(got, IsOk());
      EXPECT_TRUE(got->IsZero()) << i;
    }
    EXPECT_EQ(store.loads(), 0);
  }
}

TEST(TreeReaderTest, AlternatingBetweenLeavesReturnsTheRightIds) {
  // Leaves 0 and 2 are identical (same node id, deduplicated) but cover
  // different indices: the cache must not mix them up with leaf 1.
  auto id_of = [](uint64_t i) {
    return i / kLeaf == 1 ? DataId(i) : DataId(i % kLeaf);
  };
  MemStore store;
  TreeRoot root = Build(store, 3 * kLeaf, id_of);
  ASSERT_EQ(root.height, 2);
  ASSERT_EQ(ChildOf(store, root.root, 0), ChildOf(store, root.root, 2));
  TreeReader reader(root, store.LoadFn());
  std::vector<uint64_t> order;
  for (uint64_t k = 0; k < kLeaf; k += 37)
    for (uint64_t leaf : {2, 0, 1, 2, 1, 0}) order.push_back(leaf * kLeaf + k);
  ExpectGetAll(reader, order, id_of);
}

TEST(TreeReaderTest, IndexAtOrPastCountIsInvalidArgument) {
  MemStore store;
  TreeRoot root = Build(store, 1500, DataId);
  TreeReader reader(root, store.LoadFn());
  for (uint64_t i :
       {uint64_t{1500}, uint64_t{1501}, uint64_t{2048}, ~uint64_t{0}}) {
    EXPECT_THAT(reader.Get(i), StatusIs(Code::kInvalidArgument,
                                        AllOf(HasSubstr(std::to_string(i)),
                                              HasSubstr("1500"))))
        << i;
  }
  EXPECT_EQ(store.loads(), 0);
  // The reader still works afterwards.
  ExpectGetAll(reader, {1499, 0}, DataId);

  TreeReader empty(TreeRoot{}, store.LoadFn());
  EXPECT_THAT(empty.Get(0),
              StatusIs(Code::kInvalidArgument, HasSubstr("past")));
}

TEST(TreeReaderTest, BadHeightOrCountIsDataLoss) {
  MemStore store;
  TreeRoot root = Build(store, 1500, DataId);
  for (int height : {0, -1, kMaxTreeHeight + 1}) {
    TreeRoot bad = root;
    bad.height = height;
    TreeReader reader(bad, store.LoadFn());
    EXPECT_THAT(reader.Get(0),
                StatusIs(Code::kDataLoss, HasSubstr("cannot hold")))
        << "height " << height;
  }
  TreeRoot bad = root;
  bad.height = 1;  // 1500 entries do not fit one node
  TreeReader reader(bad, store.LoadFn());
  EXPECT_THAT(reader.Get(0),
              StatusIs(Code::kDataLoss, HasSubstr("cannot hold 1500 chunks")));
  EXPECT_EQ(store.loads(), 0);
}

TEST(TreeReaderTest, NodeOfWrongSizeIsDataLoss) {
  MemStore store;
  TreeRoot root = Build(store, kLeaf + 1, DataId);
  ASSERT_EQ(root.height, 2);
  const ChunkId leaf0 = ChildOf(store, root.root, 0);
  const Bytes original = store.nodes().at(leaf0);

  struct Damage {
    const char* what;
    size_t size;
    const char* message;
  };
  for (const Damage& d :
       {Damage{"one entry short", original.size() - 32,
               "holds 1023 entries, expected 1024"},
        Damage{"one entry long", original.size() + 32,
               "holds 1025 entries, expected 1024"},
        Damage{"not a multiple of 32", original.size() - 1, "expected 1024"},
        Damage{"empty", 0, "holds 0 entries, expected 1024"}}) {
    SCOPED_TRACE(d.what);
    store.nodes()[leaf0] = original;
    store.nodes()[leaf0].resize(d.size);
    TreeReader reader(root, store.LoadFn());
    EXPECT_THAT(reader.Get(5),
                StatusIs(Code::kDataLoss,
                         AllOf(HasSubstr(leaf0.Hex()), HasSubstr(d.message))));
    // The other leaf is fine.
    auto last = reader.Get(kLeaf);
    ASSERT_THAT(last, IsOk());
    EXPECT_EQ(*last, DataId(kLeaf));
  }

  // A root with the wrong number of entries.
  store.nodes()[leaf0] = original;
  Bytes root_bytes = store.nodes().at(root.root);
  store.nodes()[root.root].resize(root_bytes.size() + 32);
  TreeReader reader(root, store.LoadFn());
  EXPECT_THAT(reader.Get(0),
              StatusIs(Code::kDataLoss, AllOf(HasSubstr(root.root.Hex()),
                                              HasSubstr("expected 2"))));
  // A count that disagrees with the nodes.
  store.nodes()[root.root] = root_bytes;
  TreeRoot bad = root;
  bad.count = kLeaf + 2;  // the last leaf would need 2 entries
  TreeReader bad_reader(bad, store.LoadFn());
  EXPECT_THAT(
      bad_reader.Get(kLeaf + 1),
      StatusIs(Code::kDataLoss, HasSubstr("holds 1 entries, expected 2")));
}

TEST(TreeReaderTest, LoadErrorIsPropagated) {
  MemStore store;
  TreeRoot root = Build(store, 3 * kLeaf, DataId);
  const ChunkId leaf1 = ChildOf(store, root.root, 1);
  Bytes saved = store.nodes().at(leaf1);
  store.nodes().erase(leaf1);
  TreeReader reader(root, store.LoadFn());
  auto first = reader.Get(0);
  ASSERT_THAT(first, IsOk());
  EXPECT_THAT(reader.Get(kLeaf + 3),
              StatusIs(Code::kNotFound, HasSubstr(leaf1.Hex())));
  // A failed load leaves the reader usable: other leaves still read, and the
  // missing leaf reads once it is back.
  auto last = reader.Get(3 * kLeaf - 1);
  ASSERT_THAT(last, IsOk());
  EXPECT_EQ(*last, DataId(3 * kLeaf - 1));
  store.nodes()[leaf1] = saved;
  auto again = reader.Get(kLeaf + 3);
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(*again, DataId(kLeaf + 3));

  // A failure of the root load itself.
  MemStore failing;
  TreeRoot r2 = Build(failing, 10, DataId);
  failing.set_fail_loads(true);
  TreeReader reader2(r2, failing.LoadFn());
  EXPECT_THAT(reader2.Get(0),
              StatusIs(Code::kIoError, HasSubstr("injected load failure")));
  failing.set_fail_loads(false);
  auto ok = reader2.Get(9);
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(*ok, DataId(9));
}

}  // namespace
}  // namespace haven::repository
