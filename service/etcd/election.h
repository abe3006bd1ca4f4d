#ifndef REGISTRAR_SERVICE_ETCD_ELECTION_H_
#define REGISTRAR_SERVICE_ETCD_ELECTION_H_

// Leader election on etcd, clientv3/concurrency's pattern: each candidate
// puts <prefix><lease id, hex> under its own lease (create-if-absent);
// the key with the lowest create revision is the leader. Candidates watch
// the prefix and see every change of leader. Used to elect one expirer.
//
//  - Once a candidate is the leader, it stays the leader while its key
//    exists: keys deleted below it cannot come back with a lower create
//    revision. So LeaderCompare() (my key still has my create revision)
//    guards the leader's writes in etcd: a Txn with it fails once the key
//    is gone (lease expired or revoked, Resign), whatever this process
//    believes at that moment.
//  - IsLeader() is the local view: the observed leader is this candidate
//    and its lease keeper still holds the lease (fencing on the injected
//    clock, see lease_keeper.h). Use it to decide whether to work; use
//    LeaderCompare() in the writes.
//
// on_change runs on gRPC threads, one call at a time, whenever the
// observed leader changes, and must not block. Thread-safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "etcd/etcdserver/etcdserverpb/rpc.pb.h"
#include "service/etcd/connection.h"
#include "service/etcd/kv.h"
#include "service/etcd/lease_keeper.h"
#include "service/etcd/watch.h"

namespace registrar::etcd {

struct LeaderInfo {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  bool is_me = false;
  int64_t lease = 0;  // the etcd lease the leader's key is on
};

class Election : public std::enable_shared_from_this<Election> {
 public:
  using ChangeCallback =
      std::function<void(const std::optional<LeaderInfo>& leader)>;
  using CampaignCallback =
      std::function<void(absl::StatusOr<std::shared_ptr<Election>>)>;

  // Enters the election under prefix with value, on the lease `keeper`
  // keeps alive (e.g. the node-id lease). done gets the election once the
  // candidate's key exists and the first leader has been observed.
  static void Campaign(std::shared_ptr<Connection> conn, std::string prefix,
                       std::string value, std::shared_ptr<LeaseKeeper> keeper,
                       ChangeCallback on_change, CampaignCallback done);
  ~Election();

  bool IsLeader() const;
  std::optional<LeaderInfo> leader() const;
  const std::string& key() const { return key_; }
  int64_t create_revision() const { return create_revision_; }
  // "This candidate's key still exists as created": add to the leader's
  // Txns so they fail once it is no longer the leader.
  etcdserverpb::Compare LeaderCompare() const;
  // Leaves the election (deletes the key; the lease stays).
  void Resign(std::function<void(absl::Status)> done);

 private:
  Election(std::shared_ptr<Connection> conn, std::string prefix,
           std::shared_ptr<LeaseKeeper> keeper, ChangeCallback on_change)
      : conn_(std::move(conn)),
        kv_(conn_),
        prefix_(std::move(prefix)),
        keeper_(std::move(keeper)),
        on_change_(std::move(on_change)) {}
  // Reads the lowest-create-revision key; then watches from `after` + 1.
  void Observe(int64_t after, std::function<void()> first_done);
  // Reads the leader again (one read at a time; a change meanwhile
  // makes it read once more).
  void Refresh();
  void SendRange();
  void Refreshed(absl::StatusOr<etcdserverpb::RangeResponse> r);

  const std::shared_ptr<Connection> conn_;
  Kv kv_;
  const std::string prefix_;
  const std::shared_ptr<LeaseKeeper> keeper_;
  const ChangeCallback on_change_;
  std::string key_;
  int64_t create_revision_ = 0;

  mutable absl::Mutex mu_;
  std::optional<LeaderInfo> leader_ ABSL_GUARDED_BY(mu_);
  bool observed_ ABSL_GUARDED_BY(mu_) = false;
  bool refreshing_ ABSL_GUARDED_BY(mu_) = false;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> first_done_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Watch> watch_ ABSL_GUARDED_BY(mu_);
};

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_ELECTION_H_
