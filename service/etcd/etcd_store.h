#ifndef REGISTRAR_SERVICE_ETCD_ETCD_STORE_H_
#define REGISTRAR_SERVICE_ETCD_ETCD_STORE_H_

// registrar::Store on an etcd cluster (--store=etcd), over etcd's own gRPC
// API (service/etcd). Keys and values: etcd_layout.h. Why it is built this
// way: service/etcd/DESIGN.md.
//
// Invariants:
//  1. A WriteBatch is one etcd Txn (never split), and Submit's done is OK
//     only after etcd answered that Txn: a quorum committed it.
//  2. Every Txn compares the mod_revision of <prefix>/m/rev with the one
//     this store last saw (wrote or loaded) and rewrites that key: a
//     second writer on the prefix, or one that lost track, can never
//     interleave. The first writer whose compare fails is fenced: its
//     batch and every later one fail ABORTED and CheckWritable says so
//     (its memory no longer matches etcd; a restart reloads).
//  3. Revisions are assigned at Txn time, consecutively from the last one
//     committed, so they are gap-free in commit order; a Txn that fails
//     consumes none.
//  4. A Txn whose outcome is unknown (UNAVAILABLE, a deadline) is resolved
//     before anything else is sent: each Txn writes a unique token into
//     <prefix>/m/rev, so a read of that key tells applied (token there),
//     not applied (mod_revision unchanged: it is sent again) or another
//     writer (fenced). Unresolved within commit_timeout, the batch fails
//     UNAVAILABLE; if it later turns out applied after all, the store
//     fences itself rather than diverge from etcd.
//  5. Group commit: one Txn is in flight at a time; batches queued
//     meanwhile are merged into the next Txn, in queue order, as long as it
//     stays within max_txn_ops and max_request_bytes. A batch that cannot
//     fit alone fails RESOURCE_EXHAUSTED naming the limit.
//  6. The listener sees each committed event once, in revision order,
//     before the batch's done runs.
//
// Submit's done runs on a completion thread of the store, in commit order;
// a blocking Commit returns without waiting for that thread. Thread-safe.
// Load must be called once, before any Submit.

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/etcd/blocking_kv.h"
#include "service/etcd/connection.h"
#include "service/etcd/etcd_layout.h"
#include "service/etcd/kv.h"
#include "service/store/store.h"

namespace registrar::etcd {

struct EtcdStoreOptions {
  // Every key starts with it; no trailing '/'.
  std::string prefix = "/registrar";
  // The limits of the etcd cluster (its --max-txn-ops and
  // --max-request-bytes); etcd cannot be asked for them, so they are
  // configured on both sides (README, "etcd settings").
  int64_t max_txn_ops = 128;
  int64_t max_request_bytes = 1536 * 1024;
  // How long a Txn of unknown outcome is resolved and retried before its
  // batch fails UNAVAILABLE.
  absl::Duration commit_timeout = absl::Seconds(10);
  // How long the first sending of a Txn may go unanswered before the
  // writer asks etcd whether it was applied and, if not, sends it again
  // (each further attempt may take twice as long). A proposal forwarded to
  // a leader that then dies is dropped, and the member that forwarded it
  // answers only after etcd's own request timeout (5 s + 2 election
  // timeouts); this bounds the stall after an etcd leader's death to about
  // max(this, etcd's election) instead. About etcd's --election-timeout.
  absl::Duration txn_attempt_timeout = absl::Seconds(1);
  // Recent events kept in memory for ReadEvents (older ones are read from
  // etcd).
  size_t tail_events = 20'000;
  // Keys per Range page while loading. Large: etcd 3.4 walks its index
  // over the whole rest of the range for every page (the limit applies
  // after), so loading costs pages x records. 1M records (about 250 bytes
  // a key and value): pages of 1,000 took 103 s, 10,000 13.6 s, 50,000
  // 5.5 s, 100,000 5.7 s (bench/scripts/etcd_start.sh); a page of 50,000
  // is about 13 MB, under the connection's 64 MiB receive limit.
  int64_t load_page_size = 50'000;
  // How often CheckWritable probes etcd when no commit said it works.
  absl::Duration probe_interval = absl::Seconds(1);
  // Group commit under load: after a Txn that carried at least
  // kBusyGroup batches, the writer waits up to this long for more before
  // it sends the next, for as long as each millisecond brings some (or
  // until twice the last group is queued). Fewer, larger Txns cost etcd
  // less per record (raft entry, WAL fsync, bbolt commit, watch
  // notifications per Txn): at 64 callers on the 2-core machine a Txn
  // carried 20-21 connections without it and 45-46 with 5 ms, and the
  // cluster took 2-38% more (bench/RESULTS.md section 14). A quiet writer
  // (the last Txn held fewer batches) sends at once. 0: never wait.
  absl::Duration commit_linger = absl::Milliseconds(5);
};

class EtcdStore final : public Store {
 public:
  // INVALID_ARGUMENT naming the option when one is out of range.
  static absl::StatusOr<std::unique_ptr<EtcdStore>> Create(
      std::shared_ptr<Connection> conn, EtcdStoreOptions options);
  ~EtcdStore() override;

