// The secrets havend keeps for its callers, and how each is stored:
//
//   password   scrypt, salted, in a PHC-style string (FormatPasswordHash);
//              slow on purpose: it is the one secret a person chose
//   API token  "haven_" + 43 base64url characters (256 random bits),
//              stored as SHA-256: the secret is random, so a fast hash
//              cannot be searched, and the prefix lets a leaked token be
//              found by grep (and by secret scanners)
//   session id 32 random bytes, base64url, stored as SHA-256
//
// The functions here hold no state and are thread-safe.
#ifndef HAVEN_APPLIANCE_CREDENTIALS_H_
#define HAVEN_APPLIANCE_CREDENTIALS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace haven::appliance {

inline constexpr char kTokenPrefix[] = "haven_";

// scrypt's cost. The default, N = 2^16, r = 8, p = 2, is one of OWASP's
// equivalent scrypt settings: 64 MiB of memory for each hash (the lanes run
// one after the other) and about 0.2-0.5 s on one core.
struct PasswordHashParams {
  int log_n = 16;  // N = 2^log_n; 10..20
  uint32_t r = 8;  // 1..32
  uint32_t p = 2;  // 1..16
};

// Passwords longer than this are refused before hashing (the hash's time
// does not depend on it much, but nobody types 1 KiB).
inline constexpr size_t kMaxPasswordBytes = 1024;
inline constexpr size_t kMinPasswordChars = 12;

// "$scrypt$ln=16,r=8,p=2$<salt>$<hash>": 16 bytes of random salt and a
// 32-byte key, both unpadded base64url. InvalidArgument for a password
// shorter than kMinPasswordChars or longer than kMaxPasswordBytes.
Result<std::string> HashPassword(std::string_view password,
                                 const PasswordHashParams& params = {});

// Whether `password` hashes to `stored` (compared in constant time). Not
// OK (DataLoss) when `stored` is not a hash HashPassword wrote or its
// parameters are out of range; never says why a password is wrong.
Result<bool> VerifyPassword(std::string_view password, std::string_view stored);

// `bytes` random bytes (RAND_bytes) as unpadded base64url.
std::string RandomBase64Url(size_t bytes);
// A new API token: kTokenPrefix + RandomBase64Url(32).
std::string NewApiToken();
// A password for a new account when nobody chose one (`havend init`):
// 24 base64url characters, 144 random bits.
std::string NewRandomPassword();
// Lower-case hex SHA-256 of `text`: how tokens and session ids are stored.
std::string Sha256Hex(std::string_view text);
// Unpadded base64url of `data`.
std::string Base64Url(std::string_view data);
// Equal length and bytes, in time independent of where they differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_CREDENTIALS_H_
