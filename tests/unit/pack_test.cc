// Tests for repository/pack_format.h and repository/pack_file.h: writing
// packs, reading their headers back, and rejecting damaged packs.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/chunk_codec.h"
#include "repository/local_backend.h"
#include "repository/pack_file.h"
#include "repository/pack_format.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

using ::haven::testing_util::FileSize;
using ::haven::testing_util::FlipByte;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteWholeFile;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

struct Chunk {
  ChunkType type;
  ChunkId id;
  Bytes raw;
};

class PackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    repo_ = dir_.Sub("repo");
    backend_ = LocalBackend(repo_);
    for (std::string d : {repo_, repo_ + "/tmp", repo_ + "/packs"})
      ASSERT_EQ(::mkdir(d.c_str(), 0700), 0) << d;
    for (int i = 0; i < 256; ++i) {
      char sub[3];
      std::snprintf(sub, sizeof sub, "%02x", i);
      std::string d = repo_ + "/packs/" + sub;
      ASSERT_EQ(::mkdir(d.c_str(), 0700), 0) << d;
    }
    for (size_t i = 0; i < key_.size(); ++i) key_[i] = static_cast<uint8_t>(3 * i + 1);
  }

  // Writes a finished pack holding `n` chunks; returns its name.
  std::string WritePack(int n, std::vector<Chunk>* chunks = nullptr,
                        std::vector<PackEntry>* entries = nullptr) {
    auto w = PackWriter::Create(backend_);
    EXPECT_THAT(w, IsOk());
    if (!w.ok()) return "";
    KeyedHasher hasher(key_);
    Compressor compressor(1);
    Bytes scratch, sealed;
    for (int i = 0; i < n; ++i) {
      Chunk c;
      c.type = i % 3 == 2 ? ChunkType::kTree : ChunkType::kData;
      c.raw = i % 2 ? RandomData(1000 + i, i) : Bytes(2000 + i, static_cast<uint8_t>(i));
      c.id = hasher.Hash(c.raw);
      EXPECT_THAT(SealChunk(key_, c.type, c.id, c.raw, compressor, scratch, sealed), IsOk());
      EXPECT_THAT((*w)->Append(c.type, c.id, static_cast<uint32_t>(c.raw.size()), sealed),
                  IsOk());
      if (chunks) chunks->push_back(c);
    }
    EXPECT_EQ((*w)->count(), static_cast<size_t>(n));
    if (entries) *entries = (*w)->entries();
    std::string name = (*w)->name();
    EXPECT_THAT((*w)->Finish(key_), IsOk());
    return name;
  }

  std::string Path(const std::string& name) { return PackPath(repo_, name); }

  // Overwrites the trailer's header_len field.
  void SetHeaderLen(const std::string& path, uint32_t len) {
    uint64_t size = FileSize(path);
    int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t le[4] = {static_cast<uint8_t>(len), static_cast<uint8_t>(len >> 8),
                     static_cast<uint8_t>(len >> 16), static_cast<uint8_t>(len >> 24)};
    ASSERT_EQ(::pwrite(fd, le, 4, static_cast<off_t>(size - kPackTrailerSize)), 4);
    ::close(fd);
  }

  uint32_t HeaderLen(const std::string& path) {
    Bytes all = ReadWholeFile(path);
    return GetU32(all.data() + all.size() - kPackTrailerSize);
  }

  TempDir dir_;
  std::string repo_;
  LocalBackend backend_{""};  // on repo_, set in SetUp
  Key key_;
};

