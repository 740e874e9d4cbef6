// An S3 client for the object-store backend (s3_backend.h): requests signed
// with AWS Signature V4 by libcurl (CURLOPT_AWS_SIGV4), path-style or
// virtual-host-style addressing, retries with exponential backoff and full
// jitter. libcurl errors and S3 error replies are converted to Status here
// and nowhere else.
//
// A location is written as
//
//   s3:http[s]://ENDPOINT[:PORT]/BUCKET[/PREFIX][?region=R&style=path|virtual]
//
// Credentials never appear in it: they come from AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), else from the shared
// credentials file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials,
// profile AWS_PROFILE or "default"). No message this file builds holds a
// secret or a signature.
#ifndef HAVEN_REPOSITORY_S3_S3_CLIENT_H_
#define HAVEN_REPOSITORY_S3_S3_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.h"
#include "base/status.h"

namespace haven::repository::s3 {

struct S3Location {
  std::string scheme;  // "http" or "https"
  std::string host;    // host[:port], as given
  std::string bucket;  // 3-63 of [a-z0-9.-]
  std::string prefix;  // "" or "a/b" (no leading or trailing '/')
  std::string region = "us-east-1";
  bool virtual_host = false;  // BUCKET.host instead of host/BUCKET
  // The canonical spelling (s3:...), for messages and the cache's name.
  std::string Spec() const;
};

// True if `spec` names an object store ("s3:" followed by a URL).
bool IsS3Spec(std::string_view spec);
// Parses a location; InvalidArgument naming what is wrong.
Result<S3Location> ParseS3Spec(std::string_view spec);

struct S3Credentials {
  std::string key_id, secret, session_token;
};
// From the environment or the shared credentials file (see above);
// FailedPrecondition naming where it looked when there are none.
Result<S3Credentials> S3CredentialsFromEnvironment();

struct S3ClientOptions {
  int max_attempts = 8;               // per request, the first included
  double backoff_base_seconds = 0.2;  // the n-th retry waits up to base*2^n
  double backoff_cap_seconds = 20;
  long connect_timeout_seconds = 10;
  // A transfer slower than 1 byte/s for this long is a timeout (retried).
  long stall_seconds = 30;
  std::string ca_file;  // extra CA bundle for https (HAVEN_S3_CA_FILE)
};

struct S3Request {
  std::string method = "GET";
  std::string key;  // the object's key in the bucket ("" for the bucket)
  // Query parameters; sent sorted by name (SigV4's canonical order).
  std::vector<std::pair<std::string, std::string>> query;
  std::vector<std::string> headers;  // "Name: value"
  ByteSpan body;
  // Ranged GET: bytes [first, first+length).
  std::optional<std::pair<uint64_t, uint64_t>> range;
  // The most body bytes accepted; a longer reply is DataLoss.
  size_t max_body = 64 << 20;
  // Responses with these statuses are answers, not errors (412 for a
  // conditional PUT, 404 for a probe).
  std::vector<long> accept;
};

struct S3Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // names in lower case
  Bytes body;
  std::string Header(const std::string& lower_name) const;
};

// Counters for benchmarks and progress (requests per GB).
struct S3Stats {
  std::atomic<uint64_t> requests{0}, retries{0}, bytes_sent{0},
      bytes_received{0};
};

class S3Client {
 public:
  S3Client(S3Location location, S3Credentials credentials,
           S3ClientOptions options);
  ~S3Client();
  S3Client(const S3Client&) = delete;
  S3Client& operator=(const S3Client&) = delete;

  const S3Location& location() const { return location_; }
  const S3Stats& stats() const { return stats_; }

  // Sends a request, retrying 5xx, 429, SlowDown and transport errors
  // (timeouts, dropped connections). A 2xx reply, or one whose status is in
  // `accept`, is returned; any other is an error named after the request:
  // 404 NotFound, 403 PermissionDenied, 409/412 FailedPrecondition or
  // AlreadyExists, else IoError/Unavailable, with S3's error code and
  // message. Thread-safe.
  Result<S3Response> Send(const S3Request& request) const;

 private:
  struct Handle;
  std::unique_ptr<Handle> TakeHandle() const;
  void ReturnHandle(std::unique_ptr<Handle> h) const;
  Result<S3Response> SendOnce(const S3Request& request, Handle& h,
                              bool* retry) const;
  std::string UrlFor(const S3Request& request) const;

  S3Location location_;
  S3Credentials credentials_;
  S3ClientOptions options_;
  std::string sigv4_param_, userpwd_;
  mutable std::mutex handles_mu_;
  mutable std::vector<std::unique_ptr<Handle>> handles_;
  mutable S3Stats stats_;
};

// Helpers for request bodies and replies.
std::string Base64(ByteSpan data);
std::string Md5Base64(ByteSpan data);
std::string Sha256Hex(ByteSpan data);
// The text of every <tag>...</tag> in `xml`, in order (no nesting of the
// same tag; entities &amp; &lt; &gt; &quot; &apos; decoded).
std::vector<std::string> XmlAll(std::string_view xml, std::string_view tag);
std::string XmlFirst(std::string_view xml, std::string_view tag);

}  // namespace haven::repository::s3

#endif  // HAVEN_REPOSITORY_S3_S3_CLIENT_H_
