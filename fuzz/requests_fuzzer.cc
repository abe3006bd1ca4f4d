// Fuzzes every RPC's request message the way the server handles it: the
// bytes are parsed as the request proto (as the raw-bytes handlers in
// service/api/registrar_service.cc do), checked with the request checks of
// service/api/request_validation.h, converted (proto_conversion.h) and,
// when the check passes, run against a real Registry on a memory store.
//
// Input: a sequence of calls, each
//   <op byte> <length: 2 bytes, little-endian> <length bytes: the request>
// (a short last call takes what is left). Op % 11: 0 Issue,
// 1 OpenContext, 2 Validate, 3 Cleanup, 4 GrantLease, 5 KeepAlive,
// 6 RevokeLease, 7 Describe, 8 ListOwned, 9 Watch (its check, then a real
// WatchHub on the registry's store, read to the newest revision),
// 10 advance the clock by the first payload byte in seconds and Tick().
// Op / 11 % 3 is the authenticated caller, for lease ownership: none (no
// authentication), "gw-a" or "gw-b" (gateways: a lease is theirs only).
// A fresh registry serves each input, so every crash reproduces from its
// input alone. So that later calls can name IDs earlier calls minted, any
// string field "$<n>" in a request is replaced by the n-th ID minted so
// far (mod their number); fuzz/make_corpus.sh builds seeds this way.
//
// Oracles besides the sanitizers (each failure aborts, so it is a crash):
//  - drift between the validators: after the API's request check passed,
//    the core answers INVALID_ARGUMENT only for what the API leaves to it
//    by design (CoreMayRefuse: the content of ID text, a page token, the
//    server's lease TTL range);
//  - every ID Issue returns parses with the kind asked for and validates
//    as VALID for its owner right away, and Describe finds it;
//  - Validate answers VALID only for the caller's own live record (of the
//    expected kind), and returns records only of the caller;
//  - Cleanup's released set holds only the caller's records, each at most
//    once, and each has ended; refused IDs are records of someone else;
//  - a Watch from revision R receives exactly the store's events from R to
//    the newest, filtered by tenant, in order; a start the store cannot
//    serve is OUT_OF_RANGE.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/reflection.h"
#include "google/protobuf/stubs/logging.h"
#include "registrar/v1/registrar.pb.h"
#include "service/api/proto_conversion.h"
#include "service/api/request_validation.h"
#include "service/common/clock.h"
#include "service/common/field_error.h"
#include "service/common/text.h"
#include "service/id/id.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"
#include "service/registry/registry.h"
#include "service/watch/watch_hub.h"
#include "spdlog/spdlog.h"

namespace registrar {
namespace {

namespace pb = google::protobuf;

constexpr size_t kMaxCalls = 64;

// REQUESTS_FUZZER_VERBOSE=1: print each call's outcome (for writing seeds).
bool Verbose() {
  static const bool verbose = std::getenv("REQUESTS_FUZZER_VERBOSE") != nullptr;
  return verbose;
}

void Log(const char* rpc, const absl::Status& s) {
  if (Verbose()) std::fprintf(stderr, "  %s: %s\n", rpc, s.ToString().c_str());
}

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "requests_fuzzer: %s\n", what.c_str());
  std::abort();
}

// Small limits keep each input fast; the checks are the same code.
ApiLimits FuzzLimits() {
  ApiLimits limits;
  limits.max_batch = 64;
  return limits;
}

// One registry per input, as the server builds it (service/server).
struct World {
  World()
      : keys(KeyRing::FromKey(
            0, TagKeyBytes{7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7})),
        ids(clock, keys, /*node_id=*/1),
        registry(Options(), clock, ids, /*observer=*/nullptr) {
    if (absl::Status s = registry.Recover(); !s.ok()) {
      Fail("Recover: " + std::string(s.message()));
    }
  }
  static RegistryOptions Options() {
    RegistryOptions o;
    o.shards = 2;
    o.max_batch = FuzzLimits().max_batch;
    o.owner_quota = 256;
    o.tombstone_retention = absl::Seconds(30);
    o.event_history = 256;
    return o;
  }

