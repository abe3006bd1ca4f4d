#ifndef REGISTRAR_SERVICE_ETCD_WATCH_H_
#define REGISTRAR_SERVICE_ETCD_WATCH_H_

// One etcd watch of a key or key range from a revision, asynchronously, on
// gRPC's callback API (one Watch stream per Watch).
//
// Events come in revision order, each exactly once: when the member the
// stream is on fails (killed, paused past keepalive, lost its leader: the
// stream carries etcd's "hasleader" requirement), the watch resumes on the
// next member from the revision after the last one delivered, so a member
// failure makes neither a gap nor a duplicate. Only when every member has
// failed in a row does the watch end with UNAVAILABLE.
//
// Ends, reported once by on_end, the last callback:
//  - compacted: the start (or resume) revision is older than etcd's
//    compaction. WatchEnd::compact_revision > 0; the status is
//    OUT_OF_RANGE. The caller must re-list (a Range) and watch again from
//    the Range's revision + 1: events in between are gone.
//  - cancelled by Cancel(): CANCELLED (up to half a second later when the
//    watch is waiting to resume).
//  - anything else etcd refuses (e.g. a bad range): its status.
//
// Progress: RequestProgress() asks etcd for a progress notification;
// on_progress(revision) says the watch has reached that revision. Caution:
// etcd 3.4.23 (Debian 12) may send a requested notification ahead of
// events it is still sending for the same revision range (etcd issue
// #15220, fixed in 3.4.24 and 3.5.8), so on 3.4.23 on_progress(R) proves
// only that R was current, not that every event up to R was delivered.
//
// Callbacks of one Watch never run concurrently (one gRPC reaction at a
// time, streams one after another) and must not block. Thread-safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "etcd/etcdserver/etcdserverpb/rpc.pb.h"
#include "etcd/mvcc/mvccpb/kv.pb.h"
#include "service/etcd/bidi_stream.h"
#include "service/etcd/connection.h"

namespace registrar::etcd {

struct WatchOptions {
  std::string key;
  std::string range_end;       // empty: the one key; PrefixEnd(key): prefix
  int64_t start_revision = 0;  // 0: from the next change
  bool prev_kv = false;        // events carry the previous key-value
};

struct WatchEnd {
  absl::Status status;
  // > 0: the requested revision was compacted; etcd's compaction revision.
  int64_t compact_revision = 0;
  // The revision to resume from (one after the last delivered event or
  // progress notification).
  int64_t next_revision = 0;
};

struct WatchHandlers {
  // Events of one etcd response (one or more revisions), in order; revision
  // is the store revision the response was sent at (>= the events').
  std::function<void(std::vector<mvccpb::Event> events, int64_t revision)>
      on_events;
  std::function<void(int64_t revision)> on_progress;
  std::function<void(const WatchEnd& end)> on_end;
};

class Watch : public std::enable_shared_from_this<Watch> {
 public:
  // The watch runs until it ends or is cancelled, also when the caller
  // drops its pointer (the stream keeps it alive).
  static std::shared_ptr<Watch> Start(std::shared_ptr<Connection> conn,
                                      WatchOptions options,
                                      WatchHandlers handlers);
  ~Watch();

  // Asks the member for a progress notification (sent when the stream is
  // up; ignored after the end).
  void RequestProgress();
  // Ends the watch: on_end(CANCELLED) follows unless it already ended.
  void Cancel();
  // Resumptions after a member failure so far.
  int resumes() const;

 private:
  using Stream =
      BidiStream<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse>;

  Watch(std::shared_ptr<Connection> conn, WatchOptions options,
        WatchHandlers handlers);
  // A stream on `member` from next_revision_ (or the end, if cancelled).
  void StartStream(int member);
  // From the stream's reactions (serial).
  void Created(int64_t revision);
  void Deliver(std::vector<mvccpb::Event> events, int64_t revision);
  void Progress(int64_t revision);
  void StreamEnded(int member, const absl::Status& status, bool got_response,
                   bool server_cancelled, int64_t compact_revision);
  // The backoff after a member failure has passed.
  void Resume(int member);
  // Calls on_end, once.
  void End(WatchEnd end);

  // Consecutive member failures (no response in between) before the watch
  // ends with UNAVAILABLE: with the backoff, about 12 s of every member
  // failing.
  static constexpr int kMaxFailuresInARow = 30;

  const std::shared_ptr<Connection> conn_;
  const WatchOptions options_;
  const WatchHandlers handlers_;

  mutable absl::Mutex mu_;
  std::shared_ptr<Stream> stream_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  int64_t next_revision_ ABSL_GUARDED_BY(mu_) = 0;
  int failures_in_a_row_ ABSL_GUARDED_BY(mu_) = 0;
  int resumes_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<Watch> waiting_self_ ABSL_GUARDED_BY(mu_);
};

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_WATCH_H_
