// An agent's own key (agent/agent_key.h): the key file, deterministic
// sealing, refusals of changed bytes and of another key, and KeyedSink
// over a fake inner sink.
#include "agent/agent_key.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <mutex>
#include <unordered_map>

#include "restore/file_point.h"
#include "tests/unit/test_util.h"

namespace haven::agent {
namespace {

using repository::ChunkId;
using repository::ChunkType;
using ::testing::HasSubstr;
using namespace ::haven::testing_util;  // NOLINT

AgentKey KeyOf(uint8_t fill) {
  Bytes b(kAgentKeyFileBytes);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(fill + i);
  auto k = AgentKey::FromBytes(b);
  EXPECT_THAT(k, IsOk());
  return std::move(k).value();
}

Bytes SealOf(const AgentKey& key, ByteSpan plain) {
  repository::Compressor c(3);
  Bytes out;
  EXPECT_THAT(key.Seal(ChunkType::kData, plain, c, out), IsOk());
  return out;
}

ChunkId Sha(ByteSpan b) {
  ChunkId id;
  unsigned int len = 0;
  EVP_Digest(b.data(), b.size(), id.bytes.data(), &len, EVP_sha256(), nullptr);
  return id;
}

TEST(AgentKeyTest, SealingIsDeterministicPerKey) {
  AgentKey a = KeyOf(1), b = KeyOf(2);
  Bytes plain = RandomData(100000, 7);
  Bytes one = SealOf(a, plain), two = SealOf(a, plain);
  EXPECT_EQ(one, two);
  EXPECT_NE(SealOf(b, plain), one);
  EXPECT_NE(a.id(), b.id());
  EXPECT_EQ(a.id().size(), 16u);
  EXPECT_TRUE(repository::IsAgentKeyId(a.id()));
  // Random bytes do not compress: sealed as they are, 30 bytes more.
  EXPECT_EQ(one.size(), plain.size() + kSealedOverhead);
  EXPECT_EQ(one[0], 1);
  EXPECT_EQ(one[1], 0);

  repository::Decompressor d;
  Bytes back;
  ASSERT_THAT(a.Open(ChunkType::kData, one, d, back, "chunk"), IsOk());
  EXPECT_EQ(back, plain);
}

TEST(AgentKeyTest, CompressesWhatCompressesAndHidesIt) {
  AgentKey a = KeyOf(1);
  std::string text;
  for (int i = 0; i < 2000; ++i) text += "haven-secret-line-of-etc\n";
  Bytes plain(text.begin(), text.end());
  Bytes sealed = SealOf(a, plain);
  EXPECT_LT(sealed.size(), plain.size() / 4);
  EXPECT_EQ(sealed[1], 1);  // zstd
  std::string s(sealed.begin(), sealed.end());
  EXPECT_EQ(s.find("haven-secret"), std::string::npos);
  repository::Decompressor d;
  Bytes back;
  ASSERT_THAT(a.Open(ChunkType::kData, sealed, d, back, "chunk"), IsOk());
  EXPECT_EQ(back, plain);
}

TEST(AgentKeyTest, ChangedBytesAndAnotherKeyAreRefused) {
  AgentKey a = KeyOf(1), b = KeyOf(2);
  Bytes plain = RandomData(5000, 3);
  Bytes sealed = SealOf(a, plain);
  repository::Decompressor d;
  Bytes out;
  EXPECT_THAT(b.Open(ChunkType::kData, sealed, d, out, "data chunk X"),
              StatusIs(Code::kDataLoss, HasSubstr("sealed with another key")));
  for (size_t at : {size_t{2}, size_t{20}, sealed.size() - 1}) {
    Bytes bad = sealed;
    bad[at] ^= 0x40;
    EXPECT_THAT(a.Open(ChunkType::kData, bad, d, out, "data chunk X"),
                StatusIs(Code::kDataLoss, HasSubstr("data chunk X")))
        << at;
  }
  Bytes flags = sealed;
  flags[1] = 0x80;
  EXPECT_THAT(a.Open(ChunkType::kData, flags, d, out, "c"),
              StatusIs(Code::kDataLoss, HasSubstr("not sealed")));
  EXPECT_THAT(
      a.Open(ChunkType::kData, ByteSpan(sealed.data(), 10), d, out, "c"),
      StatusIs(Code::kDataLoss, HasSubstr("too short")));
  // Sealed as a data chunk, opened as a node: the nonce does not match.
  EXPECT_THAT(a.Open(ChunkType::kTree, sealed, d, out, "c"),
              StatusIs(Code::kDataLoss, HasSubstr("nonce")));
}

TEST(AgentKeyTest, KeyFileIsMadeOnceAndCheckedOnLoad) {
  TempDir dir;
  const std::string path = AgentKeyPath(dir.path());
  auto none = AgentKey::LoadIfPresent(path);
  ASSERT_THAT(none, IsOk());
  EXPECT_FALSE(none->has_value());

  auto made = AgentKey::Create(path);
  ASSERT_THAT(made, IsOk());
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_size, 64);
  const Bytes before = ReadWholeFile(path);
  EXPECT_THAT(AgentKey::Create(path),
              StatusIs(Code::kAlreadyExists, HasSubstr("never replaced")));
  EXPECT_EQ(ReadWholeFile(path), before);

