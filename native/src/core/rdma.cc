// RDMA (libibverbs): device discovery and memory registration; the rkey and address travel in the segment
// descriptor. Compiled only when CMake found rdma-core headers (MOORING_HAVE_IBVERBS).
//
// One-sided data path: an RC queue pair per peer endpoint, set up by exchanging QP numbers/GIDs over the TCP
// data connection (op kWireRdmaConnect); then IBV_WR_RDMA_READ/WRITE of 64 KiB slices against the rkey and address
// from the peer's segment descriptor, with no work by the peer's CPU.
//
// NOT EXERCISED ON HARDWARE: the machines this was built on have no RDMA device (and no soft-RoCE), so
// makeRdmaContext() returns nullptr there and every transfer uses TCP (the engine logs why). This code is
// compiled against rdma-core's headers but has never run.
#include <cstdlib>

#include "internal.h"

#ifdef MOORING_HAVE_IBVERBS
#include <infiniband/verbs.h>
#endif

namespace mooring {

bool rdmaCompiled() {
#ifdef MOORING_HAVE_IBVERBS
  return true;
#else
  return false;
#endif
}

#ifdef MOORING_HAVE_IBVERBS
namespace {

constexpr uint8_t kRdmaPort = 1;
constexpr uint32_t kRdmaWindowSlices = 16;  // outstanding work requests per QP (≤ max_rd_atomic for READs)
constexpr uint32_t kRdmaMaxServerQps = 1024;

struct Qp {
  std::mutex mu;  // one job drives a QP at a time
  ibv_cq* cq = nullptr;
  ibv_qp* qp = nullptr;
  uint32_t psn = 0;
  bool broken = false;
  ~Qp() {
    if (qp) ibv_destroy_qp(qp);
    if (cq) ibv_destroy_cq(cq);
  }
};

class VerbsContext : public RdmaContext {
 public:
  ~VerbsContext() override {
    clientQps_.clear();
    serverQps_.clear();
    if (pd_) ibv_dealloc_pd(pd_);
    if (ctx_) ibv_close_device(ctx_);
  }
  bool open(std::string* why) {
    int n = 0;
    ibv_device** list = ibv_get_device_list(&n);
    if (!list || n == 0) {
      if (list) ibv_free_device_list(list);
      *why = "no RDMA device found";
      return false;
    }
    ctx_ = ibv_open_device(list[0]);
    std::string dev = ibv_get_device_name(list[0]) ? ibv_get_device_name(list[0]) : "?";
    ibv_free_device_list(list);
    if (!ctx_) {
      *why = "cannot open RDMA device " + dev;
      return false;
    }
    pd_ = ibv_alloc_pd(ctx_);
    if (!pd_) {
      *why = "cannot allocate a protection domain on " + dev;
      return false;
    }
    if (ibv_query_port(ctx_, kRdmaPort, &port_) != 0 || port_.state != IBV_PORT_ACTIVE) {
      *why = "port 1 of RDMA device " + dev + " is not active";
      return false;
    }
    const char* gi = getenv("MOORING_RDMA_GID_INDEX");
    gidIndex_ = gi ? atoi(gi) : 0;
    if (ibv_query_gid(ctx_, kRdmaPort, gidIndex_, &gid_) != 0) {
      *why = "cannot read GID " + std::to_string(gidIndex_) + " of " + dev;
      return false;
    }
    return true;
  }
  bool registerSegment(Segment& s, std::string* why) override {
    ibv_mr* mr = ibv_reg_mr(pd_, s.base, s.size,
                            IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE);
    if (!mr) {
      *why = std::string("ibv_reg_mr: ") + strerror(errno);
      return false;
    }
    s.rdmaMr = mr;
    s.rdmaRkey = mr->rkey;
    return true;
  }
  void deregisterSegment(Segment& s) override {
    if (s.rdmaMr) ibv_dereg_mr(static_cast<ibv_mr*>(s.rdmaMr));
    s.rdmaMr = nullptr;
  }

  bool accept(const RdmaConnInfo& in, RdmaConnInfo* out, std::string* why) override {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (serverQps_.size() >= kRdmaMaxServerQps) {
        *why = "too many RDMA queue pairs";
        return false;
      }
    }
    auto q = createQp(why);
    if (!q) return false;
    *out = localInfo(*q);
    if (!connectQp(*q, in, why)) return false;
    std::lock_guard<std::mutex> g(mu_);
    serverQps_.push_back(std::move(q));
    return true;
  }

