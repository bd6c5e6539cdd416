// Engine: segment registry, the transfer worker pool (local/shm copies, TCP client jobs) and disk batches.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>

#include "internal.h"

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif

namespace mooring {

const char* errName(Err e) {
  switch (e) {
    case Err::OK: return "OK";
    case Err::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case Err::SEGMENT_NOT_FOUND: return "SEGMENT_NOT_FOUND";
    case Err::SEGMENT_CLOSED: return "SEGMENT_CLOSED";
    case Err::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case Err::TRANSFER_FAILED: return "TRANSFER_FAILED";
    case Err::TIMEOUT: return "TIMEOUT";
    case Err::QUEUE_FULL: return "QUEUE_FULL";
    case Err::PROTOCOL_MISMATCH: return "PROTOCOL_MISMATCH";
    case Err::UNAVAILABLE: return "UNAVAILABLE";
    case Err::STORAGE_FAILED: return "STORAGE_FAILED";
    case Err::INTERNAL: return "INTERNAL";
    default: return "INTERNAL";
  }
}

const char* protoName(Proto p) {
  switch (p) {
    case Proto::Local: return "local";
    case Proto::Shm: return "shm";
    case Proto::Tcp: return "tcp";
    case Proto::Rdma: return "rdma";
    default: return "auto";
  }
}

uint64_t randomU64() {
  uint64_t v = 0;
  if (getrandom(&v, sizeof v, 0) != sizeof v) {
    v = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
        (static_cast<uint64_t>(getpid()) << 32);
  }
  return v ? v : 1;
}

uint64_t nowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

std::string readHostId() {
  // boot_id is unique per boot of a kernel: two processes with the same one can share memfds via /proc.
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string s;
  std::getline(f, s);
  if (s.empty()) {
    char h[256] = {0};
    gethostname(h, sizeof h - 1);
    s = h;
  }
  return s;
}

bool parseEndpoint(const std::string& ep, std::string* host, uint16_t* port) {
  auto pos = ep.rfind(':');
  if (pos == std::string::npos || pos == 0 || pos + 1 >= ep.size()) return false;
  std::string p = ep.substr(pos + 1);
  if (p.size() > 5) return false;
  unsigned long v = 0;
  for (char ch : p) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + static_cast<unsigned long>(ch - '0');
  }
  if (v == 0 || v > 65535) return false;
  *host = ep.substr(0, pos);
  *port = static_cast<uint16_t>(v);
  return true;
}

static std::string hex64(uint64_t v) {
  char b[17];
  snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
  return b;
}

Segment::~Segment() {
  if (base) munmap(base, size);
  if (fd >= 0) close(fd);
}

// A same-host peer's segment mapped into this process (one-sided shm access).
struct ShmMapping {
  uint8_t* base = nullptr;
  uint64_t size = 0;
  std::string procPath;
  std::string expectLink;
  ~ShmMapping() {
    if (base) munmap(base, size);
  }
};

struct Engine::Job {
  std::shared_ptr<Batch> batch;
  size_t req = 0;
  Proto proto = Proto::Tcp;
  Op op = Op::Read;
  SegmentPtr local;
  uint64_t localOff = 0;
  RemoteRef remote;  // copy: small, keeps jobs independent of the caller's vector
  uint64_t remoteOff = 0;
  uint64_t len = 0;
  bool first = false;  // the first chunk of its request
};

