// Tests for repository/config.h and repository/manifest.h: the two JSON
// documents Haven parses, both treated as untrusted input.
#include <nlohmann/json.hpp>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/config.h"
#include "repository/manifest.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

using Json = nlohmann::json;

// ------------------------------------------------------------------ config

Json GoodConfig() {
  return Json::parse(R"({"format": "haven-repository", "version": 1,
    "id": "0123456789abcdef0123456789abcdef", "chunk_size": 65536,
    "pack_size": 16777216, "compression": "zstd", "compression_level": 1,
    "created": "2026-11-22T20:03:35Z"})");
}

TEST(ConfigTest, ToJsonFromJsonRoundTrips) {
  Config c;
  c.id = "fedcba9876543210fedcba9876543210";
  c.chunk_size = 1 << 20;
  c.pack_size = 64 << 20;
  c.compression_level = -3;
  c.created = "2026-01-02T03:04:05Z";
  ASSERT_THAT(c.Validate(), IsOk());
  auto back = Config::FromJson(c.ToJson());
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->id, c.id);
  EXPECT_EQ(back->chunk_size, c.chunk_size);
  EXPECT_EQ(back->pack_size, c.pack_size);
  EXPECT_EQ(back->compression_level, c.compression_level);
  EXPECT_EQ(back->created, c.created);
  auto j = Json::parse(c.ToJson());
  EXPECT_EQ(j["format"], "haven-repository");
  EXPECT_EQ(j["version"], kFormatVersion);
  EXPECT_EQ(j["compression"], "zstd");
}

TEST(ConfigTest, AcceptsTheDocumentedExample) {
  auto c = Config::FromJson(GoodConfig().dump());
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->chunk_size, 65536u);
  EXPECT_EQ(c->pack_size, 16777216u);
  // "created" is optional.
  Json j = GoodConfig();
  j.erase("created");
  auto c2 = Config::FromJson(j.dump());
  ASSERT_THAT(c2, IsOk());
  EXPECT_EQ(c2->created, "");
}

TEST(ConfigTest, ChunkSizeMustBeAPowerOfTwoInRange) {
  for (uint64_t size : {65537ull, 3ull * 4096, 12288ull, 4095ull, 2048ull, 0ull,
                        16ull << 20, 1ull << 31}) {
    Json j = GoodConfig();
    j["chunk_size"] = size;
    EXPECT_THAT(Config::FromJson(j.dump()),
                StatusIs(Code::kInvalidArgument,
                         AllOf(StartsWith("config: "), HasSubstr("power of two"))))
        << "chunk_size " << size;
  }
  for (uint32_t size : {4096u, 65536u, 8u << 20}) {
    Json j = GoodConfig();
    j["chunk_size"] = size;
    EXPECT_THAT(Config::FromJson(j.dump()), IsOk()) << "chunk_size " << size;
  }
}

TEST(ConfigTest, NegativeChunkSizeIsRejected) {
  Json j = GoodConfig();
  j["chunk_size"] = -65536;
  EXPECT_THAT(Config::FromJson(j.dump()),
              StatusIs(Code::kInvalidArgument, HasSubstr("power of two")));
}

TEST(ConfigTest, OtherVersionIsFailedPrecondition) {
  for (int version : {2, 0, 100, -1}) {
    Json j = GoodConfig();
    j["version"] = version;
    EXPECT_THAT(Config::FromJson(j.dump()),
                StatusIs(Code::kFailedPrecondition,
                         HasSubstr("format version " + std::to_string(version) +
                                   " is not supported")))
        << "version " << version;
  }
}

TEST(ConfigTest, MissingFieldsAreDataLoss) {
  for (const char* field : {"format", "version", "id", "chunk_size", "pack_size",
                            "compression", "compression_level"}) {
    Json j = GoodConfig();
    j.erase(field);
    EXPECT_THAT(Config::FromJson(j.dump()),
                StatusIs(Code::kDataLoss, HasSubstr("missing or malformed field")))
        << "without " << field;
  }
}

