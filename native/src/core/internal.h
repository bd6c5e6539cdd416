// Internal pieces of the core shared between its translation units (not part of the glue's API).
#pragma once

#include <sys/types.h>

#include <cstring>
#include <set>

#include "engine.h"

namespace mooring {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the TCP wire format is little-endian host order");

// One batch (transfer or disk): per-request results, finished when its last job completes.
class Batch {
 public:
  Batch(size_t nreq, uint64_t deadlineMs, BatchDone done)
      : results_(nreq), deadlineMs_(deadlineMs), done_(std::move(done)) {}
  void addJobs(size_t n) { pending_.fetch_add(n, std::memory_order_relaxed); }
  // The first failure of a request wins; later ones are dropped.
  void fail(size_t req, ReqStatus st, Err code, const std::string& msg) {
    std::lock_guard<std::mutex> g(mu_);
    ReqResult& r = results_[req];
    if (r.status == ReqStatus::Pending) {
      r.status = st;
      r.code = code;
      r.message = msg;
    }
  }
  void setProto(size_t req, Proto p) {
    std::lock_guard<std::mutex> g(mu_);
    results_[req].proto = p;
  }
  bool failed(size_t req) {
    std::lock_guard<std::mutex> g(mu_);
    return results_[req].status != ReqStatus::Pending;
  }
  void jobDone() {
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) finish();
  }
  uint64_t deadlineMs() const { return deadlineMs_; }

 private:
  void finish() {
    std::vector<ReqResult> out;
    {
      std::lock_guard<std::mutex> g(mu_);
      for (auto& r : results_)
        if (r.status == ReqStatus::Pending) r.status = ReqStatus::Completed;
      out.swap(results_);
    }
    BatchDone d = std::move(done_);
    if (d) d(std::move(out));
  }
  std::mutex mu_;
  std::vector<ReqResult> results_;
  std::atomic<size_t> pending_{0};
  uint64_t deadlineMs_;
  BatchDone done_;
};

// ---- TCP wire format (little-endian structs) ----
constexpr uint32_t kWireMagic = 0x524f4f4d;  // "MOOR"
constexpr uint16_t kWireVersion = 1;
enum WireOp : uint8_t { kWireRead = 0, kWireWrite = 1, kWireRdmaConnect = 2 };

#pragma pack(push, 1)
struct WireHello {
  uint32_t magic;
  uint16_t version;
  uint16_t status;  // reply: 0 ok, else Err
  uint64_t reserved;
};
struct WireReq {
  uint32_t magic;
  uint8_t op;
  uint8_t pad[3];
  uint32_t segId;
  uint32_t length;
  uint64_t token;
  uint64_t offset;
  uint64_t reqId;
};
struct WireResp {
  uint32_t magic;
  int32_t status;  // Err
  uint64_t reqId;
  uint32_t length;  // payload bytes that follow (reads)
  uint32_t pad;
};
// RDMA queue-pair exchange, carried over the TCP data connection (op kWireRdmaConnect).
struct RdmaConnInfo {
  uint16_t lid;
  uint8_t gid[16];
  uint32_t qpn;
  uint32_t psn;
  uint8_t mtu;  // ibv_mtu
  uint8_t pad;
};
#pragma pack(pop)
static_assert(sizeof(RdmaConnInfo) == 28, "rdma conn info");
static_assert(sizeof(WireHello) == 16, "hello");
static_assert(sizeof(WireReq) == 40, "req");
static_assert(sizeof(WireResp) == 24, "resp");

// Socket helpers: full send/recv; return 0 ok, else errno (ETIMEDOUT for timeouts, EPIPE for peer closed).
int sendAll(int fd, const void* a, size_t alen, const void* b, size_t blen);
int recvAll(int fd, void* p, size_t len);
void setSocketTimeouts(int fd, uint64_t ms);
void setNoDelay(int fd);

class TcpServer {
 public:
  TcpServer(Engine& engine, const std::string& host, uint16_t port, uint32_t threads);
  ~TcpServer();
  uint16_t port() const { return port_; }
  void stop();

 private:
  struct Conn;
  void loop();
  bool serveOne(Conn* c);  // false: close the connection
  void closeConn(Conn* c);
  Engine& engine_;
  int listenFd_ = -1;
  int epollFd_ = -1;
  int stopFd_ = -1;
  uint16_t port_ = 0;
  std::vector<std::thread> threads_;
  std::mutex connMu_;
  std::map<int, Conn*> conns_;
  std::atomic<bool> stopped_{false};
};

class TcpClientPool {
 public:
  explicit TcpClientPool(uint32_t perPeer) : perPeer_(perPeer ? perPeer : 1) {}
  ~TcpClientPool();
  struct Conn {
    int fd = -1;
    std::string endpoint;
    bool reused = false;
  };
  // Waits for a free connection (or opens one, with a handshake) until deadlineMs.
  std::unique_ptr<Conn> acquire(const std::string& endpoint, uint64_t deadlineMs, Err* code, std::string* msg);
  void release(std::unique_ptr<Conn> c, bool healthy);
  void shutdown();

 private:
  struct Peer {
    std::vector<std::unique_ptr<Conn>> idle;
    uint32_t open = 0;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Peer> peers_;
  std::set<int> busy_;  // connections lent to workers (shut down on engine shutdown)
  uint32_t perPeer_;
  bool stopping_ = false;
};

// Runs the slices of one chunk over one TCP connection, pipelined. Returns OK or the error to report.
Err tcpRunChunk(TcpClientPool::Conn& c, Op op, uint8_t* local, const RemoteRef& r, uint64_t remoteOff, uint64_t len,
                uint64_t deadlineMs, std::string* msg, bool* gotResponse);

struct DiskIo {
  std::shared_ptr<Batch> batch;
  size_t req = 0;
  bool write = false;  // true: DRAM → DISK
  SegmentPtr disk;
  SegmentPtr dram;
  uint64_t diskOff = 0;
  uint64_t dramOff = 0;
  uint64_t len = 0;
};

class DiskBackend {
 public:
  virtual ~DiskBackend() = default;
  virtual void submit(std::vector<DiskIo>&& ios) = 0;
  virtual void stop() = 0;
  virtual const char* name() const = 0;
};
// io_uring when compiled and the kernel allows it; nullptr otherwise (with *why set).
std::unique_ptr<DiskBackend> makeUringBackend(std::string* why);
std::unique_ptr<DiskBackend> makeThreadPoolBackend(uint32_t threads);
void completeDiskIo(DiskIo& io, ssize_t res);

// RDMA (libibverbs). Without rdma-core headers the factory returns nullptr with a reason.
class RdmaContext {
 public:
  virtual ~RdmaContext() = default;
  virtual bool registerSegment(Segment& s, std::string* why) = 0;
  virtual void deregisterSegment(Segment& s) = 0;
  // Server side of the queue-pair exchange: creates a QP connected to the client's.
  virtual bool accept(const RdmaConnInfo& in, RdmaConnInfo* out, std::string* why) = 0;
  // One-sided READ/WRITE of [remoteOff, remoteOff+len) of the peer's registered segment, in 64 KiB slices.
  virtual Err transfer(TcpClientPool& pool, Op op, Segment& local, uint64_t localOff, const RemoteRef& r,
                       uint64_t remoteOff, uint64_t len, uint64_t deadlineMs, std::string* msg) = 0;
};
std::unique_ptr<RdmaContext> makeRdmaContext(std::string* why);
bool rdmaCompiled();

}  // namespace mooring