Engine::Engine(const EngineOptions& opts) : opts_(opts) {
  hostId_ = readHostId();
  uint32_t nw = opts_.workerThreads ? opts_.workerThreads : 1;
  try {
    if (opts_.server) server_ = std::make_unique<TcpServer>(*this, opts_.host, opts_.port, opts_.serverThreads);
  } catch (...) {
    throw;
  }
  clients_ = std::make_unique<TcpClientPool>(opts_.connectionsPerPeer);
  std::string why;
  if (opts_.ioUring) disk_ = makeUringBackend(&why);
  else why = "io_uring disabled by option";
  if (!disk_) {
    if (opts_.ioUring) warn("NVMe tier: io_uring unavailable (" + why + "); using a pread/pwrite thread pool");
    disk_ = makeThreadPoolBackend(4);
  }
  if (opts_.rdma) {
    rdma_ = makeRdmaContext(&rdmaReason_);
  } else {
    rdmaReason_ = "RDMA disabled by option";
  }
  if (!rdma_) warn("rdma: not active (" + rdmaReason_ + "); rdma descriptors fall back to tcp");
  for (uint32_t i = 0; i < nw; i++) workers_.emplace_back([this] { workerLoop(1); });
  for (uint32_t i = 0; i < (opts_.copyThreads ? opts_.copyThreads : 1); i++) workers_.emplace_back([this] { workerLoop(0); });
}

Engine::~Engine() { shutdown(); }

void Engine::warn(const std::string& msg) const {
  if (opts_.log) opts_.log(msg);
}

EngineInfo Engine::info() const {
  EngineInfo i;
  i.endpoint = server_ ? opts_.host + ":" + std::to_string(server_->port()) : "";
  i.hostId = hostId_;
  i.pid = getpid();
#ifdef MOORING_HAVE_LIBURING
  i.ioUringCompiled = true;
#endif
  i.diskBackend = disk_ ? disk_->name() : "none";
  i.ioUringActive = i.diskBackend == "io_uring";
  i.rdmaCompiled = rdmaCompiled();
  i.rdmaActive = rdma_ != nullptr;
  i.rdmaReason = rdmaReason_;
  return i;
}

SegmentPtr Engine::createSegment(const std::string& name, uint64_t size, bool hugePages) {
  if (size == 0 || size > kMaxSegmentBytes) throw Error(Err::INVALID_ARGUMENT, "segment size must be in 1..2^40 bytes");
  constexpr uint64_t kHugePageBytes = 2 * 1024 * 1024;
  if (hugePages && size % kHugePageBytes != 0)
    throw Error(Err::INVALID_ARGUMENT, "a huge-page segment's size must be a multiple of 2 MiB");
  auto s = std::make_shared<Segment>();
  s->token = randomU64();
  s->name = name;
  s->size = size;
  s->hugePages = hugePages;
  std::string mname = "mooring-" + hex64(s->token);
  s->fd = memfd_create(mname.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING | (hugePages ? MFD_HUGETLB : 0));
  if (s->fd < 0) {
    int e = errno;
    throw Error(hugePages ? Err::UNAVAILABLE : Err::INTERNAL,
                std::string("memfd_create failed: ") + strerror(e) +
                    (hugePages ? " (huge pages: reserve some with /proc/sys/vm/nr_hugepages)" : ""));
  }
  if (ftruncate(s->fd, static_cast<off_t>(size)) != 0) {
    int e = errno;
    throw Error(Err::INTERNAL, std::string("ftruncate of the memfd failed: ") + strerror(e));
  }
  // Sealed size: a same-host peer that maps this memfd can never see it shrink under a copy (SIGBUS).
  fcntl(s->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    throw Error(hugePages ? Err::UNAVAILABLE : Err::INTERNAL,
                std::string("mmap of the segment failed: ") + strerror(e) +
                    (hugePages ? " (not enough huge pages reserved?)" : ""));
  }
  s->base = static_cast<uint8_t*>(p);
  if (rdma_) {
    std::string why;
    if (!rdma_->registerSegment(*s, &why)) warn("rdma: memory registration failed (" + why + ")");
  }
  std::lock_guard<std::mutex> g(segMu_);
  s->id = nextSegId_++;
  segments_[s->id] = s;
  return s;
}