  Err transfer(TcpClientPool& pool, Op op, Segment& local, uint64_t localOff, const RemoteRef& r, uint64_t remoteOff,
               uint64_t len, uint64_t deadlineMs, std::string* msg) override {
    if (!local.rdmaMr) {
      *msg = "the local segment is not registered for RDMA";
      return Err::INVALID_ARGUMENT;
    }
    std::shared_ptr<Qp> q = clientQp(pool, r.endpoint, deadlineMs, msg);
    if (!q) return Err::TRANSFER_FAILED;
    std::lock_guard<std::mutex> g(q->mu);
    auto* mr = static_cast<ibv_mr*>(local.rdmaMr);
    uint64_t nslices = (len + kSliceBytes - 1) / kSliceBytes, posted = 0, done = 0;
    while (done < nslices) {
      while (posted < nslices && posted - done < kRdmaWindowSlices) {
        uint64_t off = posted * kSliceBytes;
        ibv_sge sge{};
        sge.addr = reinterpret_cast<uintptr_t>(local.base + localOff + off);
        sge.length = static_cast<uint32_t>(std::min<uint64_t>(kSliceBytes, len - off));
        sge.lkey = mr->lkey;
        ibv_send_wr wr{}, *bad = nullptr;
        wr.wr_id = posted;
        wr.sg_list = &sge;
        wr.num_sge = 1;
        wr.opcode = op == Op::Write ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ;
        wr.send_flags = IBV_SEND_SIGNALED;
        wr.wr.rdma.remote_addr = r.rdmaAddr + remoteOff + off;
        wr.wr.rdma.rkey = r.rdmaRkey;
        if (ibv_post_send(q->qp, &wr, &bad) != 0) {
          dropClientQp(r.endpoint, q);
          *msg = std::string("ibv_post_send: ") + strerror(errno);
          return Err::TRANSFER_FAILED;
        }
        posted++;
      }
      ibv_wc wc[16];
      int n = ibv_poll_cq(q->cq, 16, wc);
      if (n < 0) {
        dropClientQp(r.endpoint, q);
        *msg = "ibv_poll_cq failed";
        return Err::TRANSFER_FAILED;
      }
      for (int i = 0; i < n; i++) {
        if (wc[i].status != IBV_WC_SUCCESS) {
          // The QP is in the error state now; outstanding WRs flush. Use a fresh QP next time.
          dropClientQp(r.endpoint, q);
          *msg = std::string("RDMA work completion: ") + ibv_wc_status_str(wc[i].status);
          return wc[i].status == IBV_WC_REM_ACCESS_ERR ? Err::OUT_OF_RANGE : Err::TRANSFER_FAILED;
        }
        done++;
      }
      if (n == 0 && nowMs() >= deadlineMs) {
        dropClientQp(r.endpoint, q);  // completions may still arrive for this QP: never reuse it
        *msg = "RDMA transfer timed out";
        return Err::TIMEOUT;
      }
    }
    return Err::OK;
  }

 private:
  std::unique_ptr<Qp> createQp(std::string* why) {
    auto q = std::make_unique<Qp>();
    q->cq = ibv_create_cq(ctx_, 2 * kRdmaWindowSlices, nullptr, nullptr, 0);
    if (!q->cq) {
      *why = "ibv_create_cq failed";
      return nullptr;
    }
    ibv_qp_init_attr ia{};
    ia.send_cq = q->cq;
    ia.recv_cq = q->cq;
    ia.qp_type = IBV_QPT_RC;
    ia.cap.max_send_wr = 2 * kRdmaWindowSlices;
    ia.cap.max_recv_wr = 1;
    ia.cap.max_send_sge = 1;
    ia.cap.max_recv_sge = 1;
    q->qp = ibv_create_qp(pd_, &ia);
    if (!q->qp) {
      *why = "ibv_create_qp failed";
      return nullptr;
    }
    q->psn = static_cast<uint32_t>(randomU64() & 0xffffff);
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_INIT;
    a.pkey_index = 0;
    a.port_num = kRdmaPort;
    a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
    if (ibv_modify_qp(q->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS) != 0) {
      *why = "QP → INIT failed";
      return nullptr;
    }
    return q;
  }

  RdmaConnInfo localInfo(const Qp& q) const {
    RdmaConnInfo i{};
    i.lid = port_.lid;
    memcpy(i.gid, gid_.raw, sizeof i.gid);
    i.qpn = q.qp->qp_num;
    i.psn = q.psn;
    i.mtu = static_cast<uint8_t>(port_.active_mtu);
    return i;
  }

