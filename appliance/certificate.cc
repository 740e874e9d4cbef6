#include "appliance/certificate.h"

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <vector>

#include "appliance/openssl_handles.h"
#include "base/file.h"

namespace haven::appliance {
namespace {

constexpr size_t kMaxPemFileBytes = 1 << 20;

// Never prompts: an encrypted key file is refused instead of blocking a
// daemon on a terminal it does not have.
int NoPassphrase(char*, int, int, void*) { return -1; }

bool IsDnsName(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c == '.') {
      if (label == 0 || name[i - 1] == '-') return false;
      label = 0;
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-';
    if (!ok || (c == '-' && label == 0) || ++label > 63) return false;
  }
  return label > 0 && name.back() != '-';
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);  // NOLINT(runtime/int)
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

Status AddExtension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1)
    return OpenSslStatus(
        Code::kInternal,
        std::string("certificate extension ") + OBJ_nid2sn(nid));
  return OkStatus();
}

std::string Hex(const unsigned char* p, size_t n) {
  static const char kDigits[] = "0123456789ABCDEF";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i) out += ':';
    out += kDigits[p[i] >> 4];
    out += kDigits[p[i] & 15];
  }
  return out;
}

// Fills the derived fields (fingerprints, subject, expiry) from parsed handles.
Status Describe(X509* cert, EVP_PKEY* key, ServerCertificate& out) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(cert, EVP_sha256(), md, &md_len) != 1)
    return OpenSslStatus(Code::kInternal, "certificate SHA-256");
  out.fingerprint = "SHA256:" + Hex(md, md_len);

  unsigned char* spki = nullptr;
  int spki_len = i2d_PUBKEY(key, &spki);
  if (spki_len <= 0) return OpenSslStatus(Code::kInternal, "public key DER");
  unsigned char spki_md[32];
  bool hashed = EVP_Digest(spki, static_cast<size_t>(spki_len), spki_md,
                           nullptr, EVP_sha256(), nullptr) == 1;
  OPENSSL_free(spki);
  if (!hashed) return OpenSslStatus(Code::kInternal, "public key SHA-256");
  unsigned char b64[64];
  int b64_len = EVP_EncodeBlock(b64, spki_md, sizeof(spki_md));
  out.public_key_pin =
      "sha256//" + std::string(reinterpret_cast<char*>(b64), b64_len);

  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) return OpenSslStatus(Code::kInternal, "BIO_new");
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0,
                     XN_FLAG_ONELINE);
  out.subject = BioText(bio.get());
  BioPtr when(BIO_new(BIO_s_mem()));
  if (!when) return OpenSslStatus(Code::kInternal, "BIO_new");
  ASN1_TIME_print(when.get(), X509_get0_notAfter(cert));
  out.not_after = BioText(when.get());
  return OkStatus();
}

Result<std::string> PemOfKey(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0,
                                       nullptr, nullptr) != 1)
    return OpenSslStatus(Code::kInternal, "writing the private key as PEM");
  return BioText(bio.get());
}

Result<std::string> PemOfCert(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1)
    return OpenSslStatus(Code::kInternal, "writing the certificate as PEM");
  return BioText(bio.get());
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

Result<std::string> ReadPem(const std::string& path) {
  HAVEN_ASSIGN_OR_RETURN(Bytes data, ReadFile(path, kMaxPemFileBytes));
  return std::string(data.begin(), data.end());
}

}  // namespace

std::string LocalHostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0')
    return "localhost";
  return buf;
}

