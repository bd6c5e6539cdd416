// Thin Node-API glue over the core (src/core). Every core Error becomes a JS Error with `code`; completions reach
// JS through one thread-safe function per engine, so nothing here blocks the event loop on I/O.
#include <napi.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <set>

#include "engine.h"

namespace {

using mooring::Err;

constexpr uint64_t kMaxViewBytes = 1ull << 32;  // Node 20: largest external ArrayBuffer (buffer.constants.MAX_LENGTH)

Napi::Error codedError(Napi::Env env, const char* code, const std::string& msg) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

[[noreturn]] void throwArg(Napi::Env env, const std::string& msg) { throw codedError(env, "INVALID_ARGUMENT", msg); }

uint64_t getUint(Napi::Env env, const Napi::Value& v, const char* what, uint64_t max = (1ull << 53)) {
  if (!v.IsNumber()) throwArg(env, std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != static_cast<double>(static_cast<uint64_t>(d)) || d > static_cast<double>(max))
    throwArg(env, std::string(what) + " must be a non-negative integer");
  return static_cast<uint64_t>(d);
}

uint64_t getToken(Napi::Env env, const Napi::Value& v) {
  if (!v.IsString()) throwArg(env, "segment token must be a 16-digit hex string");
  std::string s = v.As<Napi::String>().Utf8Value();
  if (s.empty() || s.size() > 16) throwArg(env, "segment token must be a 16-digit hex string");
  uint64_t t = 0;
  for (char c : s) {
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) throwArg(env, "segment token must be a 16-digit hex string");
    t = (t << 4) | static_cast<uint64_t>(d);
  }
  return t;
}

std::string tokenHex(uint64_t t) {
  char b[17];
  snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(t));
  return b;
}

