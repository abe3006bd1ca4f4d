#include "service/etcd/election.h"

#include <utility>

#include "absl/strings/str_format.h"

namespace registrar::etcd {

namespace pb = ::etcdserverpb;

void Election::Campaign(std::shared_ptr<Connection> conn, std::string prefix,
                        std::string value, std::shared_ptr<LeaseKeeper> keeper,
                        ChangeCallback on_change, CampaignCallback done) {
  if (prefix.empty() || keeper == nullptr) {
    done(absl::InvalidArgumentError(
        "election: prefix and lease keeper are required"));
    return;
  }
  std::shared_ptr<Election> e(new Election(
      conn, std::move(prefix), std::move(keeper), std::move(on_change)));
  e->key_ = absl::StrFormat("%s%x", e->prefix_, e->keeper_->lease_id());
  pb::TxnRequest req;
  *req.add_compare() = KeyAbsent(e->key_);
  *req.add_success() = PutOp(e->key_, value, e->keeper_->lease_id());
  *req.add_failure() = RangeOp(e->key_);
  e->kv_.Txn(std::move(req), [e, done = std::move(done)](
                                 absl::StatusOr<pb::TxnResponse> r) {
    if (!r.ok()) return done(r.status());
    if (r->succeeded()) {
      e->create_revision_ = r->header().revision();
    } else {
      // Our key exists already (same lease campaigning again): keep its
      // place in the line.
      const auto& kvs = r->responses(0).response_range().kvs();
      if (kvs.empty()) {
        return done(absl::AbortedError("election: key vanished; retry"));
      }
      e->create_revision_ = kvs[0].create_revision();
    }
    e->Observe(r->header().revision(), [e, done] { done(e); });
  });
}

Election::~Election() {
  std::shared_ptr<Watch> watch;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    watch = std::move(watch_);
  }
  if (watch) watch->Cancel();
}

void Election::Observe(int64_t after, std::function<void()> first_done) {
  WatchOptions o;
  o.key = prefix_;
  o.range_end = PrefixEnd(prefix_);
  o.start_revision = after + 1;
  WatchHandlers h;
  std::weak_ptr<Election> weak = weak_from_this();
  h.on_events = [weak](std::vector<mvccpb::Event>, int64_t) {
    if (auto e = weak.lock()) e->Refresh();
  };
  h.on_end = [weak](const WatchEnd& end) {
    auto e = weak.lock();
    if (!e) return;
    {
      absl::MutexLock lock(&e->mu_);
      if (e->closed_) return;
    }
    // Compacted or every member failed: look again and watch on.
    const int64_t from =
        end.compact_revision > 0 ? end.compact_revision : end.next_revision - 1;
    e->conn_->timer().After(absl::Milliseconds(100), [weak, from] {
      if (auto e = weak.lock()) e->Observe(from, nullptr);
    });
  };
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    if (first_done) first_done_ = std::move(first_done);
    watch_ = Watch::Start(conn_, std::move(o), std::move(h));
  }
  Refresh();
}

void Election::Refresh() {
  {
    absl::MutexLock lock(&mu_);
    if (refreshing_) {
      dirty_ = true;
      return;
    }
    refreshing_ = true;
  }
  SendRange();
}

void Election::SendRange() {
  pb::RangeRequest req;
  req.set_key(prefix_);
  req.set_range_end(PrefixEnd(prefix_));
  req.set_sort_target(pb::RangeRequest::CREATE);
  req.set_sort_order(pb::RangeRequest::ASCEND);
  req.set_limit(1);
  kv_.Range(std::move(req),
            [e = shared_from_this()](absl::StatusOr<pb::RangeResponse> r) {
              e->Refreshed(std::move(r));
            });
}

void Election::Refreshed(absl::StatusOr<pb::RangeResponse> r) {
  if (!r.ok()) {
    {
      absl::MutexLock lock(&mu_);
      refreshing_ = false;
      if (closed_) return;
    }
    conn_->timer().After(absl::Milliseconds(100),
                         [weak = std::weak_ptr<Election>(weak_from_this())] {
                           if (auto e = weak.lock()) e->Refresh();
                         });
    return;
  }
  std::optional<LeaderInfo> now;
  if (r->kvs_size() > 0) {
    const mvccpb::KeyValue& kv = r->kvs(0);
    now = LeaderInfo{kv.key(), kv.value(), kv.create_revision(),
                     kv.key() == key_, kv.lease()};
  }
  bool changed = false;
  bool again = false;
  std::function<void()> first;
  {
    absl::MutexLock lock(&mu_);
    changed =
        now.has_value() != leader_.has_value() ||
        (now.has_value() && (now->key != leader_->key ||
                             now->create_revision != leader_->create_revision));
    leader_ = now;
    if (!observed_) {
      observed_ = true;
      first = std::move(first_done_);
    }
    // Changes came while reading: read again (still refreshing).
    again = dirty_ && !closed_;
    dirty_ = false;
    refreshing_ = again;
  }
  if (changed && on_change_) on_change_(now);
  if (first) first();
  if (again) SendRange();
}

bool Election::IsLeader() const {
  {
    absl::MutexLock lock(&mu_);
    if (!leader_.has_value() || leader_->key != key_) return false;
  }
  return keeper_->Alive();
}

std::optional<LeaderInfo> Election::leader() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

pb::Compare Election::LeaderCompare() const {
  return CompareCreateRevision(key_, pb::Compare::EQUAL, create_revision_);
}

void Election::Resign(std::function<void(absl::Status)> done) {
  kv_.Delete(
      key_, "",
      [done = std::move(done)](absl::StatusOr<pb::DeleteRangeResponse> r) {
        done(r.status());
      });
}

}  // namespace registrar::etcd