TEST_F(PackTest, WriteThenReadHeaderRoundTrips) {
  std::vector<Chunk> chunks;
  std::vector<PackEntry> written;
  std::string name = WritePack(5, &chunks, &written);
  ASSERT_TRUE(IsPackName(name)) << name;
  const std::string path = Path(name);
  EXPECT_EQ(path, repo_ + "/packs/" + name.substr(0, 2) + "/" + name);
  ASSERT_TRUE(PathExists(path));
  // The temporary file is gone once the pack is in place.
  EXPECT_TRUE(std::filesystem::is_empty(repo_ + "/tmp"));

  Bytes file = ReadWholeFile(path);
  ASSERT_GE(file.size(), 8 + kPackTrailerSize);
  EXPECT_EQ(std::memcmp(file.data(), kPackMagic, 8), 0);
  EXPECT_EQ(std::memcmp(file.data() + file.size() - 8, kPackEndMagic, 8), 0);

  auto entries = ReadPackHeader(path, name, key_);
  ASSERT_THAT(entries, IsOk());
  ASSERT_EQ(entries->size(), 5u);
  uint64_t expect_offset = sizeof kPackMagic;
  Decompressor decompressor;
  Bytes scratch, out;
  for (size_t i = 0; i < entries->size(); ++i) {
    const PackEntry& e = (*entries)[i];
    SCOPED_TRACE("entry " + std::to_string(i));
    EXPECT_EQ(e.type, chunks[i].type);
    EXPECT_EQ(e.id, chunks[i].id);
    EXPECT_EQ(e.raw_len, chunks[i].raw.size());
    EXPECT_EQ(e.offset, expect_offset);
    EXPECT_EQ(e.offset, written[i].offset);
    EXPECT_EQ(e.stored_len, written[i].stored_len);
    expect_offset += e.stored_len;
    // Each blob opens from its recorded place.
    ByteSpan blob(file.data() + e.offset, e.stored_len);
    ASSERT_THAT(OpenChunk(key_, e.type, e.id, blob, e.raw_len, decompressor, scratch, out,
                          "blob"),
                IsOk());
    EXPECT_EQ(out, chunks[i].raw);
  }
  // header blob + header_len + end magic follow the last blob exactly.
  uint32_t header_len = HeaderLen(path);
  EXPECT_EQ(expect_offset + header_len + kPackTrailerSize, file.size());
  EXPECT_EQ(header_len, 8 + 5 * kPackEntrySize + kSealOverhead);
}

TEST_F(PackTest, EmptyPackRoundTrips) {
  std::string name = WritePack(0);
  auto entries = ReadPackHeader(Path(name), name, key_);
  ASSERT_THAT(entries, IsOk());
  EXPECT_THAT(*entries, IsEmpty());
}

TEST_F(PackTest, EachWriterGetsAFreshName) {
  std::string a = WritePack(1), b = WritePack(1);
  EXPECT_NE(a, b);
  EXPECT_TRUE(PathExists(Path(a)));
  EXPECT_TRUE(PathExists(Path(b)));
}

TEST_F(PackTest, UnfinishedWriterRemovesItsTemporaryFile) {
  std::string name;
  {
    auto w = PackWriter::Create(backend_);
    ASSERT_THAT(w, IsOk());
    name = (*w)->name();
    Bytes blob = RandomData(100, 1);
    ASSERT_THAT((*w)->Append(ChunkType::kData, ChunkId{}, 72, blob), IsOk());
    EXPECT_FALSE(std::filesystem::is_empty(repo_ + "/tmp"));
  }
  EXPECT_TRUE(std::filesystem::is_empty(repo_ + "/tmp"));
  EXPECT_FALSE(PathExists(Path(name)));
}

TEST_F(PackTest, CreateFailsWithoutTmpDirectory) {
  std::filesystem::remove(repo_ + "/tmp");
  EXPECT_THAT(PackWriter::Create(backend_), StatusIs(Code::kNotFound, HasSubstr("tmp")));
}

TEST_F(PackTest, MissingPackIsNotFound) {
  std::string name(32, 'a');
  EXPECT_THAT(ReadPackHeader(Path(name), name, key_), StatusIs(Code::kNotFound, HasSubstr(name)));
}