  FakeClock clock;
  KeyRing keys;
  IdGenerator ids;
  Registry registry;
  // Started by the first Watch op (a pump thread); stopped before the
  // registry (and its store) go.
  std::unique_ptr<WatchHub> hub;
  const ApiLimits limits = FuzzLimits();
  std::vector<std::string> minted;  // for "$<n>" references
  // The caller of the current call (RegistrarService::LeaseCaller: nullopt
  // without authentication or for an admin).
  std::optional<std::string> caller;
};

// Replaces "$<n>" string fields (recursively, repeated and map values too)
// by minted IDs.
void ResolveReferences(const std::vector<std::string>& minted, pb::Message* m) {
  const pb::Reflection* r = m->GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  r->ListFields(*m, &fields);
  auto resolve = [&](const std::string& value, std::string* out) {
    if (minted.empty() || value.size() < 2 || value.size() > 4 ||
        value[0] != '$') {
      return false;
    }
    size_t n = 0;
    for (size_t i = 1; i < value.size(); ++i) {
      if (value[i] < '0' || value[i] > '9') return false;
      n = n * 10 + static_cast<size_t>(value[i] - '0');
    }
    *out = minted[n % minted.size()];
    return true;
  };
  for (const pb::FieldDescriptor* f : fields) {
    std::string out;
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(*m, f); ++i) {
          if (resolve(r->GetRepeatedString(*m, f, i), &out)) {
            r->SetRepeatedString(m, f, i, out);
          }
        }
      } else if (resolve(r->GetString(*m, f), &out)) {
        r->SetString(m, f, out);
      }
    } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(*m, f); ++i) {
          ResolveReferences(minted, r->MutableRepeatedMessage(m, f, i));
        }
      } else {
        ResolveReferences(minted, r->MutableMessage(m, f));
      }
    }
  }
}

bool Checked(const char* check, const absl::Status& s) {
  if (!s.ok()) Log(check, s);
  return s.ok();
}

// StrictParse in registrar_service.cc: proto3 strings must be UTF-8.
template <typename Req>
bool Parse(std::string_view bytes, World& w, Req* req) {
  if (!req->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    if (Verbose()) {
      std::fprintf(stderr, "  %s: does not parse\n",
                   req->GetTypeName().c_str());
    }
    return false;
  }
  ResolveReferences(w.minted, req);
  return true;
}

// The fields whose INVALID_ARGUMENT belongs to the core by design: the API
// check bounds ID text and page tokens by size only (their content is the
// core's to parse: prefix, alphabet, kind, which field an ID may fill), and
// the lease TTL range is the server's configuration. Any other field the
// core refuses after the API accepted the request is drift.
bool CoreMayRefuse(const std::optional<std::string>& field) {
  if (!field.has_value()) return false;
  for (const char* f : {"parent_id", "connection_id", "lease_id", "thread_id",
                        "id", "page_token", "ttl_seconds"}) {
    if (*field == f) return true;
  }
  return false;
}

// A status from the core after the request check passed: the core may
// refuse (state, quota, lease TTL, an ID that does not parse) but only with
// the codes the API documents, and INVALID_ARGUMENT only for CoreMayRefuse.
void ExpectCoreCode(const absl::Status& s, const char* rpc) {
  Log(rpc, s);
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
      if (!CoreMayRefuse(ErrorField(s))) {
        Fail(std::string(rpc) +
             ": the API check accepted what the core refuses: " + s.ToString());
      }
      return;
    case absl::StatusCode::kOk:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kPermissionDenied:
      return;
    default:
      Fail(std::string(rpc) + ": unexpected status " + s.ToString());
  }
}

void Issue(World& w, std::string_view bytes) {
  v1::IssueRequest req;
  if (!Parse(bytes, w, &req)) return;
  if (!Checked("CheckIssue", CheckIssue(req, w.limits))) return;
  IssueSpec spec = IssueSpecFromProto(req);
  spec.lease_caller = w.caller;
  absl::StatusOr<std::vector<std::string>> ids = w.registry.Issue(spec);
  ExpectCoreCode(ids.status(), "Issue");
  if (!ids.ok()) return;
  for (const std::string& id : *ids) {
    absl::StatusOr<ParsedId> parsed = ParseId(id);
    if (!parsed.ok() || parsed->kind != spec.kind) {
      Fail("Issue returned " + id + ", not an ID of the kind asked for");
    }
    const ValidateResult v =
        w.registry.Validate(id, spec.kind, spec.owner, /*want_record=*/true);
    if (v.verdict != Verdict::kValid || !v.record.has_value()) {
      Fail("an ID just issued does not validate: " + id);
    }
    if (!w.registry.Describe(id).ok()) Fail("Describe misses " + id);
    w.minted.push_back(id);
  }
}

