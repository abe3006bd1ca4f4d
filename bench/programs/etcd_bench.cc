// registrar-etcdbench: what Registrar's state costs in etcd, and how long a
// replica takes to load it (no gRPC server; bench/scripts/etcd_start.sh
// also times the real `registrar --store=etcd` start).
//
// Phases (--phase):
//   create  writes --records live records of --owners owners (the record
//           mix of record_mix.h) under --etcd_prefix through EtcdStore, in
//           transactions of --txn_records records, then reports etcd's
//           database size (Maintenance.Status of every member) before and
//           after compacting etcd's history and defragmenting: bytes per
//           record, and the records a quota holds;
//   load    a writer replica's start: EtcdStore::Load into a Registry
//           (Registry::Recover), timed, with the resident bytes it took.
// Each prints a human line and a JSON line.

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/programs/record_mix.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "service/common/clock.h"
#include "service/etcd/connection.h"
#include "service/etcd/etcd_store.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"
#include "service/registry/registry.h"

ABSL_FLAG(std::string, etcd_endpoints, "127.0.0.1:2379",
          "Comma-separated etcd client endpoints");
ABSL_FLAG(std::string, etcd_prefix, "/registrar-bench", "Key prefix");
ABSL_FLAG(std::string, phase, "create", "create | load");
ABSL_FLAG(uint64_t, records, 1'000'000, "create: live records to write");
ABSL_FLAG(uint64_t, owners, 100'000, "create: owners they spread over");
ABSL_FLAG(uint32_t, leases, 100, "create: leases (gateway instances)");
ABSL_FLAG(uint32_t, txn_records, 4'000, "create: records per transaction");
ABSL_FLAG(int64_t, etcd_max_txn_ops, 16'384, "etcd's --max-txn-ops");
ABSL_FLAG(int64_t, etcd_max_request_bytes, 8 << 20,
          "etcd's --max-request-bytes");
ABSL_FLAG(int64_t, load_page_size,
          registrar::etcd::EtcdStoreOptions{}.load_page_size,
          "load: keys per Range page");
ABSL_FLAG(uint64_t, quota_bytes, uint64_t{2} << 30,
          "create: the etcd quota to express the size in (default 2 GiB)");

namespace registrar {
namespace {

namespace pb = ::etcdserverpb;
using SteadyClock = std::chrono::steady_clock;

double SecondsSince(SteadyClock::time_point t) {
  return std::chrono::duration<double>(SteadyClock::now() - t).count();
}

double MiB(uint64_t b) { return static_cast<double>(b) / (1 << 20); }

uint64_t TrimmedRss() {
  malloc_trim(0);
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::strtoull(line.c_str() + 6, nullptr, 10) * 1024;
    }
  }
  return 0;
}

absl::StatusOr<std::shared_ptr<etcd::Connection>> Connect() {
  etcd::ConnectionOptions o;
  o.endpoints = absl::StrSplit(absl::GetFlag(FLAGS_etcd_endpoints), ',',
                               absl::SkipEmpty());
  o.call_timeout = absl::Seconds(60);
  return etcd::Connection::Create(o);
}

absl::StatusOr<std::unique_ptr<etcd::EtcdStore>> OpenStore(
    std::shared_ptr<etcd::Connection> conn) {
  etcd::EtcdStoreOptions o;
  o.prefix = absl::GetFlag(FLAGS_etcd_prefix);
  o.max_txn_ops = absl::GetFlag(FLAGS_etcd_max_txn_ops);
  o.max_request_bytes = absl::GetFlag(FLAGS_etcd_max_request_bytes);
  o.commit_timeout = absl::Seconds(60);
  o.load_page_size = absl::GetFlag(FLAGS_load_page_size);
  return etcd::EtcdStore::Create(std::move(conn), o);
}

void Fail(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
}

// Every member's database size and the cluster's revision, as member i's
// Maintenance.Status says.
struct DbSizes {
  std::vector<int64_t> bytes;
  int64_t revision = 0;
  int64_t largest() const {
    return bytes.empty() ? 0 : *std::max_element(bytes.begin(), bytes.end());
  }
};

absl::StatusOr<DbSizes> Sizes(const etcd::Connection& conn) {
  DbSizes out;
  for (int i = 0; i < conn.size(); ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(30));
    pb::StatusResponse r;
    grpc::Status s =
        conn.endpoint(i).maintenance->Status(&ctx, pb::StatusRequest(), &r);
    if (!s.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "Status of ", conn.endpoint(i).address, ": ", s.error_message()));
    }
    out.bytes.push_back(r.dbsize());
    out.revision = std::max(out.revision, r.header().revision());
  }
  return out;
}