TEST(ConfigTest, WrongTypesAreDataLoss) {
  struct Case {
    const char* field;
    Json value;
  };
  for (const auto& c : {Case{"chunk_size", "65536"}, Case{"chunk_size", Json::array()},
                        Case{"pack_size", nullptr}, Case{"id", 12345},
                        Case{"version", "1"}, Case{"compression_level", "fast"},
                        Case{"chunk_size", Json::object()}}) {
    Json j = GoodConfig();
    j[c.field] = c.value;
    EXPECT_THAT(Config::FromJson(j.dump()),
                StatusIs(Code::kDataLoss, HasSubstr("missing or malformed field")))
        << c.field << " = " << c.value.dump();
  }
}

TEST(ConfigTest, WrongFormatOrCompressionIsDataLoss) {
  Json j = GoodConfig();
  j["format"] = "restic";
  EXPECT_THAT(Config::FromJson(j.dump()),
              StatusIs(Code::kDataLoss, HasSubstr("not a Haven repository")));
  j = GoodConfig();
  j["compression"] = "lz4";
  EXPECT_THAT(Config::FromJson(j.dump()),
              StatusIs(Code::kDataLoss, HasSubstr("unknown compression")));
}

TEST(ConfigTest, BadIdIsDataLoss) {
  for (const char* id : {"", "0123456789abcdef", "0123456789ABCDEF0123456789ABCDEF",
                         "0123456789abcdef0123456789abcdeg",
                         "0123456789abcdef0123456789abcdef00", "../../../../etc/passwd"}) {
    Json j = GoodConfig();
    j["id"] = id;
    EXPECT_THAT(Config::FromJson(j.dump()),
                StatusIs(Code::kDataLoss, HasSubstr("32 hex digits")))
        << "id '" << id << "'";
  }
}

TEST(ConfigTest, PackSizeAndLevelAreRangeChecked) {
  for (uint64_t pack : {0ull, (1ull << 20) - 1, (1ull << 30) + 1, ~0ull}) {
    Json j = GoodConfig();
    j["pack_size"] = pack;
    EXPECT_THAT(Config::FromJson(j.dump()),
                StatusIs(Code::kInvalidArgument, HasSubstr("pack size")))
        << "pack_size " << pack;
  }
  for (int level : {-8, 20, 1000}) {
    Json j = GoodConfig();
    j["compression_level"] = level;
    EXPECT_THAT(Config::FromJson(j.dump()),
                StatusIs(Code::kInvalidArgument, HasSubstr("zstd level")))
        << "level " << level;
  }
  for (int level : {-7, 0, 19}) {
    Json j = GoodConfig();
    j["compression_level"] = level;
    EXPECT_THAT(Config::FromJson(j.dump()), IsOk()) << "level " << level;
  }
}

TEST(ConfigTest, NonObjectsAreDataLoss) {
  for (const char* text : {"", "{", "[]", "null", "42", "\"config\"", "{\"format\": }",
                           "\xff\xfe"}) {
    EXPECT_THAT(Config::FromJson(text), StatusIs(Code::kDataLoss, HasSubstr("config")))
        << "'" << text << "'";
  }
}

// BUG (reported): nlohmann's get<uint32_t>/get<int> truncate out-of-range
// numbers and floats silently, so a config with chunk_size 2^32 + 65536 is
// read as 65536 and "version": 4294967297 or 1.5 as version 1.
TEST(ConfigTest, RejectsNumbersThatDoNotFitTheirField) {
  struct Case {
    const char* field;
    Json value;
  };
  for (const auto& c : {Case{"chunk_size", 4295032832ull},     // 2^32 + 65536
                        Case{"chunk_size", 65536.5},
                        Case{"version", 4294967297ull},         // 2^32 + 1
                        Case{"version", 1.5},
                        Case{"version", true},
                        Case{"compression_level", 4294967297ull},
                        Case{"compression_level", 1.9}}) {
    Json j = GoodConfig();
    j[c.field] = c.value;
    EXPECT_THAT(Config::FromJson(j.dump()),
                ::testing::AnyOf(StatusIs(Code::kDataLoss, HasSubstr("config")),
                                 StatusIs(Code::kInvalidArgument, HasSubstr("config")),
                                 StatusIs(Code::kFailedPrecondition, HasSubstr("config"))))
        << c.field << " = " << c.value.dump();
  }
}