void OpenContext(World& w, std::string_view bytes) {
  v1::OpenContextRequest req;
  if (!Parse(bytes, w, &req)) return;
  if (!Checked("CheckOpenContext", CheckOpenContext(req, w.limits))) return;
  absl::StatusOr<OpenContextResult> r =
      w.registry.OpenContext(OpenContextSpecFromProto(req));
  ExpectCoreCode(r.status(), "OpenContext");
  if (!r.ok()) return;
  for (const std::string* id : {&r->thread_id, &r->run_id, &r->request_id}) {
    if (!ParseId(*id).ok()) Fail("OpenContext returned " + *id);
    w.minted.push_back(*id);
  }
}

void Validate(World& w, std::string_view bytes) {
  v1::ValidateRequest req;
  if (!Parse(bytes, w, &req)) return;
  if (!Checked("CheckValidate", CheckValidate(req, w.limits))) return;
  const Owner default_owner = OwnerFromProto(req.owner());
  for (const v1::ValidateItem& item : req.items()) {
    const Owner owner =
        item.has_owner() ? OwnerFromProto(item.owner()) : default_owner;
    ValidateResult result =
        w.registry.Validate(item.id(), KindFromProto(item.expected_kind()),
                            owner, req.include_records());
    const int verdict = static_cast<int>(result.verdict);
    if (verdict < 1 || verdict > 8) Fail("Validate: verdict out of range");
    // MALFORMED is for text that is not a record's ID (lease IDs parse,
    // but name no record).
    if (result.verdict == Verdict::kMalformed) {
      absl::StatusOr<ParsedId> parsed = ParseId(item.id());
      if (parsed.ok() && IsRecordKind(parsed->kind)) {
        Fail("Validate: MALFORMED for a record ID that parses: " + item.id());
      }
    }
    if (result.record.has_value() && !(result.record->owner == owner)) {
      Fail("Validate returned another owner's record for " + item.id());
    }
    if (result.verdict == Verdict::kValid) {
      absl::StatusOr<RecordView> record = w.registry.Describe(item.id());
      if (!record.ok() || !(record->owner == owner) ||
          record->state != State::kLive) {
        Fail("Validate: VALID for " + item.id() +
             ", which is not a live record of the claimed owner");
      }
      const Kind expected = KindFromProto(item.expected_kind());
      if (expected != Kind::kUnspecified && record->kind != expected) {
        Fail("Validate: VALID for " + item.id() + " of another kind");
      }
    }
    v1::ValidateResult out;
    if (result.record) RecordToProto(*result.record, out.mutable_record());
  }
}

void Cleanup(World& w, std::string_view bytes) {
  v1::CleanupRequest req;
  if (!Parse(bytes, w, &req)) return;
  if (!Checked("CheckCleanup", CheckCleanup(req, w.limits))) return;
  const Owner owner = OwnerFromProto(req.owner());
  absl::StatusOr<CleanupResult> r =
      w.registry.Cleanup(owner, CleanupTargetFromProto(req), req.reason());
  ExpectCoreCode(r.status(), "Cleanup");
  if (!r.ok()) return;
  std::vector<std::string> seen = r->released;
  std::sort(seen.begin(), seen.end());
  if (std::adjacent_find(seen.begin(), seen.end()) != seen.end()) {
    Fail("Cleanup released an ID twice");
  }
  for (const std::string& id : r->released) {
    absl::StatusOr<RecordView> record = w.registry.Describe(id);
    if (!record.ok())
      Fail("Cleanup released " + id + ", which Describe misses");
    if (!(record->owner == owner)) {
      Fail("Cleanup released " + id + " of another owner");
    }
    if (record->state == State::kLive) {
      Fail("Cleanup released " + id + ", which is still live");
    }
  }
  for (const std::string& id : r->refused) {
    absl::StatusOr<RecordView> record = w.registry.Describe(id);
    if (record.ok() && record->owner == owner) {
      Fail("Cleanup refused " + id + ", a record of the caller");
    }
  }
}

