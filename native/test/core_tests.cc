// Tests of the C++ core on its own (no Node): run by test/engine/core-sanitizers.test.ts under ASan/UBSan.
// Exit code 0 = all passed. Each check prints what failed.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <random>

#include "engine.h"
#include "internal.h"

using namespace mooring;

static int failures = 0;
#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) {                                                      \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                       \
    }                                                                   \
  } while (0)

static std::vector<ReqResult> runTransfer(Engine& e, std::vector<TransferReq> reqs, Proto force, uint32_t timeoutMs = 10000) {
  std::promise<std::vector<ReqResult>> p;
  auto f = p.get_future();
  e.submitTransfer(std::move(reqs), timeoutMs, force, [&p](std::vector<ReqResult>&& r) { p.set_value(std::move(r)); });
  return f.get();
}

static std::vector<ReqResult> runDisk(Engine& e, std::vector<DiskReq> reqs) {
  std::promise<std::vector<ReqResult>> p;
  auto f = p.get_future();
  e.submitDisk(std::move(reqs), 10000, [&p](std::vector<ReqResult>&& r) { p.set_value(std::move(r)); });
  return f.get();
}

static RemoteRef refOf(Engine& owner, const SegmentPtr& s) {
  RemoteRef r;
  auto i = owner.info();
  r.segId = s->id;
  r.token = s->token;
  r.size = s->size;
  r.endpoint = i.endpoint;
  r.hostId = i.hostId;
  r.hasShm = true;
  r.shmPid = i.pid;
  r.shmFd = s->fd;
  return r;
}

static void fillRandom(uint8_t* p, size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  for (size_t i = 0; i < n; i++) p[i] = static_cast<uint8_t>(g());
}

template <typename F>
static Err codeOf(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code;
  }
  return Err::OK;
}

