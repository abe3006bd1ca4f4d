#ifndef REGISTRAR_SERVICE_ETCD_KV_H_
#define REGISTRAR_SERVICE_ETCD_KV_H_

// etcd's KV service, asynchronously: Range (and a paged Range of a whole
// key range at one revision), Txn, Put and Delete, plus helpers that build
// Txn compares and operations. Messages are etcd's own (etcdserverpb); a
// Txn is etcd's TxnRequest, so anything etcd can compare is expressible.
//
// Every callback runs once, on a gRPC thread; it must not block. Reads
// (Range, RangeAll) are retried on another member when one fails;
// changes are not (see unary_call.h). Thread-safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "etcd/etcdserver/etcdserverpb/rpc.pb.h"
#include "service/etcd/connection.h"

namespace registrar::etcd {

namespace pb = ::etcdserverpb;

// The end of the range of every key starting with prefix (etcd's
// clientv3.GetPrefixRangeEnd): prefix with its last byte below 0xff
// incremented; "\0" (all keys) when there is none.
std::string PrefixEnd(const std::string& prefix);

// Compares and operations for a TxnRequest.
pb::Compare CompareModRevision(const std::string& key,
                               pb::Compare::CompareResult result,
                               int64_t revision);
pb::Compare CompareCreateRevision(const std::string& key,
                                  pb::Compare::CompareResult result,
                                  int64_t revision);
// "key does not exist": its create revision is 0.
pb::Compare KeyAbsent(const std::string& key);
pb::RequestOp PutOp(const std::string& key, const std::string& value,
                    int64_t lease = 0);
pb::RequestOp DeleteOp(const std::string& key,
                       const std::string& range_end = "");
pb::RequestOp RangeOp(const std::string& key,
                      const std::string& range_end = "");

class Kv {
 public:
  template <class T>
  using Callback = std::function<void(absl::StatusOr<T>)>;

  explicit Kv(std::shared_ptr<Connection> conn) : conn_(std::move(conn)) {}

  // A linearizable Range (unless req asks for a serializable one), tried
  // on each member in turn while they fail; each try waits at most
  // attempt_timeout (and the connection's call timeout).
  void Range(pb::RangeRequest req, Callback<pb::RangeResponse> done,
             absl::Duration attempt_timeout = absl::InfiniteDuration());
  void Txn(pb::TxnRequest req, Callback<pb::TxnResponse> done);
  // lease 0: none.
  void Put(const std::string& key, const std::string& value, int64_t lease,
           Callback<pb::PutResponse> done);
  // range_end empty: the one key.
  void Delete(const std::string& key, const std::string& range_end,
              Callback<pb::DeleteRangeResponse> done);

  // Compacts etcd's history up to revision (issue 13 keeps etcd bounded
  // with it; tests use it to provoke ErrCompacted). physical: wait until
  // the compaction is applied to the backend.
  void Compact(int64_t revision, bool physical,
               Callback<pb::CompactionResponse> done);

  // Every key in [key, range_end) at one revision, in pages of page_size
  // keys (etcd's limit), each page its own Range at that revision:
  // on_page(kvs, revision) is called per page in key order, then
  // done(revision) once. revision 0: the current revision, read by the
  // first page. A revision compacted while paging fails with OUT_OF_RANGE
  // ("required revision has been compacted"): start again at 0.
  struct RangeAllOptions {
    std::string key;
    std::string range_end;
    int64_t revision = 0;
    int64_t page_size = 1000;
    bool keys_only = false;
  };
  using PageCallback =
      std::function<void(std::vector<mvccpb::KeyValue> kvs, int64_t revision)>;
  void RangeAll(RangeAllOptions options, PageCallback on_page,
                Callback<int64_t> done);

  const std::shared_ptr<Connection>& connection() const { return conn_; }

 private:
  const std::shared_ptr<Connection> conn_;
};

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_KV_H_
