// Mooring data-path core: memory segments, transfers (local/shm/tcp/rdma) and the NVMe tier.
// Pure C++17 with no Node-API dependency, so it is tested on its own (native/test/core_tests.cc, also under
// ASan/UBSan). The N-API glue (native/src/addon.cc) is a thin layer over this header.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace mooring {

// Limits (named with units).
constexpr uint64_t kSliceBytes = 64 * 1024;              // transfers are cut into slices of this size
constexpr uint64_t kJobBytes = 1024 * 1024;              // one worker job carries up to this many bytes
constexpr uint32_t kMaxWireSliceBytes = 1024 * 1024;     // largest slice a TCP server accepts in one request
constexpr size_t kMaxQueuedJobs = 1 << 16;               // bound of the transfer job queue (else QUEUE_FULL)
constexpr size_t kMaxRequestsPerBatch = 1 << 16;
constexpr uint32_t kTcpPipelineSlices = 16;              // slices in flight per TCP connection
constexpr uint32_t kTcpHandshakeTimeoutMs = 5000;
constexpr uint32_t kServerIoTimeoutMs = 10000;           // a peer stalled mid-request longer than this is dropped
constexpr size_t kMaxServerConnections = 4096;           // open data connections per engine
constexpr uint64_t kDiskIoBytes = 1024 * 1024;           // one io_uring read/write
constexpr uint32_t kDiskQueueDepth = 32;
constexpr uint64_t kDiskAlignBytes = 4096;               // O_DIRECT alignment of offsets, lengths and memory
constexpr size_t kMaxShmAttachments = 1024;
constexpr uint64_t kMaxSegmentBytes = 1ull << 40;

enum class Err : int32_t {
  OK = 0,
  INVALID_ARGUMENT,
  SEGMENT_NOT_FOUND,
  SEGMENT_CLOSED,
  OUT_OF_RANGE,
  TRANSFER_FAILED,
  TIMEOUT,
  QUEUE_FULL,
  PROTOCOL_MISMATCH,
  UNAVAILABLE,
  STORAGE_FAILED,
  INTERNAL,
  kCount,
};
const char* errName(Err e);

struct Error : std::runtime_error {
  Err code;
  Error(Err c, const std::string& msg) : std::runtime_error(msg), code(c) {}
};

enum class SegmentKind { DRAM, DISK };

// A registered segment. Memory (DRAM) or a file (DISK) stays valid while any shared_ptr holds it: an in-flight
// transfer keeps its segment alive even if it is closed meanwhile, so a close never frees memory under a copy.
struct Segment {
  uint32_t id = 0;
  uint64_t token = 0;  // random; guards against stale descriptors (reused ids, restarted engines)
  std::string name;
  uint64_t size = 0;
  SegmentKind kind = SegmentKind::DRAM;
  int fd = -1;              // memfd (DRAM) or the O_DIRECT file (DISK)
  uint8_t* base = nullptr;  // DRAM mapping
  bool hugePages = false;
  bool direct = false;      // DISK: opened with O_DIRECT
  std::string path;         // DISK: file path
  std::atomic<bool> closed{false};
  void* rdmaMr = nullptr;   // ibv_mr* when registered for RDMA
  uint32_t rdmaRkey = 0;
  ~Segment();
};
using SegmentPtr = std::shared_ptr<Segment>;

enum class Op : uint8_t { Read = 0, Write = 1 };
enum class Proto : uint8_t { Auto = 0, Local, Shm, Tcp, Rdma };
const char* protoName(Proto p);

// Where the other end of a transfer lives (from a segment descriptor).
struct RemoteRef {
  uint32_t segId = 0;
  uint64_t token = 0;
  uint64_t size = 0;
  std::string endpoint;  // host:port of the owner's TCP data server
  std::string hostId;    // shm is possible only when equal to ours
  int32_t shmPid = 0;    // shm: /proc/<pid>/fd/<fd>
  int32_t shmFd = -1;
  uint64_t rdmaAddr = 0;
  uint32_t rdmaRkey = 0;
  bool hasShm = false;
  bool hasRdma = false;
};

struct TransferReq {
  Op op = Op::Read;  // read: remote → local; write: local → remote
  uint32_t localSeg = 0;
  uint64_t localOff = 0;
  RemoteRef remote;
  uint64_t remoteOff = 0;
  uint64_t length = 0;
};

