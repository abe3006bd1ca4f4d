#include "bench/programs/driver.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace registrar::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

std::string Us(uint64_t ns) { return absl::StrFormat("%.1f", ns / 1000.0); }

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out.push_back('\\');
    if (static_cast<unsigned char>(ch) >= 0x20) out.push_back(ch);
  }
  return out;
}

}  // namespace

const char* Driver::ItemName() const {
  switch (opts_.workload) {
    case Workload::kValidate:
      return "items";
    case Workload::kCleanup:
      return "released";
    case Workload::kLease:
      return "renewals";
    case Workload::kGateway:
      return "rpcs";
    default:
      return "ids";
  }
}

bool Driver::Fire(uint64_t k, int64_t start_ns, int slot) {
  if (backend_->Fire(k, CallToken{start_ns, slot})) return true;
  int64_t expected = 0;
  exhausted_ns_.compare_exchange_strong(expected, NowNs());
  return false;
}

void Driver::Done(const CallToken& token, CallResult result) {
  const int64_t now = NowNs();
  const bool ok = result.code == 0;
  rpcs_.fetch_add(result.rpcs, std::memory_order_relaxed);
  if (now >= window_start_ns_ && now < window_end_ns_) {
    done_in_window_.fetch_add(1, std::memory_order_relaxed);
    if (ok) {
      ok_in_window_.fetch_add(1, std::memory_order_relaxed);
      items_in_window_.fetch_add(result.items, std::memory_order_relaxed);
      NoteOk(now);
    }
    int64_t last = last_done_ns_.load(std::memory_order_relaxed);
    while (now > last && !last_done_ns_.compare_exchange_weak(
                             last, now, std::memory_order_relaxed)) {
    }
  }
  if (token.start_ns >= window_start_ns_ && token.start_ns < window_end_ns_) {
    hist_.Record(
        static_cast<uint64_t>(std::max<int64_t>(0, now - token.start_ns)));
    calls_.fetch_add(1, std::memory_order_relaxed);
    const int code = std::clamp(result.code, 0, kNumCodes - 1);
    codes_[code].fetch_add(1, std::memory_order_relaxed);
    if (ok) {
      ok_.fetch_add(1, std::memory_order_relaxed);
      items_.fetch_add(result.items, std::memory_order_relaxed);
      unexpected_.fetch_add(result.unexpected, std::memory_order_relaxed);
    } else {
      std::lock_guard<std::mutex> lock(msg_mu_);
      std::string& msg = first_error_[code];
      if (msg.empty()) msg = std::move(result.message);
    }
  }
  if (token.slot >= 0) {
    // Closed loop: this slot starts its next operation, until the window
    // ends.
    const int64_t t = NowNs();
    if (t < window_end_ns_ &&
        Fire(seq_.fetch_add(1, std::memory_order_relaxed), t, token.slot)) {
      return;
    }
    SlotFinished();
  } else if (inflight_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    std::lock_guard<std::mutex> lock(done_mu_);
    done_cv_.notify_all();
  }
}

void Driver::NoteOk(int64_t now) {
  int64_t last = last_ok_ns_.load(std::memory_order_relaxed);
  while (now > last && !last_ok_ns_.compare_exchange_weak(
                           last, now, std::memory_order_relaxed)) {
  }
  if (now <= last) return;  // a later completion was noted first
  const int64_t gap = now - std::max(last, window_start_ns_);
  int64_t max = max_ok_gap_ns_.load(std::memory_order_relaxed);
  while (gap > max && !max_ok_gap_ns_.compare_exchange_weak(
                          max, gap, std::memory_order_relaxed)) {
  }
}

void Driver::SlotFinished() {
  if (active_slots_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    std::lock_guard<std::mutex> lock(done_mu_);
    done_cv_.notify_all();
  }
}

