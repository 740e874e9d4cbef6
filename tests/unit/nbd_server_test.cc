// The instant-recovery NBD server (restore/nbd_server.h) against libnbd, the
// client library QEMU's tools share their protocol with: negotiation,
// reads, read-only refusals, failed reads answered as EIO (never as other
// bytes), and a client that breaks the protocol.
#include "restore/nbd_server.h"

#include <libnbd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace haven::restore {
namespace {

// Bytes in memory; reads touching [bad_begin, bad_end) fail as DataLoss.
class MemoryDisk : public DiskBytes {
 public:
  MemoryDisk(std::string name, std::vector<uint8_t> data)
      : name_(std::move(name)), data_(std::move(data)) {}
  uint64_t size() const override { return data_.size(); }
  const std::string& name() const override { return name_; }
  Result<size_t> Read(uint64_t offset, uint8_t* buf, size_t len) override {
    if (offset >= data_.size()) return size_t{0};
    len = std::min<uint64_t>(len, data_.size() - offset);
    if (offset < bad_end && offset + len > bad_begin)
      return DataLoss("chunk at " + std::to_string(bad_begin) + " is missing");
    std::memcpy(buf, data_.data() + offset, len);
    return len;
  }
  uint64_t bad_begin = 0, bad_end = 0;

 private:
  std::string name_;
  std::vector<uint8_t> data_;
};

std::vector<uint8_t> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

class NbdServerTest : public ::testing::Test {
 protected:
  NbdServerTest()
      : vda_("vda", Random(3 << 20, 1)),
        vdb_("vdb", Random(1 << 20, 2)),
        server_({{"vda", &vda_}, {"vdb", &vdb_}},
                [this](const std::string& l) { log_.push_back(l); }) {}
  ~NbdServerTest() override {
    for (auto& t : threads_) t.join();
  }

  // A connected client fd; the server serves the other end on a thread.
  int Connect() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    threads_.emplace_back([this, fd = sv[0]] { server_.Serve(fd); });
    return sv[1];
  }

  nbd_handle* Client(const std::string& export_name) {
    nbd_handle* h = nbd_create();
    EXPECT_NE(h, nullptr);
    nbd_set_export_name(h, export_name.c_str());
    if (nbd_connect_socket(h, Connect()) != 0) {
      last_error_ = nbd_get_error() ? nbd_get_error() : "";
      nbd_close(h);
      return nullptr;
    }
    return h;
  }

  MemoryDisk vda_, vdb_;
  std::vector<std::string> log_;
  NbdServer server_;
  std::vector<std::thread> threads_;
  std::string last_error_;
};

TEST_F(NbdServerTest, ServesEachDiskReadOnlyWithItsSizeAndBytes) {
  nbd_handle* h = Client("vda");
  ASSERT_NE(h, nullptr) << last_error_;
  EXPECT_EQ(nbd_get_size(h), 3 << 20);
  EXPECT_EQ(nbd_is_read_only(h), 1);
  EXPECT_EQ(nbd_can_multi_conn(h), 1);
  std::vector<uint8_t> expect = Random(3 << 20, 1);
  for (auto [off, len] : std::vector<std::pair<uint64_t, size_t>>{
           {0, 512}, {4097, 70000}, {(3 << 20) - 100, 100}, {0, 3 << 20}}) {
    std::vector<uint8_t> buf(len);
    ASSERT_EQ(nbd_pread(h, buf.data(), len, off, 0), 0) << nbd_get_error();
    EXPECT_EQ(0, std::memcmp(buf.data(), expect.data() + off, len))
        << "at " << off;
  }
  nbd_shutdown(h, 0);
  nbd_close(h);

  nbd_handle* b = Client("vdb");
  ASSERT_NE(b, nullptr) << last_error_;
  EXPECT_EQ(nbd_get_size(b), 1 << 20);
  std::vector<uint8_t> buf(4096);
  ASSERT_EQ(nbd_pread(b, buf.data(), buf.size(), 8192, 0), 0);
  EXPECT_EQ(0, std::memcmp(buf.data(), Random(1 << 20, 2).data() + 8192, 4096));
  nbd_shutdown(b, 0);
  nbd_close(b);
  EXPECT_EQ(server_.stats().connections.load(), 2u);
}

TEST_F(NbdServerTest, UnknownExportIsRefused) {
  EXPECT_EQ(Client("sda"), nullptr);
  EXPECT_NE(last_error_.find("no export named 'sda'"), std::string::npos)
      << last_error_;
}

