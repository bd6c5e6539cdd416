// NVMe tier backends: io_uring (liburing) when available, otherwise a pread/pwrite thread pool.
#include <unistd.h>

#include <cerrno>
#include <deque>

#include "internal.h"

#ifdef MOORING_HAVE_LIBURING
#include <liburing.h>
#endif

namespace mooring {

namespace {

class ThreadPoolBackend : public DiskBackend {
 public:
  explicit ThreadPoolBackend(uint32_t n) {
    for (uint32_t i = 0; i < (n ? n : 1); i++) threads_.emplace_back([this] { loop(); });
  }
  ~ThreadPoolBackend() override { stop(); }
  const char* name() const override { return "threadpool"; }
  void submit(std::vector<DiskIo>&& ios) override {
    {
      std::lock_guard<std::mutex> g(mu_);
      for (auto& io : ios) q_.push_back(std::move(io));
    }
    cv_.notify_all();
  }
  void stop() override {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  void loop() {
    for (;;) {
      DiskIo io;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [this] { return stopping_ || !q_.empty(); });
        if (q_.empty()) return;
        io = std::move(q_.front());
        q_.pop_front();
      }
      ssize_t r;
      uint8_t* mem = io.dram->base + io.dramOff;
      off_t off = static_cast<off_t>(io.diskOff);
      uint64_t done = 0;
      r = 0;
      while (done < io.len) {
        ssize_t n = io.write ? pwrite(io.disk->fd, mem + done, io.len - done, off + static_cast<off_t>(done))
                             : pread(io.disk->fd, mem + done, io.len - done, off + static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          r = n < 0 ? -errno : static_cast<ssize_t>(done);
          break;
        }
        done += static_cast<uint64_t>(n);
        r = static_cast<ssize_t>(done);
      }
      completeDiskIo(io, r);
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<DiskIo> q_;
  std::vector<std::thread> threads_;
  bool stopping_ = false;
};

#ifdef MOORING_HAVE_LIBURING
// One ring, one thread: it moves queued I/Os into SQEs (at most kDiskQueueDepth in flight) and reaps CQEs.
class UringBackend : public DiskBackend {
 public:
  UringBackend() = default;
  bool init(std::string* why) {
    int rc = io_uring_queue_init(kDiskQueueDepth * 2, &ring_, 0);
    if (rc < 0) {
      *why = std::string("io_uring_queue_init: ") + strerror(-rc);
      return false;
    }
    ready_ = true;
    thread_ = std::thread([this] { loop(); });
    return true;
  }
  ~UringBackend() override {
    stop();
    if (ready_) io_uring_queue_exit(&ring_);
  }
  const char* name() const override { return "io_uring"; }
  void submit(std::vector<DiskIo>&& ios) override {
    {
      std::lock_guard<std::mutex> g(mu_);
      for (auto& io : ios) q_.push_back(std::move(io));
    }
    cv_.notify_one();
  }
  void stop() override {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void loop() {
    uint32_t inflight = 0;
    for (;;) {
      std::vector<DiskIo*> batch;
      {
        std::unique_lock<std::mutex> lk(mu_);
        if (inflight == 0) cv_.wait(lk, [this] { return stopping_ || !q_.empty(); });
        if (stopping_ && inflight == 0 && q_.empty()) return;
        while (!q_.empty() && inflight + batch.size() < kDiskQueueDepth) {
          batch.push_back(new DiskIo(std::move(q_.front())));
          q_.pop_front();
        }
      }
      for (DiskIo* io : batch) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (!sqe) {  // cannot happen with the ring twice the queue depth; fail the I/O rather than lose it
          completeDiskIo(*io, -EBUSY);
          delete io;
          continue;
        }
        uint8_t* mem = io->dram->base + io->dramOff;
        if (io->write) io_uring_prep_write(sqe, io->disk->fd, mem, static_cast<unsigned>(io->len), io->diskOff);
        else io_uring_prep_read(sqe, io->disk->fd, mem, static_cast<unsigned>(io->len), io->diskOff);
        io_uring_sqe_set_data(sqe, io);
        inflight++;
      }
      if (!batch.empty()) io_uring_submit(&ring_);
      if (inflight == 0) continue;
      io_uring_cqe* cqe = nullptr;
      __kernel_timespec ts{0, 2 * 1000 * 1000};  // wake now and then to pick up newly queued I/O
      int rc = io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
      if (rc < 0 && rc != -ETIME && rc != -EINTR) continue;
      while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
        auto* io = static_cast<DiskIo*>(io_uring_cqe_get_data(cqe));
        int res = cqe->res;
        io_uring_cqe_seen(&ring_, cqe);
        inflight--;
        completeDiskIo(*io, res);
        delete io;
      }
    }
  }
  io_uring ring_{};
  bool ready_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<DiskIo> q_;
  std::thread thread_;
  bool stopping_ = false;
};
#endif

}  // namespace

std::unique_ptr<DiskBackend> makeUringBackend(std::string* why) {
#ifdef MOORING_HAVE_LIBURING
  auto b = std::make_unique<UringBackend>();
  if (!b->init(why)) return nullptr;
  return b;
#else
  *why = "built without liburing (install liburing-dev and rebuild)";
  return nullptr;
#endif
}

std::unique_ptr<DiskBackend> makeThreadPoolBackend(uint32_t threads) {
  return std::make_unique<ThreadPoolBackend>(threads);
}

}  // namespace mooring