int main() {
  EngineOptions o;
  o.workerThreads = 2;
  Engine a(o), b(o);
  const uint64_t size = 4 << 20;
  auto sa = a.createSegment("a", size, false);
  auto sb = b.createSegment("b", size, false);
  CHECK(sa->base != nullptr && sa->fd >= 0);

  // Argument errors are synchronous and coded.
  CHECK(codeOf([&] { a.createSegment("z", 0, false); }) == Err::INVALID_ARGUMENT);
  CHECK(codeOf([&] { a.createSegment("z", 3 << 20, true); }) == Err::INVALID_ARGUMENT);
  TransferReq bad;
  bad.localSeg = sa->id;
  bad.localOff = size - 10;
  bad.length = 11;
  bad.remote = refOf(b, sb);
  CHECK(codeOf([&] { runTransfer(a, {bad}, Proto::Tcp); }) == Err::OUT_OF_RANGE);
  bad.localSeg = 9999;
  CHECK(codeOf([&] { runTransfer(a, {bad}, Proto::Tcp); }) == Err::SEGMENT_NOT_FOUND);

  // Data integrity over every path, random offsets and lengths.
  std::mt19937 g(42);
  for (Proto p : {Proto::Local, Proto::Shm, Proto::Tcp}) {
    for (int round = 0; round < 20; round++) {
      uint64_t len = 1 + g() % (700 * 1024);
      uint64_t lo = g() % (size - len), ro = g() % (size - len);
      bool write = g() & 1;
      Engine& owner = p == Proto::Local ? a : b;
      SegmentPtr target = p == Proto::Local ? a.createSegment("t", size, false) : sb;
      uint8_t* src = write ? sa->base + lo : target->base + ro;
      uint8_t* dst = write ? target->base + ro : sa->base + lo;
      fillRandom(src, len, static_cast<uint32_t>(round));
      memset(dst, 0, len);
      TransferReq r;
      r.op = write ? Op::Write : Op::Read;
      r.localSeg = sa->id;
      r.localOff = lo;
      r.remote = refOf(owner, target);
      r.remoteOff = ro;
      r.length = len;
      auto res = runTransfer(a, {r}, p);
      CHECK(res.size() == 1 && res[0].status == ReqStatus::Completed);
      CHECK(memcmp(src, dst, len) == 0);
      if (p == Proto::Local) a.closeSegment(target->id);
    }
  }
  CHECK(a.shmAttachmentCount() == 1);

  // The server refuses out-of-range and unknown segments without dropping the engine.
  {
    TransferReq r;
    r.op = Op::Write;
    r.localSeg = sa->id;
    r.remote = refOf(b, sb);
    r.remote.size = 0;  // descriptor without size: only the server checks
    r.remoteOff = size - 100;
    r.length = 4096;
    auto res = runTransfer(a, {r}, Proto::Tcp);
    CHECK(res[0].status == ReqStatus::Failed && res[0].code == Err::OUT_OF_RANGE);
    r.remote.token ^= 1;
    r.remoteOff = 0;
    res = runTransfer(a, {r}, Proto::Tcp);
    CHECK(res[0].status == ReqStatus::Failed && res[0].code == Err::SEGMENT_NOT_FOUND);
  }

  // Garbage on the data port: the server drops that connection and keeps serving.
  {
    auto ep = b.info().endpoint;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<uint16_t>(atoi(ep.substr(ep.rfind(':') + 1).c_str())));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    char junk[4096];
    fillRandom(reinterpret_cast<uint8_t*>(junk), sizeof junk, 7);
    CHECK(send(fd, junk, sizeof junk, MSG_NOSIGNAL) > 0);
    // The server answers a bad hello with a refusal (at most one hello frame), then closes the connection.
    char buf[64];
    ssize_t total = 0, n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) total += n;
    CHECK(total <= 16);
    close(fd);
    // An RDMA queue-pair request to an engine without RDMA is refused with UNAVAILABLE; the connection lives on.
    if (!b.rdmaActive()) {
      fd = socket(AF_INET, SOCK_STREAM, 0);
      CHECK(connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
      WireHello h{kWireMagic, kWireVersion, 0, 0}, hr{};
      CHECK(sendAll(fd, &h, sizeof h, nullptr, 0) == 0 && recvAll(fd, &hr, sizeof hr) == 0 && hr.status == 0);
      WireReq q{};
      q.magic = kWireMagic;
      q.op = kWireRdmaConnect;
      q.length = sizeof(RdmaConnInfo);
      RdmaConnInfo info{};
      WireResp resp{};
      CHECK(sendAll(fd, &q, sizeof q, &info, sizeof info) == 0 && recvAll(fd, &resp, sizeof resp) == 0);
      CHECK(resp.status == static_cast<int32_t>(Err::UNAVAILABLE) && resp.length == 0);
      // A refused write (wrong token) has its payload drained: the stream stays in sync for the next request.
      std::vector<uint8_t> payload(100 * 1024, 0xab);
      q.op = kWireWrite;
      q.segId = sb->id;
      q.token = sb->token ^ 1;
      q.length = static_cast<uint32_t>(payload.size());
      CHECK(sendAll(fd, &q, sizeof q, payload.data(), payload.size()) == 0 && recvAll(fd, &resp, sizeof resp) == 0);
      CHECK(resp.status == static_cast<int32_t>(Err::SEGMENT_NOT_FOUND));
      q.op = kWireRead;
      q.token = sb->token;
      q.length = 8;
      CHECK(sendAll(fd, &q, sizeof q, nullptr, 0) == 0 && recvAll(fd, &resp, sizeof resp) == 0);
      CHECK(resp.status == 0 && resp.length == 8);
      close(fd);
    }
    TransferReq r;
    r.op = Op::Read;
    r.localSeg = sa->id;
    r.remote = refOf(b, sb);
    r.length = 1000;
    CHECK(runTransfer(a, {r}, Proto::Tcp)[0].status == ReqStatus::Completed);
  }

  // Closing a segment while transfers run: no use-after-free (ASan would say), later requests fail cleanly.
  {
    auto tmp = b.createSegment("tmp", size, false);
    std::vector<TransferReq> reqs;
    for (int i = 0; i < 8; i++) {
      TransferReq r;
      r.op = Op::Write;
      r.localSeg = sa->id;
      r.remote = refOf(b, tmp);
      r.length = size;
      reqs.push_back(r);
    }
    std::promise<std::vector<ReqResult>> p;
    auto f = p.get_future();
    a.submitTransfer(reqs, 10000, Proto::Tcp, [&p](std::vector<ReqResult>&& r) { p.set_value(std::move(r)); });
    b.closeSegment(tmp->id);
    tmp.reset();
    auto res = f.get();
    for (auto& r : res) CHECK(r.status == ReqStatus::Completed || r.code == Err::SEGMENT_NOT_FOUND);
  }

  // NVMe tier round trip.
  {
    char path[] = "/tmp/mooring-core-test-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    auto d = a.createDiskSegment("d", path, size, true);
    fillRandom(sa->base, size, 99);
    std::vector<uint8_t> copy(sa->base, sa->base + size);
    DiskReq w;
    w.op = DiskOp::Offload;
    w.dramSeg = sa->id;
    w.diskSeg = d->id;
    w.length = size;
    CHECK(runDisk(a, {w})[0].status == ReqStatus::Completed);
    memset(sa->base, 0, size);
    DiskReq rd = w;
    rd.op = DiskOp::Promote;
    CHECK(runDisk(a, {rd})[0].status == ReqStatus::Completed);
    CHECK(memcmp(copy.data(), sa->base, size) == 0);
    DiskReq un = w;
    un.diskOff = 100;
    un.length = 4096;
    CHECK(codeOf([&] { runDisk(a, {un}); }) == (d->direct ? Err::INVALID_ARGUMENT : Err::OK));
    a.closeSegment(d->id);
    unlink(path);
  }

  // The pread/pwrite thread pool (used without liburing or when io_uring is refused) moves the same bytes.
  {
    EngineOptions po = o;
    po.server = false;
    po.ioUring = false;
    Engine p(po);
    CHECK(p.info().diskBackend == "threadpool");
    auto m = p.createSegment("m", 1 << 20, false);
    char path[] = "/tmp/mooring-core-test-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    auto d = p.createDiskSegment("d", path, 1 << 20, true);
    fillRandom(m->base, 1 << 20, 5);
    std::vector<uint8_t> copy(m->base, m->base + (1 << 20));
    DiskReq w;
    w.dramSeg = m->id;
    w.diskSeg = d->id;
    w.length = 1 << 20;
    CHECK(runDisk(p, {w})[0].status == ReqStatus::Completed);
    memset(m->base, 0, 1 << 20);
    w.op = DiskOp::Promote;
    CHECK(runDisk(p, {w})[0].status == ReqStatus::Completed);
    CHECK(memcmp(copy.data(), m->base, 1 << 20) == 0);
    unlink(path);
  }

  // A peer that goes away: its engine shuts down mid-batch; the batch ends (failed), nothing hangs.
  {
    auto c = std::make_unique<Engine>(o);
    auto sc = c->createSegment("c", size, false);
    std::vector<TransferReq> reqs;
    for (int i = 0; i < 16; i++) {
      TransferReq r;
      r.op = Op::Read;
      r.localSeg = sa->id;
      r.remote = refOf(*c, sc);
      r.length = size;
      reqs.push_back(r);
    }
    std::promise<std::vector<ReqResult>> p;
    auto f = p.get_future();
    a.submitTransfer(reqs, 10000, Proto::Tcp, [&p](std::vector<ReqResult>&& r) { p.set_value(std::move(r)); });
    sc.reset();
    c.reset();
    auto res = f.get();
    CHECK(res.size() == 16);
    for (auto& r : res) CHECK(r.status != ReqStatus::Pending);
    CHECK(res.back().status == ReqStatus::Failed);
  }

  // Shutdown with work queued completes every batch.
  {
    std::vector<TransferReq> reqs;
    for (int i = 0; i < 64; i++) {
      TransferReq r;
      r.op = Op::Read;
      r.localSeg = sa->id;
      r.remote = refOf(b, sb);
      r.length = size;
      reqs.push_back(r);
    }
    std::promise<std::vector<ReqResult>> p;
    auto f = p.get_future();
    a.submitTransfer(reqs, 10000, Proto::Tcp, [&p](std::vector<ReqResult>&& r) { p.set_value(std::move(r)); });
    a.shutdown();
    auto res = f.get();
    CHECK(res.size() == 64);
    CHECK(codeOf([&] { runTransfer(a, {reqs[0]}, Proto::Tcp); }) == Err::UNAVAILABLE);
  }

  if (failures) {
    fprintf(stderr, "core_tests: %d check(s) failed\n", failures);
    return 1;
  }
  printf("core_tests: all passed\n");
  return 0;
}