Result<ServerCertificate> GenerateSelfSigned(const std::string& host_name) {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return OpenSslStatus(Code::kInternal, "generating an EC P-256 key");

  X509Ptr cert(X509_new());
  if (!cert) return OpenSslStatus(Code::kInternal, "X509_new");
  // A random positive 127-bit serial: a regenerated certificate never
  // repeats an issuer+serial pair a client may have cached.
  BignumPtr serial(BN_new());
  if (!serial ||
      BN_rand(serial.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())))
    return OpenSslStatus(Code::kInternal, "certificate serial number");
  bool dns_ok = IsDnsName(host_name) && host_name != "localhost";
  std::string cn = dns_ok ? host_name : "localhost";
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 ||
      // 5 minutes back: a client whose clock runs a little behind accepts it.
      !X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300) ||
      !X509_time_adj_ex(X509_getm_notAfter(cert.get()), kCertificateValidDays,
                        0, nullptr) ||
      X509_NAME_add_entry_by_txt(
          name, "CN", MBSTRING_ASC,
          reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0) != 1 ||
      X509_set_issuer_name(cert.get(), name) != 1 ||
      X509_set_pubkey(cert.get(), key.get()) != 1)
    return OpenSslStatus(Code::kInternal, "filling in the certificate");

  std::string san = "DNS:localhost,IP:127.0.0.1,IP:::1";
  if (dns_ok) san = "DNS:" + host_name + "," + san;
  // A leaf, not a CA: browsers refuse a CA certificate used as a server's.
  HAVEN_RETURN_IF_ERROR(
      AddExtension(cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  HAVEN_RETURN_IF_ERROR(
      AddExtension(cert.get(), NID_key_usage, "critical,digitalSignature"));
  HAVEN_RETURN_IF_ERROR(
      AddExtension(cert.get(), NID_ext_key_usage, "serverAuth"));
  HAVEN_RETURN_IF_ERROR(AddExtension(cert.get(), NID_subject_alt_name, san));
  HAVEN_RETURN_IF_ERROR(
      AddExtension(cert.get(), NID_subject_key_identifier, "hash"));
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0)
    return OpenSslStatus(Code::kInternal, "signing the certificate");

  ServerCertificate out;
  HAVEN_ASSIGN_OR_RETURN(out.key_pem, PemOfKey(key.get()));
  HAVEN_ASSIGN_OR_RETURN(out.cert_pem, PemOfCert(cert.get()));
  HAVEN_RETURN_IF_ERROR(Describe(cert.get(), key.get(), out));
  return out;
}

Result<ServerCertificate> ParseCertificate(const std::string& key_pem,
                                           const std::string& cert_pem,
                                           const std::string& key_name,
                                           const std::string& cert_name) {
  BioPtr cert_bio(
      BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  X509Ptr cert(cert_bio ? PEM_read_bio_X509(cert_bio.get(), nullptr,
                                            NoPassphrase, nullptr)
                        : nullptr);
  if (!cert)
    return OpenSslStatus(Code::kInvalidArgument,
                         cert_name + ": not a PEM X.509 certificate");
  BioPtr key_bio(
      BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  PkeyPtr key(key_bio ? PEM_read_bio_PrivateKey(key_bio.get(), nullptr,
                                                NoPassphrase, nullptr)
                      : nullptr);
  if (!key)
    return OpenSslStatus(Code::kInvalidArgument,
                         key_name + ": not an unencrypted PEM private key");
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    OpenSslErrors();  // the reason is the sentence below
    return InvalidArgument(key_name +
                           " does not belong to the certificate in " +
                           cert_name + " (their public keys differ)");
  }
  ServerCertificate out;
  out.key_pem = key_pem;
  out.cert_pem = cert_pem;
  HAVEN_RETURN_IF_ERROR(Describe(cert.get(), key.get(), out));
  return out;
}

Result<ServerCertificate> LoadCertificate(const std::string& key_path,
                                          const std::string& cert_path) {
  HAVEN_ASSIGN_OR_RETURN(std::string key_pem, ReadPem(key_path));
  HAVEN_ASSIGN_OR_RETURN(std::string cert_pem, ReadPem(cert_path));
  return ParseCertificate(key_pem, cert_pem, key_path, cert_path);
}

Result<ServerCertificate> LoadOrCreateCertificate(
    const std::string& state_dir, const std::string& host_name) {
  if (state_dir.empty()) return InvalidArgument("state directory is empty");
  HAVEN_RETURN_IF_ERROR(MakeDirs(state_dir, 0700));
  std::string key_path = state_dir + "/" + kKeyFileName;
  std::string cert_path = state_dir + "/" + kCertFileName;
  bool have_cert = Exists(cert_path);
  if (have_cert && !Exists(key_path))
    return FailedPrecondition(
        cert_path + " exists but " + key_path +
        " does not: restore the key, or remove both files to make a new "
        "certificate (clients must then pin its new fingerprint)");
  if (have_cert) return LoadCertificate(key_path, cert_path);

  // No certificate: a key alone is what a first start killed before writing
  // cert.pem leaves; it was never served, so it is replaced.
  HAVEN_ASSIGN_OR_RETURN(ServerCertificate made, GenerateSelfSigned(host_name));
  HAVEN_RETURN_IF_ERROR(WriteFileAtomic(key_path, AsBytes(made.key_pem), 0600));
  HAVEN_RETURN_IF_ERROR(
      WriteFileAtomic(cert_path, AsBytes(made.cert_pem), 0600));
  made.created = true;
  return made;
}

}  // namespace haven::appliance