  bool connectQp(Qp& q, const RdmaConnInfo& peer, std::string* why) {
    ibv_qp_attr a{};
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = static_cast<ibv_mtu>(std::min<int>(peer.mtu ? peer.mtu : static_cast<int>(IBV_MTU_1024), port_.active_mtu));
    a.dest_qp_num = peer.qpn;
    a.rq_psn = peer.psn;
    a.max_dest_rd_atomic = kRdmaWindowSlices;
    a.min_rnr_timer = 12;
    a.ah_attr.is_global = 1;  // RoCE needs the GRH; harmless on InfiniBand
    memcpy(a.ah_attr.grh.dgid.raw, peer.gid, sizeof peer.gid);
    a.ah_attr.grh.sgid_index = static_cast<uint8_t>(gidIndex_);
    a.ah_attr.grh.hop_limit = 64;
    a.ah_attr.dlid = peer.lid;
    a.ah_attr.port_num = kRdmaPort;
    if (ibv_modify_qp(q.qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                    IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER) != 0) {
      *why = "QP → RTR failed";
      return false;
    }
    a = ibv_qp_attr{};
    a.qp_state = IBV_QPS_RTS;
    a.timeout = 14;
    a.retry_cnt = 7;
    a.rnr_retry = 7;
    a.sq_psn = q.psn;
    a.max_rd_atomic = kRdmaWindowSlices;
    if (ibv_modify_qp(q.qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                                    IBV_QP_MAX_QP_RD_ATOMIC) != 0) {
      *why = "QP → RTS failed";
      return false;
    }
    return true;
  }

  // One QP per peer endpoint, set up by exchanging QP numbers over a TCP data connection.
  std::shared_ptr<Qp> clientQp(TcpClientPool& pool, const std::string& ep, uint64_t deadlineMs, std::string* msg) {
    {
      std::lock_guard<std::mutex> g(mu_);
      auto it = clientQps_.find(ep);
      if (it != clientQps_.end()) return it->second;
    }
    std::shared_ptr<Qp> q = createQp(msg);
    if (!q) return nullptr;
    Err code = Err::OK;
    auto c = pool.acquire(ep, deadlineMs, &code, msg);
    if (!c) return nullptr;
    RdmaConnInfo mine = localInfo(*q), theirs{};
    WireReq req{};
    req.magic = kWireMagic;
    req.op = kWireRdmaConnect;
    req.length = sizeof mine;
    WireResp resp{};
    int e = sendAll(c->fd, &req, sizeof req, &mine, sizeof mine);
    if (!e) e = recvAll(c->fd, &resp, sizeof resp);
    bool ok = !e && resp.magic == kWireMagic && resp.status == 0 && resp.length == sizeof theirs;
    if (ok) ok = recvAll(c->fd, &theirs, sizeof theirs) == 0;
    pool.release(std::move(c), ok);
    if (!ok) {
      *msg = "RDMA queue-pair exchange with " + ep + " failed (the peer has no active RDMA device?)";
      return nullptr;
    }
    if (!connectQp(*q, theirs, msg)) return nullptr;
    std::lock_guard<std::mutex> g(mu_);
    auto it = clientQps_.find(ep);
    if (it != clientQps_.end()) return it->second;  // another job won the race; ours is dropped
    clientQps_[ep] = q;
    return q;
  }

  void dropClientQp(const std::string& ep, const std::shared_ptr<Qp>& q) {
    std::lock_guard<std::mutex> g(mu_);
    auto it = clientQps_.find(ep);
    if (it != clientQps_.end() && it->second == q) clientQps_.erase(it);
  }

  ibv_context* ctx_ = nullptr;
  ibv_pd* pd_ = nullptr;
  ibv_port_attr port_{};
  ibv_gid gid_{};
  int gidIndex_ = 0;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Qp>> clientQps_;
  std::vector<std::unique_ptr<Qp>> serverQps_;
};
}  // namespace
#endif

std::unique_ptr<RdmaContext> makeRdmaContext(std::string* why) {
#ifdef MOORING_HAVE_IBVERBS
  auto c = std::make_unique<VerbsContext>();
  if (!c->open(why)) return nullptr;
  return c;
#else
  *why = "built without rdma-core headers (install libibverbs-dev and rebuild)";
  return nullptr;
#endif
}

}  // namespace mooring
