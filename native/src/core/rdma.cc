// RDMA (libibverbs): device discovery and memory registration; the rkey and address travel in the segment
// descriptor. Compiled only when CMake found rdma-core headers (MOORING_HAVE_IBVERBS).
//
// Not exercised on hardware: the machines this was built on have no RDMA device, so makeRdmaContext() returns
// nullptr there and every transfer uses TCP (the engine logs why).
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
class VerbsContext : public RdmaContext {
 public:
  ~VerbsContext() override {
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

 private:
  ibv_context* ctx_ = nullptr;
  ibv_pd* pd_ = nullptr;
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