TEST(ConfigTest, ValidateChecksUserInput) {
  Config c;
  c.id = "0123456789abcdef0123456789abcdef";
  EXPECT_THAT(c.Validate(), IsOk());
  c.chunk_size = 100000;
  EXPECT_THAT(c.Validate(), StatusIs(Code::kInvalidArgument, HasSubstr("chunk size 100000")));
  c.chunk_size = kMinChunkSize;
  c.id = "short";
  EXPECT_THAT(c.Validate(), StatusIs(Code::kDataLoss, HasSubstr("repository id")));
}

// ---------------------------------------------------------------- manifest

Json GoodManifest() {
  return Json::parse(R"({"version": 1, "id": "0123456789abcdef0123456789abcdef",
    "name": "vm1", "kind": "image", "time": "2026-11-22T20:00:00Z",
    "hostname": "host", "tool": "haven 0.1.0", "consistency": "offline",
    "consistency_reason": "image file read directly", "parent": "",
    "disks": [{"name": "disk0", "source": "/images/vm1.raw", "size": 10497905,
               "chunk_size": 65536, "chunks": 161,
               "tree": {"root": "aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899",
                        "height": 1}}],
    "stats": {"logical_bytes": 10497905, "read_bytes": 1000, "hole_bytes": 5,
              "new_chunks": 3, "new_raw_bytes": 300, "new_stored_bytes": 200,
              "duration_seconds": 1.5}})");
}

const char kWhat[] = "snapshot 0123abcd";

TEST(ManifestTest, ToJsonFromJsonRoundTrips) {
  Manifest m;
  m.id = "00000000000000000000000000000001";
  m.name = "db-server";
  m.kind = "image";
  m.time = "2026-11-22T20:00:00Z";
  m.hostname = "backup-host";
  m.tool = "haven 0.1.0";
  m.consistency = "crash-consistent";
  m.consistency_reason = "snapshot of a running VM";
  m.parent = "00000000000000000000000000000000";
  for (int i = 0; i < 2; ++i) {
    DiskManifest d;
    d.name = "disk" + std::to_string(i);
    d.source = "/dev/vg/disk" + std::to_string(i);
    d.size = (10ull << 20) + 12345 + i;
    d.chunk_size = 65536;
    d.tree.count = (d.size + 65535) / 65536;
    d.tree.height = 1 + i;
    d.tree.root.bytes.fill(static_cast<uint8_t>(0x10 + i));
    m.disks.push_back(d);
  }
  m.stats = {1, 2, 3, 4, 5, 6, 7.25};
  auto back = Manifest::FromJson(m.ToJson(), kWhat);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->id, m.id);
  EXPECT_EQ(back->name, m.name);
  EXPECT_EQ(back->kind, m.kind);
  EXPECT_EQ(back->time, m.time);
  EXPECT_EQ(back->hostname, m.hostname);
  EXPECT_EQ(back->tool, m.tool);
  EXPECT_EQ(back->consistency, m.consistency);
  EXPECT_EQ(back->consistency_reason, m.consistency_reason);
  EXPECT_EQ(back->parent, m.parent);
  ASSERT_EQ(back->disks.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const auto& a = back->disks[i];
    const auto& b = m.disks[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.source, b.source);
    EXPECT_EQ(a.size, b.size);
    EXPECT_EQ(a.chunk_size, b.chunk_size);
    EXPECT_EQ(a.tree.count, b.tree.count);
    EXPECT_EQ(a.tree.height, b.tree.height);
    EXPECT_EQ(a.tree.root, b.tree.root);
  }
  EXPECT_EQ(back->stats.logical_bytes, 1u);
  EXPECT_EQ(back->stats.read_bytes, 2u);
  EXPECT_EQ(back->stats.hole_bytes, 3u);
  EXPECT_EQ(back->stats.new_chunks, 4u);
  EXPECT_EQ(back->stats.new_raw_bytes, 5u);
  EXPECT_EQ(back->stats.new_stored_bytes, 6u);
  EXPECT_DOUBLE_EQ(back->stats.duration_seconds, 7.25);
}

