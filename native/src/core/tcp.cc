// TCP data path: the engine-owned server (epoll, its own threads; no JS involved) and the client side
// (a bounded pool of connections per peer, pipelined 64 KiB slices).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <set>

#include "internal.h"

namespace mooring {

int sendAll(int fd, const void* a, size_t alen, const void* b, size_t blen) {
  iovec iov[2] = {{const_cast<void*>(a), alen}, {const_cast<void*>(b), blen}};
  int cnt = blen ? 2 : 1;
  iovec* v = iov;
  while (cnt > 0) {
    msghdr mh{};
    mh.msg_iov = v;
    mh.msg_iovlen = static_cast<size_t>(cnt);
    ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return (errno == EAGAIN || errno == EWOULDBLOCK) ? ETIMEDOUT : errno;
    }
    size_t left = static_cast<size_t>(n);
    while (cnt > 0 && left >= v->iov_len) {
      left -= v->iov_len;
      v++;
      cnt--;
    }
    if (cnt > 0) {
      v->iov_base = static_cast<uint8_t*>(v->iov_base) + left;
      v->iov_len -= left;
    }
  }
  return 0;
}

int recvAll(int fd, void* p, size_t len) {
  uint8_t* b = static_cast<uint8_t*>(p);
  while (len > 0) {
    ssize_t n = recv(fd, b, len, MSG_WAITALL);
    if (n == 0) return EPIPE;
    if (n < 0) {
      if (errno == EINTR) continue;
      return (errno == EAGAIN || errno == EWOULDBLOCK) ? ETIMEDOUT : errno;
    }
    b += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}

void setSocketTimeouts(int fd, uint64_t ms) {
  if (ms == 0) ms = 1;
  timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

void setNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static bool resolve(const std::string& host, uint16_t port, sockaddr_storage* out, socklen_t* len) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string h = host;
  if (h.size() > 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  if (getaddrinfo(h.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) return false;
  memcpy(out, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

// ---------------- server ----------------

struct TcpServer::Conn {
  int fd = -1;
  bool hello = false;
  std::vector<uint8_t> scratch;  // drains the payload of a refused write
};

TcpServer::TcpServer(Engine& engine, const std::string& host, uint16_t port, uint32_t threads) : engine_(engine) {
  sockaddr_storage sa{};
  socklen_t salen = 0;
  if (!resolve(host, port ? port : 1, &sa, &salen)) throw Error(Err::INVALID_ARGUMENT, "cannot resolve " + host);
  if (sa.ss_family == AF_INET) reinterpret_cast<sockaddr_in*>(&sa)->sin_port = htons(port);
  else reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port = htons(port);
  listenFd_ = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listenFd_ < 0) throw Error(Err::INTERNAL, std::string("socket: ") + strerror(errno));
  int one = 1;
  setsockopt(listenFd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(listenFd_, reinterpret_cast<sockaddr*>(&sa), salen) != 0 || listen(listenFd_, 128) != 0) {
    int e = errno;
    close(listenFd_);
    throw Error(Err::UNAVAILABLE, "cannot listen on " + host + ":" + std::to_string(port) + ": " + strerror(e));
  }
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  getsockname(listenFd_, reinterpret_cast<sockaddr*>(&bound), &blen);
  port_ = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                           : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
  epollFd_ = epoll_create1(EPOLL_CLOEXEC);
  stopFd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // listener
  epoll_ctl(epollFd_, EPOLL_CTL_ADD, listenFd_, &ev);
  ev.data.ptr = this;  // stop signal (level-triggered: wakes every thread)
  epoll_ctl(epollFd_, EPOLL_CTL_ADD, stopFd_, &ev);
  if (threads == 0) threads = 1;
  for (uint32_t i = 0; i < threads; i++) threads_.emplace_back([this] { loop(); });
}

TcpServer::~TcpServer() { stop(); }

void TcpServer::stop() {
  if (stopped_.exchange(true)) return;
  uint64_t one = 1;
  ssize_t ignored = write(stopFd_, &one, sizeof one);
  (void)ignored;
  {
    // Unblock threads stuck in a blocking recv/send on a connection.
    std::lock_guard<std::mutex> g(connMu_);
    for (auto& kv : conns_) shutdown(kv.first, SHUT_RDWR);
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
  for (auto& kv : conns_) {
    close(kv.first);
    delete kv.second;
  }
  conns_.clear();
  close(listenFd_);
  close(epollFd_);
  close(stopFd_);
}

void TcpServer::closeConn(Conn* c) {
  epoll_ctl(epollFd_, EPOLL_CTL_DEL, c->fd, nullptr);
  {
    std::lock_guard<std::mutex> g(connMu_);
    conns_.erase(c->fd);
  }
  close(c->fd);
  delete c;
}

void TcpServer::loop() {
  epoll_event evs[32];
  for (;;) {
    int n = epoll_wait(epollFd_, evs, 32, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (int i = 0; i < n; i++) {
      void* p = evs[i].data.ptr;
      if (p == this) return;  // stop
      if (p == nullptr) {
        for (;;) {
          int fd = accept4(listenFd_, nullptr, nullptr, SOCK_CLOEXEC);
          if (fd < 0) break;  // EAGAIN (another thread took it) or a transient error
          if (stopped_.load()) {
            close(fd);
            break;
          }
          {
            std::lock_guard<std::mutex> g(connMu_);
            if (conns_.size() >= kMaxServerConnections) {  // bounded: refuse rather than run out of fds
              close(fd);
              continue;
            }
          }
          setNoDelay(fd);
          setSocketTimeouts(fd, kServerIoTimeoutMs);
          auto* c = new Conn();
          c->fd = fd;
          {
            std::lock_guard<std::mutex> g(connMu_);
            conns_[fd] = c;
          }
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
          ev.data.ptr = c;
          epoll_ctl(epollFd_, EPOLL_CTL_ADD, fd, &ev);
        }
        continue;
      }
      auto* c = static_cast<Conn*>(p);
      // EPOLLONESHOT: this thread owns the connection until it re-arms it. Serve what is queued, then re-arm.
      bool keep = true;
      for (int served = 0; keep && served < 256; served++) {
        keep = serveOne(c);
        if (!keep || stopped_.load()) break;
        char b;
        ssize_t more = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (more <= 0) {
          if (more == 0) keep = false;  // orderly close
          break;
        }
      }
      if (!keep || stopped_.load()) {
        closeConn(c);
        continue;
      }
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
      ev.data.ptr = c;
      epoll_ctl(epollFd_, EPOLL_CTL_MOD, c->fd, &ev);
    }
  }
}

bool TcpServer::serveOne(Conn* c) {
  if (!c->hello) {
    WireHello h{};
    if (recvAll(c->fd, &h, sizeof h) != 0) return false;
    WireHello r{};
    r.magic = kWireMagic;
    r.version = kWireVersion;
    bool ok = h.magic == kWireMagic && h.version == kWireVersion;
    r.status = ok ? 0 : static_cast<uint16_t>(Err::PROTOCOL_MISMATCH);
    if (sendAll(c->fd, &r, sizeof r, nullptr, 0) != 0 || !ok) return false;
    c->hello = true;
    return true;
  }
  WireReq q{};
  if (recvAll(c->fd, &q, sizeof q) != 0) return false;
  if (q.magic != kWireMagic || q.op > kWireRdmaConnect) return false;  // not our protocol
  WireResp resp{};
  resp.magic = kWireMagic;
  resp.reqId = q.reqId;
  if (q.op == kWireRdmaConnect) {
    RdmaConnInfo in{}, out{};
    if (q.length != sizeof in || recvAll(c->fd, &in, sizeof in) != 0) return false;
    std::string why;
    RdmaContext* rdma = engine_.rdmaContext();
    bool ok = rdma != nullptr && rdma->accept(in, &out, &why);
    resp.status = static_cast<int32_t>(ok ? Err::OK : Err::UNAVAILABLE);
    resp.length = ok ? sizeof out : 0;
    return sendAll(c->fd, &resp, sizeof resp, &out, ok ? sizeof out : 0) == 0;
  }
  Err st = Err::OK;
  SegmentPtr s = engine_.findSegment(q.segId);
  if (!s || s->token != q.token || s->kind != SegmentKind::DRAM) st = Err::SEGMENT_NOT_FOUND;
  else if (q.length == 0 || q.length > kMaxWireSliceBytes) st = Err::INVALID_ARGUMENT;
  else if (q.offset > s->size || q.length > s->size - q.offset) st = Err::OUT_OF_RANGE;
  if (q.op == kWireWrite) {
    if (st == Err::OK) {
      if (recvAll(c->fd, s->base + q.offset, q.length) != 0) return false;
    } else {
      // Keep the stream in sync by draining the refused payload, unless it is absurdly large.
      if (q.length > kMaxWireSliceBytes) {
        resp.status = static_cast<int32_t>(st);
        sendAll(c->fd, &resp, sizeof resp, nullptr, 0);
        return false;
      }
      // Drained through a small buffer so refused writes cost no memory per connection.
      c->scratch.resize(static_cast<size_t>(std::min<uint64_t>(q.length, kSliceBytes)));
      for (uint32_t left = q.length; left > 0;) {
        uint32_t n = static_cast<uint32_t>(std::min<size_t>(left, c->scratch.size()));
        if (recvAll(c->fd, c->scratch.data(), n) != 0) return false;
        left -= n;
      }
    }
    resp.status = static_cast<int32_t>(st);
    return sendAll(c->fd, &resp, sizeof resp, nullptr, 0) == 0;
  }
  resp.status = static_cast<int32_t>(st);
  if (st != Err::OK) return sendAll(c->fd, &resp, sizeof resp, nullptr, 0) == 0;
  resp.length = q.length;
  return sendAll(c->fd, &resp, sizeof resp, s->base + q.offset, q.length) == 0;
}

// ---------------- client ----------------

TcpClientPool::~TcpClientPool() { shutdown(); }

void TcpClientPool::shutdown() {
  std::lock_guard<std::mutex> g(mu_);
  stopping_ = true;
  for (auto& kv : peers_) {
    for (auto& c : kv.second.idle) close(c->fd);
    kv.second.idle.clear();
  }
  for (int fd : busy_) ::shutdown(fd, SHUT_RDWR);  // unblock workers mid-transfer
  cv_.notify_all();
}

static int connectWithDeadline(const std::string& endpoint, uint64_t deadlineMs, std::string* msg) {
  std::string host;
  uint16_t port = 0;
  if (!parseEndpoint(endpoint, &host, &port)) {
    *msg = "bad endpoint " + endpoint;
    return -1;
  }
  sockaddr_storage sa{};
  socklen_t salen = 0;
  if (!resolve(host, port, &sa, &salen)) {
    *msg = "cannot resolve " + host;
    return -1;
  }
  int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *msg = std::string("socket: ") + strerror(errno);
    return -1;
  }
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&sa), salen);
  if (rc != 0 && errno == EINPROGRESS) {
    uint64_t now = nowMs();
    int wait = deadlineMs > now ? static_cast<int>(std::min<uint64_t>(deadlineMs - now, 1u << 30)) : 0;
    pollfd pfd{fd, POLLOUT, 0};
    rc = poll(&pfd, 1, wait);
    if (rc == 1) {
      int err = 0;
      socklen_t el = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
      rc = err ? -1 : 0;
      errno = err;
    } else {
      rc = -1;
      errno = ETIMEDOUT;
    }
  }
  if (rc != 0) {
    int e = errno;
    close(fd);
    *msg = "cannot connect to " + endpoint + ": " + strerror(e);
    errno = e;
    return -1;
  }
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  setNoDelay(fd);
  return fd;
}

std::unique_ptr<TcpClientPool::Conn> TcpClientPool::acquire(const std::string& endpoint, uint64_t deadlineMs, Err* code,
                                                            std::string* msg) {
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (stopping_) {
      *code = Err::UNAVAILABLE;
      *msg = "the engine is shutting down";
      return nullptr;
    }
    Peer& p = peers_[endpoint];
    if (!p.idle.empty()) {
      auto c = std::move(p.idle.back());
      p.idle.pop_back();
      c->reused = true;
      busy_.insert(c->fd);
      return c;
    }
    if (p.open < perPeer_) {
      p.open++;
      break;
    }
    uint64_t now = nowMs();
    if (now >= deadlineMs) {
      *code = Err::TIMEOUT;
      *msg = "timed out waiting for a connection to " + endpoint;
      return nullptr;
    }
    cv_.wait_for(lk, std::chrono::milliseconds(deadlineMs - now));
  }
  lk.unlock();
  auto fail = [&](Err c, const std::string& m) -> std::unique_ptr<Conn> {
    std::lock_guard<std::mutex> g(mu_);
    peers_[endpoint].open--;
    cv_.notify_one();
    *code = c;
    *msg = m;
    return nullptr;
  };
  uint64_t hsDeadline = std::min<uint64_t>(deadlineMs, nowMs() + kTcpHandshakeTimeoutMs);
  std::string why;
  int fd = connectWithDeadline(endpoint, hsDeadline, &why);
  if (fd < 0) return fail(errno == ETIMEDOUT ? Err::TIMEOUT : Err::TRANSFER_FAILED, why);
  setSocketTimeouts(fd, hsDeadline > nowMs() ? hsDeadline - nowMs() : 1);
  WireHello h{};
  h.magic = kWireMagic;
  h.version = kWireVersion;
  int e = sendAll(fd, &h, sizeof h, nullptr, 0);
  WireHello r{};
  if (!e) e = recvAll(fd, &r, sizeof r);
  if (e || r.magic != kWireMagic || r.status != 0) {
    close(fd);
    if (e == ETIMEDOUT) return fail(Err::TIMEOUT, "handshake with " + endpoint + " timed out");
    if (e) return fail(Err::TRANSFER_FAILED, "handshake with " + endpoint + " failed: " + strerror(e));
    return fail(Err::PROTOCOL_MISMATCH, endpoint + " does not speak the Mooring data protocol v1");
  }
  auto c = std::make_unique<Conn>();
  c->fd = fd;
  c->endpoint = endpoint;
  std::lock_guard<std::mutex> g(mu_);
  if (stopping_) {
    close(fd);
    peers_[endpoint].open--;
    *code = Err::UNAVAILABLE;
    *msg = "the engine is shutting down";
    return nullptr;
  }
  busy_.insert(fd);
  return c;
}

void TcpClientPool::release(std::unique_ptr<Conn> c, bool healthy) {
  std::lock_guard<std::mutex> g(mu_);
  busy_.erase(c->fd);
  Peer& p = peers_[c->endpoint];
  if (healthy && !stopping_) {
    p.idle.push_back(std::move(c));
  } else {
    close(c->fd);
    p.open--;
  }
  cv_.notify_one();
}

Err tcpRunChunk(TcpClientPool::Conn& c, Op op, uint8_t* local, const RemoteRef& r, uint64_t remoteOff, uint64_t len,
                uint64_t deadlineMs, std::string* msg, bool* gotResponse) {
  uint64_t now = nowMs();
  if (now >= deadlineMs) {
    *msg = "the batch deadline passed";
    return Err::TIMEOUT;
  }
  setSocketTimeouts(c.fd, deadlineMs - now);
  uint64_t nslices = (len + kSliceBytes - 1) / kSliceBytes;
  uint64_t sent = 0, done = 0;
  auto ioErr = [&](int e, const char* what) {
    if (e == ETIMEDOUT) {
      *msg = std::string("timed out ") + what + " " + c.endpoint;
      return Err::TIMEOUT;
    }
    *msg = std::string("connection to ") + c.endpoint + " failed while " + what + ": " +
           (e == EPIPE ? "peer closed the connection" : strerror(e));
    return Err::TRANSFER_FAILED;
  };
  while (done < nslices) {
    while (sent < nslices && sent - done < kTcpPipelineSlices) {
      uint64_t off = sent * kSliceBytes;
      uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kSliceBytes, len - off));
      WireReq q{};
      q.magic = kWireMagic;
      q.op = op == Op::Write ? kWireWrite : kWireRead;
      q.segId = r.segId;
      q.length = n;
      q.token = r.token;
      q.offset = remoteOff + off;
      q.reqId = sent;
      int e = op == Op::Write ? sendAll(c.fd, &q, sizeof q, local + off, n) : sendAll(c.fd, &q, sizeof q, nullptr, 0);
      if (e) return ioErr(e, "sending to");
      sent++;
    }
    WireResp resp{};
    int e = recvAll(c.fd, &resp, sizeof resp);
    if (e) return ioErr(e, "receiving from");
    *gotResponse = true;
    uint64_t off = done * kSliceBytes;
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(kSliceBytes, len - off));
    if (resp.magic != kWireMagic || resp.reqId != done) {
      *msg = "malformed response from " + c.endpoint;
      return Err::TRANSFER_FAILED;
    }
    if (resp.status != 0) {
      Err st = resp.status > 0 && resp.status < static_cast<int32_t>(Err::kCount) ? static_cast<Err>(resp.status)
                                                                                   : Err::TRANSFER_FAILED;
      *msg = std::string("the peer refused the request: ") + errName(st);
      return st;
    }
    if (op == Op::Read) {
      if (resp.length != n) {
        *msg = "response length mismatch from " + c.endpoint;
        return Err::TRANSFER_FAILED;
      }
      e = recvAll(c.fd, local + off, n);
      if (e) return ioErr(e, "receiving from");
    }
    done++;
  }
  return Err::OK;
}

}  // namespace mooring
