// The appliance's TLS identity: a private key and X.509 certificate that
// havend serves, and the fingerprint clients pin.
//
// With no certificate configured, havend keeps a self-signed one in its state
// directory:
//   STATE/key.pem   EC P-256 private key, PKCS#8 PEM, mode 0600
//   STATE/cert.pem  X.509 v3, CN and subjectAltName = the host name,
//                   "localhost", 127.0.0.1 and ::1; valid 10 years; mode 0600
// key.pem is written before cert.pem (each atomically and durably), so a
// first start killed between the two leaves a key with no certificate; the
// next start makes both again. A cert.pem without key.pem is an error.
#ifndef HAVEN_APPLIANCE_CERTIFICATE_H_
#define HAVEN_APPLIANCE_CERTIFICATE_H_

#include <string>

#include "base/status.h"

namespace haven::appliance {

inline constexpr char kKeyFileName[] = "key.pem";
inline constexpr char kCertFileName[] = "cert.pem";
inline constexpr int kCertificateValidDays = 3650;

struct ServerCertificate {
  std::string key_pem;   // PEM text of the private key
  std::string cert_pem;  // PEM text of the certificate
  // "SHA256:AB:CD:..." (32 upper-case hex pairs): SHA-256 of the
  // certificate's DER, as `openssl x509 -noout -fingerprint -sha256` prints it
  // after "sha256 Fingerprint=". Clients pin this value.
  std::string fingerprint;
  // "sha256//BASE64": SHA-256 of the public key (SubjectPublicKeyInfo DER),
  // the form curl's --pinnedpubkey takes. Stays valid across a renewal that
  // keeps the key.
  std::string public_key_pin;
  std::string subject;    // one-line subject, e.g. "CN = host"
  std::string not_after;  // e.g. "Dec  5 02:40:00 2036 GMT"
  bool created = false;   // true when LoadOrCreateCertificate made it now
};

// Makes a fresh EC P-256 key and a self-signed certificate for `host_name`
// (also naming "localhost", 127.0.0.1 and ::1), in memory. A host name that is
// not a valid DNS name (letters, digits, '-', '.') is left out of the
// subjectAltName and the CN becomes "localhost".
Result<ServerCertificate> GenerateSelfSigned(const std::string& host_name);

// Parses `key_pem` and `cert_pem` and checks that the key belongs to the
// certificate. `key_name` and `cert_name` (usually the file paths) name the
// input in errors: garbage is InvalidArgument naming which one, a key of
// another certificate is InvalidArgument naming both.
Result<ServerCertificate> ParseCertificate(const std::string& key_pem,
                                           const std::string& cert_pem,
                                           const std::string& key_name,
                                           const std::string& cert_name);

// Reads and checks the key and certificate files (ParseCertificate).
Result<ServerCertificate> LoadCertificate(const std::string& key_path,
                                          const std::string& cert_path);

// STATE/key.pem + STATE/cert.pem: loads them when present, else generates a
// self-signed pair for `host_name` and stores it (created = true). Makes
// `state_dir` (0700) when missing. On error nothing valid is overwritten.
Result<ServerCertificate> LoadOrCreateCertificate(const std::string& state_dir,
                                                  const std::string& host_name);

// This machine's host name (gethostname), "localhost" when it has none.
std::string LocalHostName();

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_CERTIFICATE_H_
