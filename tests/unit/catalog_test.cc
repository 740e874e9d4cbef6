// The catalog of recovery points in the index (repository/catalog.h), on a
// real repository with a real RocksDB index: answers identical to reading
// every manifest file, other writers' points seen, forgotten points gone, an
// empty (older) catalog filled again, tampered entries refused, read-only
// opens correct without writing.
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include <filesystem>
#include <functional>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/check.h"
#include "repository/repository.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

using ::haven::testing_util::FlipByte;
using ::haven::testing_util::IsOk;
using ::haven::testing_util::ReadOptions;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteOptions;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr const char* kPass = testing_util::kTestPassphrase;

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    dir_ = tmp_.Sub("repo");
    ASSERT_THAT(testing_util::CloneFreshRepository(dir_), IsOk());
  }

  std::unique_ptr<Repository> Open(bool write) {
    auto r = Repository::Open(dir_, kPass, write ? WriteOptions() : ReadOptions());
    EXPECT_THAT(r, IsOk());
    return r.ok() ? std::move(r).value() : nullptr;
  }

  static Manifest Commit(Repository& repo, const std::string& name,
                         const std::string& time, const std::string& kind = "image") {
    Manifest m;
    m.name = name;
    m.kind = kind;
    m.time = time;
    m.hostname = "host-" + name;
    m.consistency = "offline";
    m.tool = "haven-test";
    DiskManifest d;
    d.name = "disk0";
    d.source = "/images/" + name + ".img";
    d.chunk_size = 65536;
    m.disks.push_back(d);
    EXPECT_THAT(repo.CommitSnapshot(m), IsOk());
    return m;
  }

  // Ids of the points the catalog holds (its summary keys).
  static std::set<std::string> CatalogIds(const Repository& repo) {
    std::set<std::string> ids;
    EXPECT_THAT(repo.index().ScanRaw("s",
                                     [&](std::string_view key, std::string_view) {
                                       ids.insert(HexEncode(AsBytes(key.substr(1))));
                                       return OkStatus();
                                     }),
                IsOk());
    return ids;
  }

  // Rewrites one catalog value through `edit` (an attacker with the index).
  static void EditEntry(Repository& repo, char prefix, const std::string& id,
                        const std::function<void(std::string&)>& edit) {
    std::string key(1, prefix);
    Bytes raw = *HexDecode(id);
    key.append(raw.begin(), raw.end());
    auto v = repo.index().GetRaw(key);
    ASSERT_THAT(v, IsOk());
    ASSERT_TRUE(v->has_value()) << "no catalog entry " << prefix << " for " << id;
    std::string value = **v;
    edit(value);
    ASSERT_THAT(repo.index().WriteRaw({{key, value}}, {}, true), IsOk());
  }

  // Entries written within 2 s of their file's mtime are not trusted
  // (catalog.h, "racy"); a real catalog's entries are older than that. Sets
  // every manifest's mtime an hour back and lets the writer `repo` rewrite
  // the entries, so the catalog answers from then on.
  void SettleCatalog(Repository& repo) {
    struct timespec old[2];
    ::clock_gettime(CLOCK_REALTIME, &old[0]);
    old[0].tv_sec -= 3600;
    old[1] = old[0];
    for (const auto& e : std::filesystem::directory_iterator(dir_ + "/snapshots"))
      ASSERT_EQ(::utimensat(AT_FDCWD, e.path().c_str(), old, 0), 0);
    ASSERT_THAT(repo.ListSnapshots(nullptr), IsOk());
  }

  static std::vector<std::string> Ids(const std::vector<Manifest>& all) {
    std::vector<std::string> ids;
    for (const auto& m : all) ids.push_back(m.id);
    return ids;
  }

  TempDir tmp_;
  std::string dir_;
};

