#include "appliance/credentials.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>

#include "repository/crypto.h"

namespace haven::appliance {
namespace {

constexpr char kAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr size_t kSaltBytes = 16;

std::optional<std::string> FromBase64Url(std::string_view text) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    const char* at = std::char_traits<char>::find(kAlphabet, 64, c);
    if (at == nullptr) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(at - kAlphabet);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (bits >= 6) return std::nullopt;  // a dangling character
  return out;
}

bool ParamsInRange(const PasswordHashParams& p) {
  return p.log_n >= 10 && p.log_n <= 20 && p.r >= 1 && p.r <= 32 && p.p >= 1 &&
         p.p <= 16;
}

Result<std::string> Derive(std::string_view password, std::string_view salt,
                           const PasswordHashParams& p) {
  repository::ScryptParams sp;
  sp.n = uint64_t{1} << p.log_n;
  sp.r = p.r;
  sp.p = p.p;
  auto key = repository::Scrypt(password, AsBytes(salt), sp);
  if (!key.ok())
    return Internal("scrypt ln=" + std::to_string(p.log_n) + ": " +
                    key.status().message());
  return std::string(reinterpret_cast<const char*>(key->data()), key->size());
}

// "ln=16,r=8,p=2" -> params.
std::optional<PasswordHashParams> ParseParams(std::string_view text) {
  PasswordHashParams p;
  int seen = 0;
  while (!text.empty()) {
    size_t comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    text = comma == std::string_view::npos ? "" : text.substr(comma + 1);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    std::string_view name = item.substr(0, eq), value = item.substr(eq + 1);
    uint32_t v = 0;
    auto [end, ec] =
        std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || end != value.data() + value.size())
      return std::nullopt;
    if (name == "ln") {
      p.log_n = static_cast<int>(std::min<uint32_t>(v, 99));
      seen |= 1;
    } else if (name == "r") {
      p.r = v;
      seen |= 2;
    } else if (name == "p") {
      p.p = v;
      seen |= 4;
    } else {
      return std::nullopt;
    }
  }
  if (seen != 7 || !ParamsInRange(p)) return std::nullopt;
  return p;
}

size_t CodePoints(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

}  // namespace

std::string Base64Url(std::string_view data) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : data) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  return out;
}

std::string RandomBase64Url(size_t bytes) {
  std::string raw(bytes, '\0');
  repository::RandomBytes(reinterpret_cast<uint8_t*>(raw.data()), raw.size());
  std::string out = Base64Url(raw);
  OPENSSL_cleanse(raw.data(), raw.size());
  return out;
}

std::string NewApiToken() { return kTokenPrefix + RandomBase64Url(32); }

std::string NewRandomPassword() { return RandomBase64Url(18); }

std::string Sha256Hex(std::string_view text) {
  std::array<uint8_t, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  // SHA-256 of a few bytes in memory cannot fail short of a broken
  // OpenSSL; an empty result would then match no stored hash.
  if (EVP_Digest(text.data(), text.size(), md.data(), &len, EVP_sha256(),
                 nullptr) != 1)
    return "";
  return HexEncode(ByteSpan(md.data(), len));
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Result<std::string> HashPassword(std::string_view password,
                                 const PasswordHashParams& params) {
  if (CodePoints(password) < kMinPasswordChars)
    return InvalidArgument("the password is too short: it needs at least " +
                           std::to_string(kMinPasswordChars) + " characters");
  if (password.size() > kMaxPasswordBytes)
    return InvalidArgument("the password is longer than " +
                           std::to_string(kMaxPasswordBytes) + " bytes");
  if (!ParamsInRange(params))
    return InvalidArgument("scrypt parameters out of range");
  std::string salt(kSaltBytes, '\0');
  repository::RandomBytes(reinterpret_cast<uint8_t*>(salt.data()), salt.size());
  HAVEN_ASSIGN_OR_RETURN(std::string key, Derive(password, salt, params));
  std::string out = "$scrypt$ln=" + std::to_string(params.log_n) +
                    ",r=" + std::to_string(params.r) +
                    ",p=" + std::to_string(params.p) + "$" + Base64Url(salt) +
                    "$" + Base64Url(key);
  OPENSSL_cleanse(key.data(), key.size());
  return out;
}

Result<bool> VerifyPassword(std::string_view password,
                            std::string_view stored) {
  // "" $ "scrypt" $ params $ salt $ hash
  std::array<std::string_view, 5> part;
  size_t n = 0, start = 0;
  while (n < part.size()) {
    size_t end = stored.find('$', start);
    part[n++] = stored.substr(start, end - start);
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  auto bad = [] {
    return DataLoss("the stored password hash is not one havend wrote");
  };
  if (n != 5 || std::count(stored.begin(), stored.end(), '$') != 4 ||
      !part[0].empty() || part[1] != "scrypt")
    return bad();
  std::optional<PasswordHashParams> params = ParseParams(part[2]);
  std::optional<std::string> salt = FromBase64Url(part[3]);
  std::optional<std::string> want = FromBase64Url(part[4]);
  if (!params || !salt || !want || salt->size() < 8 || want->size() != 32)
    return bad();
  if (password.size() > kMaxPasswordBytes) return false;
  HAVEN_ASSIGN_OR_RETURN(std::string got, Derive(password, *salt, *params));
  bool same = ConstantTimeEquals(got, *want);
  OPENSSL_cleanse(got.data(), got.size());
  return same;
}

}  // namespace haven::appliance