SegmentPtr Engine::createDiskSegment(const std::string& name, const std::string& path, uint64_t size, bool direct) {
  if (size == 0 || size > kMaxSegmentBytes || size % kDiskAlignBytes != 0)
    throw Error(Err::INVALID_ARGUMENT, "a disk segment's size must be a positive multiple of 4096 bytes");
  if (path.empty()) throw Error(Err::INVALID_ARGUMENT, "a disk segment needs a file path");
  auto s = std::make_shared<Segment>();
  s->token = randomU64();
  s->name = name;
  s->size = size;
  s->kind = SegmentKind::DISK;
  s->path = path;
  int flags = O_RDWR | O_CREAT | O_CLOEXEC;
  s->fd = open(path.c_str(), flags | (direct ? O_DIRECT : 0), 0600);
  if (s->fd < 0 && direct && errno == EINVAL) {
    // tmpfs and some other filesystems refuse O_DIRECT: keep working through the page cache, say so.
    warn("NVMe tier: " + path + " does not support O_DIRECT; using buffered I/O");
    s->fd = open(path.c_str(), flags, 0600);
    direct = false;
  }
  if (s->fd < 0) {
    int e = errno;
    throw Error(Err::STORAGE_FAILED, "cannot open " + path + ": " + strerror(e));
  }
  s->direct = direct;
  if (ftruncate(s->fd, static_cast<off_t>(size)) != 0) {
    int e = errno;
    throw Error(Err::STORAGE_FAILED, "cannot size " + path + ": " + strerror(e));
  }
  std::lock_guard<std::mutex> g(segMu_);
  s->id = nextSegId_++;
  segments_[s->id] = s;
  return s;
}

void Engine::closeSegment(uint32_t id) {
  SegmentPtr s;
  {
    std::lock_guard<std::mutex> g(segMu_);
    auto it = segments_.find(id);
    if (it == segments_.end()) throw Error(Err::SEGMENT_NOT_FOUND, "no open segment " + std::to_string(id));
    s = it->second;
    segments_.erase(it);
  }
  s->closed.store(true);
  if (rdma_ && s->rdmaMr) rdma_->deregisterSegment(*s);
  if (s->kind == SegmentKind::DRAM && s->fd >= 0) {
    // Closing the memfd now makes /proc/<pid>/fd/<fd> stop naming it: same-host peers can no longer attach.
    close(s->fd);
    s->fd = -1;
  }
  // The memory itself goes when the last in-flight job drops its reference (see Segment).
}

SegmentPtr Engine::findSegment(uint32_t id) const {
  std::lock_guard<std::mutex> g(segMu_);
  auto it = segments_.find(id);
  return it == segments_.end() ? nullptr : it->second;
}

size_t Engine::segmentCount() const {
  std::lock_guard<std::mutex> g(segMu_);
  return segments_.size();
}

size_t Engine::shmAttachmentCount() const {
  std::lock_guard<std::mutex> g(shmMu_);
  return shm_.size();
}

static bool rangeOk(uint64_t off, uint64_t len, uint64_t size) { return off <= size && len <= size - off; }

Proto Engine::choose(const TransferReq& r, Proto force) const {
  // The local path is for this engine's own segments (another engine in this process goes through shm).
  bool ownSegment = false;
  if (r.remote.hostId == hostId_ && r.remote.shmPid == getpid()) {
    SegmentPtr s = findSegment(r.remote.segId);
    ownSegment = s && s->token == r.remote.token;
  }
  bool rdmaOk = rdma_ != nullptr && r.remote.hasRdma;
  if (force == Proto::Tcp) return Proto::Tcp;
  // Forced RDMA without a usable RDMA path (no device, or no rkey in the descriptor) runs over TCP; the TS layer
  // logs why.
  if (force == Proto::Rdma) return rdmaOk ? Proto::Rdma : Proto::Tcp;
  if (force == Proto::Shm) return Proto::Shm;  // even within one process: maps /proc/self/fd/<fd>
  if (force == Proto::Local) return Proto::Local;
  if (ownSegment) return Proto::Local;
  if (r.remote.hasShm && r.remote.hostId == hostId_) return Proto::Shm;
  if (rdmaOk) return Proto::Rdma;
  return Proto::Tcp;
}

