#ifndef REGISTRAR_BENCH_PROGRAMS_RECORD_MIX_H_
#define REGISTRAR_BENCH_PROGRAMS_RECORD_MIX_H_

// The gateway-like record mix the store benchmarks write (storebench into
// RocksDB, etcdbench into etcd): `records` live records spread evenly over
// `owners`, IDs interleaved across owners in time as real traffic would be.
// Per owner: one connection bound to one of the leases, then repeating
// units of
//   thread, run, request, request, run, request, request
// (runs under the unit's thread, requests under their run), every one of
// them opened through the owner's connection. No labels.

#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "service/id/id_generator.h"
#include "service/model/record.h"
#include "service/store/store.h"

namespace registrar::bench {

struct RecordMix {
  uint64_t records = 0;
  uint64_t owners = 1;

  // Records of owner o (the first records % owners owners get one more).
  uint64_t PerOwner(uint64_t o) const {
    return records / owners + (o < records % owners ? 1 : 0);
  }
  // What an owner's j-th record is: j = 0 its connection, then units of 7.
  static Kind KindAt(uint64_t j);
  static Owner OwnerOf(uint64_t o);

  // Mints `count` (at least 1) leases of holders "gateway-<i>", adds them
  // to batch->put_leases (TTL 1 h) and returns their IDs.
  static absl::StatusOr<std::vector<Id128>> MintLeases(IdGenerator& ids,
                                                       uint32_t count,
                                                       WriteBatch* batch);

  // Mints every record in order and passes it to `emit` (which stops the
  // run by returning false), saying how far it got on stderr every 10 s.
  // `leases` must not be empty. Counts per kind into by_kind when given.
  absl::Status Generate(IdGenerator& ids, const Clock& clock,
                        const std::vector<Id128>& leases,
                        absl::FunctionRef<bool(RecordView&&)> emit,
                        uint64_t* by_kind = nullptr) const;
};

}  // namespace registrar::bench

#endif  // REGISTRAR_BENCH_PROGRAMS_RECORD_MIX_H_