TEST(ManifestTest, AcceptsTheDocumentedShape) {
  auto m = Manifest::FromJson(GoodManifest().dump(), kWhat);
  ASSERT_THAT(m, IsOk());
  ASSERT_EQ(m->disks.size(), 1u);
  EXPECT_EQ(m->disks[0].tree.count, 161u);
  EXPECT_EQ(m->disks[0].tree.root.Hex(),
            "aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899");
}

TEST(ManifestTest, EmptyDiskAndNoDisksAreValid) {
  Json j = GoodManifest();
  j["disks"][0]["size"] = 0;
  j["disks"][0]["chunks"] = 0;
  auto m = Manifest::FromJson(j.dump(), kWhat);
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(m->disks[0].tree.count, 0u);
  j["disks"] = Json::array();
  auto m2 = Manifest::FromJson(j.dump(), kWhat);
  ASSERT_THAT(m2, IsOk());
  EXPECT_TRUE(m2->disks.empty());
}

TEST(ManifestTest, OptionalFieldsDefaultToEmpty) {
  Json j = GoodManifest();
  for (const char* f : {"hostname", "tool", "consistency_reason", "parent"}) j.erase(f);
  j["disks"][0].erase("source");
  j["stats"] = Json::object();
  auto m = Manifest::FromJson(j.dump(), kWhat);
  ASSERT_THAT(m, IsOk());
  EXPECT_EQ(m->hostname, "");
  EXPECT_EQ(m->tool, "");
  EXPECT_EQ(m->parent, "");
  EXPECT_EQ(m->disks[0].source, "");
  EXPECT_EQ(m->stats.new_chunks, 0u);
}

TEST(ManifestTest, OtherVersionIsDataLoss) {
  for (int version : {2, 0, -1}) {
    Json j = GoodManifest();
    j["version"] = version;
    EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
                StatusIs(Code::kDataLoss, AllOf(StartsWith(kWhat),
                                                HasSubstr("unsupported manifest version"))))
        << "version " << version;
  }
}

TEST(ManifestTest, MissingFieldsAreDataLoss) {
  for (const char* field : {"version", "id", "name", "kind", "time", "consistency", "disks",
                            "stats"}) {
    Json j = GoodManifest();
    j.erase(field);
    EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
                StatusIs(Code::kDataLoss, AllOf(StartsWith(kWhat),
                                                HasSubstr("malformed manifest"))))
        << "without " << field;
  }
  for (const char* field : {"name", "size", "chunk_size", "chunks", "tree"}) {
    Json j = GoodManifest();
    j["disks"][0].erase(field);
    EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
                StatusIs(Code::kDataLoss, HasSubstr("malformed manifest")))
        << "disk without " << field;
  }
  for (const char* field : {"root", "height"}) {
    Json j = GoodManifest();
    j["disks"][0]["tree"].erase(field);
    EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
                StatusIs(Code::kDataLoss, HasSubstr("malformed manifest")))
        << "tree without " << field;
  }
}

TEST(ManifestTest, WrongTypesAreDataLoss) {
  Json j = GoodManifest();
  j["disks"] = "disk0";
  EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
              StatusIs(Code::kDataLoss, HasSubstr("malformed manifest")));
  j = GoodManifest();
  j["disks"][0]["size"] = "10497905";
  EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
              StatusIs(Code::kDataLoss, HasSubstr("malformed manifest")));
  j = GoodManifest();
  j["name"] = Json::array({"vm1"});
  EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
              StatusIs(Code::kDataLoss, HasSubstr("malformed manifest")));
  j = GoodManifest();
  j["stats"]["new_chunks"] = "many";
  EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
              StatusIs(Code::kDataLoss, HasSubstr("malformed manifest")));
}

