#include "service/metrics/process_metrics.h"

#include <sys/resource.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "service/metrics/families.h"

namespace registrar {
namespace {

// Fields of /proc/<pid>/stat, numbered as in proc(5), counted from the
// state (field 3), the first one after the command name.
constexpr int kFirstField = 3;
constexpr int kUtime = 14;
constexpr int kStime = 15;
constexpr int kNice = 19;
constexpr int kStartTime = 22;
constexpr int kVsize = 23;
constexpr int kRss = 24;

std::optional<std::string> ReadFile(const char* path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

prometheus::MetricFamily Gauge(const char* name, const char* help,
                               double value) {
  return ScalarFamily(name, help, prometheus::MetricType::Gauge, value);
}

class ProcessCollectable : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    const std::optional<std::string> stat_text = ReadFile("/proc/self/stat");
    const std::optional<ProcStat> stat =
        stat_text ? ParseProcStat(*stat_text,
                                  static_cast<double>(sysconf(_SC_CLK_TCK)),
                                  static_cast<uint64_t>(sysconf(_SC_PAGESIZE)))
                  : std::nullopt;
    if (stat.has_value()) {
      out.push_back(
          ScalarFamily("process_cpu_seconds_total",
                       "Total user and system CPU time spent in seconds.",
                       prometheus::MetricType::Counter, stat->cpu_seconds));
      out.push_back(Gauge("process_resident_memory_bytes",
                          "Resident memory size in bytes.",
                          static_cast<double>(stat->resident_bytes)));
      out.push_back(Gauge("process_virtual_memory_bytes",
                          "Virtual memory size in bytes.",
                          static_cast<double>(stat->virtual_bytes)));
      if (boot_time_.has_value()) {
        out.push_back(
            Gauge("process_start_time_seconds",
                  "Start time of the process since unix epoch in seconds.",
                  *boot_time_ + stat->start_seconds_after_boot));
      }
    }
    std::error_code ec;
    double fds = 0;
    for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end;
         !ec && it != end; it.increment(ec)) {
      ++fds;
    }
    if (!ec) {
      // The iterator's own descriptor is one of those counted.
      out.push_back(Gauge("process_open_fds",
                          "Number of open file descriptors.",
                          fds > 0 ? fds - 1 : 0));
    }
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
      out.push_back(Gauge("process_max_fds",
                          "Maximum number of open file descriptors.",
                          static_cast<double>(limit.rlim_cur)));
    }
    return out;
  }

 private:
  // Constant while the machine is up: read once.
  const std::optional<double> boot_time_ = [] {
    const std::optional<std::string> text = ReadFile("/proc/stat");
    return text ? ParseBootTime(*text) : std::nullopt;
  }();
};

class DataDirCollectable : public prometheus::Collectable {
 public:
  explicit DataDirCollectable(std::string dir) : dir_(std::move(dir)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    struct statvfs fs {};
    if (statvfs(dir_.c_str(), &fs) != 0) return {};
    const double block = static_cast<double>(fs.f_frsize);
    std::vector<prometheus::MetricFamily> out;
    out.push_back(Gauge("registrar_data_dir_available_bytes",
                        "Bytes still available to the server on the "
                        "filesystem of its data directory.",
                        block * static_cast<double>(fs.f_bavail)));
    out.push_back(Gauge("registrar_data_dir_size_bytes",
                        "Size in bytes of the filesystem of the data "
                        "directory.",
                        block * static_cast<double>(fs.f_blocks)));
    return out;
  }

 private:
  const std::string dir_;
};

}  // namespace

std::optional<ProcStat> ParseProcStat(std::string_view text,
                                      double ticks_per_second,
                                      uint64_t page_bytes) {
  const size_t paren = text.rfind(')');
  if (paren == std::string_view::npos || ticks_per_second <= 0) {
    return std::nullopt;
  }
  const std::vector<absl::string_view> fields = absl::StrSplit(
      absl::string_view(text.data() + paren + 1, text.size() - paren - 1), ' ',
      absl::SkipWhitespace());
  auto field = [&](int number, auto* value) {
    const size_t index = static_cast<size_t>(number - kFirstField);
    return index < fields.size() && absl::SimpleAtoi(fields[index], value);
  };
  uint64_t utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
  int nice = 0;
  if (!field(kUtime, &utime) || !field(kStime, &stime) ||
      !field(kStartTime, &start) || !field(kVsize, &vsize) ||
      !field(kRss, &rss) || !field(kNice, &nice)) {
    return std::nullopt;
  }
  ProcStat s;
  s.cpu_seconds = static_cast<double>(utime + stime) / ticks_per_second;
  s.start_seconds_after_boot = static_cast<double>(start) / ticks_per_second;
  s.virtual_bytes = vsize;
  s.resident_bytes = rss * page_bytes;
  s.nice = nice;
  return s;
}

std::optional<double> ParseBootTime(std::string_view proc_stat_text) {
  for (absl::string_view line : absl::StrSplit(
           absl::string_view(proc_stat_text.data(), proc_stat_text.size()),
           '\n')) {
    if (!absl::ConsumePrefix(&line, "btime ")) continue;
    uint64_t seconds = 0;
    if (!absl::SimpleAtoi(line, &seconds)) return std::nullopt;
    return static_cast<double>(seconds);
  }
  return std::nullopt;
}

std::shared_ptr<prometheus::Collectable> MakeProcessCollectable() {
  return std::make_shared<ProcessCollectable>();
}

std::shared_ptr<prometheus::Collectable> MakeDataDirCollectable(
    std::string dir) {
  return std::make_shared<DataDirCollectable>(std::move(dir));
}

}  // namespace registrar
