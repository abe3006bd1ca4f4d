#include "bench/programs/record_mix.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace registrar::bench {

Kind RecordMix::KindAt(uint64_t j) {
  if (j == 0) return Kind::kConnection;
  switch ((j - 1) % 7) {
    case 0:
      return Kind::kThread;
    case 1:
    case 4:
      return Kind::kRun;
    default:
      return Kind::kRequest;
  }
}

Owner RecordMix::OwnerOf(uint64_t o) {
  return Owner{absl::StrFormat("tenant-%03d", o % 100),
               absl::StrFormat("user-%07d", o)};
}

absl::StatusOr<std::vector<Id128>> RecordMix::MintLeases(IdGenerator& ids,
                                                         uint32_t count,
                                                         WriteBatch* batch) {
  std::vector<Id128> leases;
  for (uint32_t i = 0; i < std::max<uint32_t>(1, count); ++i) {
    const std::string holder = absl::StrCat("gateway-", i);
    absl::StatusOr<Id128> id = ids.MintOne(Kind::kLease, "", holder);
    if (!id.ok()) return id.status();
    leases.push_back(*id);
    batch->put_leases.push_back(LeaseView{*id, holder, absl::Hours(1), ""});
  }
  return leases;
}

absl::Status RecordMix::Generate(IdGenerator& ids, const Clock& clock,
                                 const std::vector<Id128>& leases,
                                 absl::FunctionRef<bool(RecordView&&)> emit,
                                 uint64_t* by_kind) const {
  if (leases.empty()) return absl::InvalidArgumentError("no leases");
  // Per-owner state: its connection, current thread and run.
  std::vector<Id128> conn(owners), thread(owners), run(owners);
  const auto shared_labels = std::make_shared<const Labels>();
  const uint64_t max_per_owner = PerOwner(0);
  std::vector<Id128> minted;
  const absl::Time start = absl::Now();
  absl::Time last_report = start;
  uint64_t made = 0;
  for (uint64_t j = 0; j < max_per_owner; ++j) {
    const Kind kind = KindAt(j);
    for (uint64_t o = 0; o < owners; ++o) {
      if (j >= PerOwner(o)) break;  // PerOwner is non-increasing in o
      Owner owner = OwnerOf(o);
      minted.clear();
      if (absl::Status s =
              ids.Mint(kind, owner.tenant, owner.user_id, 1, &minted);
          !s.ok()) {
        return s;
      }
      RecordView r;
      r.id = minted[0];
      r.kind = kind;
      r.owner = std::move(owner);
      switch (kind) {
        case Kind::kConnection:
          r.lease = leases[o % leases.size()];
          conn[o] = r.id;
          break;
        case Kind::kThread:
          r.connection = conn[o];
          thread[o] = r.id;
          break;
        case Kind::kRun:
          r.connection = conn[o];
          r.parent = thread[o];
          run[o] = r.id;
          break;
        default:
          r.connection = conn[o];
          r.parent = run[o];
      }
      r.labels = shared_labels;
      r.created_at = absl::FromUnixMillis(absl::ToUnixMillis(clock.Now()));
      r.ended_at = absl::InfinitePast();
      r.state = State::kLive;
      if (by_kind != nullptr) ++by_kind[static_cast<int>(kind)];
      if (!emit(std::move(r))) return absl::OkStatus();
      if (++made % 1024 == 0 && absl::Now() - last_report > absl::Seconds(10)) {
        last_report = absl::Now();
        std::fprintf(stderr, "  created %llu / %llu records (%.0f s)\n",
                     static_cast<unsigned long long>(made),
                     static_cast<unsigned long long>(records),
                     absl::ToDoubleSeconds(last_report - start));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace registrar::bench
