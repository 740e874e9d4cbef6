// Tests for the object-store pieces that need no store: location parsing,
// credentials, the reply parsers (s3/s3_client.h), lock objects over a
// backend (store_lock.h), pack retention (object_lock.h) and the config's
// object_lock field. The store itself is exercised against a real Ceph
// radosgw by tests/integration/s3*_test.sh.
#include <time.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "base/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "repository/config.h"
#include "repository/object_lock.h"
#include "repository/pack_file.h"
#include "repository/s3/s3_client.h"
#include "repository/store_lock.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::StatusIs;
using ::haven::testing_util::TempDir;
using ::haven::testing_util::WriteWholeFile;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(S3Location, ParsesEndpointBucketPrefixAndOptions) {
  ::unsetenv("AWS_REGION");
  ::unsetenv("AWS_DEFAULT_REGION");
  auto loc =
      s3::ParseS3Spec("s3:https://s3.example.net:8443/backups/site-a/haven/");
  ASSERT_THAT(loc.status(), IsOk());
  EXPECT_EQ(loc->scheme, "https");
  EXPECT_EQ(loc->host, "s3.example.net:8443");
  EXPECT_EQ(loc->bucket, "backups");
  EXPECT_EQ(loc->prefix, "site-a/haven");
  EXPECT_EQ(loc->region, "us-east-1");
  EXPECT_FALSE(loc->virtual_host);
  EXPECT_EQ(loc->Spec(), "s3:https://s3.example.net:8443/backups/site-a/haven");

  auto v = s3::ParseS3Spec(
      "s3:http://127.0.0.1:7480/b-1?region=eu-west-1&style=virtual");
  ASSERT_THAT(v.status(), IsOk());
  EXPECT_EQ(v->region, "eu-west-1");
  EXPECT_TRUE(v->virtual_host);
  EXPECT_EQ(v->prefix, "");
}

TEST(S3Location, RefusesWhatIsNotALocationNamingTheProblem) {
  EXPECT_THAT(s3::ParseS3Spec("s3:ftp://host/bucket").status(),
              StatusIs(Code::kInvalidArgument, HasSubstr("http or https")));
  EXPECT_THAT(s3::ParseS3Spec("s3:https://host").status(),
              StatusIs(Code::kInvalidArgument, HasSubstr("names no bucket")));
  EXPECT_THAT(
      s3::ParseS3Spec("s3:https://host/Bad_Bucket").status(),
      StatusIs(Code::kInvalidArgument, HasSubstr("not a valid bucket")));
  EXPECT_THAT(s3::ParseS3Spec("s3:https://host/bucket/../etc").status(),
              StatusIs(Code::kInvalidArgument, HasSubstr("prefix")));
  EXPECT_THAT(s3::ParseS3Spec("s3:https://key:secret@host/bucket").status(),
              StatusIs(Code::kInvalidArgument, HasSubstr("AWS_ACCESS_KEY_ID")));
  EXPECT_THAT(s3::ParseS3Spec("s3:https://host/bucket?acl=public").status(),
              StatusIs(Code::kInvalidArgument, HasSubstr("unknown")));
  EXPECT_FALSE(s3::IsS3Spec("/var/lib/haven/repository"));
}

TEST(S3Credentials, FromEnvironmentThenSharedFileProfile) {
  TempDir dir;
  std::string file = dir.path() + "/credentials";
  WriteWholeFile(
      file,
      AsBytes("[default]\naws_access_key_id = DEF\naws_secret_access_key = d\n"
              "[backup]\naws_access_key_id=BK\naws_secret_access_key=s3cr3t\n"
              "aws_session_token = tok\n"));
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", file.c_str(), 1);
  ::setenv("AWS_PROFILE", "backup", 1);
  auto c = s3::S3CredentialsFromEnvironment();
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_EQ(c->key_id, "BK");
  EXPECT_EQ(c->secret, "s3cr3t");
  EXPECT_EQ(c->session_token, "tok");
  ::setenv("AWS_ACCESS_KEY_ID", "ENV", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "e", 1);
  EXPECT_EQ(s3::S3CredentialsFromEnvironment()->key_id, "ENV");
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::setenv("AWS_PROFILE", "nosuch", 1);
  auto none = s3::S3CredentialsFromEnvironment();
  EXPECT_THAT(none.status(),
              StatusIs(Code::kFailedPrecondition, HasSubstr("[nosuch]")));
  // The message names where it looked, never a secret it found.
  EXPECT_THAT(none.status().message(), Not(HasSubstr("s3cr3t")));
  ::unsetenv("AWS_SHARED_CREDENTIALS_FILE");
  ::unsetenv("AWS_PROFILE");
}