  auto loaded = AgentKey::Load(path);
  ASSERT_THAT(loaded, IsOk());
  EXPECT_EQ(loaded->id(), made->id());
  Bytes plain = RandomData(1000, 1);
  EXPECT_EQ(SealOf(*loaded, plain), SealOf(*made, plain));

  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  EXPECT_THAT(AgentKey::Load(path),
              StatusIs(Code::kInvalidArgument, HasSubstr("mode 0644")));
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  WriteWholeFile(path, Bytes(63, 1));
  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  EXPECT_THAT(AgentKey::Load(path),
              StatusIs(Code::kInvalidArgument, HasSubstr("63 bytes, not 64")));
}

// Records what reaches the inner sink.
class FakeSink : public PointSink {
 public:
  ChunkId IdFor(ChunkType, ByteSpan raw) const override { return Sha(raw); }
  int compression_level() const override { return 3; }
  uint32_t chunk_size() const override { return 65536; }
  Result<bool> Put(ChunkType type, const ChunkId& id, ByteSpan raw,
                   repository::WriteContext&) override {
    std::lock_guard l(mu);
    if (!(Sha(raw) == id)) return InvalidArgument("id is not SHA-256");
    return puts.emplace(id, std::pair(type, Bytes(raw.begin(), raw.end())))
        .second;
  }
  Status Flush() override { return OkStatus(); }
  Status Abandon(Status why) override { return why; }
  uint64_t new_chunks() const override { return puts.size(); }
  uint64_t new_raw_bytes() const override { return 0; }
  uint64_t new_stored_bytes() const override { return 0; }
  Result<std::optional<repository::Manifest>> LatestPoint(
      const std::string&, const std::string&) override {
    return parent;
  }
  Status ForEachRecord(
      const repository::Manifest&,
      const std::function<Status(repository::FileRecord&&)>&) override {
    return OkStatus();
  }
  repository::LoadNodeFn NodeLoader(repository::ReadContext&) override {
    return nullptr;
  }
  Result<bool> Has(const ChunkId&) override { return true; }
  Status OnCatalogChunk(ByteSpan bytes) override {
    catalog.insert(catalog.end(), bytes.begin(), bytes.end());
    return OkStatus();
  }
  Status Commit(repository::Manifest& m) override {
    committed = m;
    return OkStatus();
  }

  std::mutex mu;
  std::unordered_map<ChunkId, std::pair<ChunkType, Bytes>,
                     repository::ChunkIdHash>
      puts;
  std::optional<repository::Manifest> parent, committed;
  Bytes catalog;
};

TEST(KeyedSinkTest, SealsDataPassesNodesAndNamesTheKey) {
  AgentKey key = KeyOf(9);
  FakeSink inner;
  KeyedSink sink(key, inner);
  repository::WriteContext ctx(3);

  Bytes data = RandomData(40000, 5);
  ChunkId id = sink.IdFor(ChunkType::kData, data);
  EXPECT_EQ(id, Sha(SealOf(key, data)));
  EXPECT_EQ(sink.IdFor(ChunkType::kData, data), id);  // deterministic
  ASSERT_THAT(sink.Put(ChunkType::kData, id, data, ctx), IsOk());
  ASSERT_EQ(inner.puts.count(id), 1u);
  EXPECT_EQ(inner.puts[id].second, SealOf(key, data));
  // Put without a preceding IdFor on this thread seals again.
  Bytes other = RandomData(3000, 6);
  ChunkId other_id = Sha(SealOf(key, other));
  ASSERT_THAT(sink.Put(ChunkType::kData, other_id, other, ctx), IsOk());
  EXPECT_EQ(inner.puts[other_id].second, SealOf(key, other));

  // A tree node goes as it is, with the inner sink's id.
  Bytes node(id.bytes.begin(), id.bytes.end());
  ChunkId node_id = sink.IdFor(ChunkType::kTree, node);
  EXPECT_EQ(node_id, Sha(node));
  ASSERT_THAT(sink.Put(ChunkType::kTree, node_id, node, ctx), IsOk());
  EXPECT_EQ(inner.puts[node_id].second, node);
  EXPECT_EQ(inner.puts[node_id].first, ChunkType::kTree);

  // The catalog's plain bytes stay with the inner sink (the local cache).
  ASSERT_THAT(sink.OnCatalogChunk(data), IsOk());
  EXPECT_EQ(inner.catalog, data);

  repository::Manifest m;
  m.kind = "files";
  ASSERT_THAT(sink.Commit(m), IsOk());
  ASSERT_TRUE(inner.committed.has_value());
  EXPECT_EQ(inner.committed->agent_key, key.id());
}

TEST(KeyedSinkTest, UsesOnlyAParentSealedWithTheSameKey) {
  AgentKey key = KeyOf(9);
  FakeSink inner;
  KeyedSink sink(key, inner);
  repository::Manifest parent;
  parent.kind = "files";
  inner.parent = parent;  // plain: not usable
  auto r = sink.LatestPoint("n", "files");
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->has_value());
  inner.parent->agent_key = KeyOf(1).id();  // another key
  r = sink.LatestPoint("n", "files");
  ASSERT_THAT(r, IsOk());
  EXPECT_FALSE(r->has_value());
  inner.parent->agent_key = key.id();
  r = sink.LatestPoint("n", "files");
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->has_value());
}