TEST_F(PackTest, TruncatedPackIsDataLossNamingThePack) {
  std::string name = WritePack(3);
  const std::string path = Path(name);
  const uint64_t size = FileSize(path);
  for (uint64_t new_size : {size - 1, size - kPackTrailerSize, uint64_t{100}, uint64_t{10},
                            uint64_t{8}, uint64_t{0}}) {
    SCOPED_TRACE("size " + std::to_string(new_size));
    std::string copy = dir_.Sub("truncated");
    std::filesystem::copy_file(path, copy, std::filesystem::copy_options::overwrite_existing);
    ASSERT_EQ(::truncate(copy.c_str(), static_cast<off_t>(new_size)), 0);
    EXPECT_THAT(ReadPackHeader(copy, name, key_),
                StatusIs(Code::kDataLoss, HasSubstr("pack " + name)));
  }
  // Shorter than magic + trailer + seal overhead: "truncated".
  ASSERT_EQ(::truncate(path.c_str(), 20), 0);
  EXPECT_THAT(ReadPackHeader(path, name, key_),
              StatusIs(Code::kDataLoss, AllOf(HasSubstr("pack " + name),
                                              HasSubstr("truncated (20 bytes)"))));
}

TEST_F(PackTest, BadEndMagicIsDataLoss) {
  std::string name = WritePack(2);
  const std::string path = Path(name);
  const uint64_t size = FileSize(path);
  for (uint64_t back : {1u, 4u, 8u}) {
    FlipByte(path, size - back);
    EXPECT_THAT(ReadPackHeader(path, name, key_),
                StatusIs(Code::kDataLoss, AllOf(HasSubstr("pack " + name),
                                                HasSubstr("no end marker"))))
        << "byte " << back << " from the end";
    FlipByte(path, size - back);
  }
  EXPECT_THAT(ReadPackHeader(path, name, key_), IsOk());
}

TEST_F(PackTest, ImpossibleHeaderLengthIsDataLoss) {
  std::string name = WritePack(2);
  const std::string path = Path(name);
  const uint64_t size = FileSize(path);
  const uint32_t good = HeaderLen(path);
  const uint32_t too_long = static_cast<uint32_t>(size - kPackTrailerSize - 8 + 1);
  for (uint32_t len : {0xffffffffu, kMaxPackHeader + 1, too_long, uint32_t{0},
                       static_cast<uint32_t>(kSealOverhead - 1)}) {
    SetHeaderLen(path, len);
    EXPECT_THAT(ReadPackHeader(path, name, key_),
                StatusIs(Code::kDataLoss,
                         AllOf(HasSubstr("pack " + name),
                               HasSubstr("header length " + std::to_string(len)),
                               HasSubstr("impossible"))))
        << "header_len " << len;
  }
  // Plausible but wrong lengths make the header blob fail authentication.
  for (uint32_t len : {good - 1, good + 1}) {
    SetHeaderLen(path, len);
    EXPECT_THAT(ReadPackHeader(path, name, key_),
                StatusIs(Code::kDataLoss, AllOf(HasSubstr("pack " + name + " header"),
                                                HasSubstr("authentication failed"))))
        << "header_len " << len;
  }
  SetHeaderLen(path, good);
  EXPECT_THAT(ReadPackHeader(path, name, key_), IsOk());
}

TEST_F(PackTest, FlippedByteInHeaderIsDataLoss) {
  std::string name = WritePack(3);
  const std::string path = Path(name);
  const uint64_t size = FileSize(path);
  const uint32_t header_len = HeaderLen(path);
  const uint64_t header_off = size - kPackTrailerSize - header_len;
  for (uint64_t pos : {header_off, header_off + kNonceSize, header_off + header_len / 2,
                       header_off + header_len - 1}) {
    FlipByte(path, pos);
    EXPECT_THAT(ReadPackHeader(path, name, key_),
                StatusIs(Code::kDataLoss, AllOf(HasSubstr("pack " + name + " header"),
                                                HasSubstr("authentication failed"))))
        << "offset " << pos;
    FlipByte(path, pos);
  }
  EXPECT_THAT(ReadPackHeader(path, name, key_), IsOk());
}