TEST_F(CatalogTest, ListAndFindMatchTheFiles) {
  auto repo = Open(true);
  ASSERT_NE(repo, nullptr);
  std::vector<Manifest> made;
  const char* times[] = {"2026-03-01T00:00:00Z", "2026-01-01T00:00:00Z",
                         "2026-02-15T00:00:00Z", "2026-02-01T00:00:00Z",
                         "2026-01-01T00:00:00Z"};
  for (int i = 0; i < 5; ++i)
    made.push_back(Commit(*repo, i % 2 ? "vm1" : "vm2", times[i]));
  EXPECT_THAT(CatalogIds(*repo), SizeIs(5));  // every commit went in
  ASSERT_NO_FATAL_FAILURE(SettleCatalog(*repo));

  std::vector<std::string> e1, e2;
  auto from_catalog = repo->ListSnapshots(&e1);
  auto from_files = repo->ListSnapshots(&e2, SnapshotSource::kFiles);
  ASSERT_THAT(from_catalog, IsOk());
  ASSERT_THAT(from_files, IsOk());
  EXPECT_THAT(e1, IsEmpty());
  EXPECT_THAT(e2, IsEmpty());
  ASSERT_THAT(*from_catalog, SizeIs(5));
  EXPECT_EQ(Ids(*from_catalog), Ids(*from_files));
  for (size_t i = 0; i < 5; ++i)
    EXPECT_EQ((*from_catalog)[i].ToJson(), (*from_files)[i].ToJson()) << i;
  EXPECT_EQ((*from_catalog)[0].time, "2026-01-01T00:00:00Z");
  EXPECT_EQ((*from_catalog)[4].time, "2026-03-01T00:00:00Z");

  // The same answers with the catalog full and with it empty (read from the
  // files); a read-only open sees the writer's catalog.
  std::vector<std::string> specs = {"latest", "vm1:latest", "vm2:latest", made[3].id,
                                    made[3].id.substr(0, 10)};
  std::vector<std::string> full;
  for (const auto& spec : specs) {
    auto m = repo->FindSnapshot(spec);
    ASSERT_THAT(m, IsOk()) << spec;
    full.push_back(m->ToJson());
  }
  EXPECT_EQ(repo->FindSnapshot("latest")->id, made[0].id);
  EXPECT_EQ(repo->FindSnapshot("vm1:latest")->id, made[3].id);
  EXPECT_EQ(repo->FindSnapshot("vm2:latest")->id, made[0].id);
  EXPECT_THAT(repo->FindSnapshot("vm3:latest"),
              StatusIs(Code::kNotFound, HasSubstr("no snapshot named 'vm3'")));
  repo.reset();
  auto reader = Open(false);
  ASSERT_NE(reader, nullptr);
  EXPECT_THAT(CatalogIds(*reader), SizeIs(5));
  for (size_t i = 0; i < specs.size(); ++i)
    EXPECT_EQ(reader->FindSnapshot(specs[i])->ToJson(), full[i]) << specs[i];
  reader.reset();
  auto writer = Open(true);
  ASSERT_THAT(Catalog::Clear(writer->index()), IsOk());
  writer.reset();
  reader = Open(false);
  EXPECT_THAT(CatalogIds(*reader), IsEmpty());
  for (size_t i = 0; i < specs.size(); ++i)
    EXPECT_EQ(reader->FindSnapshot(specs[i])->ToJson(), full[i]) << specs[i];
}

TEST_F(CatalogTest, PointOfAnotherInstanceIsSeen) {
  auto reader = Open(false);  // its index view is older than the commit
  ASSERT_NE(reader, nullptr);
  auto writer = Open(true);
  ASSERT_NE(writer, nullptr);
  Manifest a = Commit(*writer, "vm1", "2026-01-01T00:00:00Z");
  std::vector<std::string> errors;
  auto all = reader->ListSnapshots(&errors);
  ASSERT_THAT(all, IsOk());
  EXPECT_THAT(Ids(*all), ElementsAre(a.id));
  EXPECT_EQ(reader->FindSnapshot("vm1:latest")->id, a.id);
  // A point the writer's catalog never saw (another writer, or a version
  // without a catalog, wrote only the file): this writer lists it and adds it.
  auto other = Open(false);
  Manifest b = Commit(*other, "vm1", "2026-01-02T00:00:00Z");  // read-only: file only
  EXPECT_EQ(CatalogIds(*writer), std::set<std::string>{a.id});
  EXPECT_EQ(writer->FindSnapshot("vm1:latest")->id, b.id);
  EXPECT_EQ(reader->FindSnapshot("vm1:latest")->id, b.id);
  EXPECT_EQ(CatalogIds(*writer), (std::set<std::string>{a.id, b.id}));
}