void Engine::submitTransfer(std::vector<TransferReq> reqs, uint32_t timeoutMs, Proto force, BatchDone done) {
  if (shut_.load()) throw Error(Err::UNAVAILABLE, "the engine is closed");
  if (reqs.size() > kMaxRequestsPerBatch) throw Error(Err::INVALID_ARGUMENT, "too many requests in one batch");
  if (timeoutMs == 0) throw Error(Err::INVALID_ARGUMENT, "timeoutMs must be positive");
  std::vector<SegmentPtr> locals(reqs.size());
  std::vector<Proto> protos(reqs.size());
  size_t njobs = 0;
  for (size_t i = 0; i < reqs.size(); i++) {
    const TransferReq& r = reqs[i];
    std::string at = "request " + std::to_string(i) + ": ";
    locals[i] = findSegment(r.localSeg);
    if (!locals[i]) throw Error(Err::SEGMENT_NOT_FOUND, at + "local segment " + std::to_string(r.localSeg) + " is not open");
    if (locals[i]->kind != SegmentKind::DRAM) throw Error(Err::INVALID_ARGUMENT, at + "the local segment must be a DRAM segment");
    if (!rangeOk(r.localOff, r.length, locals[i]->size))
      throw Error(Err::OUT_OF_RANGE, at + "local offset/length outside the segment");
    if (r.remote.size && !rangeOk(r.remoteOff, r.length, r.remote.size))
      throw Error(Err::OUT_OF_RANGE, at + "remote offset/length outside the segment");
    protos[i] = choose(r, force);
    if (protos[i] == Proto::Shm && !r.remote.hasShm)
      throw Error(Err::INVALID_ARGUMENT, at + "shm requested but the descriptor has no shm section");
    if (protos[i] == Proto::Shm && r.remote.hostId != hostId_)
      throw Error(Err::INVALID_ARGUMENT, at + "shm requested for a segment on another host");
    if (protos[i] == Proto::Rdma && !locals[i]->rdmaMr)
      throw Error(Err::INVALID_ARGUMENT, at + "the local segment is not registered for RDMA");
    if (protos[i] == Proto::Tcp || protos[i] == Proto::Rdma) {
      std::string h;
      uint16_t p;
      if (!parseEndpoint(r.remote.endpoint, &h, &p))
        throw Error(Err::INVALID_ARGUMENT, at + "bad remote endpoint '" + r.remote.endpoint + "' (want host:port)");
    }
    njobs += (r.length + kJobBytes - 1) / kJobBytes;
  }
  auto batch = std::make_shared<Batch>(reqs.size(), nowMs() + timeoutMs, std::move(done));
  // One extra job reference held while queueing, so the batch cannot finish before every job is queued.
  batch->addJobs(njobs + 1);
  {
    std::lock_guard<std::mutex> g(qMu_);
    if (queue_[0].size() + queue_[1].size() + njobs > kMaxQueuedJobs) {
      throw Error(Err::QUEUE_FULL, "the transfer queue is full (" + std::to_string(kMaxQueuedJobs) + " jobs)");
    }
    for (size_t i = 0; i < reqs.size(); i++) {
      TransferReq& r = reqs[i];
      batch->setProto(i, protos[i]);
      for (uint64_t off = 0; off < r.length; off += kJobBytes) {
        auto j = std::make_unique<Job>();
        j->batch = batch;
        j->req = i;
        j->proto = protos[i];
        j->op = r.op;
        j->local = locals[i];
        j->localOff = r.localOff + off;
        j->remote = r.remote;
        j->remoteOff = r.remoteOff + off;
        j->len = std::min<uint64_t>(kJobBytes, r.length - off);
        j->first = off == 0;
        int pool = (j->proto == Proto::Local || j->proto == Proto::Shm) ? 0 : 1;
        queue_[pool].push_back(std::move(j));
      }
    }
  }
  qCvPool_[0].notify_all();
  qCvPool_[1].notify_all();
  batch->jobDone();
}

