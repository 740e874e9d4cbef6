// Tests for concurrent writers: backups keep a read-only view of the index
// and write their entries in short write sessions (chunk_index.h), so two
// writers (two Repository instances here; RocksDB's lock is per process and
// per open, so they contend as two processes would) both land.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/check.h"
#include "repository/pack_file.h"
#include "repository/repository.h"
#include "tests/unit/repository_test_util.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::kPass;
using ::haven::testing_util::PackFiles;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::RepositoryTest;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::WriteOptions;
using ::testing::HasSubstr;
using ::testing::SizeIs;

ChunkLocation FakeLocation(uint64_t offset) {
  return {std::string(32, 'a'), offset, 100, 100, ChunkType::kData};
}

ChunkId IdOf(uint8_t n) {
  ChunkId id;
  id.bytes.fill(n);
  return id;
}

// Two writers store chunks turn about, enough to seal several packs each
// while the other writes; one chunk both store before either flushes.
TEST_F(RepositoryTest, TwoWritersAtOnceBothLandAndShareDedup) {
  auto a = OpenRepo(true), b = OpenRepo(true);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto wa = a->NewWriter(), wb = b->NewWriter();
  WriteContext ctx(1);
  std::vector<Stored> all;
  Bytes shared = RandomData(65536, 4242);
  ChunkId shared_id = a->IdFor(ChunkType::kData, shared);
  auto sa = wa->Put(ChunkType::kData, shared_id, shared, ctx);
  auto sb = wb->Put(ChunkType::kData, shared_id, shared, ctx);
  ASSERT_THAT(sa, IsOk());
  ASSERT_THAT(sb, IsOk());
  // Neither has indexed it yet: each stores its own copy (allowed; gc
  // drops the copy the index does not name).
  EXPECT_TRUE(*sa);
  EXPECT_TRUE(*sb);
  for (int i = 0; i < 60; ++i) {  // 1 MiB packs: about 4 packs per writer
    Stored s{ChunkType::kData, {}, RandomData(65536, 100 + i)};
    s.id = a->IdFor(s.type, s.raw);
    auto put = (i % 2 ? wb : wa)->Put(s.type, s.id, s.raw, ctx);
    ASSERT_THAT(put, IsOk());
    EXPECT_TRUE(*put);
    all.push_back(std::move(s));
  }
  ASSERT_THAT(wa->Flush(), IsOk());
  ASSERT_THAT(wb->Flush(), IsOk());
  all.push_back({ChunkType::kData, shared_id, shared});

  // After a's Flush, b finds a's chunks: a miss refreshes b's view (at most
  // every 2 s, so a run of new chunks does not reopen the index each time).
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  auto again = wb->Put(all[0].type, all[0].id, all[0].raw, ctx);
  ASSERT_THAT(again, IsOk());
  EXPECT_FALSE(*again) << "b stored a chunk a had indexed";

  auto reader = OpenRepo(false);
  ASSERT_NE(reader, nullptr);
  ExpectReadable(*reader, all);
  auto count = reader->index().CountChunks();
  ASSERT_THAT(count, IsOk());
  EXPECT_EQ(*count, all.size());
}

