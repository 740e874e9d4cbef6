// Tests for repository/crypto.h: sealed blobs, keyed ids, key derivation and
// scrypt.
#include "repository/crypto.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/test_util.h"

namespace haven::repository {
namespace {

using ::haven::testing_util::IsOk;
using ::haven::testing_util::RandomData;
using ::haven::testing_util::StatusIs;
using ::testing::HasSubstr;

Key TestKey(uint8_t seed) {
  Key k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(seed * 31 + i * 7);
  return k;
}

ChunkId ReferenceHmac(const Key& key, ByteSpan data) {
  ChunkId id;
  unsigned int len = 0;
  // HMAC() with a null data pointer and length 0 is valid; pass a dummy
  // pointer anyway so the empty input case is well defined everywhere.
  static const uint8_t kEmpty = 0;
  const uint8_t* p = data.empty() ? &kEmpty : data.data();
  EXPECT_NE(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), p,
                 data.size(), id.bytes.data(), &len),
            nullptr);
  EXPECT_EQ(len, 32u);
  return id;
}

TEST(SealTest, RoundTripsVariousSizes) {
  const Key key = TestKey(1);
  const std::string aad = "chunk:abc";
  for (size_t n : {0u, 1u, 15u, 16u, 17u, 1000u, 65536u}) {
    SCOPED_TRACE("size " + std::to_string(n));
    Bytes plain = RandomData(n, static_cast<uint32_t>(n) + 1);
    Bytes sealed, opened;
    ASSERT_THAT(Seal(key, AsBytes(aad), plain, sealed), IsOk());
    EXPECT_EQ(sealed.size(), n + kSealOverhead);
    ASSERT_THAT(Unseal(key, AsBytes(aad), sealed, opened, "blob"), IsOk());
    EXPECT_EQ(opened, plain);
  }
}

TEST(SealTest, RoundTripsWithEmptyAad) {
  const Key key = TestKey(2);
  Bytes plain = RandomData(100, 7), sealed, opened;
  ASSERT_THAT(Seal(key, {}, plain, sealed), IsOk());
  ASSERT_THAT(Unseal(key, {}, sealed, opened, "blob"), IsOk());
  EXPECT_EQ(opened, plain);
}

TEST(SealTest, CiphertextDoesNotContainPlaintext) {
  const Key key = TestKey(3);
  const std::string plain(256, 'A');
  Bytes sealed;
  ASSERT_THAT(Seal(key, {}, AsBytes(plain), sealed), IsOk());
  std::string body(sealed.begin() + kNonceSize, sealed.end() - kTagSize);
  EXPECT_EQ(body.find("AAAAAAAA"), std::string::npos);
}

TEST(SealTest, FlippingAnySingleByteFailsWithDataLoss) {
  const Key key = TestKey(4);
  const std::string aad = "haven-snapshot:0123";
  Bytes plain = RandomData(64, 11), sealed;
  ASSERT_THAT(Seal(key, AsBytes(aad), plain, sealed), IsOk());
  ASSERT_EQ(sealed.size(), 64 + kSealOverhead);
  // Every position: nonce [0, 12), ciphertext [12, 76), tag [76, 92).
  for (size_t i = 0; i < sealed.size(); ++i) {
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}}) {
      Bytes bad = sealed, out;
      bad[i] ^= mask;
      Status s = Unseal(key, AsBytes(aad), bad, out, "blob under test");
      ASSERT_THAT(s, StatusIs(Code::kDataLoss,
                              AllOf(HasSubstr("blob under test"),
                                    HasSubstr("authentication failed"))))
          << "byte " << i << " mask " << int{mask};
      // No unauthenticated plaintext is handed out.
      EXPECT_TRUE(out.empty()) << "byte " << i;
    }
  }
}

TEST(SealTest, WrongAadFailsWithDataLoss) {
  const Key key = TestKey(5);
  Bytes plain = RandomData(40, 3), sealed, out;
  ASSERT_THAT(Seal(key, AsBytes("pack-header:aaaa"), plain, sealed), IsOk());
  EXPECT_THAT(Unseal(key, AsBytes("pack-header:aaab"), sealed, out, "x"),
              StatusIs(Code::kDataLoss, HasSubstr("authentication failed")));
  EXPECT_THAT(Unseal(key, AsBytes("pack-header:aaa"), sealed, out, "x"),
              StatusIs(Code::kDataLoss, HasSubstr("authentication failed")));
  EXPECT_THAT(Unseal(key, {}, sealed, out, "x"),
              StatusIs(Code::kDataLoss, HasSubstr("authentication failed")));
  // And the other way round: sealed without AAD, opened with some.
  ASSERT_THAT(Seal(key, {}, plain, sealed), IsOk());
  EXPECT_THAT(Unseal(key, AsBytes("a"), sealed, out, "x"),
              StatusIs(Code::kDataLoss, HasSubstr("authentication failed")));
}

