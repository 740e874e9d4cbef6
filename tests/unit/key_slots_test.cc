// Tests for repository/key_slots.h: wrapping the master secret under
// passphrases, one file per slot.
#include "repository/key_slots.h"

#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::PathExists;
using ::haven::testing_util::ReadWholeFile;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteWholeFile;
using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

constexpr char kRepoId[] = "00112233445566778899aabbccddeeff";

ScryptParams Fast() {
  ScryptParams p;
  p.n = 1024;
  p.r = 8;
  p.p = 1;
  return p;
}

RepositorySecret MasterKey(uint8_t seed) {
  RepositorySecret k;
  for (size_t i = 0; i < k.master.size(); ++i)
    k.master[i] = static_cast<uint8_t>(seed + 5 * i);
  return k;
}

std::string ReadText(const std::string& path) {
  Bytes b = ReadWholeFile(path);
  return std::string(b.begin(), b.end());
}

void WriteText(const std::string& path, const std::string& text) {
  WriteWholeFile(path, AsBytes(text));
}

class KeySlotsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    keys_ = dir_.Sub("keys");
    ASSERT_EQ(::mkdir(keys_.c_str(), 0700), 0);
  }
  std::string SlotPath(const std::string& slot) { return keys_ + "/" + slot; }

  TempDir dir_;
  std::string keys_;
};

