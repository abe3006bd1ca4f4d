#include "bench/programs/bench_common.h"

#include <unistd.h>

#include <random>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace registrar::bench {

std::string CodeName(int code) {
  // absl's status codes are gRPC's, numbers and names.
  std::string name =
      absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  return name.empty() ? "CODE?" : name;
}

bool ParseIdKind(const std::string& s, IdKind* kind) {
  if (s == "thread") {
    *kind = IdKind::kThread;
  } else if (s == "run") {
    *kind = IdKind::kRun;
  } else if (s == "request") {
    *kind = IdKind::kRequest;
  } else if (s == "connection") {
    *kind = IdKind::kConnection;
  } else {
    return false;
  }
  return true;
}

const char* IdPrefix(IdKind kind) {
  switch (kind) {
    case IdKind::kThread:
      return "thread";
    case IdKind::kRun:
      return "run";
    case IdKind::kRequest:
      return "req";
    case IdKind::kConnection:
      return "conn";
  }
  return "id";
}

std::string MakeTypeId(const char* prefix, uint64_t hi, uint64_t lo) {
  static constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
  std::string out(prefix);
  out.push_back('_');
  const size_t start = out.size();
  out.resize(start + 26);
  // 26 characters of 5 bits = 130 bits: the first one carries 3 bits.
  for (int i = 25; i >= 0; --i) {
    out[start + i] = kAlphabet[lo & 31];
    lo = (lo >> 5) | (hi << 59);
    hi >>= 5;
  }
  return out;
}

LocalIds::LocalIds() {
  std::random_device rd;
  const uint64_t ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  // UUIDv7-like: time in the top 48 bits, then random bits.
  hi_ = (ms << 16) | ((static_cast<uint64_t>(rd()) ^ getpid()) & 0xffff);
  salt_ = (static_cast<uint64_t>(rd()) << 32) | rd();
}

std::string LocalIds::Next(IdKind kind) {
  const uint64_t n = counter_.fetch_add(1, std::memory_order_relaxed);
  return MakeTypeId(IdPrefix(kind), hi_, salt_ + n);
}

std::string UserId(int owner_index) {
  return absl::StrFormat("user-%07d", owner_index);
}

std::string OwnerValue(const std::string& tenant, int owner_index) {
  return absl::StrFormat("%s/user-%07d", tenant, owner_index);
}

bool ParallelFor(int n, int threads,
                 const std::function<bool(int begin, int end)>& fn) {
  threads = std::max(1, std::min(threads, n));
  std::vector<std::thread> workers;
  std::atomic<bool> ok{true};
  for (int t = 0; t < threads; ++t) {
    const int begin = static_cast<int>(static_cast<int64_t>(n) * t / threads);
    const int end =
        static_cast<int>(static_cast<int64_t>(n) * (t + 1) / threads);
    workers.emplace_back([&, begin, end] {
      if (!fn(begin, end)) ok.store(false);
    });
  }
  for (std::thread& w : workers) w.join();
  return ok.load();
}

}  // namespace registrar::bench