// Compacts etcd's history at `revision` and defragments every member.
absl::Status CompactAndDefragment(const etcd::Connection& conn,
                                  int64_t revision) {
  {
    grpc::ClientContext ctx;
    pb::CompactionRequest req;
    req.set_revision(revision);
    req.set_physical(true);
    pb::CompactionResponse resp;
    grpc::Status s = conn.endpoint(0).kv->Compact(&ctx, req, &resp);
    if (!s.ok() && s.error_message().find("compacted") == std::string::npos) {
      return absl::UnavailableError(
          absl::StrCat("Compact: ", s.error_message()));
    }
  }
  for (int i = 0; i < conn.size(); ++i) {
    grpc::ClientContext ctx;
    pb::DefragmentResponse resp;
    grpc::Status s = conn.endpoint(i).maintenance->Defragment(
        &ctx, pb::DefragmentRequest(), &resp);
    if (!s.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "Defragment of ", conn.endpoint(i).address, ": ", s.error_message()));
    }
  }
  return absl::OkStatus();
}

int Create() {
  const uint64_t n = absl::GetFlag(FLAGS_records);
  const bench::RecordMix mix{
      n, std::max<uint64_t>(1, absl::GetFlag(FLAGS_owners))};
  const uint32_t per_txn =
      std::max<uint32_t>(1, absl::GetFlag(FLAGS_txn_records));
  auto conn = Connect();
  if (!conn.ok()) return Fail("connect", conn.status()), 1;
  auto before = Sizes(**conn);
  if (!before.ok()) return Fail("status", before.status()), 1;
  auto store = OpenStore(*conn);
  if (!store.ok()) return Fail("store", store.status()), 1;
  auto meta = (*store)->Load([](RecordView&&) {});
  if (!meta.ok()) return Fail("load", meta.status()), 1;

  SystemClock clock;
  KeyRing keys = KeyRing::Generate();
  IdGenerator ids(clock, keys, 0);
  const auto t_start = SteadyClock::now();
  std::vector<Id128> leases;
  {
    WriteBatch batch;
    absl::StatusOr<std::vector<Id128>> minted =
        bench::RecordMix::MintLeases(ids, absl::GetFlag(FLAGS_leases), &batch);
    if (!minted.ok()) return Fail("mint", minted.status()), 1;
    leases = *std::move(minted);
    if (auto s = (*store)->Commit(&batch); !s.ok()) return Fail("commit", s), 1;
  }
  uint64_t written = 0;
  uint64_t txns = 0;
  WriteBatch batch;
  absl::Status failed;
  auto flush = [&] {
    if (batch.events.empty()) return true;
    failed = (*store)->Commit(&batch);
    batch.events.clear();
    ++txns;
    return failed.ok();
  };
  absl::Status generated =
      mix.Generate(ids, clock, leases, [&](RecordView&& r) {
        batch.events.push_back(Event{0, EventType::kIssued, std::move(r)});
        ++written;
        if (batch.events.size() >= per_txn && !flush()) return false;
        return true;
      });
  if (generated.ok() && failed.ok()) flush();
  if (!generated.ok()) return Fail("generate", generated), 1;
  if (!failed.ok()) return Fail("commit", failed), 1;
  const double write_s = SecondsSince(t_start);
  (*store)->Stop();

  auto written_sizes = Sizes(**conn);
  if (!written_sizes.ok()) return Fail("status", written_sizes.status()), 1;
  const auto t_compact = SteadyClock::now();
  if (auto s = CompactAndDefragment(**conn, written_sizes->revision); !s.ok()) {
    return Fail("compact", s), 1;
  }
  const double compact_s = SecondsSince(t_compact);
  auto after = Sizes(**conn);
  if (!after.ok()) return Fail("status", after.status()), 1;
  const double per_record =
      static_cast<double>(after->largest() - before->largest()) / written;
  const uint64_t quota = absl::GetFlag(FLAGS_quota_bytes);
  std::printf(
      "create: %llu records of %llu owners in %llu transactions, %.1f s "
      "(%.0f records/s)\n"
      "  etcd db (largest member): %.1f MiB before, %.1f MiB written, %.1f "
      "MiB after compaction + defragmentation (%.1f s): %.1f B/record "
      "(record and its Watch event); a %.1f GiB quota holds %.1fM such "
      "records\n",
      static_cast<unsigned long long>(written),
      static_cast<unsigned long long>(mix.owners),
      static_cast<unsigned long long>(txns), write_s, written / write_s,
      MiB(before->largest()), MiB(written_sizes->largest()),
      MiB(after->largest()), compact_s, per_record,
      static_cast<double>(quota) / (1 << 30), quota / per_record / 1e6);
  std::printf(
      "{\"phase\":\"create\",\"records\":%llu,\"txns\":%llu,\"write_s\":%.2f,"
      "\"db_before\":%lld,\"db_written\":%lld,\"db_after\":%lld,"
      "\"bytes_per_record\":%.1f}\n",
      static_cast<unsigned long long>(written),
      static_cast<unsigned long long>(txns), write_s,
      static_cast<long long>(before->largest()),
      static_cast<long long>(written_sizes->largest()),
      static_cast<long long>(after->largest()), per_record);
  return 0;
}