// Two writers stored one chunk at once: two copies, the index names one. A
// flipped bit in the other copy is reported by check as a surplus copy
// affecting no point, and is not listed as damaged (repair would otherwise
// drop the index entry of the good copy and zero every point using it).
TEST_F(RepositoryTest, ADamagedSurplusCopyIsNotDamageForRepair) {
  auto a = OpenRepo(true), b = OpenRepo(true);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  auto wa = a->NewWriter(), wb = b->NewWriter();
  WriteContext ctx(1);
  Bytes shared = RandomData(65536, 77);
  ChunkId id = a->IdFor(ChunkType::kData, shared);
  ASSERT_THAT(wa->Put(ChunkType::kData, id, shared, ctx), IsOk());
  ASSERT_THAT(wb->Put(ChunkType::kData, id, shared, ctx), IsOk());
  ASSERT_THAT(wa->Flush(), IsOk());
  ASSERT_THAT(wb->Flush(), IsOk());

  auto reader = OpenRepo(false);
  ASSERT_NE(reader, nullptr);
  auto named = reader->index().Get(id);
  ASSERT_THAT(named, IsOk());
  ASSERT_TRUE(named->has_value());
  std::vector<std::pair<std::string, PackEntry>> copies;
  for (const std::string& name : PackFiles(repo_dir_)) {
    std::string path = repo_dir_ + "/packs/" + name.substr(0, 2) + "/" + name;
    auto entries = ReadPackHeader(path, name, reader->data_key());
    ASSERT_THAT(entries, IsOk());
    for (const PackEntry& e : *entries)
      if (e.id == id) copies.push_back({path, e});
  }
  ASSERT_EQ(copies.size(), 2u) << "both writers should hold a copy";
  const auto& other = copies[0].first.ends_with((*named)->pack) ? copies[1]
                                                                 : copies[0];
  ASSERT_FALSE(other.first.ends_with((*named)->pack));
  {
    Bytes pack = testing_util::ReadWholeFile(other.first);
    pack[other.second.offset + other.second.stored_len / 2] ^= 0x10;
    testing_util::WriteWholeFile(other.first, pack);
  }
  CheckOptions co;
  co.read_data_percent = 100;
  auto checked = CheckRepository(*reader, co);
  ASSERT_THAT(checked, IsOk());
  ASSERT_THAT(checked->findings, SizeIs(1));
  EXPECT_THAT(checked->findings[0], HasSubstr("surplus copy"));
  EXPECT_TRUE(checked->damaged.empty())
      << "the good copy's chunk was listed as damaged";
  ExpectReadable(*reader, {{ChunkType::kData, id, shared}});
}

// While another job holds the index, a writer's sealed packs stay pending
// (its own lookups still find them), and Flush waits: with a short wait it
// fails Unavailable and names why; once the index is free it lands.
TEST_F(RepositoryTest, WriterKeepsEntriesPendingWhileTheIndexIsHeld) {
  OpenOptions held = WriteOptions();
  held.hold_index = true;
  auto holder = Repository::Open(repo_dir_, kPass, held);
  ASSERT_THAT(holder, IsOk());

  OpenOptions quick = WriteOptions();
  quick.lock_wait_seconds = 0.5;
  auto repo = Repository::Open(repo_dir_, kPass, quick);
  ASSERT_THAT(repo, IsOk());
  auto writer = (*repo)->NewWriter();
  WriteContext ctx(1);
  std::vector<Stored> chunks;
  for (int i = 0; i < 40; ++i) {
    Stored s{ChunkType::kData, {}, RandomData(65536, 500 + i)};
    s.id = (*repo)->IdFor(s.type, s.raw);
    auto put = writer->Put(s.type, s.id, s.raw, ctx);
    ASSERT_THAT(put, IsOk());
    chunks.push_back(std::move(s));
  }
  auto dup = writer->Put(chunks[0].type, chunks[0].id, chunks[0].raw, ctx);
  ASSERT_THAT(dup, IsOk());
  EXPECT_FALSE(*dup) << "a pending chunk was stored twice";

  EXPECT_THAT(writer->Flush(),
              StatusIs(Code::kUnavailable, HasSubstr("held by another")));
  EXPECT_THAT(PackFiles(repo_dir_), SizeIs(testing::Ge(3u)));  // all sealed
  holder->reset();
  ASSERT_THAT(writer->Flush(), IsOk());
  EXPECT_EQ(writer->new_chunks(), 40u);
  auto reader = OpenRepo(false);
  ASSERT_NE(reader, nullptr);
  ExpectReadable(*reader, chunks);
}