TEST(ManifestTest, ChunkCountMustMatchSize) {
  struct Case {
    uint64_t size;
    uint32_t chunk_size;
    uint64_t chunks;
  };
  for (const Case& c : {Case{10497905, 65536, 160}, Case{10497905, 65536, 162},
                        Case{10497905, 65536, 0}, Case{65536, 65536, 2},
                        Case{65537, 65536, 1}, Case{0, 65536, 1}, Case{1, 4096, 0},
                        Case{1ull << 40, 65536, 1}}) {
    Json j = GoodManifest();
    j["disks"][0]["size"] = c.size;
    j["disks"][0]["chunk_size"] = c.chunk_size;
    j["disks"][0]["chunks"] = c.chunks;
    EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
                StatusIs(Code::kDataLoss, AllOf(StartsWith(kWhat), HasSubstr("disk0"),
                                                HasSubstr("chunk count does not match"))))
        << c.size << " / " << c.chunk_size << " -> " << c.chunks;
  }
  for (const Case& c : {Case{65536, 65536, 1}, Case{65537, 65536, 2}, Case{1, 4096, 1},
                        Case{1ull << 40, 65536, 1ull << 24}}) {
    Json j = GoodManifest();
    j["disks"][0]["size"] = c.size;
    j["disks"][0]["chunk_size"] = c.chunk_size;
    j["disks"][0]["chunks"] = c.chunks;
    // The tree must be tall enough for the chunk count (1024 per level).
    j["disks"][0]["tree"]["height"] = c.chunks <= 1024 ? 1 : c.chunks <= (1u << 20) ? 2 : 3;
    EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat), IsOk())
        << c.size << " / " << c.chunk_size << " -> " << c.chunks;
  }
}

TEST(ManifestTest, ImpossibleSizeOrChunkSizeIsDataLoss) {
  struct Case {
    uint64_t size;
    uint64_t chunk_size;
  };
  for (const Case& c : {Case{1 << 20, 0}, Case{1 << 20, 256}, Case{1 << 20, 65537},
                        Case{1 << 20, 3 << 16}, Case{1 << 20, 128u << 20},
                        Case{(1ull << 56) + 1, 65536}, Case{~0ull, 65536}}) {
    Json j = GoodManifest();
    j["disks"][0]["size"] = c.size;
    j["disks"][0]["chunk_size"] = c.chunk_size;
    // A count consistent with the (impossible) values where computable.
    j["disks"][0]["chunks"] =
        c.chunk_size ? (c.size / c.chunk_size + (c.size % c.chunk_size != 0)) : 0;
    EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
                StatusIs(Code::kDataLoss, HasSubstr("impossible size or chunk size")))
        << c.size << " / " << c.chunk_size;
  }
}

TEST(ManifestTest, BadTreeRootIsDataLoss) {
  for (const std::string& root : {std::string(""), std::string("aabb"), std::string("zz"),
                                  std::string(63, 'a'), std::string(62, 'a')}) {
    Json j = GoodManifest();
    j["disks"][0]["tree"]["root"] = root;
    EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
                StatusIs(Code::kDataLoss, HasSubstr("bad tree root")))
        << "root '" << root << "'";
  }
  Json j = GoodManifest();
  j["disks"][0]["tree"]["root"] = std::string(66, 'a');
  EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
              StatusIs(Code::kDataLoss, HasSubstr("bad tree root")));
  j["disks"][0]["tree"]["root"] = std::string(64, 'A');
  EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
              StatusIs(Code::kDataLoss, HasSubstr("bad tree root")));
}

TEST(ManifestTest, NonObjectsAreDataLoss) {
  for (const char* text : {"", "[", "[]", "null", "1", "{\"version\": 1,}"}) {
    EXPECT_THAT(Manifest::FromJson(text, kWhat),
                StatusIs(Code::kDataLoss, AllOf(StartsWith(kWhat), HasSubstr("not a JSON object"))))
        << "'" << text << "'";
  }
}

