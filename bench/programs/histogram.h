#ifndef REGISTRAR_BENCH_PROGRAMS_HISTOGRAM_H_
#define REGISTRAR_BENCH_PROGRAMS_HISTOGRAM_H_

// A small HdrHistogram-like log-linear latency histogram for the benchmark
// programs: values (nanoseconds) below 2^kSubBits are counted exactly; above,
// every power-of-two range is split into 2^kSubBits equal sub-buckets, so a
// reported percentile is within 1/2^kSubBits (0.8%) of the true value.
// Counts are atomics, so many threads (gRPC callback threads) may Record()
// concurrently without a lock; reads are meant for after the run.

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdint>

namespace registrar::bench {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 7;   // 128 sub-buckets
  static constexpr int kMaxBits = 42;  // ~73 minutes in ns
  static constexpr int kBuckets = (kMaxBits - kSubBits + 1) << kSubBits;

  LatencyHistogram() { Reset(); }

  void Reset() {
    for (auto& c : counts_) c.store(0, std::memory_order_relaxed);
    total_.store(0, std::memory_order_relaxed);
    sum_.store(0, std::memory_order_relaxed);
    max_.store(0, std::memory_order_relaxed);
  }

  void Record(uint64_t ns) {
    counts_[Index(ns)].fetch_add(1, std::memory_order_relaxed);
    total_.fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(ns, std::memory_order_relaxed);
    uint64_t m = max_.load(std::memory_order_relaxed);
    while (ns > m &&
           !max_.compare_exchange_weak(m, ns, std::memory_order_relaxed)) {
    }
  }

  uint64_t count() const { return total_.load(std::memory_order_relaxed); }
  uint64_t max() const { return max_.load(std::memory_order_relaxed); }
  double mean() const {
    const uint64_t n = count();
    return n == 0 ? 0.0
                  : static_cast<double>(sum_.load(std::memory_order_relaxed)) /
                        static_cast<double>(n);
  }

  // The value at quantile q (0..1): the midpoint of the bucket holding the
  // ceil(q * count)-th smallest sample, capped at the observed maximum.
  uint64_t Quantile(double q) const {
    const uint64_t n = count();
    if (n == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(n) + 0.5);
    rank = std::clamp<uint64_t>(rank, 1, n);
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[i].load(std::memory_order_relaxed);
      if (seen >= rank) {
        const uint64_t lo = LowerBound(i);
        const uint64_t hi = LowerBound(i + 1);
        return std::min<uint64_t>(lo + (hi - lo) / 2, max());
      }
    }
    return max();
  }

  static int Index(uint64_t v) {
    constexpr uint64_t kSub = uint64_t{1} << kSubBits;
    if (v < kSub) return static_cast<int>(v);
    const int msb = 63 - std::countl_zero(v);
    if (msb >= kMaxBits) return kBuckets - 1;
    const int shift = msb - kSubBits;          // >= 0
    const uint64_t sub = (v >> shift) - kSub;  // 0 .. kSub-1
    return ((shift + 1) << kSubBits) + static_cast<int>(sub);
  }

  static uint64_t LowerBound(int index) {
    constexpr uint64_t kSub = uint64_t{1} << kSubBits;
    if (index < static_cast<int>(kSub)) return static_cast<uint64_t>(index);
    const int shift = (index >> kSubBits) - 1;
    const uint64_t sub = static_cast<uint64_t>(index) & (kSub - 1);
    return (kSub + sub) << shift;
  }

 private:
  std::array<std::atomic<uint64_t>, kBuckets> counts_;
  std::atomic<uint64_t> total_;
  std::atomic<uint64_t> sum_;
  std::atomic<uint64_t> max_;
};

}  // namespace registrar::bench

#endif  // REGISTRAR_BENCH_PROGRAMS_HISTOGRAM_H_