void Engine::workerLoop(int pool) {
  for (;;) {
    std::unique_ptr<Job> j;
    {
      std::unique_lock<std::mutex> lk(qMu_);
      auto& q = queue_[pool];
      qCvPool_[pool].wait(lk, [this, &q] { return stopping_ || !q.empty(); });
      if (q.empty()) return;  // stopping and drained
      j = std::move(q.front());
      q.pop_front();
    }
    if (stopping_) {
      j->batch->fail(j->req, ReqStatus::Failed, Err::UNAVAILABLE, "the engine is shutting down");
    } else {
      try {
        runJob(*j);
      } catch (const std::exception& e) {
        j->batch->fail(j->req, ReqStatus::Failed, Err::INTERNAL, e.what());
      }
    }
    auto b = std::move(j->batch);
    j.reset();  // drop segment references before the batch may complete
    b->jobDone();
  }
}

std::shared_ptr<ShmMapping> Engine::attachShm(const RemoteRef& r, bool validate, Err* code, std::string* msg) {
  std::string key = r.hostId + "/" + std::to_string(r.shmPid) + "/" + std::to_string(r.shmFd) + "/" + hex64(r.token);
  std::string expect = "/memfd:mooring-" + hex64(r.token);
  std::shared_ptr<ShmMapping> m;
  {
    std::lock_guard<std::mutex> g(shmMu_);
    auto it = shm_.find(key);
    if (it != shm_.end()) m = it->second;
  }
  if (m && !validate) return m;
  if (m) {
    // The owner may have closed the segment (and the fd number may now name another file): check once per
    // request (a readlink costs about as much as copying a few tens of KiB).
    char link[512];
    ssize_t n = readlink(m->procPath.c_str(), link, sizeof link - 1);
    if (n > 0) {
      link[n] = 0;
      if (std::string(link).rfind(expect, 0) == 0) return m;
    }
    std::lock_guard<std::mutex> g(shmMu_);
    shm_.erase(key);
    *code = Err::SEGMENT_NOT_FOUND;
    *msg = "the remote segment is gone (closed by its owner or the owner exited)";
    return nullptr;
  }
  m = std::make_shared<ShmMapping>();
  m->procPath = "/proc/" + std::to_string(r.shmPid) + "/fd/" + std::to_string(r.shmFd);
  int fd = open(m->procPath.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    *code = Err::SEGMENT_NOT_FOUND;
    *msg = "cannot open " + m->procPath + ": " + strerror(e);
    return nullptr;
  }
  char link[512];
  ssize_t n = readlink(m->procPath.c_str(), link, sizeof link - 1);
  struct stat st;
  bool ok = n > 0 && fstat(fd, &st) == 0;
  if (ok) {
    link[n] = 0;
    int seals = fcntl(fd, F_GET_SEALS);
    ok = std::string(link).rfind(expect, 0) == 0 && static_cast<uint64_t>(st.st_size) == r.size && seals >= 0 &&
         (seals & F_SEAL_SHRINK);
  }
  if (!ok) {
    close(fd);
    *code = Err::SEGMENT_NOT_FOUND;
    *msg = m->procPath + " is not the segment the descriptor names";
    return nullptr;
  }
  void* p = mmap(nullptr, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);  // the mapping keeps the memory
  if (p == MAP_FAILED) {
    int e = errno;
    *code = Err::TRANSFER_FAILED;
    *msg = std::string("mmap of the peer segment failed: ") + strerror(e);
    return nullptr;
  }
  m->base = static_cast<uint8_t*>(p);
  m->size = r.size;
  m->expectLink = expect;
  std::lock_guard<std::mutex> g(shmMu_);
  if (shm_.size() >= kMaxShmAttachments) shm_.clear();  // bounded; in-flight users hold their own reference
  shm_[key] = m;
  return m;
}

void Engine::runLocalOrShm(Job& j, uint8_t* remoteBase) {
  uint8_t* local = j.local->base + j.localOff;
  uint8_t* remote = remoteBase + j.remoteOff;
  for (uint64_t off = 0; off < j.len; off += kSliceBytes) {
    uint64_t n = std::min<uint64_t>(kSliceBytes, j.len - off);
    if (j.op == Op::Write) memmove(remote + off, local + off, n);
    else memmove(local + off, remote + off, n);
  }
}