// BUG (reported): out-of-range numbers are truncated instead of rejected
// (chunk_size 2^32 + 65536 reads as 65536, height 2^32 + 1 as 1).
TEST(ManifestTest, RejectsNumbersThatDoNotFitTheirField) {
  Json j = GoodManifest();
  j["disks"][0]["chunk_size"] = 4295032832ull;  // 2^32 + 65536
  EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat), StatusIs(Code::kDataLoss, HasSubstr(kWhat)));
  j = GoodManifest();
  j["disks"][0]["tree"]["height"] = 4294967297ull;  // 2^32 + 1
  EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat), StatusIs(Code::kDataLoss, HasSubstr(kWhat)));
  j = GoodManifest();
  j["version"] = 4294967297ull;
  EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat), StatusIs(Code::kDataLoss, HasSubstr(kWhat)));
}

// BUG (reported): the header promises FromJson validates the tree shape, but
// a height outside [1, kMaxTreeHeight] or too small for the chunk count is
// accepted (WalkTree catches it later, at restore time).
TEST(ManifestTest, RejectsImpossibleTreeHeight) {
  for (int height : {0, -1, kMaxTreeHeight + 1}) {
    Json j = GoodManifest();
    j["disks"][0]["tree"]["height"] = height;
    EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
                StatusIs(Code::kDataLoss, HasSubstr(kWhat)))
        << "height " << height;
  }
  // 2000 chunks do not fit a single 1024-entry node.
  Json j = GoodManifest();
  j["disks"][0]["size"] = 2000ull * 65536;
  j["disks"][0]["chunks"] = 2000;
  j["disks"][0]["tree"]["height"] = 1;
  EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat), StatusIs(Code::kDataLoss, HasSubstr(kWhat)));
}

// BUG (reported): Manifest::ToJson calls nlohmann dump() with its default
// strict UTF-8 handling, which throws json::type_error 316 for a source path
// (or name, or hostname) that is not valid UTF-8 -- legal on Linux. The
// exception escapes BackupImage after the whole image was read.
TEST(ManifestTest, ToJsonHandlesNonUtf8Strings) {
  Manifest m;
  m.id = "0123456789abcdef0123456789abcdef";
  m.name = "vm1";
  m.time = "2026-11-22T20:00:00Z";
  m.consistency = "offline";
  DiskManifest d;
  d.name = "disk0";
  d.source = "/images/caf\xe9.raw";  // Latin-1 file name
  d.chunk_size = 65536;
  m.disks.push_back(d);
  std::string json;
  EXPECT_NO_THROW(json = m.ToJson());
  if (!json.empty()) {
    auto back = Manifest::FromJson(json, kWhat);
    ASSERT_THAT(back, IsOk());
    ASSERT_EQ(back->disks.size(), 1u);
    EXPECT_FALSE(back->disks[0].source.empty());
  }
}

TEST(SnapshotIdTest, AcceptsOnly32LowercaseHexDigits) {
  EXPECT_TRUE(IsSnapshotId("0123456789abcdef0123456789abcdef"));
  EXPECT_FALSE(IsSnapshotId("0123456789abcdef0123456789abcde"));
  EXPECT_FALSE(IsSnapshotId("0123456789abcdef0123456789abcdeF"));
  EXPECT_FALSE(IsSnapshotId("../snapshots/0123456789abcdef0123"));
  EXPECT_FALSE(IsSnapshotId(""));
}

// An agent's point carries its agent id; every other point has none, and
// older manifests (without the field) still read.
TEST(ManifestTest, AgentIdIsOptionalAndChecked) {
  auto plain = Manifest::FromJson(GoodManifest().dump(), kWhat);
  ASSERT_THAT(plain, IsOk());
  EXPECT_EQ(plain->agent_id, "");
  EXPECT_FALSE(Json::parse(plain->ToJson()).contains("agent_id"));

  Manifest m = *plain;
  m.agent_id = "0123456789abcdef";
  auto back = Manifest::FromJson(m.ToJson(), kWhat);
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->agent_id, "0123456789abcdef");

  for (Json bad :
       {Json(""), Json(7), Json("a/b"), Json(std::string(65, 'a'))}) {
    Json j = GoodManifest();
    j["agent_id"] = bad;
    EXPECT_THAT(Manifest::FromJson(j.dump(), kWhat),
                StatusIs(Code::kDataLoss, HasSubstr("agent_id")))
        << bad.dump();
  }
}

}  // namespace
}  // namespace haven::repository
