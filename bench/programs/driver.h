#ifndef REGISTRAR_BENCH_PROGRAMS_DRIVER_H_
#define REGISTRAR_BENCH_PROGRAMS_DRIVER_H_

// The load loop of registrar-bench, the same for every backend.
//
// Closed loop: `concurrency` slots, each starting its next operation when
// the previous one completes. Open loop (`rate` > 0): operation k is due at
// t0 + k / rate whatever happened before, and its latency is measured from
// that due time, so a server stall is not hidden by the generator waiting
// for it ("coordinated omission"). Operations whose start falls in the
// measurement window (after the warm-up, for the duration) are counted;
// those still in flight at the end are waited for and counted too.
// Throughput counts completions inside the window.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>

#include "bench/programs/backend.h"
#include "bench/programs/histogram.h"

namespace registrar::bench {

class Driver final : public CompletionSink {
 public:
  // `backend` must be set up already and outlive the driver.
  Driver(const BenchOptions& opts, Backend* backend)
      : opts_(opts), backend_(backend) {}

  void Run();
  // The human-readable summary, then one JSON line, on stdout.
  void Report() const;
  // Errors or unexpected results among the counted operations.
  bool HadErrors() const;

  void Done(const CallToken& token, CallResult result) override;

 private:
  bool Fire(uint64_t k, int64_t start_ns, int slot);
  void SlotFinished();
  void NoteOk(int64_t now);
  const char* ItemName() const;

  const BenchOptions opts_;
  Backend* const backend_;

  // Run state.
  std::atomic<uint64_t> seq_{0};
  int64_t t0_ns_ = 0, window_start_ns_ = 0, window_end_ns_ = 0;
  std::atomic<int64_t> exhausted_ns_{0};
  std::atomic<int> active_slots_{0};
  std::atomic<int64_t> inflight_{0};
  std::mutex done_mu_;
  std::condition_variable done_cv_;

  // Results (operations started inside the window).
  LatencyHistogram hist_;
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> ok_{0};
  std::atomic<uint64_t> items_{0};
  std::atomic<uint64_t> unexpected_{0};
  std::atomic<uint64_t> codes_[kNumCodes] = {};
  std::atomic<uint64_t> rpcs_{0};  // every RPC of every operation
  // Throughput: operations that completed inside the window.
  std::atomic<uint64_t> done_in_window_{0};
  std::atomic<uint64_t> ok_in_window_{0};
  std::atomic<uint64_t> items_in_window_{0};
  std::atomic<int64_t> last_done_ns_{0};
  // The latest OK completion in the window (window start before the first)
  // and the longest time between two of them: how long the service
  // accepted nothing, e.g. across a failover.
  std::atomic<int64_t> last_ok_ns_{0};
  std::atomic<int64_t> max_ok_gap_ns_{0};
  std::atomic<uint64_t> late_sends_{0};  // open loop: sent > 1 ms late
  mutable std::mutex msg_mu_;
  std::string first_error_[kNumCodes];
};

}  // namespace registrar::bench

#endif  // REGISTRAR_BENCH_PROGRAMS_DRIVER_H_
