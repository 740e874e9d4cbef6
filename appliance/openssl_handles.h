// RAII owners for the OpenSSL handles appliance/ uses, and the one place that
// turns OpenSSL's error queue into a Status.
#ifndef HAVEN_APPLIANCE_OPENSSL_HANDLES_H_
#define HAVEN_APPLIANCE_OPENSSL_HANDLES_H_

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"

namespace haven::appliance {

template <typename T, void (*Free)(T*)>
struct OpenSslFree {
  void operator()(T* p) const { Free(p); }
};
template <typename T, void (*Free)(T*)>
using OpenSslPtr = std::unique_ptr<T, OpenSslFree<T, Free>>;

using PkeyPtr = OpenSslPtr<EVP_PKEY, EVP_PKEY_free>;
using X509Ptr = OpenSslPtr<X509, X509_free>;
using BioPtr = OpenSslPtr<BIO, BIO_free_all>;
using BignumPtr = OpenSslPtr<BIGNUM, BN_free>;
using X509ExtensionPtr = OpenSslPtr<X509_EXTENSION, X509_EXTENSION_free>;
using SslCtxPtr = OpenSslPtr<SSL_CTX, SSL_CTX_free>;
using SslPtr = OpenSslPtr<SSL, SSL_free>;

// Drains OpenSSL's error queue (of this thread) into one line of text,
// "" when it is empty. Call it right after the failing OpenSSL call.
std::string OpenSslErrors();

// Status `code` for "what: <OpenSSL's errors>"; the queue is drained.
Status OpenSslStatus(Code code, std::string_view what);

}  // namespace haven::appliance

#endif  // HAVEN_APPLIANCE_OPENSSL_HANDLES_H_
