#ifndef REGISTRAR_SERVICE_METRICS_PROCESS_METRICS_H_
#define REGISTRAR_SERVICE_METRICS_PROCESS_METRICS_H_

// What the operating system says about this process and its data directory,
// read at scrape time. prometheus-cpp has no process collector; these are the
// standard families of Prometheus' client libraries (client_golang's
// process collector), so node-level dashboards find them by their usual
// names:
//   process_cpu_seconds_total        counter  user + system CPU time
//   process_resident_memory_bytes    gauge    resident set size
//   process_virtual_memory_bytes     gauge    virtual memory size
//   process_open_fds                 gauge    open file descriptors
//   process_max_fds                  gauge    RLIMIT_NOFILE soft limit
//   process_start_time_seconds       gauge    start time, Unix seconds
// and, for the durable store's directory (statvfs):
//   registrar_data_dir_available_bytes  gauge  bytes an unprivileged
//                                              writer may still use
//   registrar_data_dir_size_bytes       gauge  size of that filesystem
// Linux only (/proc).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace prometheus {
class Collectable;
}  // namespace prometheus

namespace registrar {

// The fields of /proc/<pid>/stat the process collector uses, converted to
// seconds and bytes, and the nice value (also of a thread's
// /proc/<pid>/task/<tid>/stat).
struct ProcStat {
  double cpu_seconds = 0;               // utime + stime
  double start_seconds_after_boot = 0;  // starttime
  uint64_t virtual_bytes = 0;           // vsize
  uint64_t resident_bytes = 0;          // rss * page size
  int nice = 0;                         // nice
};

// Parses the text of /proc/<pid>/stat (the command name may hold spaces and
// parentheses: fields are counted after the last ')'). nullopt if the text
// has too few fields or a field is not a number. `ticks_per_second` is
// sysconf(_SC_CLK_TCK), `page_bytes` sysconf(_SC_PAGESIZE).
std::optional<ProcStat> ParseProcStat(std::string_view text,
                                      double ticks_per_second,
                                      uint64_t page_bytes);

// The "btime" line of /proc/stat: boot time, Unix seconds; nullopt if absent.
std::optional<double> ParseBootTime(std::string_view proc_stat_text);

// A collectable exporting the process_* families above for this process,
// read from /proc/self at each Collect(); a family whose source cannot be
// read is left out of that scrape. Thread-safe.
std::shared_ptr<prometheus::Collectable> MakeProcessCollectable();

// A collectable exporting registrar_data_dir_available_bytes and
// registrar_data_dir_size_bytes for the filesystem holding `dir`, with
// statvfs at each Collect(); nothing if statvfs fails. Thread-safe.
std::shared_ptr<prometheus::Collectable> MakeDataDirCollectable(
    std::string dir);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_METRICS_PROCESS_METRICS_H_