TEST_F(CatalogTest, DeletedPointDisappears) {
  auto repo = Open(true);
  ASSERT_NE(repo, nullptr);
  Manifest a = Commit(*repo, "vm1", "2026-01-01T00:00:00Z");
  Manifest b = Commit(*repo, "vm1", "2026-01-02T00:00:00Z");
  ASSERT_THAT(repo->DeleteSnapshot(b.id), IsOk());
  EXPECT_EQ(CatalogIds(*repo), std::set<std::string>{a.id});
  EXPECT_THAT(Ids(*repo->ListSnapshots(nullptr)), ElementsAre(a.id));
  EXPECT_EQ(repo->FindSnapshot("vm1:latest")->id, a.id);
  EXPECT_THAT(repo->FindSnapshot(b.id), StatusIs(Code::kNotFound, HasSubstr(b.id)));
  // Removed behind the catalog's back (another process's forget): its entry
  // is ignored, and the next writer's listing drops it.
  repo.reset();
  ASSERT_TRUE(std::filesystem::remove(dir_ + "/snapshots/" + a.id));
  auto reader = Open(false);
  EXPECT_EQ(CatalogIds(*reader), std::set<std::string>{a.id});
  EXPECT_THAT(*reader->ListSnapshots(nullptr), IsEmpty());
  EXPECT_THAT(reader->FindSnapshot("latest"), StatusIs(Code::kNotFound, HasSubstr("no snapshots")));
  reader.reset();
  repo = Open(true);
  EXPECT_THAT(*repo->ListSnapshots(nullptr), IsEmpty());
  EXPECT_THAT(CatalogIds(*repo), IsEmpty());
}

TEST_F(CatalogTest, EmptyCatalogOfAnOlderIndexIsRebuilt) {
  auto repo = Open(true);
  ASSERT_NE(repo, nullptr);
  std::set<std::string> ids;
  for (int i = 0; i < 3; ++i)
    ids.insert(Commit(*repo, "vm" + std::to_string(i), "2026-01-0" + std::to_string(i + 1) + "T00:00:00Z").id);
  ASSERT_THAT(Catalog::Clear(repo->index()), IsOk());  // as an index made before the catalog
  EXPECT_THAT(CatalogIds(*repo), IsEmpty());
  auto latest = repo->FindSnapshot("vm1:latest");  // a backup choosing its parent
  ASSERT_THAT(latest, IsOk());
  EXPECT_EQ(CatalogIds(*repo), ids);
  ASSERT_THAT(Catalog::Clear(repo->index()), IsOk());
  EXPECT_THAT(*repo->ListSnapshots(nullptr), SizeIs(3));
  EXPECT_EQ(CatalogIds(*repo), ids);
  // rebuild-index drops the catalog and fills it again from the files.
  repo.reset();
  auto rebuilt = Repository::RebuildIndex(dir_, kPass, WriteOptions());
  ASSERT_THAT(rebuilt, IsOk());
  auto reader = Open(false);
  EXPECT_EQ(CatalogIds(*reader), ids);
}

TEST_F(CatalogTest, TamperedEntryIsDataLossNeverReturned) {
  auto repo = Open(true);
  ASSERT_NE(repo, nullptr);
  Manifest a = Commit(*repo, "vm1", "2026-01-01T00:00:00Z");
  Manifest b = Commit(*repo, "vm1", "2026-01-02T00:00:00Z");
  ASSERT_NO_FATAL_FAILURE(SettleCatalog(*repo));
  // A flipped bit in b's manifest copy.
  EditEntry(*repo, 't', b.id, [](std::string& v) { v[v.size() / 2] ^= 1; });
  std::vector<std::string> errors;
  auto all = repo->ListSnapshots(&errors);
  ASSERT_THAT(all, IsOk());
  EXPECT_THAT(Ids(*all), ElementsAre(a.id));
  EXPECT_THAT(errors, ElementsAre(AllOf(HasSubstr("snapshot " + b.id),
                                        HasSubstr("index catalog"),
                                        HasSubstr("rebuild-index"))));
  EXPECT_THAT(repo->FindSnapshot("vm1:latest"),
              StatusIs(Code::kDataLoss, HasSubstr("authentication failed")));
  EXPECT_THAT(repo->FindSnapshot(b.id),
              StatusIs(Code::kNotFound, HasSubstr("index catalog")));
  // a's manifest copy moved under b's key: authenticated for a, not for b.
  std::string a_entry;
  EditEntry(*repo, 't', a.id, [&](std::string& v) { a_entry = v; });
  EditEntry(*repo, 't', b.id, [&](std::string& v) { v = a_entry; });
  EXPECT_THAT(repo->FindSnapshot("vm1:latest"),
              StatusIs(Code::kDataLoss, HasSubstr("snapshot " + b.id)));
  // A tampered summary stops "latest" as an unreadable manifest does.
  EditEntry(*repo, 's', a.id, [](std::string& v) { v.back() ^= 0x80; });
  EXPECT_THAT(repo->FindSnapshot("latest"),
              StatusIs(Code::kDataLoss, AllOf(HasSubstr("cannot be resolved safely"),
                                              HasSubstr("snapshot " + a.id))));
  // The files are intact: check reads them and finds nothing; rebuild-index
  // restores the catalog.
  auto check = CheckRepository(*repo, {});
  ASSERT_THAT(check, IsOk());
  EXPECT_THAT(check->findings, IsEmpty());
  repo.reset();
  ASSERT_THAT(Repository::RebuildIndex(dir_, kPass, WriteOptions()), IsOk());
  auto reader = Open(false);
  EXPECT_EQ(reader->FindSnapshot("vm1:latest")->id, b.id);
  EXPECT_THAT(Ids(*reader->ListSnapshots(nullptr)), ElementsAre(a.id, b.id));
}