  absl::Status Commit(WriteBatch* batch) override;
  void Submit(WriteBatch* batch, CommitDone done) override;
  bool defers_commits() const override { return true; }
  absl::StatusOr<StoreMeta> Load(
      const std::function<void(RecordView&&)>& on_record) override;
  uint64_t ApproximateRecordCount() override;
  absl::Status ReadEvents(uint64_t from, size_t limit,
                          std::vector<Event>* out) override;
  uint64_t OldestRevision() override;
  uint64_t LastRevision() override;
  absl::Status CompactEvents(uint64_t below) override;
  void SetEventListener(EventListener listener) override;
  // SetEventListener, then in the same step (under the listener's lock)
  // tells it this store's newest revision: one Event carrying only that
  // revision, when above 0. A store thread calling the listener meanwhile
  // cannot slip a newer revision in before it, so the listener never hears
  // the revision go back (cluster::EventLog::Switch).
  void SetEventListenerAndAnnounce(EventListener listener);
  absl::Status CheckWritable() override;
  CommitStats commit_stats() const override;
  // etcd answers a Txn after a quorum fsynced it.
  Durability durability() const override { return Durability::kFsync; }
  std::string_view name() const override { return "etcd"; }

  // A condition every write from now on requires besides the prefix fence,
  // e.g. that this replica still holds its node id: `check` runs before
  // each Txn (a local test, such as the claim's fencing clock) and
  // `compares` go into each Txn (etcd's test, such as "the claim key is
  // still on our lease"). The first failure of either fences the store
  // (with the check's status code when the check failed).
  // Call before the first Submit.
  struct WriteFence {
    std::function<absl::Status()> check;
    std::vector<pb::Compare> compares;
  };
  void SetWriteFence(WriteFence fence) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    write_fence_ = std::make_shared<const WriteFence>(std::move(fence));
  }

  // A follower's store becomes the writer's, keeping what its feed noted
  // (NoteCommitted) instead of loading again: the cluster's new writer
  // takes over its follower registry (service/cluster/DESIGN.md). Reads the
  // meta keys (a linearizable Range); when etcd's Registrar revision is the
  // one this store last noted, the prefix fence is taken from etcd's
  // <prefix>/m/rev as Load would, `fence` replaces the write fence, and the
  // ID clock's high-water mark etcd holds is returned. Stop noting first.
  // FAILED_PRECONDITION when etcd holds another revision than the one noted
  // or this store was ever asked to write; UNAVAILABLE when etcd cannot be
  // read. Nothing changes on failure.
  absl::StatusOr<uint64_t> TakeOver(WriteFence fence) ABSL_LOCKS_EXCLUDED(mu_);

  // Writes what is queued, then stops the writer. Idempotent.
  void Stop();

  const EtcdLayout& layout() const { return layout_; }
  // The etcd revision Load read its snapshot at (0 before Load): a
  // follower watches the prefix from the next one (service/cluster).
  int64_t loaded_at() const ABSL_LOCKS_EXCLUDED(mu_);

  // A follower's store (service/cluster): `events`, the events of one Txn
  // another replica committed, with their revisions, and `revision`, the
  // Registrar revision after it (0: unknown, taken from the events), as
  // the follower's feed applied them. Serves them from the event log (last
  // revision, in-memory tail) and tells the event listener, as if this
  // store had committed them. Call in revision order, from one thread; a
  // store that commits itself must not be given them.
  void NoteCommitted(const std::vector<Event>& events, uint64_t revision)
      ABSL_LOCKS_EXCLUDED(mu_, listener_mu_);

 private:
  struct Pending {
    WriteBatch* batch;
    CommitDone done;
    // A blocking Commit's done (it only wakes its caller) runs on the
    // writer; every other done runs on the completion thread, so a done
    // that waits for a lock held by a caller blocked in Commit cannot stall
    // the writer.
    bool direct = false;
  };
  // A Txn ready to send and the batches it carries.
  struct Group;
  // Outcome of one Txn: the mod_revision of <prefix>/m/rev it wrote.
  using TxnResult = absl::StatusOr<int64_t>;