int Load() {
  SystemClock clock;
  KeyRing keys = KeyRing::Generate();
  IdGenerator ids(clock, keys, 0);
  const uint64_t rss0 = TrimmedRss();
  const auto t0 = SteadyClock::now();
  auto conn = Connect();
  if (!conn.ok()) return Fail("connect", conn.status()), 1;
  auto store = OpenStore(*conn);
  if (!store.ok()) return Fail("store", store.status()), 1;
  auto registry = std::make_unique<Registry>(RegistryOptions{}, clock, ids,
                                             nullptr, store->get());
  if (auto s = registry->Recover(); !s.ok()) return Fail("recover", s), 1;
  const double load_s = SecondsSince(t0);
  const uint64_t rss1 = TrimmedRss();
  const RegistryStats stats = registry->Stats();
  uint64_t live = 0;
  for (uint64_t v : stats.live_records) live += v;
  std::printf(
      "load: %llu live records from etcd into the registry in %.2f s "
      "(%.0f records/s, pages of %lld); RSS +%.1f MiB (%.0f B/record)\n",
      static_cast<unsigned long long>(live), load_s, live / load_s,
      static_cast<long long>(absl::GetFlag(FLAGS_load_page_size)),
      MiB(rss1 - rss0),
      static_cast<double>(rss1 - rss0) / std::max<uint64_t>(1, live));
  std::printf(
      "{\"phase\":\"load\",\"records\":%llu,\"load_s\":%.3f,"
      "\"rss_delta_bytes\":%llu}\n",
      static_cast<unsigned long long>(live), load_s,
      static_cast<unsigned long long>(rss1 - rss0));
  registry.reset();
  (*store)->Stop();
  return 0;
}

}  // namespace
}  // namespace registrar

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "registrar-etcdbench --etcd_endpoints=H:P,... --phase=create|load");
  absl::ParseCommandLine(argc, argv);
  const std::string phase = absl::GetFlag(FLAGS_phase);
  if (phase == "create") return registrar::Create();
  if (phase == "load") return registrar::Load();
  std::fprintf(stderr, "unknown --phase=%s\n", phase.c_str());
  return 2;
}