TEST_F(PackTest, FlippedByteInDataAreaDoesNotAffectTheHeader) {
  std::string name = WritePack(3);
  FlipByte(Path(name), 8 + 5);
  auto entries = ReadPackHeader(Path(name), name, key_);
  ASSERT_THAT(entries, IsOk());
  EXPECT_EQ(entries->size(), 3u);
}

TEST_F(PackTest, HeaderIsBoundToKeyAndPackName) {
  std::string name = WritePack(2);
  Key other = key_;
  other[0] ^= 1;
  EXPECT_THAT(ReadPackHeader(Path(name), name, other),
              StatusIs(Code::kDataLoss, HasSubstr("authentication failed")));
  // The same bytes under another name (a pack copied or renamed).
  std::string other_name = name;
  other_name[31] = other_name[31] == '0' ? '1' : '0';
  std::string other_path = dir_.Sub(other_name);
  std::filesystem::copy_file(Path(name), other_path);
  EXPECT_THAT(ReadPackHeader(other_path, other_name, key_),
              StatusIs(Code::kDataLoss, AllOf(HasSubstr("pack " + other_name),
                                              HasSubstr("authentication failed"))));
}

TEST_F(PackTest, ForeignFileIsDataLoss) {
  std::string name(32, 'b');
  std::string path = Path(name);
  WriteWholeFile(path, RandomData(4096, 5));
  EXPECT_THAT(ReadPackHeader(path, name, key_),
              StatusIs(Code::kDataLoss, HasSubstr("no end marker")));
}

TEST_F(PackTest, RemoveAbandonedTempPacksKeepsLiveWriters) {
  auto live = PackWriter::Create(backend_);
  ASSERT_THAT(live, IsOk());
  std::string live_tmp = repo_ + "/tmp/pack-" + (*live)->name() + ".tmp";
  ASSERT_TRUE(PathExists(live_tmp));
  std::string dead_tmp = repo_ + "/tmp/pack-" + std::string(32, 'c') + ".tmp";
  WriteWholeFile(dead_tmp, AsBytes("HAVENPK1"));
  std::string other = repo_ + "/tmp/notes.txt";
  WriteWholeFile(other, AsBytes("keep"));

  RemoveAbandonedTempPacks(repo_);
  EXPECT_TRUE(PathExists(live_tmp));
  EXPECT_FALSE(PathExists(dead_tmp));
  EXPECT_TRUE(PathExists(other));
  // The live writer still finishes normally.
  ASSERT_THAT((*live)->Finish(key_), IsOk());
  EXPECT_THAT(ReadPackHeader(Path((*live)->name()), (*live)->name(), key_), IsOk());
}

TEST(PackNameTest, AcceptsOnly32LowercaseHexDigits) {
  EXPECT_TRUE(IsPackName("0123456789abcdef0123456789abcdef"));
  EXPECT_FALSE(IsPackName("0123456789abcdef0123456789abcde"));
  EXPECT_FALSE(IsPackName("0123456789abcdef0123456789abcdef0"));
  EXPECT_FALSE(IsPackName("0123456789ABCDEF0123456789abcdef"));
  EXPECT_FALSE(IsPackName("0123456789abcdef0123456789abcdeg"));
  EXPECT_FALSE(IsPackName(""));
  EXPECT_FALSE(IsPackName("pack-0123456789abcdef0123456.tmp"));
}

// ------------------------------------------------------------- header codec

PackEntry Entry(ChunkType type, uint64_t offset, uint32_t stored_len, uint8_t id_byte) {
  PackEntry e;
  e.type = type;
  e.offset = offset;
  e.stored_len = stored_len;
  e.raw_len = stored_len * 2;
  e.id.bytes.fill(id_byte);
  return e;
}