TEST(SealTest, WrongKeyFailsWithDataLoss) {
  Bytes plain = RandomData(40, 3), sealed, out;
  ASSERT_THAT(Seal(TestKey(6), AsBytes("a"), plain, sealed), IsOk());
  EXPECT_THAT(Unseal(TestKey(7), AsBytes("a"), sealed, out, "x"),
              StatusIs(Code::kDataLoss, HasSubstr("authentication failed")));
}

TEST(SealTest, TruncatedBlobFailsWithDataLoss) {
  const Key key = TestKey(8);
  Bytes plain = RandomData(32, 9), sealed;
  ASSERT_THAT(Seal(key, AsBytes("a"), plain, sealed), IsOk());
  // Shorter than nonce + tag: rejected before decryption.
  for (size_t n = 0; n < kSealOverhead; ++n) {
    Bytes out;
    EXPECT_THAT(Unseal(key, AsBytes("a"), ByteSpan(sealed.data(), n), out, "short blob"),
                StatusIs(Code::kDataLoss, AllOf(HasSubstr("short blob"),
                                                HasSubstr("truncated"))))
        << "length " << n;
  }
  // Long enough to parse but missing its end.
  for (size_t cut : {1u, 16u, 32u}) {
    Bytes out;
    EXPECT_THAT(Unseal(key, AsBytes("a"), ByteSpan(sealed.data(), sealed.size() - cut),
                       out, "cut blob"),
                StatusIs(Code::kDataLoss, HasSubstr("cut blob")))
        << "cut " << cut;
  }
  // An extra byte at the end is not accepted either.
  Bytes longer = sealed, out;
  longer.push_back(0);
  EXPECT_THAT(Unseal(key, AsBytes("a"), longer, out, "long blob"),
              StatusIs(Code::kDataLoss, HasSubstr("long blob")));
}

TEST(SealTest, TwoSealsOfTheSamePlaintextDiffer) {
  const Key key = TestKey(9);
  Bytes plain = RandomData(48, 1), a, b, out;
  ASSERT_THAT(Seal(key, AsBytes("x"), plain, a), IsOk());
  ASSERT_THAT(Seal(key, AsBytes("x"), plain, b), IsOk());
  ASSERT_EQ(a.size(), b.size());
  EXPECT_FALSE(std::equal(a.begin(), a.begin() + kNonceSize, b.begin()))
      << "nonce reused";
  EXPECT_FALSE(std::equal(a.begin() + kNonceSize, a.end(), b.begin() + kNonceSize))
      << "ciphertext identical";
  ASSERT_THAT(Unseal(key, AsBytes("x"), a, out, "a"), IsOk());
  EXPECT_EQ(out, plain);
  ASSERT_THAT(Unseal(key, AsBytes("x"), b, out, "b"), IsOk());
  EXPECT_EQ(out, plain);
}

TEST(SealTest, SealReplacesPreviousOutputContents) {
  const Key key = TestKey(10);
  Bytes out(1000, 0xee), opened;
  Bytes plain = RandomData(10, 2);
  ASSERT_THAT(Seal(key, {}, plain, out), IsOk());
  EXPECT_EQ(out.size(), plain.size() + kSealOverhead);
  opened.assign(500, 0xdd);
  ASSERT_THAT(Unseal(key, {}, out, opened, "x"), IsOk());
  EXPECT_EQ(opened, plain);
}

TEST(KeyedHasherTest, MatchesOpenSslHmacSha256) {
  for (uint8_t seed : {uint8_t{0}, uint8_t{1}, uint8_t{200}}) {
    Key key = TestKey(seed);
    KeyedHasher hasher(key);
    for (size_t n : {0u, 1u, 31u, 55u, 56u, 63u, 64u, 65u, 1000u, 65536u, 1u << 20}) {
      Bytes data = RandomData(n, static_cast<uint32_t>(n * 3 + seed));
      EXPECT_EQ(hasher.Hash(data), ReferenceHmac(key, data))
          << "key seed " << int{seed} << ", size " << n;
    }
  }
}

TEST(KeyedHasherTest, AllZeroKeyMatchesReference) {
  Key key{};
  KeyedHasher hasher(key);
  Bytes data = RandomData(777, 5);
  EXPECT_EQ(hasher.Hash(data), ReferenceHmac(key, data));
}

TEST(KeyedHasherTest, RepeatedCallsAreIndependent) {
  // The keyed state is copied per call: an earlier hash must not leak into
  // a later one.
  KeyedHasher hasher(TestKey(3));
  Bytes a = RandomData(100, 1), b = RandomData(100, 2);
  ChunkId ha = hasher.Hash(a);
  ChunkId hb = hasher.Hash(b);
  EXPECT_NE(ha, hb);
  EXPECT_EQ(hasher.Hash(a), ha);
  EXPECT_EQ(hasher.Hash(b), hb);
}