TEST(S3Replies, XmlListingAndDates) {
  std::string xml =
      "<ListBucketResult><IsTruncated>true</IsTruncated>"
      "<Contents><Key>p/packs/ab/ab01</Key><Size>17</Size>"
      "<ETag>&quot;x&quot;</ETag></Contents>"
      "<Contents><Key>a&amp;b</Key><Size>3</Size></Contents>"
      "<NextContinuationToken>tok</NextContinuationToken></ListBucketResult>";
  auto contents = s3::XmlAll(xml, "Contents");
  ASSERT_EQ(contents.size(), 2u);
  EXPECT_EQ(s3::XmlFirst(contents[0], "Key"), "p/packs/ab/ab01");
  EXPECT_EQ(s3::XmlFirst(contents[0], "ETag"), "\"x\"");
  EXPECT_EQ(s3::XmlFirst(contents[1], "Key"), "a&b");
  EXPECT_EQ(s3::XmlFirst(xml, "NextContinuationToken"), "tok");
  EXPECT_EQ(s3::XmlFirst(xml, "Missing"), "");
  // Unterminated input yields nothing rather than reading past the end.
  EXPECT_TRUE(s3::XmlAll("<Key>abc", "Key").empty());

  // The dates the store writes (RGW: 9 fraction digits; AWS: 3) are read
  // by the project's one parser.
  EXPECT_EQ(*ParseIsoTime("2026-12-07T21:00:00.000000000Z"), 1796677200);
  EXPECT_EQ(*ParseIsoTime("2026-12-07T21:00:00.000Z"), 1796677200);
  EXPECT_FALSE(ParseIsoTime("yesterday").ok());
  EXPECT_EQ(s3::Md5Base64(AsBytes("")), "1B2M2Y8AsgTpgAmY7PhCfg==");
}

TEST(ConfigObjectLock, RoundTripsAndIsChecked) {
  Config c;
  c.id = "00112233445566778899aabbccddeeff";
  c.object_lock_seconds = 30 * 86400;
  c.object_lock_mode = "COMPLIANCE";
  auto back = Config::FromJson(c.ToJson());
  ASSERT_THAT(back.status(), IsOk());
  EXPECT_EQ(back->object_lock_seconds, 30 * 86400);
  EXPECT_EQ(back->object_lock_mode, "COMPLIANCE");
  Config plain;
  plain.id = c.id;
  EXPECT_THAT(plain.ToJson(), Not(HasSubstr("object_lock")));
  std::string bad = c.ToJson();
  bad.replace(bad.find("COMPLIANCE"), 10, "NONE");
  EXPECT_THAT(Config::FromJson(bad).status(),
              StatusIs(Code::kInvalidArgument, HasSubstr("governance")));
}