void GrantLease(World& w, std::string_view bytes) {
  v1::GrantLeaseRequest req;
  if (!Parse(bytes, w, &req)) return;
  if (!Checked("CheckGrantLease", CheckGrantLease(req, w.limits))) return;
  absl::StatusOr<LeaseGrant> grant = w.registry.GrantLease(
      req.holder(), absl::Seconds(req.ttl_seconds()), w.caller.value_or(""));
  ExpectCoreCode(grant.status(), "GrantLease");
  if (!grant.ok()) return;
  absl::StatusOr<ParsedId> parsed = ParseId(grant->lease_id);
  if (!parsed.ok() || parsed->kind != Kind::kLease) {
    Fail("GrantLease returned " + grant->lease_id);
  }
  w.minted.push_back(grant->lease_id);
}

void KeepAlive(World& w, std::string_view bytes) {
  v1::KeepAliveRequest req;
  if (!Parse(bytes, w, &req)) return;
  if (!Checked("CheckLeaseId", CheckLeaseId(req.lease_id(), w.limits))) return;
  ExpectCoreCode(w.registry.KeepAlive(req.lease_id(), w.caller).status(),
                 "KeepAlive");
}

void RevokeLease(World& w, std::string_view bytes) {
  v1::RevokeLeaseRequest req;
  if (!Parse(bytes, w, &req)) return;
  if (!Checked("CheckLeaseId", CheckLeaseId(req.lease_id(), w.limits))) return;
  ExpectCoreCode(w.registry.RevokeLease(req.lease_id(), w.caller).status(),
                 "RevokeLease");
}

void Describe(World& w, std::string_view bytes) {
  v1::DescribeRequest req;
  if (!Parse(bytes, w, &req)) return;
  if (!Checked("CheckDescribe", CheckDescribe(req, w.limits))) return;
  absl::StatusOr<RecordView> record = w.registry.Describe(req.id());
  ExpectCoreCode(record.status(), "Describe");
  if (!record.ok()) return;
  v1::DescribeResponse resp;
  RecordToProto(*record, resp.mutable_record());
  if (resp.record().id() != req.id()) {
    Fail("Describe(" + req.id() + ") answered " + resp.record().id());
  }
}

void ListOwned(World& w, std::string_view bytes) {
  v1::ListOwnedRequest req;
  if (!Parse(bytes, w, &req)) return;
  if (!Checked("CheckListOwned", CheckListOwned(req, w.limits))) return;
  const ListOwnedSpec spec = ListOwnedSpecFromProto(req);
  absl::StatusOr<ListOwnedResult> r = w.registry.ListOwned(spec);
  ExpectCoreCode(r.status(), "ListOwned");
  if (!r.ok()) return;
  v1::ListOwnedResponse resp;
  for (const RecordView& record : r->records) {
    if (!(record.owner == spec.owner))
      Fail("ListOwned: another owner's record");
    RecordToProto(record, resp.add_records());
  }
}

// Records what the hub sends; the fuzzer's thread acknowledges each Send.
class CollectingSink final : public WatchSink {
 public:
  void Send(const Event& event) override {
    absl::MutexLock lock(&mu_);
    if (in_flight_) Fail("Watch: Send while a Send is outstanding");
    if (finished_) Fail("Watch: Send after Finish");
    in_flight_ = true;
    events_.push_back(event);
  }
  void Finish(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    if (finished_) Fail("Watch: Finish twice");
    finished_ = true;
    status_ = status;
  }
  // Waits (bounded) for the outstanding Send; false when the stream ended
  // or nothing came.
  bool TakeSend() {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return in_flight_ || finished_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(20));
    if (!in_flight_) return false;
    in_flight_ = false;
    return true;
  }
  std::vector<Event> events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  mutable absl::Mutex mu_;
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
};