TEST_F(KeySlotsTest, UnlocksWithTheRightPassphrase) {
  KeySlots slots(keys_, kRepoId);
  const RepositorySecret master = MasterKey(1);
  auto slot = slots.Add(master, "correct horse", Fast());
  ASSERT_THAT(slot, IsOk());
  EXPECT_THAT(*slot, MatchesRegex("[0-9a-f]{16}"));
  ASSERT_TRUE(PathExists(SlotPath(*slot)));
  struct stat st;
  ASSERT_EQ(::stat(SlotPath(*slot).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "slot files hold key material";
  // The master secret is not stored in the clear.
  EXPECT_EQ(ReadText(SlotPath(*slot)).find(HexEncode(master.master)),
            std::string::npos);

  std::string opened_slot;
  auto key = slots.Unlock("correct horse", &opened_slot);
  ASSERT_THAT(key, IsOk());
  EXPECT_EQ(*key, master);
  EXPECT_EQ(opened_slot, *slot);
  // A fresh KeySlots object on the same directory (as a new process would).
  KeySlots again(keys_, kRepoId);
  auto key2 = again.Unlock("correct horse", nullptr);
  ASSERT_THAT(key2, IsOk());
  EXPECT_EQ(*key2, master);
}

TEST_F(KeySlotsTest, WrongPassphraseIsPermissionDenied) {
  KeySlots slots(keys_, kRepoId);
  ASSERT_THAT(slots.Add(MasterKey(1), "right", Fast()), IsOk());
  for (const char* wrong : {"wrong", "Right", "right ", "", "righ"}) {
    std::string slot = "untouched";
    EXPECT_THAT(slots.Unlock(wrong, &slot),
                StatusIs(Code::kPermissionDenied, HasSubstr("wrong passphrase")))
        << "'" << wrong << "'";
    EXPECT_EQ(slot, "untouched");
  }
}

TEST_F(KeySlotsTest, EmptyPassphraseCannotBeAdded) {
  KeySlots slots(keys_, kRepoId);
  EXPECT_THAT(slots.Add(MasterKey(1), "", Fast()),
              StatusIs(Code::kInvalidArgument, HasSubstr("empty")));
  EXPECT_TRUE(std::filesystem::is_empty(keys_));
}

TEST_F(KeySlotsTest, NoSlotsIsDataLoss) {
  KeySlots slots(keys_, kRepoId);
  EXPECT_THAT(slots.Unlock("pw", nullptr),
              StatusIs(Code::kDataLoss, HasSubstr("no key slots")));
}

TEST_F(KeySlotsTest, SecondSlotUnlocksTheSameMaster) {
  KeySlots slots(keys_, kRepoId);
  const RepositorySecret master = MasterKey(7);
  auto first = slots.Add(master, "alpha", Fast());
  auto second = slots.Add(master, "beta", Fast());
  ASSERT_THAT(first, IsOk());
  ASSERT_THAT(second, IsOk());
  EXPECT_NE(*first, *second);

  std::string opened;
  auto a = slots.Unlock("alpha", &opened);
  ASSERT_THAT(a, IsOk());
  EXPECT_EQ(*a, master);
  EXPECT_EQ(opened, *first);
  auto b = slots.Unlock("beta", &opened);
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(*b, master);
  EXPECT_EQ(opened, *second);
  EXPECT_THAT(slots.Unlock("gamma", &opened),
              StatusIs(Code::kPermissionDenied, HasSubstr("wrong passphrase")));

  auto list = slots.List();
  ASSERT_THAT(list, IsOk());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_LT((*list)[0].slot, (*list)[1].slot) << "List is sorted by slot id";
  for (const auto& info : *list) {
    EXPECT_EQ(info.kdf, "scrypt N=1024 r=8 p=1");
    EXPECT_THAT(info.created, MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T.*Z"));
  }
}

TEST_F(KeySlotsTest, SamePassphraseTwiceGivesDifferentSlots) {
  KeySlots slots(keys_, kRepoId);
  auto a = slots.Add(MasterKey(1), "same", Fast());
  auto b = slots.Add(MasterKey(1), "same", Fast());
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_NE(*a, *b);
  // Fresh salt and nonce: the files differ in their wrapped key.
  EXPECT_NE(ReadText(SlotPath(*a)), ReadText(SlotPath(*b)));
}

TEST_F(KeySlotsTest, RemoveRefusesTheLastSlot) {
  KeySlots slots(keys_, kRepoId);
  auto only = slots.Add(MasterKey(1), "pw", Fast());
  ASSERT_THAT(only, IsOk());
  EXPECT_THAT(slots.Remove(*only),
              StatusIs(Code::kFailedPrecondition, HasSubstr("last key slot")));
  EXPECT_TRUE(PathExists(SlotPath(*only)));
  EXPECT_THAT(slots.Unlock("pw", nullptr), IsOk());
}

TEST_F(KeySlotsTest, RemoveOneOfTwoSlots) {
  KeySlots slots(keys_, kRepoId);
  const RepositorySecret master = MasterKey(3);
  auto keep = slots.Add(master, "keep", Fast());
  auto drop = slots.Add(master, "drop", Fast());
  ASSERT_THAT(keep, IsOk());
  ASSERT_THAT(drop, IsOk());
  EXPECT_THAT(slots.Remove("0123456789abcdef"),
              StatusIs(Code::kNotFound, HasSubstr("0123456789abcdef")));
  ASSERT_THAT(slots.Remove(*drop), IsOk());
  EXPECT_FALSE(PathExists(SlotPath(*drop)));
  EXPECT_THAT(slots.Unlock("drop", nullptr),
              StatusIs(Code::kPermissionDenied, HasSubstr("wrong passphrase")));
  auto k = slots.Unlock("keep", nullptr);
  ASSERT_THAT(k, IsOk());
  EXPECT_EQ(*k, master);
  // Now it is the last one.
  EXPECT_THAT(slots.Remove(*keep), StatusIs(Code::kFailedPrecondition, HasSubstr("last")));
  auto list = slots.List();
  ASSERT_THAT(list, IsOk());
  EXPECT_THAT(*list, ElementsAre(Field(&KeySlotInfo::slot, *keep)));
}

TEST_F(KeySlotsTest, CorruptedSlotDoesNotBlockAGoodSlot) {
  KeySlots slots(keys_, kRepoId);
  const RepositorySecret master = MasterKey(9);
  auto good = slots.Add(master, "pw", Fast());
  ASSERT_THAT(good, IsOk());
  // Damaged slot files named so they sort (and are tried) before and after
  // the good one.
  const std::string before = "0000000000000000", after = "ffffffffffffffff";
  WriteText(SlotPath(before), "{ this is not json");
  WriteText(SlotPath(after), std::string(100, '\0'));

  std::string opened;
  auto k = slots.Unlock("pw", &opened);
  ASSERT_THAT(k, IsOk());
  EXPECT_EQ(*k, master);
  EXPECT_EQ(opened, *good);

  // With a wrong passphrase, the damage is reported alongside.
  EXPECT_THAT(slots.Unlock("nope", nullptr),
              StatusIs(Code::kPermissionDenied,
                       AllOf(HasSubstr("wrong passphrase"), HasSubstr("key slot " + before),
                             HasSubstr("key slot " + after), HasSubstr("not a JSON object"))));

  // List shows the damaged slots as such.
  auto list = slots.List();
  ASSERT_THAT(list, IsOk());
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].slot, before);
  EXPECT_THAT((*list)[0].kdf, HasSubstr("damaged"));
  EXPECT_EQ((*list)[2].slot, after);
  EXPECT_THAT((*list)[2].kdf, HasSubstr("damaged"));
}

TEST_F(KeySlotsTest, TamperedSlotFieldsAreSkipped) {
  KeySlots slots(keys_, kRepoId);
  const RepositorySecret master = MasterKey(11);
  auto victim = slots.Add(master, "pw", Fast());
  ASSERT_THAT(victim, IsOk());
  const std::string original = ReadText(SlotPath(*victim));

  const size_t wrapped_at = original.find("\"wrapped\": \"") + 12;
  ASSERT_NE(wrapped_at, std::string::npos + 12);
  std::string flipped_wrapped = original;
  flipped_wrapped[wrapped_at] = flipped_wrapped[wrapped_at] == '0' ? '1' : '0';
  std::string truncated = original.substr(0, original.size() / 2);
  std::string hostile_n = original;
  {
    size_t at = hostile_n.find("\"n\": 1024");
    ASSERT_NE(at, std::string::npos) << original;
    hostile_n.replace(at, 9, "\"n\": 1000");
  }
  std::string version2 = original;
  {
    size_t at = version2.find("\"version\": 1");
    ASSERT_NE(at, std::string::npos);
    version2.replace(at, 12, "\"version\": 2");
  }
  std::string other_kdf = original;
  {
    size_t at = other_kdf.find("\"scrypt\"");
    ASSERT_NE(at, std::string::npos);
    other_kdf.replace(at, 8, "\"argon2\"");
  }
  for (const auto& [what, text, reported] :
       std::vector<std::tuple<const char*, std::string, const char*>>{
           {"flipped wrapped key", flipped_wrapped, ""},
           {"truncated file", truncated, "not a JSON object"},
           {"n not a power of two", hostile_n, "out of range"},
           {"version 2", version2, "unknown version"},
           {"unknown kdf", other_kdf, "unknown KDF"}}) {
    SCOPED_TRACE(what);
    WriteText(SlotPath(*victim), text);
    auto r = slots.Unlock("pw", nullptr);
    EXPECT_THAT(r, StatusIs(Code::kPermissionDenied, HasSubstr("wrong passphrase")));
    if (*reported) {
      EXPECT_THAT(r.status().message(), HasSubstr(reported));
    }
  }
  WriteText(SlotPath(*victim), original);
  EXPECT_THAT(slots.Unlock("pw", nullptr), IsOk());
}

TEST_F(KeySlotsTest, SlotIsBoundToItsNameAndRepository) {
  KeySlots slots(keys_, kRepoId);
  auto slot = slots.Add(MasterKey(1), "pw", Fast());
  ASSERT_THAT(slot, IsOk());
  // Another repository id: the associated data differs.
  KeySlots foreign(keys_, "ffeeddccbbaa99887766554433221100");
  EXPECT_THAT(foreign.Unlock("pw", nullptr),
              StatusIs(Code::kPermissionDenied, HasSubstr("wrong passphrase")));
  // The same file under another slot name.
  const std::string renamed = "abcdefabcdefabcd";
  std::filesystem::rename(SlotPath(*slot), SlotPath(renamed));
  EXPECT_THAT(slots.Unlock("pw", nullptr),
              StatusIs(Code::kPermissionDenied,
                       AllOf(HasSubstr("wrong passphrase"), HasSubstr("names another slot"))));
}

TEST_F(KeySlotsTest, ForeignFilesInKeysDirAreIgnored) {
  KeySlots slots(keys_, kRepoId);
  auto slot = slots.Add(MasterKey(1), "pw", Fast());
  ASSERT_THAT(slot, IsOk());
  WriteText(keys_ + "/README", "not a slot");
  WriteText(keys_ + "/" + *slot + ".tmp-1-2", "partial write");
  WriteText(keys_ + "/0123456789ABCDEF", "upper case is not a slot name");
  auto list = slots.List();
  ASSERT_THAT(list, IsOk());
  EXPECT_THAT(*list, ElementsAre(Field(&KeySlotInfo::slot, *slot)));
  EXPECT_THAT(slots.Unlock("pw", nullptr), IsOk());
  EXPECT_THAT(slots.Unlock("bad", nullptr),
              StatusIs(Code::kPermissionDenied, Not(HasSubstr("README"))));
}

TEST_F(KeySlotsTest, MissingKeysDirectoryIsAnError) {
  KeySlots slots(dir_.Sub("no-such-dir"), kRepoId);
  EXPECT_THAT(slots.List(), StatusIs(Code::kIoError, HasSubstr("no-such-dir")));
  EXPECT_THAT(slots.Unlock("pw", nullptr), StatusIs(Code::kIoError, HasSubstr("no-such-dir")));
}

}  // namespace
}  // namespace haven::repository