// Objects in memory: a store where locks/ is a folder like any other (the
// local directory backend keeps locks/ as its own cache and lists none).
class MemBackend : public Backend {
 public:
  std::string Describe() const override { return "memory"; }
  Result<std::vector<ObjectInfo>> List(
      const std::string& prefix) const override {
    std::lock_guard l(mu_);
    std::vector<ObjectInfo> out;
    for (const auto& [k, v] : objects_)
      if (k.rfind(prefix, 0) == 0)
        out.push_back(
            {k, v.size(), static_cast<int64_t>(::time(nullptr)) * 1000000000});
    return out;
  }
  Result<uint64_t> Stat(const std::string& name) const override {
    std::lock_guard l(mu_);
    auto it = objects_.find(name);
    if (it == objects_.end()) return NotFound(name);
    return uint64_t{it->second.size()};
  }
  Result<std::unique_ptr<ObjectReader>> OpenReader(
      const std::string& name) const override {
    return NotFound("no readers here: " + name);
  }
  Result<Bytes> Read(const std::string& name, size_t) const override {
    std::lock_guard l(mu_);
    auto it = objects_.find(name);
    if (it == objects_.end()) return NotFound(name);
    return it->second;
  }
  Status WriteAtomic(const std::string& name, ByteSpan data,
                     WriteMode mode) override {
    std::lock_guard l(mu_);
    if (mode == WriteMode::kCreate && objects_.count(name))
      return AlreadyExists(name);
    objects_[name] = Bytes(data.begin(), data.end());
    return OkStatus();
  }
  Result<std::unique_ptr<ObjectWriter>> NewObjectWriter(
      const std::string& name) override {
    return FailedPrecondition("no streams here: " + name);
  }
  Status Delete(const std::string& name) override {
    std::lock_guard l(mu_);
    return objects_.erase(name) ? OkStatus() : NotFound(name);
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, Bytes> objects_;
};

TEST(StoreLock, SharedLocksCoexistExclusiveWaitsAndStaleOnesAreIgnored) {
  MemBackend backend;
  StoreLockOptions o;
  o.expiry_seconds = 30;
  o.refresh_seconds = 10;
  auto a = StoreLock::Acquire(backend, StoreLock::Mode::kShared, o);
  ASSERT_THAT(a.status(), IsOk());
  auto b = StoreLock::Acquire(backend, StoreLock::Mode::kShared, o);
  ASSERT_THAT(b.status(), IsOk());
  EXPECT_THAT((*a)->Valid(), IsOk());

  StoreLockOptions quick = o;
  quick.wait_seconds = 1.5;
  std::string said;
  quick.on_wait = [&](const std::string& m) { said = m; };
  auto x = StoreLock::Acquire(backend, StoreLock::Mode::kExclusive, quick);
  EXPECT_THAT(x.status(), StatusIs(Code::kUnavailable,
                                   HasSubstr("is locked (shared lock")));
  EXPECT_THAT(said, HasSubstr("waiting for the shared lock"));
  // The loser took its own lock object away again.
  EXPECT_EQ(backend.List("locks/")->size(), 2u);

  a->reset();
  b->reset();
  auto y = StoreLock::Acquire(backend, StoreLock::Mode::kExclusive, quick);
  ASSERT_THAT(y.status(), IsOk());
  EXPECT_THAT(
      StoreLock::Acquire(backend, StoreLock::Mode::kShared, quick).status(),
      StatusIs(Code::kUnavailable, HasSubstr("exclusive lock")));
  y->reset();
  EXPECT_TRUE(backend.List("locks/")->empty());

  // An expired lock object of another host blocks nobody and is removed;
  // so is a damaged one older than a day.
  ASSERT_THAT(backend.WriteAtomic(
                  "locks/0123456789abcdef0123456789abcdef",
                  AsBytes(R"({"mode":"exclusive","host":"elsewhere","pid":1,)"
                          R"("created":1,"expires":2})"),
                  WriteMode::kCreate),
              IsOk());
  auto z = StoreLock::Acquire(backend, StoreLock::Mode::kExclusive, quick);
  ASSERT_THAT(z.status(), IsOk());
  z->reset();
  EXPECT_TRUE(backend.List("locks/")->empty());
}

// A backend whose objects carry retention dates, to watch what Ensure asks.
class RetainingBackend : public MemBackend {
 public:
  Result<int64_t> RetainedUntil(const std::string& name) const override {
    ++heads;
    auto it = until.find(name);
    return it == until.end() ? int64_t{0} : it->second;
  }
  Status ExtendRetention(const std::string& name, int64_t u) override {
    ++extends;
    until[name] = u;
    return OkStatus();
  }
  mutable int heads = 0;
  int extends = 0;
  std::map<std::string, int64_t> until;
};

TEST(PackRetention, ExtendsOnlyPacksShortOfThePointAndRemembersDates) {
  TempDir dir;
  RetainingBackend backend;
  std::string a = PackKey(std::string(64, 'a')),
              b = PackKey(std::string(64, 'b'));
  backend.until[a] = 1000;  // short of 1500
  backend.until[b] = 5000;  // already long enough
  PackRetention r(dir.path() + "/retention");
  auto rep = r.Ensure(backend, {a, b}, 1500, 2000);
  ASSERT_THAT(rep.status(), IsOk());
  EXPECT_EQ(rep->packs, 2u);
  EXPECT_EQ(rep->extended, 1u);
  EXPECT_EQ(backend.until[a], 2000);
  EXPECT_EQ(backend.until[b], 5000);
  // The next night's point needs no request for either: the cache (on
  // disk, read by a new instance) knows both dates.
  PackRetention again(dir.path() + "/retention");
  int heads = backend.heads;
  auto rep2 = again.Ensure(backend, {a, b}, 1900, 2400);
  ASSERT_THAT(rep2.status(), IsOk());
  EXPECT_EQ(rep2->asked, 0u);
  EXPECT_EQ(backend.heads, heads);
  // Past the cached date, the store is asked and the pack extended.
  auto rep3 = again.Ensure(backend, {a}, 2100, 2600);
  ASSERT_THAT(rep3.status(), IsOk());
  EXPECT_EQ(rep3->extended, 1u);
  EXPECT_EQ(backend.until[a], 2600);
}

}  // namespace
}  // namespace haven::repository