TEST_F(CatalogTest, FileDamagedInPlaceIsReportedNotHiddenByItsCopy) {
  auto repo = Open(true);
  ASSERT_NE(repo, nullptr);
  Manifest a = Commit(*repo, "vm1", "2026-01-01T00:00:00Z");
  Manifest b = Commit(*repo, "vm2", "2026-01-02T00:00:00Z");
  ASSERT_NO_FATAL_FAILURE(SettleCatalog(*repo));
  // Changed in place: a new mtime, so the catalog's copy is not used.
  FlipByte(dir_ + "/snapshots/" + a.id, 10);
  std::vector<std::string> errors;
  auto all = repo->ListSnapshots(&errors);
  ASSERT_THAT(all, IsOk());
  EXPECT_THAT(Ids(*all), ElementsAre(b.id));
  EXPECT_THAT(errors, ElementsAre(AllOf(HasSubstr("snapshot " + a.id),
                                        HasSubstr("authentication failed"))));
  EXPECT_THAT(repo->FindSnapshot("vm1:latest"),
              StatusIs(Code::kDataLoss, HasSubstr("snapshot " + a.id)));
  auto reader = Open(false);
  EXPECT_THAT(reader->FindSnapshot("latest"),
              StatusIs(Code::kDataLoss, HasSubstr("snapshot " + a.id)));
  // A flip within the same mtime tick as the commit (racy entry): the same.
  Manifest c = Commit(*repo, "vm3", "2026-01-03T00:00:00Z");
  FlipByte(dir_ + "/snapshots/" + c.id, 10);
  EXPECT_THAT(repo->FindSnapshot(c.id),
              StatusIs(Code::kNotFound, HasSubstr("authentication failed")));
  auto check = CheckRepository(*repo, {});
  ASSERT_THAT(check, IsOk());
  EXPECT_THAT(check->findings, ::testing::UnorderedElementsAre(
                                   HasSubstr("snapshot " + a.id), HasSubstr("snapshot " + c.id)));
}

TEST_F(CatalogTest, ReadOnlyOpenWithStaleCatalogListsEverything) {
  std::set<std::string> ids;
  {
    auto writer = Open(true);
    ASSERT_NE(writer, nullptr);
    for (int i = 0; i < 4; ++i)
      ids.insert(Commit(*writer, "vm1", "2026-01-0" + std::to_string(i + 1) + "T00:00:00Z").id);
    ASSERT_THAT(Catalog::Clear(writer->index()), IsOk());
    // Two of four back in the catalog: a writer's lookup by id adds the
    // point it read from its file.
    for (auto it = ids.begin(); it != std::next(ids.begin(), 2); ++it)
      ASSERT_THAT(writer->FindSnapshot(*it), IsOk());
  }
  auto reader = Open(false);
  ASSERT_NE(reader, nullptr);
  EXPECT_THAT(CatalogIds(*reader), SizeIs(2));
  std::vector<std::string> errors;
  auto all = reader->ListSnapshots(&errors);
  ASSERT_THAT(all, IsOk());
  EXPECT_THAT(errors, IsEmpty());
  auto got = Ids(*all);
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()), ids);
  EXPECT_EQ(reader->FindSnapshot("vm1:latest")->time, "2026-01-04T00:00:00Z");
  EXPECT_THAT(CatalogIds(*reader), SizeIs(2));  // a reader never writes
}

}  // namespace
}  // namespace haven::repository