std::string getString(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsString()) throwArg(env, std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

struct Completion {
  Napi::Promise::Deferred deferred;
  std::vector<mooring::ReqResult> results;
  explicit Completion(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

// Completion context: outlives the NativeEngine (deleted by the thread-safe function's finalizer, after the
// last queued completion ran), so a batch finishing after its engine was garbage-collected is still safe.
struct Ctx;
void CallJs(Napi::Env env, Napi::Function, Ctx* ctx, Completion* c);
using Tsfn = Napi::TypedThreadSafeFunction<Ctx, Completion, CallJs>;
struct Ctx {
  Tsfn tsfn;
  uint32_t inflight = 0;  // main thread only
  bool released = false;
};

class NativeEngine;
std::set<NativeEngine*>* liveEngines() {
  static std::set<NativeEngine*> s;  // main-thread only
  return &s;
}

class NativeEngine : public Napi::ObjectWrap<NativeEngine> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeEngine",
                       {InstanceMethod("info", &NativeEngine::Info),
                        InstanceMethod("createSegment", &NativeEngine::CreateSegment),
                        InstanceMethod("createDiskSegment", &NativeEngine::CreateDiskSegment),
                        InstanceMethod("closeSegment", &NativeEngine::CloseSegment),
                        InstanceMethod("segmentView", &NativeEngine::SegmentView),
                        InstanceMethod("transfer", &NativeEngine::Transfer),
                        InstanceMethod("disk", &NativeEngine::Disk),
                        InstanceMethod("close", &NativeEngine::Close)});
  }

  explicit NativeEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeEngine>(info) {
    Napi::Env env = info.Env();
    mooring::EngineOptions o;
    if (info.Length() > 0 && info[0].IsObject()) {
      Napi::Object a = info[0].As<Napi::Object>();
      if (a.Has("host")) o.host = getString(env, a.Get("host"), "host");
      if (a.Has("port")) o.port = static_cast<uint16_t>(getUint(env, a.Get("port"), "port", 65535));
      if (a.Has("server")) o.server = a.Get("server").ToBoolean();
      if (a.Has("workerThreads")) o.workerThreads = static_cast<uint32_t>(getUint(env, a.Get("workerThreads"), "workerThreads", 256));
      if (a.Has("copyThreads")) o.copyThreads = static_cast<uint32_t>(getUint(env, a.Get("copyThreads"), "copyThreads", 256));
      if (a.Has("serverThreads")) o.serverThreads = static_cast<uint32_t>(getUint(env, a.Get("serverThreads"), "serverThreads", 256));
      if (a.Has("connectionsPerPeer"))
        o.connectionsPerPeer = static_cast<uint32_t>(getUint(env, a.Get("connectionsPerPeer"), "connectionsPerPeer", 256));
      if (a.Has("rdma")) o.rdma = a.Get("rdma").ToBoolean();
      if (a.Has("ioUring")) o.ioUring = a.Get("ioUring").ToBoolean();
    }
    // Warnings are collected and handed to JS by info(): the core may log from any thread.
    o.log = [this](const std::string& m) {
      std::lock_guard<std::mutex> g(logMu_);
      if (logs_.size() < 1000) logs_.push_back(m);
    };
    try {
      engine_ = std::make_unique<mooring::Engine>(o);
    } catch (const mooring::Error& e) {
      throw codedError(env, mooring::errName(e.code), e.what());
    }
    ctx_ = new Ctx();
    ctx_->tsfn = Tsfn::New(env, "mooring-engine-completions", 0, 1, ctx_,
                           [](Napi::Env, void*, Ctx* c) { delete c; });
    ctx_->tsfn.Unref(env);
    liveEngines()->insert(this);
  }

  ~NativeEngine() override { shutdownCore(); }

  // Stops the core's threads (every pending batch completes, failed) and releases the completion function.
  // Touches no JS value, so it is safe from a finalizer or the environment cleanup hook.
  void shutdownCore() {
    if (!engine_) return;
    engine_->shutdown();
    engine_.reset();
    ctx_->released = true;
    ctx_->tsfn.Release();
    liveEngines()->erase(this);
  }

 private:
  mooring::Engine& eng(Napi::Env env) {
    if (!engine_) throw codedError(env, "SHUTTING_DOWN", "the engine is closed");
    return *engine_;
  }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto i = eng(env).info();
    Napi::Object o = Napi::Object::New(env);
    o.Set("endpoint", i.endpoint);
    o.Set("hostId", i.hostId);
    o.Set("pid", i.pid);
    o.Set("ioUringCompiled", i.ioUringCompiled);
    o.Set("ioUringActive", i.ioUringActive);
    o.Set("rdmaCompiled", i.rdmaCompiled);
    o.Set("rdmaActive", i.rdmaActive);
    o.Set("rdmaReason", i.rdmaReason);
    o.Set("diskBackend", i.diskBackend);
    o.Set("segments", static_cast<double>(engine_->segmentCount()));
    o.Set("shmAttachments", static_cast<double>(engine_->shmAttachmentCount()));
    std::vector<std::string> logs;
    {
      std::lock_guard<std::mutex> g(logMu_);
      logs.swap(logs_);
    }
    Napi::Array la = Napi::Array::New(env, logs.size());
    for (size_t k = 0; k < logs.size(); k++) la.Set(static_cast<uint32_t>(k), logs[k]);
    o.Set("warnings", la);
    return o;
  }

  Napi::Value CreateSegment(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string name = getString(env, info[0], "name");
    uint64_t size = getUint(env, info[1], "size");
    bool huge = info.Length() > 2 && info[2].ToBoolean();
    mooring::SegmentPtr s;
    try {
      s = eng(env).createSegment(name, size, huge);
    } catch (const mooring::Error& e) {
      throw codedError(env, mooring::errName(e.code), e.what());
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", s->id);
    o.Set("token", tokenHex(s->token));
    o.Set("size", static_cast<double>(s->size));
    o.Set("fd", s->fd);
    if (s->rdmaMr) {
      o.Set("rkey", s->rdmaRkey);
      o.Set("addr", Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(s->base))));
    }
    return o;
  }

  Napi::Value CreateDiskSegment(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string name = getString(env, info[0], "name");
    std::string path = getString(env, info[1], "path");
    uint64_t size = getUint(env, info[2], "size");
    bool direct = info.Length() < 4 || info[3].ToBoolean();
    mooring::SegmentPtr s;
    try {
      s = eng(env).createDiskSegment(name, path, size, direct);
    } catch (const mooring::Error& e) {
      throw codedError(env, mooring::errName(e.code), e.what());
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", s->id);
    o.Set("token", tokenHex(s->token));
    o.Set("size", static_cast<double>(s->size));
    o.Set("direct", s->direct);
    return o;
  }

  Napi::Value CloseSegment(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t id = static_cast<uint32_t>(getUint(env, info[0], "segment id", 0xffffffffu));
    try {
      eng(env).closeSegment(id);
    } catch (const mooring::Error& e) {
      throw codedError(env, mooring::errName(e.code), e.what());
    }
    detach(id);
    return env.Undefined();
  }

  // Detaches every view still alive: afterwards no JS code can reach the segment's memory.
  void detach(uint32_t id) {
    auto it = views_.find(id);
    if (it == views_.end()) return;
    for (auto& ref : it->second) {
      Napi::ArrayBuffer ab = ref.Value();
      if (!ab.IsEmpty() && !ab.IsDetached()) ab.Detach();
    }
    views_.erase(it);
  }

  // A zero-copy ArrayBuffer over [offset, offset + length) of a DRAM segment. Node 20 caps one external
  // ArrayBuffer at 4 GiB, hence windows. Each view's finalizer hint owns a segment reference, so the mapping
  // outlives the view; the engine keeps a weak reference to detach it on close.
  Napi::Value SegmentView(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    uint32_t id = static_cast<uint32_t>(getUint(env, info[0], "segment id", 0xffffffffu));
    uint64_t off = getUint(env, info[1], "offset");
    uint64_t len = getUint(env, info[2], "length", kMaxViewBytes);
    mooring::SegmentPtr s = eng(env).findSegment(id);
    if (!s) throw codedError(env, "SEGMENT_CLOSED", "segment " + std::to_string(id) + " is not open");
    if (s->kind != mooring::SegmentKind::DRAM) throwArg(env, "only DRAM segments have memory views");
    if (off > s->size || len > s->size - off) throw codedError(env, "OUT_OF_RANGE", "view outside the segment");
    if (len == 0) return Napi::ArrayBuffer::New(env, 0);
    auto* hint = new mooring::SegmentPtr(s);
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
        env, s->base + off, len, [](Napi::Env, void*, mooring::SegmentPtr* h) { delete h; }, hint);
    auto& refs = views_[id];
    // Forget views the GC already collected, so long-lived segments with many short views stay bounded.
    refs.erase(std::remove_if(refs.begin(), refs.end(), [](Napi::Reference<Napi::ArrayBuffer>& r) { return r.Value().IsEmpty(); }),
               refs.end());
    refs.push_back(Napi::Weak(ab));
    return ab;
  }

  mooring::RemoteRef remoteRef(Napi::Env env, const Napi::Value& v) {
    if (!v.IsObject()) throwArg(env, "remote must be an object");
    Napi::Object o = v.As<Napi::Object>();
    mooring::RemoteRef r;
    r.segId = static_cast<uint32_t>(getUint(env, o.Get("segId"), "remote segId", 0xffffffffu));
    r.token = getToken(env, o.Get("token"));
    r.size = getUint(env, o.Get("size"), "remote size");
    if (o.Has("endpoint") && !o.Get("endpoint").IsUndefined()) r.endpoint = getString(env, o.Get("endpoint"), "remote endpoint");
    if (o.Has("hostId") && !o.Get("hostId").IsUndefined()) r.hostId = getString(env, o.Get("hostId"), "remote hostId");
    if (o.Has("shmPid") && !o.Get("shmPid").IsUndefined()) {
      r.hasShm = true;
      r.shmPid = static_cast<int32_t>(getUint(env, o.Get("shmPid"), "shm pid", 0x7fffffff));
      r.shmFd = static_cast<int32_t>(getUint(env, o.Get("shmFd"), "shm fd", 0x7fffffff));
    }
    if (o.Has("rdmaRkey") && !o.Get("rdmaRkey").IsUndefined()) {
      r.hasRdma = true;
      r.rdmaRkey = static_cast<uint32_t>(getUint(env, o.Get("rdmaRkey"), "rdma rkey", 0xffffffffu));
      std::string addr = getString(env, o.Get("rdmaAddr"), "rdma addr");
      char* end = nullptr;
      errno = 0;
      r.rdmaAddr = strtoull(addr.c_str(), &end, 10);
      if (addr.empty() || errno != 0 || *end != 0) throwArg(env, "rdma addr must be a decimal string");
    }
    return r;
  }

  Napi::Value Transfer(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) throwArg(env, "requests must be an array");
    Napi::Array a = info[0].As<Napi::Array>();
    uint32_t timeoutMs = static_cast<uint32_t>(getUint(env, info[1], "timeoutMs", 0xffffffffu));
    uint32_t force = static_cast<uint32_t>(getUint(env, info[2], "protocol", 4));
    std::vector<mooring::TransferReq> reqs(a.Length());
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value v = a.Get(i);
      if (!v.IsObject()) throwArg(env, "request " + std::to_string(i) + " must be an object");
      Napi::Object o = v.As<Napi::Object>();
      auto& r = reqs[i];
      r.op = getUint(env, o.Get("op"), "op", 1) ? mooring::Op::Write : mooring::Op::Read;
      r.localSeg = static_cast<uint32_t>(getUint(env, o.Get("localSeg"), "local segment id", 0xffffffffu));
      r.localOff = getUint(env, o.Get("localOff"), "local offset");
      r.remote = remoteRef(env, o.Get("remote"));
      r.remoteOff = getUint(env, o.Get("remoteOff"), "remote offset");
      r.length = getUint(env, o.Get("length"), "length");
    }
    auto* c = new Completion(env);
    Napi::Promise p = c->deferred.Promise();
    try {
      submit(env, c, [&](mooring::BatchDone done) {
        eng(env).submitTransfer(std::move(reqs), timeoutMs, static_cast<mooring::Proto>(force), std::move(done));
      });
    } catch (const mooring::Error& e) {
      throw codedError(env, mooring::errName(e.code), e.what());
    }
    return p;
  }

  Napi::Value Disk(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsArray()) throwArg(env, "requests must be an array");
    Napi::Array a = info[0].As<Napi::Array>();
    uint32_t timeoutMs = static_cast<uint32_t>(getUint(env, info[1], "timeoutMs", 0xffffffffu));
    std::vector<mooring::DiskReq> reqs(a.Length());
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value v = a.Get(i);
      if (!v.IsObject()) throwArg(env, "request " + std::to_string(i) + " must be an object");
      Napi::Object o = v.As<Napi::Object>();
      auto& r = reqs[i];
      r.op = getUint(env, o.Get("op"), "op", 1) ? mooring::DiskOp::Promote : mooring::DiskOp::Offload;
      r.dramSeg = static_cast<uint32_t>(getUint(env, o.Get("dramSeg"), "DRAM segment id", 0xffffffffu));
      r.dramOff = getUint(env, o.Get("dramOff"), "DRAM offset");
      r.diskSeg = static_cast<uint32_t>(getUint(env, o.Get("diskSeg"), "disk segment id", 0xffffffffu));
      r.diskOff = getUint(env, o.Get("diskOff"), "disk offset");
      r.length = getUint(env, o.Get("length"), "length");
    }
    auto* c = new Completion(env);
    Napi::Promise p = c->deferred.Promise();
    try {
      submit(env, c, [&](mooring::BatchDone done) { eng(env).submitDisk(std::move(reqs), timeoutMs, std::move(done)); });
    } catch (const mooring::Error& e) {
      throw codedError(env, mooring::errName(e.code), e.what());
    }
    return p;
  }

  template <typename F>
  void submit(Napi::Env env, Completion* c, F&& run) {
    Tsfn tsfn = ctx_->tsfn;
    if (ctx_->inflight++ == 0) tsfn.Ref(env);
    try {
      run([tsfn, c](std::vector<mooring::ReqResult>&& results) mutable {
        c->results = std::move(results);
        // Fails only when the environment is going away; then nobody waits for the promise.
        if (tsfn.NonBlockingCall(c) != napi_ok) delete c;
      });
    } catch (...) {
      delete c;
      if (--ctx_->inflight == 0) tsfn.Unref(env);
      throw;
    }
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    std::vector<uint32_t> ids;
    for (auto& kv : views_) ids.push_back(kv.first);
    for (uint32_t id : ids) detach(id);
    shutdownCore();
    return info.Env().Undefined();
  }

  std::unique_ptr<mooring::Engine> engine_;
  Ctx* ctx_ = nullptr;
  std::map<uint32_t, std::vector<Napi::Reference<Napi::ArrayBuffer>>> views_;
  std::mutex logMu_;
  std::vector<std::string> logs_;
};