// RegistrarService::Watch checks the tenant inline; then a real watcher on
// the registry's store reads from start_revision to the newest revision and
// must get exactly the store's events, filtered by tenant.
void Watch(World& w, std::string_view bytes) {
  v1::WatchRequest req;
  if (!Parse(bytes, w, &req)) return;
  if (req.tenant().size() > w.limits.max_string_bytes ||
      !IsPrintableUtf8(req.tenant())) {
    return;
  }
  if (w.hub == nullptr) {
    w.hub =
        std::make_unique<WatchHub>(w.registry.store(), WatchLimits{.batch = 8});
  }
  Store& store = w.registry.store();
  const uint64_t start = req.start_revision();
  const uint64_t last = store.LastRevision();
  const uint64_t oldest = store.OldestRevision();
  CollectingSink sink;
  absl::StatusOr<std::shared_ptr<WatchHub::Watcher>> watcher = w.hub->Start(
      WatchSpec{start, req.tenant(), w.caller.value_or("")}, &sink);
  const bool servable = start == 0 || (start >= oldest && start <= last + 1);
  if (!watcher.ok()) {
    Log("Watch", watcher.status());
    if (servable || watcher.status().code() != absl::StatusCode::kOutOfRange) {
      Fail("Watch from " + std::to_string(start) +
           " refused: " + watcher.status().ToString());
    }
    return;
  }
  if (!servable) Fail("Watch started at an unservable revision");
  std::vector<Event> want;
  if (start != 0 && start <= last) {
    std::vector<Event> stored;
    if (!store.ReadEvents(start, last - start + 1, &stored).ok()) {
      Fail("ReadEvents failed for a servable start");
    }
    for (Event& e : stored) {
      if (req.tenant().empty() || e.record.owner.tenant == req.tenant()) {
        want.push_back(std::move(e));
      }
    }
  }
  while (sink.events().size() < want.size()) {
    if (!sink.TakeSend()) Fail("Watch stalled before the newest revision");
    w.hub->WriteDone(**watcher, /*ok=*/true);
  }
  const std::vector<Event> got = sink.events();
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i].revision != want[i].revision ||
        !(got[i].record.id == want[i].record.id) ||
        got[i].type != want[i].type) {
      Fail("Watch delivered revision " + std::to_string(got[i].revision) +
           " where the store has " + std::to_string(want[i].revision));
    }
  }
  if (Verbose()) {
    std::fprintf(stderr, "  Watch: %zu events from revision %llu\n",
                 want.size(), static_cast<unsigned long long>(start));
  }
  w.hub->Cancel(**watcher);
  w.hub->Stop(**watcher);
}

void Advance(World& w, std::string_view bytes) {
  const int seconds = bytes.empty() ? 1 : static_cast<uint8_t>(bytes[0]);
  w.clock.Advance(absl::Seconds(seconds));
  for (std::string& id : w.registry.Tick()) {
    if (!ParseId(id).ok()) Fail("Tick returned " + id);
  }
}

}  // namespace
}  // namespace registrar

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace registrar;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  static const bool quiet = [] {
    spdlog::set_level(spdlog::level::warn);  // Recover() logs at info
    // Protobuf logs every string field that is not UTF-8.
    google::protobuf::SetLogHandler(nullptr);
    return true;
  }();
  (void)quiet;
  auto world = std::make_unique<World>();
  for (size_t calls = 0; calls < kMaxCalls && !in.empty(); ++calls) {
    const uint8_t op = static_cast<uint8_t>(in[0]) % 11;
    switch (static_cast<uint8_t>(in[0]) / 11 % 3) {
      case 0:
        world->caller.reset();
        break;
      case 1:
        world->caller = "gw-a";
        break;
      default:
        world->caller = "gw-b";
        break;
    }
    in.remove_prefix(1);
    size_t len = 0;
    if (in.size() >= 2) {
      len = static_cast<uint8_t>(in[0]) |
            (static_cast<size_t>(static_cast<uint8_t>(in[1])) << 8);
      in.remove_prefix(2);
    } else {
      in = {};
    }
    const std::string_view payload = in.substr(0, len);
    in.remove_prefix(payload.size());
    switch (op) {
      case 0:
        Issue(*world, payload);
        break;
      case 1:
        OpenContext(*world, payload);
        break;
      case 2:
        Validate(*world, payload);
        break;
      case 3:
        Cleanup(*world, payload);
        break;
      case 4:
        GrantLease(*world, payload);
        break;
      case 5:
        KeepAlive(*world, payload);
        break;
      case 6:
        RevokeLease(*world, payload);
        break;
      case 7:
        Describe(*world, payload);
        break;
      case 8:
        ListOwned(*world, payload);
        break;
      case 9:
        Watch(*world, payload);
        break;
      default:
        Advance(*world, payload);
        break;
    }
  }
  return 0;
}