enum class ReqStatus : uint8_t { Pending = 0, Completed, Failed, Timeout };
struct ReqResult {
  ReqStatus status = ReqStatus::Pending;
  Err code = Err::OK;
  std::string message;
  Proto proto = Proto::Auto;  // the path actually used
};
using BatchDone = std::function<void(std::vector<ReqResult>&&)>;

enum class DiskOp : uint8_t { Offload = 0, Promote = 1 };  // DRAM → DISK, DISK → DRAM
struct DiskReq {
  DiskOp op = DiskOp::Offload;
  uint32_t dramSeg = 0;
  uint64_t dramOff = 0;
  uint32_t diskSeg = 0;
  uint64_t diskOff = 0;
  uint64_t length = 0;
};

struct EngineOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: ephemeral
  bool server = true;
  uint32_t workerThreads = 4;  // network jobs (tcp, rdma): they may block on a slow peer
  uint32_t copyThreads = 2;    // memory copies (local, shm): never wait behind a stalled peer
  uint32_t serverThreads = 2;
  uint32_t connectionsPerPeer = 4;
  bool rdma = true;   // try RDMA when compiled and a device exists
  bool ioUring = true;
  std::function<void(const std::string&)> log;  // warnings (fallbacks); may be called from any thread
};

struct EngineInfo {
  std::string endpoint;
  std::string hostId;
  int32_t pid = 0;
  bool ioUringCompiled = false;
  bool ioUringActive = false;
  bool rdmaCompiled = false;
  bool rdmaActive = false;
  std::string rdmaReason;
  std::string diskBackend;
};

class Batch;
class TcpServer;
class TcpClientPool;
class DiskBackend;
class RdmaContext;
struct ShmMapping;

class Engine {
 public:
  explicit Engine(const EngineOptions& opts);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  EngineInfo info() const;

  SegmentPtr createSegment(const std::string& name, uint64_t size, bool hugePages);
  SegmentPtr createDiskSegment(const std::string& name, const std::string& path, uint64_t size, bool direct);
  void closeSegment(uint32_t id);
  SegmentPtr findSegment(uint32_t id) const;  // nullptr when unknown or closed
  size_t segmentCount() const;

  // Validates synchronously (throws Error on bad arguments), then runs asynchronously; `done` is called exactly
  // once on an engine thread. `force` chooses a path for every request (Auto: by descriptor and capability).
  void submitTransfer(std::vector<TransferReq> reqs, uint32_t timeoutMs, Proto force, BatchDone done);
  void submitDisk(std::vector<DiskReq> reqs, uint32_t timeoutMs, BatchDone done);

  // Stops threads and fails whatever is still queued. Idempotent.
  void shutdown();

  // Used by tests and the bench.
  size_t shmAttachmentCount() const;
  bool rdmaActive() const { return rdma_ != nullptr; }

  // Internal: the TCP server hands RDMA queue-pair requests here.
  RdmaContext* rdmaContext() const { return rdma_.get(); }

 private:
  friend class Batch;
  struct Job;
  void workerLoop(int pool);
  void runJob(Job& job);
  void runLocalOrShm(Job& job, uint8_t* remoteBase);
  std::shared_ptr<ShmMapping> attachShm(const RemoteRef& r, bool validate, Err* code, std::string* msg);
  Proto choose(const TransferReq& r, Proto force) const;
  void warn(const std::string& msg) const;

  EngineOptions opts_;
  std::string hostId_;
  mutable std::mutex segMu_;
  std::map<uint32_t, SegmentPtr> segments_;
  uint32_t nextSegId_ = 1;

  std::mutex qMu_;
  std::deque<std::unique_ptr<Job>> queue_[2];  // [0] copies, [1] network
  std::condition_variable qCvPool_[2];
  std::vector<std::thread> workers_;
  bool stopping_ = false;
  std::atomic<bool> shut_{false};

  mutable std::mutex shmMu_;
  std::map<std::string, std::shared_ptr<ShmMapping>> shm_;

  std::unique_ptr<TcpServer> server_;
  std::unique_ptr<TcpClientPool> clients_;
  std::unique_ptr<DiskBackend> disk_;
  std::unique_ptr<RdmaContext> rdma_;
  std::string rdmaReason_;
};

// Helpers shared by the core's translation units.
uint64_t randomU64();
std::string readHostId();
bool parseEndpoint(const std::string& ep, std::string* host, uint16_t* port);
uint64_t nowMs();

}  // namespace mooring
