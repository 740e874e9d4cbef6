// havend's state database (appliance/state_db.h): values round-trip, a
// transaction that is not committed leaves nothing, committed rows survive
// reopening, the file is owner-only, and a file that is not a database is
// refused naming it.
#include "appliance/state_db.h"

#include <sys/stat.h>

#include <thread>
#include <vector>

#include "tests/unit/test_util.h"

namespace haven::appliance {
namespace {

using ::testing::HasSubstr;
using testing_util::StatusIs;
using testing_util::TempDir;

TEST(StateDb, ValuesRoundTripAndSurviveReopen) {
  TempDir dir;
  std::string path = dir.Sub("havend.db");
  {
    auto db = StateDb::Open(path);
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    ASSERT_TRUE(
        (*db)
            ->EnsureTable(
                "CREATE TABLE IF NOT EXISTS t(i INTEGER, r REAL, s TEXT, "
                "n TEXT)")
            .ok());
    std::string binary("a\0b\xff", 4);
    ASSERT_TRUE((*db)
                    ->Query("INSERT INTO t VALUES(?1, ?2, ?3, ?4)",
                            {int64_t{1} << 40, 2.5, binary, std::monostate{}})
                    .ok());
    EXPECT_EQ((*db)->Changes(), 1);
  }
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 077, 0u) << "the database holds hashes: owner only";
  auto db = StateDb::Open(path);
  ASSERT_TRUE(db.ok());
  auto row = (*db)->QueryOne("SELECT i, r, s, n FROM t");
  ASSERT_TRUE(row.ok());
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ((*row)->Int(0), int64_t{1} << 40);
  EXPECT_DOUBLE_EQ((*row)->Real(1), 2.5);
  EXPECT_EQ((*row)->Text(2), std::string("a\0b\xff", 4));
  EXPECT_TRUE((*row)->IsNull(3));
  auto none = (*db)->QueryOne("SELECT i FROM t WHERE i = 0");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST(StateDb, UncommittedTransactionLeavesNothing) {
  TempDir dir;
  auto db = StateDb::Open(dir.Sub("havend.db"));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE((*db)->Exec("CREATE TABLE t(i INTEGER)").ok());
  {
    StateDb::Transaction tx(**db);
    ASSERT_TRUE(tx.status().ok());
    ASSERT_TRUE((*db)->Query("INSERT INTO t VALUES(1)").ok());
  }  // no Commit
  {
    StateDb::Transaction tx(**db);
    ASSERT_TRUE((*db)->Query("INSERT INTO t VALUES(2)").ok());
    ASSERT_TRUE(tx.Commit().ok());
  }
  auto rows = (*db)->Query("SELECT i FROM t");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].Int(0), 2);
}

TEST(StateDb, ThreadsShareTheConnection) {
  TempDir dir;
  auto db = StateDb::Open(dir.Sub("havend.db"));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE((*db)->Exec("CREATE TABLE t(i INTEGER)").ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        StateDb::Transaction tx(**db);
        EXPECT_TRUE(
            (*db)
                ->Query("INSERT INTO t VALUES(?1)", {int64_t{t * 100 + i}})
                .ok());
        EXPECT_GT((*db)->LastInsertId(), 0);
        EXPECT_TRUE(tx.Commit().ok());
      }
    });
  for (auto& t : threads) t.join();
  auto n = (*db)->QueryOne("SELECT count(*) FROM t");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ((*n)->Int(0), 200);
}

TEST(StateDb, NotADatabaseIsRefusedNamingTheFile) {
  TempDir dir;
  std::string path = dir.Sub("havend.db");
  testing_util::WriteWholeFile(path, AsBytes(std::string(4096, 'x')));
  EXPECT_THAT(StateDb::Open(path).status(),
              StatusIs(Code::kIoError, HasSubstr(path)));
}

TEST(StateDb, SqlErrorsNameTheStatement) {
  TempDir dir;
  auto db = StateDb::Open(dir.Sub("havend.db"));
  ASSERT_TRUE(db.ok());
  EXPECT_THAT((*db)->Query("SELECT * FROM missing").status(),
              StatusIs(Code::kIoError, HasSubstr("missing")));
}

}  // namespace
}  // namespace haven::appliance
