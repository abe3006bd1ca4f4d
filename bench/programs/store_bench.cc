// registrar-storebench: in-process benchmark of the durable store and of
// start-up (no gRPC).
//
// Phases (--phase):
//   create   builds a RocksDB data dir holding --records live records of
//            --owners owners (a gateway-like mix, below), written straight
//            through RocksDbStore::Commit in large batches, keeps the last
//            --event_history events (as the server does), compacts, and
//            reports bytes per record on disk;
//   scan     opens the store and streams every record through Load into
//            nothing: the store's share of start-up;
//   recover  a server-like start: opens the store and runs Registry::Recover
//            (store open + load into the registry's shards), and reports
//            start-up seconds and resident bytes per live record (VmRSS
//            after minus before, after malloc_trim(0));
//   all      create in this process, then scan and recover each in a fresh
//            child process (this binary re-run), then a summary.
//
// Record mix: bench/programs/record_mix.h (a gateway-like mix of
// connections, threads, runs and requests over --owners owners).

#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/programs/record_mix.h"
#include "service/common/clock.h"
#include "service/id/id.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"
#include "service/model/record.h"
#include "service/registry/registry.h"
#include "service/store/rocksdb_store.h"
#include "service/store/store.h"

ABSL_FLAG(uint64_t, records, 1'000'000, "Live records to create");
ABSL_FLAG(uint64_t, owners, 100'000, "Owners the records spread over");
ABSL_FLAG(uint32_t, leases, 100, "Leases (gateway instances)");
ABSL_FLAG(std::string, dir, "",
          "Work directory (default /tmp/registrar-storebench-<records>); the "
          "data dir is <dir>/data. Removed at the end unless --keep");
ABSL_FLAG(std::string, phase, "all", "all | create | scan | recover");
ABSL_FLAG(bool, keep, false, "Keep the work directory");
ABSL_FLAG(uint32_t, commit_batch, 20'000, "Events per Commit while creating");
ABSL_FLAG(uint32_t, shards, registrar::RegistryOptions{}.shards,
          "Registry shards (as the server's --shards)");
ABSL_FLAG(uint64_t, event_history, 1'000'000,
          "Events kept in the store after creation (server default)");
ABSL_FLAG(std::string, durability, "fsync",
          "Durability the store is opened with for scan/recover");

namespace registrar::bench {
namespace {

using SteadyClock = std::chrono::steady_clock;

double SecondsSince(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

// A field of /proc/self/status, in bytes ("VmRSS", "VmHWM").
uint64_t StatusBytes(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) {
      return std::strtoull(line.c_str() + prefix.size(), nullptr, 10) * 1024;
    }
  }
  return 0;
}

uint64_t TrimmedRss() {
  malloc_trim(0);
  return StatusBytes("VmRSS");
}

uint64_t HeapInUse() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

uint64_t DirBytes(const std::filesystem::path& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    if (ec) break;
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

double MiB(uint64_t b) { return static_cast<double>(b) / (1 << 20); }

std::string DataDir(const std::string& dir) { return dir + "/data"; }

// The store in the work dir `dir`; null after printing why.
std::unique_ptr<RocksDbStore> OpenStore(const std::string& dir,
                                        Durability durability) {
  auto opened = RocksDbStore::Open(RocksDbStoreOptions{
      .path = DataDir(dir), .durability = durability, .node_id = 0});
  if (!opened.ok()) {
    std::fprintf(stderr, "open: %s\n", opened.status().ToString().c_str());
    return nullptr;
  }
  return *std::move(opened);
}

// ---------------------------------------------------------------------------
// create

int Create(const std::string& dir) {
  const uint64_t n = absl::GetFlag(FLAGS_records);
  const uint64_t owners = std::max<uint64_t>(1, absl::GetFlag(FLAGS_owners));
  const uint32_t nleases = std::max<uint32_t>(1, absl::GetFlag(FLAGS_leases));
  const uint32_t commit_batch =
      std::max<uint32_t>(1, absl::GetFlag(FLAGS_commit_batch));
  const bench::RecordMix mix{n, owners};

  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) {
    if (!std::filesystem::exists(dir + "/STOREBENCH", ec)) {
      std::fprintf(stderr, "%s exists and is not a storebench dir; refusing\n",
                   dir.c_str());
      return 2;
    }
    std::filesystem::remove_all(dir, ec);
  }
  std::filesystem::create_directories(dir, ec);
  std::ofstream(dir + "/STOREBENCH") << "registrar-storebench work dir\n";

  std::unique_ptr<RocksDbStore> store = OpenStore(dir, Durability::kNone);
  if (store == nullptr) return 1;

  SystemClock clock;
  KeyRing keys = KeyRing::Generate();
  IdGenerator ids(clock, keys, 0);

  const auto t_start = SteadyClock::now();
  // Leases.
  std::vector<Id128> leases;
  {
    WriteBatch batch;
    absl::StatusOr<std::vector<Id128>> minted =
        bench::RecordMix::MintLeases(ids, nleases, &batch);
    if (!minted.ok()) return 1;
    leases = *std::move(minted);
    if (auto s = store->Commit(&batch); !s.ok()) {
      std::fprintf(stderr, "commit: %s\n", s.ToString().c_str());
      return 1;
    }
  }

  uint64_t written = 0;
  uint64_t by_kind[kNumKinds] = {};
  WriteBatch batch;
  batch.events.reserve(commit_batch);
  bool failed = false;
  auto flush = [&]() -> bool {
    if (batch.events.empty()) return true;
    if (auto s = store->Commit(&batch); !s.ok()) {
      std::fprintf(stderr, "commit: %s\n", s.ToString().c_str());
      return false;
    }
    batch.events.clear();
    return true;
  };
  absl::Status generated = mix.Generate(
      ids, clock, leases,
      [&](RecordView&& r) {
        batch.events.push_back(Event{0, EventType::kIssued, std::move(r)});
        ++written;
        if (batch.events.size() >= commit_batch && !flush()) {
          failed = true;
          return false;
        }
        return true;
      },
      by_kind);
  if (!generated.ok() || failed) return 1;
  if (!flush()) return 1;
  {
    WriteBatch hw;
    hw.clock_high_water_ms =
        static_cast<uint64_t>(absl::ToUnixMillis(clock.Now())) + 10'000;
    if (!store->Commit(&hw).ok()) return 1;
  }
  const double t_write = SecondsSince(t_start);
  // Keep the server's event history, no more.
  const uint64_t last = store->LastRevision();
  const uint64_t history = absl::GetFlag(FLAGS_event_history);
  if (last > history) {
    if (auto s = store->CompactEvents(last - history + 1); !s.ok()) {
      std::fprintf(stderr, "compact events: %s\n", s.ToString().c_str());
    }
  }
  const auto t_compact = SteadyClock::now();
  if (auto s = store->Flush(); !s.ok()) {
    std::fprintf(stderr, "flush: %s\n", s.ToString().c_str());
  }
  if (auto s = store->CompactAll(); !s.ok()) {
    std::fprintf(stderr, "compact: %s\n", s.ToString().c_str());
  }
  const double compact_s = SecondsSince(t_compact);
  const StoreDiskUsage usage = store->disk_usage();
  store.reset();
  const uint64_t dir_bytes = DirBytes(DataDir(dir));

  std::printf(
      "create: %llu records (%llu connections, %llu threads, %llu runs, "
      "%llu requests) of %llu owners, %u leases\n",
      static_cast<unsigned long long>(written),
      static_cast<unsigned long long>(by_kind[4]),
      static_cast<unsigned long long>(by_kind[1]),
      static_cast<unsigned long long>(by_kind[2]),
      static_cast<unsigned long long>(by_kind[3]),
      static_cast<unsigned long long>(owners), nleases);
  std::printf(
      "  written in %.1f s (%.0f records/s, durability none, batches of "
      "%u); flush + full compaction %.1f s\n",
      t_write, written / t_write, commit_batch, compact_s);
  std::printf(
      "  disk: records family %.1f MiB = %.1f B/record; all SSTs "
      "%.1f MiB (events kept: %llu); data dir %.1f MiB = %.1f "
      "B/record\n",
      MiB(usage.records_sst_bytes),
      static_cast<double>(usage.records_sst_bytes) / written,
      MiB(usage.live_sst_bytes),
      static_cast<unsigned long long>(std::min(last, history)), MiB(dir_bytes),
      static_cast<double>(dir_bytes) / written);
  std::printf(
      "{\"phase\":\"create\",\"records\":%llu,\"owners\":%llu,"
      "\"write_s\":%.2f,\"compact_s\":%.2f,\"records_sst_bytes\":%llu,"
      "\"sst_bytes\":%llu,\"events_sst_bytes\":%llu,\"dir_bytes\":%llu,"
      "\"records_bytes_per_record\":%.2f,\"dir_bytes_per_record\":%.2f}\n",
      static_cast<unsigned long long>(written),
      static_cast<unsigned long long>(owners), t_write, compact_s,
      static_cast<unsigned long long>(usage.records_sst_bytes),
      static_cast<unsigned long long>(usage.live_sst_bytes),
      static_cast<unsigned long long>(usage.events_sst_bytes),
      static_cast<unsigned long long>(dir_bytes),
      static_cast<double>(usage.records_sst_bytes) / written,
      static_cast<double>(dir_bytes) / written);
  std::fflush(stdout);
  return 0;
}

// ---------------------------------------------------------------------------
// scan / recover (each in a fresh process)

absl::StatusOr<Durability> DurabilityFlag() {
  return ParseDurability(absl::GetFlag(FLAGS_durability));
}

int Scan(const std::string& dir) {
  auto durability = DurabilityFlag();
  if (!durability.ok()) return 2;
  const uint64_t rss0 = TrimmedRss();
  const auto t0 = SteadyClock::now();
  std::unique_ptr<RocksDbStore> store = OpenStore(dir, *durability);
  if (store == nullptr) return 1;
  const double open_s = SecondsSince(t0);
  uint64_t count = 0, live = 0;
  const auto t1 = SteadyClock::now();
  auto meta = store->Load([&](RecordView&& r) {
    ++count;
    if (r.state == State::kLive) ++live;
  });
  if (!meta.ok()) {
    std::fprintf(stderr, "load: %s\n", meta.status().ToString().c_str());
    return 1;
  }
  const double load_s = SecondsSince(t1);
  const uint64_t rss1 = TrimmedRss();
  std::printf(
      "scan: open %.2f s, Load of %llu records (%llu live) %.2f s "
      "(%.0f records/s); RSS +%.1f MiB (store caches)\n",
      open_s, static_cast<unsigned long long>(count),
      static_cast<unsigned long long>(live), load_s,
      count / std::max(load_s, 1e-9), MiB(rss1 - rss0));
  std::printf(
      "{\"phase\":\"scan\",\"records\":%llu,\"open_s\":%.3f,"
      "\"load_s\":%.3f,\"rss_delta_bytes\":%llu}\n",
      static_cast<unsigned long long>(count), open_s, load_s,
      static_cast<unsigned long long>(rss1 - rss0));
  std::fflush(stdout);
  return 0;
}

int Recover(const std::string& dir) {
  auto durability = DurabilityFlag();
  if (!durability.ok()) return 2;
  const uint32_t shards = std::max<uint32_t>(1, absl::GetFlag(FLAGS_shards));

  // Everything up to here (flags, libraries) is the baseline.
  SystemClock clock;
  KeyRing keys = KeyRing::Generate();
  IdGenerator ids(clock, keys, 0);
  const uint64_t rss0 = TrimmedRss();
  const auto t0 = SteadyClock::now();
  std::unique_ptr<RocksDbStore> store = OpenStore(dir, *durability);
  if (store == nullptr) return 1;
  const double open_s = SecondsSince(t0);
  const uint64_t rss_open = TrimmedRss();
  const uint64_t heap_open = HeapInUse();

  const uint64_t hint = store->ApproximateRecordCount();
  RegistryOptions options;
  options.shards = shards;
  options.event_history = absl::GetFlag(FLAGS_event_history);
  auto registry =
      std::make_unique<Registry>(options, clock, ids, nullptr, store.get());
  const auto t1 = SteadyClock::now();
  if (auto s = registry->Recover(); !s.ok()) {
    std::fprintf(stderr, "recover: %s\n", s.ToString().c_str());
    return 1;
  }
  const double recover_s = SecondsSince(t1);
  const double total_s = SecondsSince(t0);
  const uint64_t rss1 = TrimmedRss();
  const uint64_t heap1 = HeapInUse();
  const uint64_t hwm = StatusBytes("VmHWM");
  const RegistryStats stats = registry->Stats();
  uint64_t live = 0;
  for (uint64_t v : stats.live_records) live += v;
  const uint64_t n = std::max<uint64_t>(1, live + stats.tombstones);

  const double rss_per = static_cast<double>(rss1 - rss0) / n;
  const double rss_reg_per = static_cast<double>(rss1 - rss_open) / n;
  const double heap_per = static_cast<double>(heap1 - heap_open) / n;
  std::printf(
      "recover: %llu live records (%llu conn, %llu thread, %llu run, %llu "
      "req), "
      "%llu tombstones, %llu leases, %u shards\n",
      static_cast<unsigned long long>(live),
      static_cast<unsigned long long>(stats.live_records[4]),
      static_cast<unsigned long long>(stats.live_records[1]),
      static_cast<unsigned long long>(stats.live_records[2]),
      static_cast<unsigned long long>(stats.live_records[3]),
      static_cast<unsigned long long>(stats.tombstones),
      static_cast<unsigned long long>(stats.leases), shards);
  std::printf(
      "  start-up %.2f s = store open %.2f s + Registry::Recover %.2f s "
      "(store's record estimate %llu; %u hardware threads)\n",
      total_s, open_s, recover_s, static_cast<unsigned long long>(hint),
      std::thread::hardware_concurrency());
  std::printf(
      "  resident: VmRSS %.1f -> %.1f MiB (after open %.1f MiB); +%.1f B per "
      "live record (open + recover), +%.1f B (recover only); malloc heap in "
      "use +%.1f B/record (recover); peak VmHWM %.1f MiB\n",
      MiB(rss0), MiB(rss1), MiB(rss_open), rss_per, rss_reg_per, heap_per,
      MiB(hwm));
  // The registry's own account of its tables (capacity, not use).
  const RecordTable::Memory mem = registry->MemoryUsage();
  const double table_bytes =
      static_cast<double>(mem.nodes + mem.id_index + mem.extras + mem.owners +
                          mem.owner_ids + mem.tombstones);
  std::printf(
      "  registry tables, bytes per record (RecordTable::MemoryUsage):\n");
  const std::pair<const char*, uint64_t> parts[] = {
      {"nodes (64-byte node, 4096-node chunks)", mem.nodes},
      {"ID index (hash set of 32-bit refs)", mem.id_index},
      {"extras (lease, labels, end) side table", mem.extras},
      {"owners (entries + hash map)", mem.owners},
      {"owner ID order (B-trees of refs, estimate)", mem.owner_ids},
      {"tombstone queue", mem.tombstones}};
  for (const auto& [name, bytes] : parts) {
    std::printf("    %6.1f B  %s\n", static_cast<double>(bytes) / n, name);
  }
  std::printf(
      "    %6.1f B  total (rest of the measured figure: allocator "
      "slack, RocksDB caches, lessor, transient)\n",
      table_bytes / n);
  std::printf(
      "{\"phase\":\"recover\",\"records\":%llu,\"live\":%llu,\"open_s\":%.3f,"
      "\"recover_s\":%.3f,\"startup_s\":%.3f,\"rss_before_bytes\":%llu,"
      "\"rss_after_bytes\":%llu,\"rss_bytes_per_record\":%.1f,"
      "\"rss_recover_bytes_per_record\":%.1f,\"heap_bytes_per_record\":%.1f,"
      "\"table_bytes_per_record\":%.1f,\"vmhwm_bytes\":%llu}\n",
      static_cast<unsigned long long>(n), static_cast<unsigned long long>(live),
      open_s, recover_s, total_s, static_cast<unsigned long long>(rss0),
      static_cast<unsigned long long>(rss1), rss_per, rss_reg_per, heap_per,
      table_bytes / n, static_cast<unsigned long long>(hwm));
  std::fflush(stdout);
  // Exit without tearing down 10M entries: that is not start-up.
  std::_Exit(0);
}

// Runs this binary again with --phase=<phase> and the same flags.
int RunChild(const char* self, const std::string& phase, const std::string& dir,
             std::string* json) {
  std::string cmd =
      absl::StrCat("'", self, "' --phase=", phase, " --dir='", dir,
                   "' --records=", absl::GetFlag(FLAGS_records),
                   " --owners=", absl::GetFlag(FLAGS_owners),
                   " --leases=", absl::GetFlag(FLAGS_leases),
                   " --shards=", absl::GetFlag(FLAGS_shards),
                   " --event_history=", absl::GetFlag(FLAGS_event_history),
                   " --durability=", absl::GetFlag(FLAGS_durability));
  std::fflush(stdout);
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return 1;
  char buf[4096];
  while (fgets(buf, sizeof buf, p) != nullptr) {
    std::fputs(buf, stdout);
    if (buf[0] == '{') *json = buf;
  }
  const int rc = pclose(p);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
}

double JsonNumber(const std::string& json, const std::string& key) {
  const std::string k = "\"" + key + "\":";
  const size_t at = json.find(k);
  return at == std::string::npos
             ? -1
             : std::strtod(json.c_str() + at + k.size(), nullptr);
}

}  // namespace
}  // namespace registrar::bench

int main(int argc, char** argv) {
  using namespace registrar::bench;
  absl::SetProgramUsageMessage(
      "registrar-storebench: builds a data dir of N records, then measures "
      "start-up (store open + Registry::Recover), bytes per record on disk "
      "and resident bytes per live record.");
  absl::ParseCommandLine(argc, argv);
  // One malloc arena, so that mallinfo2 sees every allocation.
  mallopt(M_ARENA_MAX, 1);
  std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) {
    dir = absl::StrCat("/tmp/registrar-storebench-",
                       absl::GetFlag(FLAGS_records));
  }
  const std::string phase = absl::GetFlag(FLAGS_phase);
  if (phase == "create") return Create(dir);
  if (phase == "scan") return Scan(dir);
  if (phase == "recover") return Recover(dir);
  if (phase != "all") {
    std::fprintf(stderr, "unknown --phase=%s\n", phase.c_str());
    return 2;
  }
  if (int rc = Create(dir); rc != 0) return rc;
  std::string scan_json, recover_json;
  std::error_code ec;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return 1;
  int rc = RunChild(self.c_str(), "scan", dir, &scan_json);
  if (rc == 0) rc = RunChild(self.c_str(), "recover", dir, &recover_json);
  if (rc == 0) {
    const uint64_t n = absl::GetFlag(FLAGS_records);
    std::printf(
        "SUMMARY records=%llu owners=%llu: start-up %.2f s (target <= 10 s at "
        "10M), Load alone %.2f s; resident %.1f B/live record (target <= 160), "
        "registry tables %.1f B\n",
        static_cast<unsigned long long>(n),
        static_cast<unsigned long long>(absl::GetFlag(FLAGS_owners)),
        JsonNumber(recover_json, "startup_s"), JsonNumber(scan_json, "load_s"),
        JsonNumber(recover_json, "rss_bytes_per_record"),
        JsonNumber(recover_json, "table_bytes_per_record"));
  }
  if (!absl::GetFlag(FLAGS_keep)) {
    if (std::filesystem::exists(dir + "/STOREBENCH", ec)) {
      std::filesystem::remove_all(dir, ec);
    }
  }
  return rc;
}
