#ifndef REGISTRAR_BENCH_PROGRAMS_BENCH_COMMON_H_
#define REGISTRAR_BENCH_PROGRAMS_BENCH_COMMON_H_

// Small helpers shared by registrar-bench's driver and backends and by
// registrar-echo: clocks, hashing, status code names, client-made IDs of
// the registrar's shape, and a per-owner "last thread" table.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace registrar::bench {

inline int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

inline uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A number in [0, 1) derived from k.
inline double UnitRandom(uint64_t k) {
  return static_cast<double>(SplitMix(k) >> 11) * 0x1.0p-53;
}

// gRPC status codes 0..16; backends that are not gRPC map their failures
// onto them (connection lost: UNAVAILABLE; error reply: UNKNOWN).
constexpr int kNumCodes = 17;
constexpr int kCodeUnknown = 2;
constexpr int kCodeUnavailable = 14;
std::string CodeName(int code);  // "CODE?" outside 0..16

// Kinds of the IDs a workload makes (the registrar's four record kinds).
enum class IdKind { kThread, kRun, kRequest, kConnection };
bool ParseIdKind(const std::string& s, IdKind* kind);
const char* IdPrefix(IdKind kind);

// `<prefix>_<26 lowercase Crockford base32>` for 128 bits (hi, lo): the
// registrar's text form, so baselines store keys of the same size.
std::string MakeTypeId(const char* prefix, uint64_t hi, uint64_t lo);

// Unique IDs of the registrar's shape made by the client (etcd and redis
// keys): a random per-process 64-bit half and a counter. Thread-safe.
class LocalIds {
 public:
  LocalIds();
  std::string Next(IdKind kind);

 private:
  uint64_t hi_;
  uint64_t salt_;
  std::atomic<uint64_t> counter_{0};
};

// The value etcd and redis keep for a record: its owner as one string.
std::string OwnerValue(const std::string& tenant, int owner_index);
// The registrar's user_id of owner number i.
std::string UserId(int owner_index);

// open-context: the thread each owner opened last, under striped locks.
class LastThreads {
 public:
  explicit LastThreads(int owners) : threads_(owners) {}
  std::string Get(int owner) {
    std::lock_guard<std::mutex> lock(stripes_[owner % kStripes]);
    return threads_[owner];
  }
  void Set(int owner, const std::string& thread) {
    std::lock_guard<std::mutex> lock(stripes_[owner % kStripes]);
    threads_[owner] = thread;
  }

 private:
  static constexpr int kStripes = 64;
  std::mutex stripes_[kStripes];
  std::vector<std::string> threads_;
};

// Runs fn(begin, end) over [0, n) split into `threads` contiguous parts on
// as many threads (setup of pools). True when every part returned true.
bool ParallelFor(int n, int threads,
                 const std::function<bool(int begin, int end)>& fn);

}  // namespace registrar::bench

#endif  // REGISTRAR_BENCH_PROGRAMS_BENCH_COMMON_H_
