#include "service/etcd/node_id_claimer.h"

#include <set>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "service/etcd/kv.h"
#include "service/etcd/lease.h"

namespace registrar::etcd {

// One claim in progress: grant, list, then create-if-absent id by id.
struct NodeIdClaimer::Attempt : std::enable_shared_from_this<Attempt> {
  Attempt(std::shared_ptr<Connection> c, const Clock& clk,
          NodeIdClaimerOptions o, std::function<void(const absl::Status&)> l,
          ClaimCallback d)
      : conn(c),
        clock(clk),
        options(std::move(o)),
        on_lost(std::move(l)),
        done(std::move(d)),
        kv(c),
        lease(c) {}

  void Begin() {
    granted_at = clock.Now();
    lease.Grant(absl::ToInt64Seconds(options.ttl), 0,
                [self = shared_from_this()](
                    absl::StatusOr<etcdserverpb::LeaseGrantResponse> r) {
                  self->Granted(std::move(r));
                });
  }

  void Granted(absl::StatusOr<etcdserverpb::LeaseGrantResponse> r) {
    if (!r.ok()) return Fail(r.status());
    lease_id = r->id();
    LeaseKeeperOptions k;
    k.lease_id = lease_id;
    k.ttl = absl::Seconds(r->ttl());  // etcd may have raised it
    k.granted_at = granted_at;
    k.margin = options.margin;
    k.interval = options.keepalive_interval;
    k.tick = options.tick;
    auto started = LeaseKeeper::Start(conn, clock, k, on_lost);
    if (!started.ok()) return Fail(started.status());
    keeper = *std::move(started);
    List();
  }

  void List() {
    Kv::RangeAllOptions o;
    o.key = options.prefix;
    o.range_end = PrefixEnd(options.prefix);
    o.keys_only = true;
    kv.RangeAll(
        o,
        [self = shared_from_this()](std::vector<mvccpb::KeyValue> kvs,
                                    int64_t) {
          for (const auto& kv : kvs) {
            int id = 0;
            if (absl::SimpleAtoi(kv.key().substr(self->options.prefix.size()),
                                 &id)) {
              self->taken.insert(id);
            }
          }
        },
        [self = shared_from_this()](absl::StatusOr<int64_t> r) {
          if (!r.ok()) return self->Fail(r.status());
          self->TryNext();
        });
  }

  void TryNext() {
    while (taken.count(candidate) > 0) ++candidate;
    if (candidate >= options.max_ids) {
      return Fail(absl::ResourceExhaustedError(
          absl::StrCat("all ", options.max_ids, " node ids under ",
                       options.prefix.substr(0, 100), " are taken")));
    }
    const std::string key = absl::StrCat(options.prefix, candidate);
    etcdserverpb::TxnRequest req;
    *req.add_compare() = KeyAbsent(key);
    *req.add_success() = PutOp(key, options.holder, lease_id);
    *req.add_failure() = RangeOp(key);
    kv.Txn(std::move(req), [self = shared_from_this(),
                            key](absl::StatusOr<etcdserverpb::TxnResponse> r) {
      if (r.ok() && r->succeeded()) return self->Succeed(key);
      if (r.ok()) {
        self->taken.insert(self->candidate);
        return self->TryNext();
      }
      // Outcome unknown (e.g. the member died): look before trying
      // again; the key may be ours already.
      if (++self->errors > kMaxErrors) return self->Fail(r.status());
      self->Check(key);
    });
  }

  void Check(const std::string& key) {
    etcdserverpb::RangeRequest req;
    req.set_key(key);
    kv.Range(std::move(req),
             [self = shared_from_this(),
              key](absl::StatusOr<etcdserverpb::RangeResponse> r) {
               if (!r.ok()) return self->Fail(r.status());
               if (r->kvs_size() == 0) return self->TryNext();
               if (r->kvs(0).lease() == self->lease_id) {
                 return self->Succeed(key);
               }
               self->taken.insert(self->candidate);
               self->TryNext();
             });
  }

  void Succeed(const std::string& key) {
    done(std::shared_ptr<NodeIdClaimer>(
        new NodeIdClaimer(conn, candidate, key, keeper)));
  }

  void Fail(absl::Status status) {
    if (keeper) keeper->Stop();
    if (lease_id != 0) {
      lease.Revoke(lease_id, [](auto) {});  // best effort: else TTL ends it
    }
    done(std::move(status));
  }

  static constexpr int kMaxErrors = 5;
  const std::shared_ptr<Connection> conn;
  const Clock& clock;
  const NodeIdClaimerOptions options;
  const std::function<void(const absl::Status&)> on_lost;
  const ClaimCallback done;
  Kv kv;
  Lease lease;
  // Touched by one callback at a time (each starts the next call).
  absl::Time granted_at;
  int64_t lease_id = 0;
  std::shared_ptr<LeaseKeeper> keeper;
  std::set<int> taken;
  int candidate = 0;
  int errors = 0;
};

void NodeIdClaimer::Claim(std::shared_ptr<Connection> conn, const Clock& clock,
                          NodeIdClaimerOptions options,
                          std::function<void(const absl::Status&)> on_lost,
                          ClaimCallback done) {
  if (options.max_ids <= 0 || options.prefix.empty()) {
    done(absl::InvalidArgumentError(
        "node id claimer: prefix must be set and max_ids positive"));
    return;
  }
  if (options.ttl < absl::Seconds(1) || options.margin >= options.ttl) {
    done(absl::InvalidArgumentError(
        "node id claimer: ttl must be at least 1 s and longer than margin"));
    return;
  }
  std::make_shared<Attempt>(std::move(conn), clock, std::move(options),
                            std::move(on_lost), std::move(done))
      ->Begin();
}

NodeIdClaimer::~NodeIdClaimer() { keeper_->Stop(); }

void NodeIdClaimer::Release(std::function<void(absl::Status)> done) {
  keeper_->Stop();
  Lease(conn_).Revoke(keeper_->lease_id(),
                      [done = std::move(done)](
                          absl::StatusOr<etcdserverpb::LeaseRevokeResponse> r) {
                        done(r.ok() || absl::IsNotFound(r.status())
                                 ? absl::OkStatus()
                                 : r.status());
                      });
}

}  // namespace registrar::etcd