TEST(PackHeaderTest, EncodeDecodeRoundTrips) {
  std::vector<PackEntry> in = {Entry(ChunkType::kData, 8, 100, 1),
                               Entry(ChunkType::kTree, 108, 28, 2),
                               Entry(ChunkType::kData, 136, 64, 3)};
  Bytes plain = EncodePackHeader(in);
  EXPECT_EQ(plain.size(), 8 + 3 * kPackEntrySize);
  EXPECT_EQ(std::memcmp(plain.data(), "HVPH", 4), 0);
  EXPECT_EQ(GetU32(plain.data() + 4), 3u);
  auto out = DecodePackHeader(plain, 200, "pack p");
  ASSERT_THAT(out, IsOk());
  ASSERT_EQ(out->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ((*out)[i].type, in[i].type);
    EXPECT_EQ((*out)[i].offset, in[i].offset);
    EXPECT_EQ((*out)[i].stored_len, in[i].stored_len);
    EXPECT_EQ((*out)[i].raw_len, in[i].raw_len);
    EXPECT_EQ((*out)[i].id, in[i].id);
  }
  // An entry may end exactly at the end of the data area.
  EXPECT_THAT(DecodePackHeader(EncodePackHeader({Entry(ChunkType::kData, 8, 192, 1)}), 200,
                               "pack p"),
              IsOk());
}

TEST(PackHeaderTest, RejectsEntriesOutsideTheDataArea) {
  const uint64_t data_end = 1000;
  struct Case {
    const char* what;
    uint64_t offset;
    uint32_t stored_len;
  };
  for (const Case& c : {Case{"offset inside the magic", 0, 100},
                        Case{"offset 7", 7, 100},
                        Case{"ends one byte past the end", 8, 993},
                        Case{"starts at the end", 1000, 28},
                        Case{"starts past the end", 1001, 28},
                        Case{"offset overflows", ~0ull - 10, 100},
                        Case{"huge length", 8, 0xffffffffu},
                        Case{"shorter than a seal", 8, 27}}) {
    SCOPED_TRACE(c.what);
    std::vector<PackEntry> entries = {Entry(ChunkType::kData, 8, 100, 1),
                                      Entry(ChunkType::kData, c.offset, c.stored_len, 2)};
    EXPECT_THAT(DecodePackHeader(EncodePackHeader(entries), data_end, "pack abc"),
                StatusIs(Code::kDataLoss, AllOf(HasSubstr("pack abc"), HasSubstr("entry 1"),
                                                HasSubstr("points outside the pack"))));
  }
}

TEST(PackHeaderTest, RejectsMalformedHeaders) {
  Bytes good = EncodePackHeader({Entry(ChunkType::kData, 8, 100, 1)});
  const auto data_loss = [](const char* text) {
    return StatusIs(Code::kDataLoss, AllOf(HasSubstr("pack abc"), HasSubstr(text)));
  };
  // Bad magic.
  Bytes bad = good;
  bad[0] = 'X';
  EXPECT_THAT(DecodePackHeader(bad, 1000, "pack abc"), data_loss("bad magic"));
  EXPECT_THAT(DecodePackHeader(ByteSpan(good.data(), 7), 1000, "pack abc"),
              data_loss("bad magic"));
  EXPECT_THAT(DecodePackHeader({}, 1000, "pack abc"), data_loss("bad magic"));
  // Count disagreeing with the length, including a hostile huge count.
  for (uint32_t count : {0u, 2u, 0xffffffffu, 0x40000001u}) {
    bad = good;
    bad[4] = static_cast<uint8_t>(count);
    bad[5] = static_cast<uint8_t>(count >> 8);
    bad[6] = static_cast<uint8_t>(count >> 16);
    bad[7] = static_cast<uint8_t>(count >> 24);
    EXPECT_THAT(DecodePackHeader(bad, 1000, "pack abc"),
                data_loss("length does not match its count"))
        << "count " << count;
  }
  bad = good;
  bad.push_back(0);
  EXPECT_THAT(DecodePackHeader(bad, 1000, "pack abc"),
              data_loss("length does not match its count"));
  // Unknown chunk type.
  bad = good;
  bad[8] = 2;
  EXPECT_THAT(DecodePackHeader(bad, 1000, "pack abc"), data_loss("entry 0 has unknown type"));
}

}  // namespace
}  // namespace haven::repository