void Engine::runJob(Job& j) {
  if (j.batch->failed(j.req)) return;  // another chunk of this request already failed: do not waste work
  if (nowMs() >= j.batch->deadlineMs()) {
    j.batch->fail(j.req, ReqStatus::Timeout, Err::TIMEOUT, "the batch deadline passed before this slice ran");
    return;
  }
  if (j.proto == Proto::Local) {
    SegmentPtr r = findSegment(j.remote.segId);
    if (!r || r->token != j.remote.token || r->kind != SegmentKind::DRAM) {
      j.batch->fail(j.req, ReqStatus::Failed, Err::SEGMENT_NOT_FOUND, "the remote segment is not open");
      return;
    }
    if (!rangeOk(j.remoteOff, j.len, r->size)) {
      j.batch->fail(j.req, ReqStatus::Failed, Err::OUT_OF_RANGE, "remote offset/length outside the segment");
      return;
    }
    runLocalOrShm(j, r->base);
    return;
  }
  if (j.proto == Proto::Shm) {
    Err code = Err::OK;
    std::string msg;
    auto m = attachShm(j.remote, j.first, &code, &msg);
    if (!m) {
      j.batch->fail(j.req, ReqStatus::Failed, code, msg);
      return;
    }
    if (!rangeOk(j.remoteOff, j.len, m->size)) {
      j.batch->fail(j.req, ReqStatus::Failed, Err::OUT_OF_RANGE, "remote offset/length outside the segment");
      return;
    }
    runLocalOrShm(j, m->base);
    return;
  }
  if (j.proto == Proto::Rdma) {
    std::string msg;
    Err code = rdma_ ? rdma_->transfer(*clients_, j.op, *j.local, j.localOff, j.remote, j.remoteOff, j.len,
                                       j.batch->deadlineMs(), &msg)
                     : Err::UNAVAILABLE;
    if (code != Err::OK)
      j.batch->fail(j.req, code == Err::TIMEOUT ? ReqStatus::Timeout : ReqStatus::Failed, code,
                    msg.empty() ? "rdma is not active" : msg);
    return;
  }
  // TCP. A pooled connection may have been closed by a restarted peer: retry once on a fresh one if that
  // connection failed before any response arrived (reads and writes of a slice are idempotent).
  for (int attempt = 0; attempt < 2; attempt++) {
    Err code = Err::OK;
    std::string msg;
    auto c = clients_->acquire(j.remote.endpoint, j.batch->deadlineMs(), &code, &msg);
    if (!c) {
      j.batch->fail(j.req, code == Err::TIMEOUT ? ReqStatus::Timeout : ReqStatus::Failed, code, msg);
      return;
    }
    bool reused = c->reused;
    bool gotResponse = false;
    code = tcpRunChunk(*c, j.op, j.local->base + j.localOff, j.remote, j.remoteOff, j.len, j.batch->deadlineMs(),
                       &msg, &gotResponse);
    // After an error, responses may still be in flight on this connection: never reuse it.
    clients_->release(std::move(c), code == Err::OK);
    if (code == Err::OK) return;
    if (shut_.load()) {  // our own shutdown cut the connection: say so rather than blame the peer
      j.batch->fail(j.req, ReqStatus::Failed, Err::UNAVAILABLE, "the engine shut down mid-transfer");
      return;
    }
    if (reused && !gotResponse && code == Err::TRANSFER_FAILED && attempt == 0) continue;
    j.batch->fail(j.req, code == Err::TIMEOUT ? ReqStatus::Timeout : ReqStatus::Failed, code, msg);
    return;
  }
}