namespace haven::repository {
namespace {

// A repository made to receive copies wraps its source's chunk-id keys with
// its own master secret; every slot gives them back.
TEST_F(KeySlotsTest, SharedIdKeysRoundTripThroughEverySlot) {
  KeySlots slots(keys_, kRepoId);
  RepositorySecret secret = MasterKey(21);
  secret.shared_ids = true;
  for (size_t i = 0; i < kKeySize; ++i) {
    secret.chunk_id_key[i] = static_cast<uint8_t>(100 + i);
    secret.tree_id_key[i] = static_cast<uint8_t>(200 + i);
  }
  ASSERT_THAT(slots.Add(secret, "one", Fast()), IsOk());
  ASSERT_THAT(slots.Add(secret, "two", Fast()), IsOk());
  for (const char* pw : {"one", "two"}) {
    auto got = slots.Unlock(pw, nullptr);
    ASSERT_THAT(got, IsOk());
    EXPECT_EQ(*got, secret);
    EXPECT_EQ(got->ChunkIdKey(), secret.chunk_id_key);
    EXPECT_EQ(got->TreeIdKey(), secret.tree_id_key);
  }
  // Without shared keys they are derived from the master secret, and
  // differ from the shared ones.
  RepositorySecret plain = MasterKey(21);
  EXPECT_NE(plain.ChunkIdKey(), secret.chunk_id_key);
  EXPECT_NE(plain.ChunkIdKey(), plain.TreeIdKey());
}

}  // namespace
}  // namespace haven::repository