void CallJs(Napi::Env env, Napi::Function, Ctx* ctx, Completion* c) {
  if (env != nullptr) {
    Napi::Array arr = Napi::Array::New(env, c->results.size());
    for (size_t i = 0; i < c->results.size(); i++) {
      const auto& r = c->results[i];
      Napi::Object o = Napi::Object::New(env);
      const char* st = r.status == mooring::ReqStatus::Completed ? "completed"
                       : r.status == mooring::ReqStatus::Timeout ? "timeout"
                                                                 : "failed";
      o.Set("status", st);
      o.Set("protocol", mooring::protoName(r.proto));
      if (r.status != mooring::ReqStatus::Completed) {
        o.Set("code", mooring::errName(r.code));
        o.Set("message", r.message);
      }
      arr.Set(static_cast<uint32_t>(i), o);
    }
    c->deferred.Resolve(arr);
    if (--ctx->inflight == 0 && !ctx->released) ctx->tsfn.Unref(env);
  }
  delete c;
}

// memcpy GB/s on this machine: the physical limit the shm path is compared with in bench/engine.
Napi::Value MemcpyBench(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t bytes = getUint(env, info[0], "bytes", 1ull << 34);
  uint64_t iters = getUint(env, info[1], "iterations", 1u << 20);
  if (bytes == 0 || iters == 0) throwArg(env, "bytes and iterations must be positive");
  std::vector<uint8_t> a(bytes, 1), b(bytes, 2);
  auto t0 = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < iters; i++) {
    memcpy(b.data(), a.data(), bytes);
    a[i % bytes] = b[(i * 7) % bytes];  // keep the copies observable
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return Napi::Number::New(env, static_cast<double>(bytes) * static_cast<double>(iters) / s / 1e9);
}

Napi::Object InitAll(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeEngine", NativeEngine::Init(env));
  exports.Set("memcpyBench", Napi::Function::New(env, MemcpyBench));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  // At environment teardown (process exit, worker exit) stop every engine's threads before the addon unloads.
  env.AddCleanupHook([]() {
    auto copy = *liveEngines();
    for (NativeEngine* e : copy) e->shutdownCore();
  });
  return exports;
}

}  // namespace

NODE_API_MODULE(mooring_engine, InitAll)