void Engine::submitDisk(std::vector<DiskReq> reqs, uint32_t timeoutMs, BatchDone done) {
  if (shut_.load()) throw Error(Err::UNAVAILABLE, "the engine is closed");
  if (reqs.size() > kMaxRequestsPerBatch) throw Error(Err::INVALID_ARGUMENT, "too many requests in one batch");
  if (timeoutMs == 0) throw Error(Err::INVALID_ARGUMENT, "timeoutMs must be positive");
  std::vector<DiskIo> ios;
  for (size_t i = 0; i < reqs.size(); i++) {
    const DiskReq& r = reqs[i];
    std::string at = "request " + std::to_string(i) + ": ";
    SegmentPtr dram = findSegment(r.dramSeg), disk = findSegment(r.diskSeg);
    if (!dram) throw Error(Err::SEGMENT_NOT_FOUND, at + "DRAM segment " + std::to_string(r.dramSeg) + " is not open");
    if (!disk) throw Error(Err::SEGMENT_NOT_FOUND, at + "disk segment " + std::to_string(r.diskSeg) + " is not open");
    if (dram->kind != SegmentKind::DRAM || disk->kind != SegmentKind::DISK)
      throw Error(Err::INVALID_ARGUMENT, at + "offload/promote move bytes between a DRAM and a DISK segment");
    if (!rangeOk(r.dramOff, r.length, dram->size)) throw Error(Err::OUT_OF_RANGE, at + "DRAM offset/length outside the segment");
    if (!rangeOk(r.diskOff, r.length, disk->size)) throw Error(Err::OUT_OF_RANGE, at + "disk offset/length outside the segment");
    if (disk->direct && (r.dramOff % kDiskAlignBytes || r.diskOff % kDiskAlignBytes || r.length % kDiskAlignBytes))
      throw Error(Err::INVALID_ARGUMENT, at + "O_DIRECT needs offsets and length aligned to 4096 bytes");
    for (uint64_t off = 0; off < r.length; off += kDiskIoBytes) {
      DiskIo io;
      io.req = i;
      io.write = r.op == DiskOp::Offload;
      io.disk = disk;
      io.dram = dram;
      io.diskOff = r.diskOff + off;
      io.dramOff = r.dramOff + off;
      io.len = std::min<uint64_t>(kDiskIoBytes, r.length - off);
      ios.push_back(std::move(io));
    }
  }
  auto batch = std::make_shared<Batch>(reqs.size(), nowMs() + timeoutMs, std::move(done));
  batch->addJobs(ios.size() + 1);
  for (auto& io : ios) io.batch = batch;
  if (!ios.empty()) disk_->submit(std::move(ios));
  batch->jobDone();
}

void completeDiskIo(DiskIo& io, ssize_t res) {
  if (res < 0) {
    io.batch->fail(io.req, ReqStatus::Failed, Err::STORAGE_FAILED,
                   std::string(io.write ? "write to " : "read from ") + io.disk->path + " failed: " + strerror(static_cast<int>(-res)));
  } else if (static_cast<uint64_t>(res) != io.len) {
    io.batch->fail(io.req, ReqStatus::Failed, Err::STORAGE_FAILED, "short I/O on " + io.disk->path);
  } else if (nowMs() > io.batch->deadlineMs()) {
    io.batch->fail(io.req, ReqStatus::Timeout, Err::TIMEOUT, "the disk I/O finished after the batch deadline");
  }
  auto b = std::move(io.batch);
  io.disk.reset();
  io.dram.reset();
  b->jobDone();
}

void Engine::shutdown() {
  if (shut_.exchange(true)) return;
  if (server_) server_->stop();
  {
    std::lock_guard<std::mutex> g(qMu_);
    stopping_ = true;
  }
  qCvPool_[0].notify_all();
  qCvPool_[1].notify_all();
  clients_->shutdown();  // wakes workers blocked on connection acquisition
  for (auto& t : workers_) t.join();
  workers_.clear();
  if (disk_) disk_->stop();
  {
    std::lock_guard<std::mutex> g(shmMu_);
    shm_.clear();
  }
  std::vector<SegmentPtr> segs;
  {
    std::lock_guard<std::mutex> g(segMu_);
    for (auto& kv : segments_) segs.push_back(kv.second);
    segments_.clear();
  }
  for (auto& s : segs) {
    s->closed.store(true);
    if (rdma_ && s->rdmaMr) rdma_->deregisterSegment(*s);
  }
  rdma_.reset();
}

}  // namespace mooring