void Driver::Run() {
  t0_ns_ = NowNs() + 1'000'000;  // 1 ms from now
  window_start_ns_ = t0_ns_ + absl::ToInt64Nanoseconds(opts_.warmup);
  window_end_ns_ = window_start_ns_ + absl::ToInt64Nanoseconds(opts_.duration);

  if (opts_.rate <= 0) {
    active_slots_.store(opts_.concurrency);
    std::this_thread::sleep_until(
        SteadyClock::time_point(std::chrono::nanoseconds(t0_ns_)));
    for (int s = 0; s < opts_.concurrency; ++s) {
      if (!Fire(seq_.fetch_add(1), NowNs(), s)) SlotFinished();
    }
    std::unique_lock<std::mutex> lock(done_mu_);
    done_cv_.wait(lock, [this] { return active_slots_.load() == 0; });
  } else {
    // Open loop: operation k is due at t0 + k / rate.
    const double period_ns = 1e9 / opts_.rate;
    const int64_t max_inflight = std::max(1, opts_.max_inflight);
    inflight_.store(1);  // the sender's own unit, dropped when it is done
    for (uint64_t k = 0;; ++k) {
      const int64_t due = t0_ns_ + static_cast<int64_t>(period_ns * k);
      if (due >= window_end_ns_) break;
      int64_t now = NowNs();
      if (due > now) {
        std::this_thread::sleep_until(
            SteadyClock::time_point(std::chrono::nanoseconds(due)));
        now = NowNs();
      }
      if (now - due > 1'000'000 && due >= window_start_ns_) {
        late_sends_.fetch_add(1, std::memory_order_relaxed);
      }
      while (inflight_.load(std::memory_order_acquire) > max_inflight) {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
      inflight_.fetch_add(1, std::memory_order_acq_rel);
      if (!Fire(k, due, -1)) {
        inflight_.fetch_sub(1, std::memory_order_acq_rel);
        break;
      }
    }
    if (inflight_.fetch_sub(1, std::memory_order_acq_rel) != 1) {
      std::unique_lock<std::mutex> lock(done_mu_);
      done_cv_.wait(lock, [this] { return inflight_.load() == 0; });
    }
  }
}

bool Driver::HadErrors() const {
  return calls_.load() != ok_.load() || unexpected_.load() != 0;
}

void Driver::Report() const {
  // Throughput counts completions inside the window (so an overloaded open
  // loop reports what the server did, not what was offered); latency and
  // errors are of the operations that started (were due) inside the window.
  int64_t window_end = window_end_ns_;
  const int64_t exhausted = exhausted_ns_.load();
  if (exhausted > 0 && exhausted < window_end) {
    window_end = std::max(exhausted, last_done_ns_.load());
  }
  const double secs = std::max<double>(
      1e-9, static_cast<double>(window_end - window_start_ns_) / 1e9);
  const uint64_t calls = calls_.load();
  const uint64_t errors = calls - ok_.load();
  const double cps = static_cast<double>(done_in_window_.load()) / secs;
  const double ok_ps = static_cast<double>(ok_in_window_.load()) / secs;
  const double ips = static_cast<double>(items_in_window_.load()) / secs;
  const uint64_t all_calls = backend_->setup_calls() + rpcs_.load();

  std::printf(
      "registrar-bench %s -> %s at %s: %s, concurrency %d, channels %d, "
      "batch %d, owners %d, warmup %s, duration %s\n",
      opts_.workload_name.c_str(), opts_.backend.c_str(), opts_.target.c_str(),
      opts_.rate > 0
          ? absl::StrFormat("open loop at %.0f calls/s", opts_.rate).c_str()
          : "closed loop",
      opts_.concurrency, opts_.channels, opts_.batch, opts_.owners,
      absl::FormatDuration(opts_.warmup).c_str(),
      absl::FormatDuration(opts_.duration).c_str());
  if (exhausted > 0 && exhausted <= window_start_ns_) {
    std::printf(
        "  cleanup pool used up during the warm-up: nothing measured (raise "
        "--pool)\n");
  } else if (exhausted > 0) {
    std::printf("  cleanup pool used up after %.2f s of the window\n", secs);
  }
  std::printf(
      "  calls:    %.0f calls/s completed in the %.2f s window (%.0f/s "
      "OK)%s\n",
      cps, secs, ok_ps,
      opts_.rate > 0 ? absl::StrFormat(", offered %.0f/s", opts_.rate).c_str()
                     : "");
  std::printf("  %-9s %.0f/s\n", absl::StrCat(ItemName(), ":").c_str(), ips);
  // The gap up to the window's end counts too: a service that stopped
  // accepting for good has one gap as long as the rest of the window.
  const int64_t last_ok = last_ok_ns_.load();
  const double max_ok_gap_ms =
      static_cast<double>(
          std::max(max_ok_gap_ns_.load(),
                   window_end - std::max(last_ok, window_start_ns_))) /
      1e6;
  std::printf("  started in window: %llu calls, %llu errors\n",
              static_cast<unsigned long long>(calls),
              static_cast<unsigned long long>(errors));
  std::printf(
      "  latency:  p50 %s us, p90 %s us, p99 %s us, p99.9 %s us, max %s us, "
      "mean %s us\n",
      Us(hist_.Quantile(0.50)).c_str(), Us(hist_.Quantile(0.90)).c_str(),
      Us(hist_.Quantile(0.99)).c_str(), Us(hist_.Quantile(0.999)).c_str(),
      Us(hist_.max()).c_str(),
      absl::StrFormat("%.1f", hist_.mean() / 1000.0).c_str());
  std::printf("  longest time without an OK completion: %.1f ms\n",
              max_ok_gap_ms);
  if (opts_.rate > 0) {
    std::printf("  sender:   %llu calls sent more than 1 ms late\n",
                static_cast<unsigned long long>(late_sends_.load()));
  }
  if (unexpected_.load() > 0) {
    std::printf(
        "  unexpected results (non-VALID verdicts, keys not found, "
        "not-released ids): %llu\n",
        static_cast<unsigned long long>(unexpected_.load()));
  }
  std::string errors_json;
  for (int c = 1; c < kNumCodes; ++c) {
    const uint64_t n = codes_[c].load();
    if (n == 0) continue;
    std::lock_guard<std::mutex> lock(msg_mu_);
    std::printf("  error %s: %llu (first: %s)\n", CodeName(c).c_str(),
                static_cast<unsigned long long>(n), first_error_[c].c_str());
    absl::StrAppend(&errors_json, errors_json.empty() ? "" : ",", "\"",
                    CodeName(c), "\":", n);
  }
  // This process's CPU time (all threads, setup included): for scripts that
  // tell the client's share of the machine from everyone else's.
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double cpu_s = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                       ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  std::printf("  client CPU: %.2f s (%.1f us per call)\n", cpu_s,
              all_calls ? cpu_s * 1e6 / all_calls : 0.0);
  std::printf(
      "{\"workload\":\"%s\",\"backend\":\"%s\",\"label\":\"%s\","
      "\"target\":\"%s\",\"concurrency\":%d,\"channels\":%d,\"batch\":%d,"
      "\"owners\":%d,\"rate\":%.1f,\"duration_s\":%.3f,\"calls\":%llu,"
      "\"errors\":%llu,\"calls_per_s\":%.1f,\"ok_per_s\":%.1f,"
      "\"items_per_s\":%.1f,\"item\":\"%s\",\"p50_us\":%s,\"p90_us\":%s,"
      "\"p99_us\":%s,\"p999_us\":%s,\"max_us\":%s,\"mean_us\":%.1f,"
      "\"unexpected\":%llu,\"late_sends\":%llu,\"all_calls\":%llu,"
      "\"client_cpu_s\":%.3f,\"max_ok_gap_ms\":%.1f,"
      "\"errors_by_code\":{%s}}\n",
      opts_.workload_name.c_str(), opts_.backend.c_str(),
      JsonEscape(opts_.label).c_str(), opts_.target.c_str(), opts_.concurrency,
      opts_.channels, opts_.batch, opts_.owners, opts_.rate, secs,
      static_cast<unsigned long long>(calls),
      static_cast<unsigned long long>(errors), cps, ok_ps, ips, ItemName(),
      Us(hist_.Quantile(0.50)).c_str(), Us(hist_.Quantile(0.90)).c_str(),
      Us(hist_.Quantile(0.99)).c_str(), Us(hist_.Quantile(0.999)).c_str(),
      Us(hist_.max()).c_str(), hist_.mean() / 1000.0,
      static_cast<unsigned long long>(unexpected_.load()),
      static_cast<unsigned long long>(late_sends_.load()),
      static_cast<unsigned long long>(all_calls), cpu_s, max_ok_gap_ms,
      errors_json.c_str());
  std::fflush(stdout);
}

}  // namespace registrar::bench