  EtcdStore(std::shared_ptr<Connection> conn, EtcdStoreOptions options);

  void Enqueue(Pending p) ABSL_LOCKS_EXCLUDED(mu_);
  void WriterLoop();
  void CompletionLoop();
  // Runs p's done with `status`: at once when direct, else queued for the
  // completion thread in order.
  void Complete(Pending& p, const absl::Status& status);
  // Takes batches off the front of *pending into one Txn (etcd_commit.cc).
  std::optional<Group> TakeGroup(std::deque<Pending>* pending);
  // Sends a group's Txn and resolves an unknown outcome (etcd_commit.cc).
  TxnResult SendTxn(Group& group);
  // A Txn whose compare failed; mod and value: <prefix>/m/rev as etcd
  // answered.
  TxnResult Refused(const Group& group, int64_t mod, std::string_view value);
  // Reads <prefix>/m/rev: what became of the Txn that wrote `token`.
  TxnResult Resolve(const std::string& token, int64_t expected_mod);
  // Fences: <prefix>/m/rev was changed by another writer.
  absl::Status OtherWriter(int64_t mod, int64_t expected_mod);
  // Before a new Txn: settles a Txn whose failure was already reported.
  absl::Status SettleUncertain();
  void Finish(Group& group, const TxnResult& result);
  // Fences the store for good: every later batch fails with `code` (the
  // write fence's own code when its check failed, e.g. UNAVAILABLE: this
  // replica lost its node id or is no longer the writer; ABORTED when etcd
  // refused a compare).
  absl::Status Fence(std::string why,
                     absl::StatusCode code = absl::StatusCode::kAborted);
  bool Stopping() ABSL_LOCKS_EXCLUDED(mu_);
  // Waits up to `d` unless Stop is called.
  void Backoff(absl::Duration d);

  // The meta keys, read linearizably, and the etcd revision of the read.
  struct MetaKeys {
    int64_t at = 0;
    uint64_t revision = 0;  // Registrar's
    int64_t mod = 0;        // mod_revision of <prefix>/m/rev
    uint64_t clock_high_water = 0;
    uint64_t oldest = 1;
  };
  absl::StatusOr<MetaKeys> ReadMeta();

  absl::Status ReadEventsFromEtcd(uint64_t from, size_t limit, uint64_t last,
                                  std::vector<Event>* out);

  const std::shared_ptr<Connection> conn_;
  const EtcdStoreOptions options_;
  const EtcdLayout layout_;
  Kv kv_;                   // Load's paged scan
  BlockingKv blocking_kv_;  // everything else (see blocking_kv.h)
  // This store's part of every token it writes (random per process).
  const std::string writer_id_;

  mutable absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<CommitDone, absl::Status>> completions_
      ABSL_GUARDED_BY(mu_);
  bool writer_done_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool writer_started_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_revision_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t oldest_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t clock_high_water_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t loaded_at_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<Event> tail_ ABSL_GUARDED_BY(mu_);

  CommitStats stats_ ABSL_GUARDED_BY(mu_);
  absl::Status fenced_ ABSL_GUARDED_BY(mu_);
  absl::Status writable_ ABSL_GUARDED_BY(mu_);
  absl::Time writable_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Mutex compact_mu_;  // one CompactEvents at a time
  // Held while the listener runs, so that SetEventListener(nullptr)
  // returns only once no call of the old listener is in progress.
  absl::Mutex listener_mu_;
  EventListener listener_ ABSL_GUARDED_BY(listener_mu_);

  // Replaced only before the writer thread starts (SetWriteFence,
  // TakeOver); CheckWritable may read it meanwhile.
  std::shared_ptr<const WriteFence> write_fence_ ABSL_GUARDED_BY(mu_) =
      std::make_shared<const WriteFence>();
  std::shared_ptr<const WriteFence> write_fence() const
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return write_fence_;
  }

  // Waits (commit_linger) for more batches while the queue keeps growing,
  // when the last Txn showed a busy writer.
  void Linger() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Writer thread only.
  int64_t last_mod_ = 0;  // mod_revision of <prefix>/m/rev we last saw
  uint64_t txn_seq_ = 0;
  size_t last_group_batches_ = 0;  // batches in the last Txn sent
  // A Txn reported failed whose outcome was never learned.
  struct Uncertain {
    std::string token;
    int64_t expected_mod;
  };
  std::optional<Uncertain> uncertain_;
  std::thread writer_;
  std::thread completer_;
};

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_ETCD_STORE_H_
