#include "service/etcd/watch.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "service/etcd/status.h"

namespace registrar::etcd {

namespace pb = ::etcdserverpb;

// One gRPC Watch stream carrying one etcd watcher. It keeps itself (and
// its Watch) alive from Begin until OnDone. A hold keeps the call open
// while a write is queued or in flight, so StartWrite never races OnDone.
class Watch::Stream final
    : public grpc::ClientBidiReactor<pb::WatchRequest, pb::WatchResponse>,
      public std::enable_shared_from_this<Watch::Stream> {
 public:
  Stream(std::shared_ptr<Watch> watch, int member)
      : watch_(std::move(watch)),
        member_(member),
        ctx_(watch_->conn_->NewStreamContext()) {
    // A member cut off from the leader ends the stream (UNAVAILABLE)
    // instead of silently delivering nothing.
    ctx_->AddMetadata("hasleader", "true");
  }

  void Begin(pb::WatchRequest create) {
    self_ = shared_from_this();
    watch_->conn_->endpoint(member_).watch->async()->Watch(ctx_.get(), this);
    AddHold();
    Enqueue(std::move(create));
    StartRead(&resp_);
    StartCall();
  }

  void RequestProgress() {
    pb::WatchRequest req;
    req.mutable_progress_request();
    Enqueue(std::move(req));
  }

  void Cancel() { ctx_->TryCancel(); }

 private:
  void Enqueue(pb::WatchRequest req) {
    {
      absl::MutexLock lock(&mu_);
      if (reads_done_) return;
      queue_.push_back(std::move(req));
      if (writing_) return;
      writing_ = true;
      write_ = std::move(queue_.front());
      queue_.pop_front();
    }
    StartWrite(&write_);
  }

  void OnWriteDone(bool ok) override {
    bool next = false;
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      if (ok && !queue_.empty() && !reads_done_) {
        write_ = std::move(queue_.front());
        queue_.pop_front();
        next = true;
      } else {
        writing_ = false;
        release = reads_done_ && !hold_removed_;
        if (release) hold_removed_ = true;
      }
    }
    if (next) {
      StartWrite(&write_);
    } else if (release) {
      RemoveHold();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      bool release = false;
      {
        absl::MutexLock lock(&mu_);
        reads_done_ = true;
        release = !writing_ && !hold_removed_;
        if (release) hold_removed_ = true;
      }
      if (release) RemoveHold();
      return;
    }
    got_response_ = true;
    const int64_t revision = resp_.header().revision();
    if (resp_.canceled()) {
      // etcd cancelled the watcher: compaction, or a refused request.
      server_cancelled_ = true;
      compact_revision_ = resp_.compact_revision();
      cancel_reason_ = resp_.cancel_reason();
      ctx_->TryCancel();
    } else if (resp_.events_size() > 0) {
      std::vector<mvccpb::Event> events(
          std::make_move_iterator(resp_.mutable_events()->begin()),
          std::make_move_iterator(resp_.mutable_events()->end()));
      watch_->Deliver(std::move(events), revision);
    } else if (resp_.created()) {
      watch_->Created(revision);
    } else {
      watch_->Progress(revision);
    }
    StartRead(&resp_);
  }

  void OnDone(const grpc::Status& s) override {
    absl::Status status;
    if (server_cancelled_ && compact_revision_ > 0) {
      status = absl::OutOfRangeError(
          absl::StrCat("etcd watch: the revision was compacted (compaction at ",
                       compact_revision_, ")"));
    } else if (server_cancelled_) {
      status = absl::FailedPreconditionError(absl::StrCat(
          "etcd watch cancelled by etcd: ", cancel_reason_.substr(0, 200)));
    } else {
      status =
          ToAbsl(s, absl::StrCat("etcd Watch on ",
                                 watch_->conn_->endpoint(member_).address));
      if (status.ok()) status = absl::UnavailableError("etcd Watch closed");
    }
    std::shared_ptr<Stream> self = std::move(self_);
    std::shared_ptr<Watch> watch = std::move(watch_);
    watch->StreamEnded(member_, status, got_response_, server_cancelled_,
                       compact_revision_);
  }

  std::shared_ptr<Watch> watch_;
  const int member_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::shared_ptr<Stream> self_;

  absl::Mutex mu_;
  std::deque<pb::WatchRequest> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_removed_ ABSL_GUARDED_BY(mu_) = false;
  pb::WatchRequest write_;  // the write in flight

  // Reactions only (serial).
  pb::WatchResponse resp_;
  bool got_response_ = false;
  bool server_cancelled_ = false;
  int64_t compact_revision_ = 0;
  std::string cancel_reason_;
};