TEST_F(NbdServerTest, AFailedReadIsAnErrorNotOtherBytesAndTheConnectionLives) {
  vda_.bad_begin = 1 << 20;
  vda_.bad_end = (1 << 20) + 65536;
  nbd_handle* h = Client("vda");
  ASSERT_NE(h, nullptr) << last_error_;
  std::vector<uint8_t> buf(65536, 0xAA);
  EXPECT_EQ(nbd_pread(h, buf.data(), buf.size(), (1 << 20) + 4096, 0), -1);
  EXPECT_EQ(nbd_get_errno(), EIO);
  EXPECT_EQ(server_.stats().read_errors.load(), 1u);
  ASSERT_FALSE(log_.empty());
  EXPECT_NE(log_.back().find("chunk at 1048576 is missing"), std::string::npos)
      << log_.back();
  // The rest of the disk still reads.
  ASSERT_EQ(nbd_pread(h, buf.data(), 4096, 0, 0), 0);
  EXPECT_EQ(0, std::memcmp(buf.data(), Random(3 << 20, 1).data(), 4096));
  nbd_shutdown(h, 0);
  nbd_close(h);
}

// Writes the raw bytes, then reads until the server closes; returns what
// it sent.
std::string Raw(int fd, const std::string& bytes) {
  EXPECT_EQ(::write(fd, bytes.data(), bytes.size()),
            static_cast<ssize_t>(bytes.size()));
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) got.append(buf, n);
  ::close(fd);
  return got;
}

std::string Be(uint64_t v, int n) {
  std::string s;
  for (int i = n - 1; i >= 0; --i) s.push_back(static_cast<char>(v >> (8 * i)));
  return s;
}

TEST_F(NbdServerTest, ClientThatBreaksTheProtocolIsDisconnected) {
  // Not fixed newstyle: closed after the greeting.
  EXPECT_EQ(Raw(Connect(), Be(0, 4)).size(), 18u);
  // An option longer than 4 KiB: closed without reading it.
  EXPECT_EQ(Raw(Connect(), Be(3, 4) + Be(0x49484156454f5054ull, 8) + Be(7, 4) +
                               Be(1u << 30, 4))
                .size(),
            18u);
  // Export chosen with NBD_OPT_EXPORT_NAME, then a request with a bad magic.
  std::string s = Be(3, 4) + Be(0x49484156454f5054ull, 8) + Be(1, 4) +
                  Be(3, 4) + "vda" + Be(0xdeadbeef, 4) + std::string(24, '\0');
  std::string got = Raw(Connect(), s);
  EXPECT_EQ(got.size(), 18u + 10u);  // greeting, size and flags; no zeroes
  EXPECT_NE(log_.back().find("bad request magic"), std::string::npos);
}

TEST_F(NbdServerTest, WritesAreRefusedAndReadsPastTheEndAreErrors) {
  // libnbd refuses these itself on a read-only export; the server's own
  // answers are checked with raw requests.
  std::string go =
      Be(3, 4) + Be(0x49484156454f5054ull, 8) + Be(1, 4) + Be(3, 4) + "vda";
  auto request = [](uint16_t type, uint64_t handle, uint64_t off,
                    uint32_t len) {
    return Be(0x25609513, 4) + Be(0, 2) + Be(type, 2) + Be(handle, 8) +
           Be(off, 8) + Be(len, 4);
  };
  std::string s = go + request(1, 7, 0, 4) + "abcd" +  // write
                  request(0, 8, (3 << 20) - 2, 4) +    // read past end
                  request(0, 9, 0, (32u << 20) + 1) +  // read too large
                  request(2, 10, 0, 0);                // disconnect
  std::string got = Raw(Connect(), s);
  ASSERT_EQ(got.size(), 18u + 10u + 3 * 16u);
  auto reply = [&](int i) { return got.substr(28 + 16 * i, 16); };
  EXPECT_EQ(reply(0), Be(0x67446698, 4) + Be(1, 4) + Be(7, 8));   // EPERM
  EXPECT_EQ(reply(1), Be(0x67446698, 4) + Be(22, 4) + Be(8, 8));  // EINVAL
  EXPECT_EQ(reply(2), Be(0x67446698, 4) + Be(22, 4) + Be(9, 8));  // EINVAL
}

}  // namespace
}  // namespace haven::restore