// A point reader returning stored chunks as they are.
class StoredReader : public repository::PointReader {
 public:
  Status ReadChunk(ChunkType, const ChunkId& id, Bytes& out,
                   repository::ReadContext&) const override {
    auto it = chunks.find(id);
    if (it == chunks.end()) return NotFound("no chunk " + id.Hex());
    out = it->second;
    return OkStatus();
  }
  repository::LoadNodeFn TreeNodeLoader(
      repository::ReadContext&) const override {
    return nullptr;
  }
  Result<repository::Manifest> FindSnapshot(const std::string&) const override {
    return point;
  }
  bool CanComputeIds() const override { return false; }
  ChunkId IdFor(ChunkType, ByteSpan) const override { return ChunkId{}; }

  std::unordered_map<ChunkId, Bytes, repository::ChunkIdHash> chunks;
  repository::Manifest point;
};

TEST(KeyedPointReaderTest, OpensDataPassesNodesRefusesOtherKeys) {
  AgentKey key = KeyOf(4);
  StoredReader stored;
  Bytes plain = RandomData(20000, 8);
  ChunkId id{}, node_id{};
  id.bytes[0] = 1;
  node_id.bytes[0] = 2;
  stored.chunks[id] = SealOf(key, plain);
  stored.chunks[node_id] = Bytes(32, 7);
  stored.point.id = std::string(32, 'a');
  stored.point.agent_key = key.id();
  KeyedPointReader reader(key, stored);
  repository::ReadContext ctx;
  Bytes out;
  ASSERT_THAT(reader.ReadChunk(ChunkType::kData, id, out, ctx), IsOk());
  EXPECT_EQ(out, plain);
  ASSERT_THAT(reader.ReadChunk(ChunkType::kTree, node_id, out, ctx), IsOk());
  EXPECT_EQ(out, Bytes(32, 7));
  EXPECT_THAT(reader.FindSnapshot(stored.point.id), IsOk());

  AgentKey other = KeyOf(5);
  KeyedPointReader wrong(other, stored);
  EXPECT_THAT(wrong.FindSnapshot(stored.point.id),
              StatusIs(Code::kFailedPrecondition,
                       HasSubstr("sealed with agent key " + key.id() +
                                 ", not with this agent's key " + other.id())));
  EXPECT_THAT(wrong.ReadChunk(ChunkType::kData, id, out, ctx),
              StatusIs(Code::kDataLoss, HasSubstr(id.Hex())));
  stored.point.agent_key.clear();
  EXPECT_THAT(reader.FindSnapshot(stored.point.id),
              StatusIs(Code::kFailedPrecondition, HasSubstr("not sealed")));
}

// What the appliance (and `haven restore files`) does with a sealed point:
// refuse it by name before reading a chunk.
TEST(AgentKeyManifestTest, FilePointRefusesASealedPointWithoutTheKey) {
  StoredReader stored;  // holds no chunk: nothing may be read
  repository::Manifest m;
  m.id = std::string(32, 'c');
  m.kind = "files";
  repository::DiskManifest cat, con;
  cat.name = cat.kind = "catalog";
  con.name = con.kind = "content";
  m.disks = {cat, con};
  m.agent_key = "0123456789abcdef";
  EXPECT_THAT(
      restore::FilePoint::Open(stored, m),
      StatusIs(Code::kFailedPrecondition,
               HasSubstr("point " + m.id +
                         " is encrypted with agent key 0123456789abcdef, "
                         "which the appliance does not hold: restore it "
                         "with `haven agent restore` on the agent")));
}

TEST(AgentKeyManifestTest, AgentKeyRoundTripsAndIsValidated) {
  repository::Manifest m;
  m.id = std::string(32, 'b');
  m.name = "n";
  m.kind = "image";
  m.time = "2026-12-07T00:00:00Z";
  m.agent_key = "0123456789abcdef";
  auto back = repository::Manifest::FromJson(m.ToJson(), "m");
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->agent_key, m.agent_key);
  m.agent_key.clear();
  EXPECT_EQ(m.ToJson().find("agent_key"), std::string::npos);
  m.agent_key = "0123456789ABCDEF";
  EXPECT_THAT(repository::Manifest::FromJson(m.ToJson(), "m"),
              StatusIs(Code::kDataLoss, HasSubstr("agent_key")));
  m.agent_key = "0123";
  EXPECT_THAT(repository::Manifest::FromJson(m.ToJson(), "m"),
              StatusIs(Code::kDataLoss, HasSubstr("agent_key")));
}

}  // namespace
}  // namespace haven::agent