TEST(KeyedHasherTest, DifferentKeysGiveDifferentIds) {
  KeyedHasher h1(TestKey(1)), h2(TestKey(2));
  Bytes data = RandomData(4096, 1);
  EXPECT_NE(h1.Hash(data), h2.Hash(data));
}

TEST(KeyedHasherTest, IsThreadSafe) {
  const Key key = TestKey(42);
  KeyedHasher hasher(key);
  std::vector<Bytes> inputs;
  std::vector<ChunkId> expected;
  for (uint32_t i = 0; i < 64; ++i) {
    inputs.push_back(RandomData(1000 + i, i));
    expected.push_back(ReferenceHmac(key, inputs.back()));
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 50; ++round)
        for (size_t i = 0; i < inputs.size(); ++i)
          if (!(hasher.Hash(inputs[i]) == expected[i])) ++mismatches[t];
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << "thread " << t;
}

TEST(ChunkIdTest, ZeroIdIsHoleAndHexIs64Digits) {
  ChunkId zero;
  EXPECT_TRUE(zero.IsZero());
  EXPECT_EQ(zero.Hex(), std::string(64, '0'));
  ChunkId one;
  one.bytes[31] = 1;
  EXPECT_FALSE(one.IsZero());
  EXPECT_EQ(one.Hex(), std::string(62, '0') + "01");
}

TEST(DeriveKeyTest, IsHmacOfPurposeAndSeparatesPurposes) {
  const Key master = TestKey(77);
  Key a = DeriveKey(master, "haven/v1/data-encryption");
  Key b = DeriveKey(master, "haven/v1/chunk-id");
  EXPECT_NE(a, b);
  EXPECT_EQ(a, DeriveKey(master, "haven/v1/data-encryption"));
  ChunkId ref = ReferenceHmac(master, AsBytes("haven/v1/data-encryption"));
  EXPECT_TRUE(std::equal(a.begin(), a.end(), ref.bytes.begin()));
  EXPECT_NE(DeriveKey(TestKey(78), "haven/v1/data-encryption"), a);
}

TEST(ScryptTest, MatchesRfc7914Vector) {
  // RFC 7914 section 12: scrypt("password", "NaCl", N=1024, r=8, p=16).
  // Haven derives 32 bytes: the first half of the 64-byte vector.
  ScryptParams params;
  params.n = 1024;
  params.r = 8;
  params.p = 16;
  auto key = Scrypt("password", AsBytes("NaCl"), params);
  ASSERT_THAT(key, IsOk());
  EXPECT_EQ(HexEncode(*key),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162");
}

TEST(ScryptTest, DependsOnPassphraseAndSalt) {
  ScryptParams params;
  params.n = 1024;
  auto a = Scrypt("one", AsBytes("salt-salt-salt-1"), params);
  auto b = Scrypt("two", AsBytes("salt-salt-salt-1"), params);
  auto c = Scrypt("one", AsBytes("salt-salt-salt-2"), params);
  auto a2 = Scrypt("one", AsBytes("salt-salt-salt-1"), params);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  ASSERT_THAT(c, IsOk());
  ASSERT_THAT(a2, IsOk());
  EXPECT_NE(*a, *b);
  EXPECT_NE(*a, *c);
  EXPECT_EQ(*a, *a2);
}

TEST(ScryptTest, RejectsOutOfRangeParameters) {
  auto with = [](uint64_t n, uint32_t r, uint32_t p) {
    ScryptParams params;
    params.n = n;
    params.r = r;
    params.p = p;
    return Scrypt("pw", AsBytes("0123456789abcdef"), params);
  };
  const auto out_of_range = StatusIs(Code::kDataLoss, HasSubstr("out of range"));
  EXPECT_THAT(with(0, 8, 1), out_of_range);
  EXPECT_THAT(with(1, 8, 1), out_of_range);
  EXPECT_THAT(with(1000, 8, 1), out_of_range);       // not a power of two
  EXPECT_THAT(with(1ull << 23, 8, 1), out_of_range);  // too much memory
  EXPECT_THAT(with(1ull << 40, 8, 1), out_of_range);
  EXPECT_THAT(with(1024, 0, 1), out_of_range);
  EXPECT_THAT(with(1024, 33, 1), out_of_range);
  EXPECT_THAT(with(1024, 8, 0), out_of_range);
  EXPECT_THAT(with(1024, 8, 17), out_of_range);
  EXPECT_THAT(with(1024, 8, 1), IsOk());
}

}  // namespace
}  // namespace haven::repository