Watch::Watch(std::shared_ptr<Connection> conn, WatchOptions options,
             WatchHandlers handlers)
    : conn_(std::move(conn)),
      options_(std::move(options)),
      handlers_(std::move(handlers)),
      next_revision_(options_.start_revision) {}

Watch::~Watch() = default;

std::shared_ptr<Watch> Watch::Start(std::shared_ptr<Connection> conn,
                                    WatchOptions options,
                                    WatchHandlers handlers) {
  std::shared_ptr<Watch> w(
      new Watch(std::move(conn), std::move(options), std::move(handlers)));
  w->StartStream(w->conn_->current());
  return w;
}

void Watch::StartStream(int member) {
  pb::WatchRequest req;
  pb::WatchCreateRequest* create = req.mutable_create_request();
  create->set_key(options_.key);
  create->set_range_end(options_.range_end);
  create->set_prev_kv(options_.prev_kv);
  std::shared_ptr<Stream> stream;
  WatchEnd end;
  {
    absl::MutexLock lock(&mu_);
    if (!cancelled_) {
      create->set_start_revision(next_revision_);
      stream = std::make_shared<Stream>(shared_from_this(), member);
      stream_ = stream;
    }
    end.next_revision = next_revision_;
  }
  if (stream) {
    stream->Begin(std::move(req));
  } else {
    end.status = absl::CancelledError("etcd watch cancelled");
    End(std::move(end));
  }
}

void Watch::Created(int64_t revision) {
  absl::MutexLock lock(&mu_);
  // Watching "from now": a resumption must start right after the revision
  // the watcher was created at, not at "now" again.
  if (next_revision_ == 0) next_revision_ = revision + 1;
}

void Watch::Deliver(std::vector<mvccpb::Event> events, int64_t revision) {
  {
    absl::MutexLock lock(&mu_);
    next_revision_ = events.back().kv().mod_revision() + 1;
    failures_in_a_row_ = 0;
  }
  if (handlers_.on_events) handlers_.on_events(std::move(events), revision);
}

void Watch::Progress(int64_t revision) {
  // next_revision_ stays: on etcd 3.4.23 events up to `revision` may still
  // be on their way (see the header), and resuming past them would skip.
  if (handlers_.on_progress) handlers_.on_progress(revision);
}

void Watch::RequestProgress() {
  std::shared_ptr<Stream> s;
  {
    absl::MutexLock lock(&mu_);
    s = stream_;
  }
  if (s) s->RequestProgress();
}

void Watch::Cancel() {
  std::shared_ptr<Stream> s;
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    s = stream_;
  }
  if (s) s->Cancel();
}

int Watch::resumes() const {
  absl::MutexLock lock(&mu_);
  return resumes_;
}

void Watch::StreamEnded(int member, const absl::Status& status,
                        bool got_response, bool server_cancelled,
                        int64_t compact_revision) {
  WatchEnd end;
  end.status = status;
  {
    absl::MutexLock lock(&mu_);
    stream_.reset();
    end.next_revision = next_revision_;
    if (cancelled_) {
      end.status = absl::CancelledError("etcd watch cancelled");
    } else if (server_cancelled) {
      end.compact_revision = compact_revision;
    } else if (absl::IsUnavailable(status) ||
               absl::IsDeadlineExceeded(status) || absl::IsCancelled(status)) {
      // The member failed us: resume on the next one, after a backoff that
      // grows while every member fails (an election takes about a second).
      if (got_response) failures_in_a_row_ = 0;
      if (++failures_in_a_row_ <= kMaxFailuresInARow) {
        ++resumes_;
        const int next = conn_->ReportFailure(member);
        const absl::Duration backoff =
            std::min(absl::Milliseconds(50) * (failures_in_a_row_ - 1),
                     absl::Milliseconds(500));
        // The timer's callback keeps the watch alive through waiting_self_.
        waiting_self_ = shared_from_this();
        conn_->timer().After(backoff, [this, next] { Resume(next); });
        return;
      }
    }
  }
  End(std::move(end));
}

void Watch::Resume(int member) {
  std::shared_ptr<Watch> self;
  {
    absl::MutexLock lock(&mu_);
    self = std::move(waiting_self_);
  }
  StartStream(member);  // ends the watch instead when it was cancelled
}

void Watch::End(WatchEnd end) {
  {
    absl::MutexLock lock(&mu_);
    if (ended_) return;
    ended_ = true;
  }
  if (handlers_.on_end) handlers_.on_end(end);
}

}  // namespace registrar::etcd