TEST_F(RepositoryTest, TryPutGivesUpAtOnceWhileAnotherSessionHolds) {
  ChunkIndex::OpenOptions held;
  auto holder = ChunkIndex::Open(repo_dir_ + "/index", held);
  ASSERT_THAT(holder, IsOk());
  ChunkIndex::OpenOptions so;
  so.write_sessions = true;
  so.lock_wait_seconds = 0.3;
  auto index = ChunkIndex::Open(repo_dir_ + "/index", so);
  ASSERT_THAT(index, IsOk());
  EXPECT_THAT((*index)->TryPut({{IdOf(1), FakeLocation(1)}}),
              StatusIs(Code::kUnavailable, HasSubstr("")));
  auto missing = (*index)->Get(IdOf(1));
  ASSERT_THAT(missing, IsOk());
  EXPECT_FALSE(missing->has_value()) << "a failed TryPut wrote something";
  holder->reset();
  ASSERT_THAT((*index)->TryPut({{IdOf(1), FakeLocation(1)}}), IsOk());
  // Seen at once by this instance, and by a fresh read-only open.
  auto mine = (*index)->Get(IdOf(1));
  ASSERT_THAT(mine, IsOk());
  ASSERT_TRUE(mine->has_value());
  EXPECT_EQ((*mine)->offset, 1u);
  ChunkIndex::OpenOptions ro;
  ro.read_only = true;
  auto other = ChunkIndex::Open(repo_dir_ + "/index", ro);
  ASSERT_THAT(other, IsOk());
  auto theirs = (*other)->Get(IdOf(1));
  ASSERT_THAT(theirs, IsOk());
  ASSERT_TRUE(theirs->has_value());
}

// A writer killed while it holds the index write lock: the kernel drops
// RocksDB's fcntl lock, the next session opens at once and what the dead
// writer synced is there.
TEST_F(RepositoryTest, WriterKilledInsideASessionLeavesTheIndexUsable) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ChunkIndex::OpenOptions held;
    auto index = ChunkIndex::Open(repo_dir_ + "/index", held);
    if (!index.ok()) ::_exit(2);
    if (!(*index)->Put({{IdOf(7), FakeLocation(7)}}, /*sync=*/true).ok())
      ::_exit(3);
    ::raise(SIGKILL);  // still holding the lock, never closed
    ::_exit(4);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exit " << WEXITSTATUS(status);
  ChunkIndex::OpenOptions so;
  so.write_sessions = true;
  so.lock_wait_seconds = 0.3;
  auto index = ChunkIndex::Open(repo_dir_ + "/index", so);
  ASSERT_THAT(index, IsOk());
  ASSERT_THAT((*index)->TryPut({{IdOf(8), FakeLocation(8)}}), IsOk());
  for (uint8_t n : {7, 8}) {
    auto loc = (*index)->Get(IdOf(n));
    ASSERT_THAT(loc, IsOk());
    ASSERT_TRUE(loc->has_value()) << "entry " << int{n} << " lost";
    EXPECT_EQ((*loc)->offset, n);
  }
}

// Many small sessions: the session flushes and compacts as a long-lived
// writer would, so level-0 files do not pile up into a write stall, and a
// reader's view stays correct throughout.
TEST_F(RepositoryTest, ManySessionsStayReadable) {
  ChunkIndex::OpenOptions so;
  so.write_sessions = true;
  auto index = ChunkIndex::Open(repo_dir_ + "/index", so);
  ASSERT_THAT(index, IsOk());
  ChunkIndex::OpenOptions ro;
  ro.read_only = true;
  auto reader = ChunkIndex::Open(repo_dir_ + "/index", ro);
  ASSERT_THAT(reader, IsOk());
  uint64_t next = 0;
  for (int session = 0; session < 40; ++session) {
    std::vector<std::pair<ChunkId, ChunkLocation>> batch;
    for (int i = 0; i < 2000; ++i, ++next) {
      ChunkId id;
      id.bytes.fill(0x5a);
      std::memcpy(id.bytes.data(), &next, sizeof next);
      batch.push_back({id, FakeLocation(next)});
    }
    ASSERT_THAT((*index)->Put(batch, false), IsOk());
    auto seen = (*reader)->Get(batch.front().first);  // refreshes on a miss
    ASSERT_THAT(seen, IsOk());
  }
  auto count = (*index)->CountChunks();
  ASSERT_THAT(count, IsOk());
  EXPECT_EQ(*count, next);
}

}  // namespace
}  // namespace haven::repository
