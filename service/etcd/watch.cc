#include "service/etcd/watch.h"

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "service/etcd/bidi_stream.h"
#include "service/etcd/status.h"

namespace registrar::etcd {

namespace pb = ::etcdserverpb;

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
  WatchEnd end;
  bool cancelled = false;
  {
    absl::MutexLock lock(&mu_);
    end.next_revision = next_revision_;
    create->set_start_revision(next_revision_);
    cancelled = cancelled_;
  }
  if (cancelled) {
    end.status = absl::CancelledError("etcd watch cancelled");
    End(std::move(end));
    return;
  }

  // What this stream saw (its reactions run one at a time).
  struct Seen {
    bool response = false;
    bool server_cancelled = false;
    int64_t compact_revision = 0;
    std::string cancel_reason;
  };
  auto seen = std::make_shared<Seen>();
  auto ctx = conn_->NewStreamContext();
  // A member cut off from the leader ends the stream (UNAVAILABLE) instead
  // of silently delivering nothing.
  ctx->AddMetadata("hasleader", "true");
  grpc::ClientContext* raw_ctx = ctx.get();
  Stream::Handlers h;
  h.on_read = [this, self = shared_from_this(), seen,
               raw_ctx](pb::WatchResponse& resp) {
    seen->response = true;
    const int64_t revision = resp.header().revision();
    if (resp.canceled()) {
      // etcd cancelled the watcher: compaction, or a refused request.
      seen->server_cancelled = true;
      seen->compact_revision = resp.compact_revision();
      seen->cancel_reason = resp.cancel_reason().substr(0, 200);
      raw_ctx->TryCancel();
    } else if (resp.events_size() > 0) {
      std::vector<mvccpb::Event> events(
          std::make_move_iterator(resp.mutable_events()->begin()),
          std::make_move_iterator(resp.mutable_events()->end()));
      Deliver(std::move(events), revision);
    } else if (resp.created()) {
      Created(revision);
    } else {
      Progress(revision);
    }
  };
  h.on_done = [this, self = shared_from_this(), seen,
               member](const grpc::Status& s) {
    absl::Status status;
    if (seen->server_cancelled && seen->compact_revision > 0) {
      status = absl::OutOfRangeError(
          absl::StrCat("etcd watch: the revision was compacted (compaction at ",
                       seen->compact_revision, ")"));
    } else if (seen->server_cancelled) {
      status = absl::FailedPreconditionError(
          absl::StrCat("etcd watch cancelled by etcd: ", seen->cancel_reason));
    } else {
      status = ToAbsl(
          s, absl::StrCat("etcd Watch on ", conn_->endpoint(member).address));
      if (status.ok()) status = absl::UnavailableError("etcd Watch closed");
    }
    StreamEnded(member, status, seen->response, seen->server_cancelled,
                seen->compact_revision);
  };
  const Endpoint& endpoint = conn_->endpoint(member);
  std::shared_ptr<Stream> stream = Stream::Start(
      std::move(ctx),
      [&endpoint](
          grpc::ClientContext* c,
          grpc::ClientBidiReactor<pb::WatchRequest, pb::WatchResponse>* r) {
        endpoint.watch->async()->Watch(c, r);
      },
      std::move(req), std::move(h));
  conn_->KeepForProcess(member);
  bool cancel = false;
  {
    absl::MutexLock lock(&mu_);
    stream_ = stream;
    cancel = cancelled_;
  }
  if (cancel) stream->Cancel();  // Cancel() came while it was starting
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
  if (s) {
    pb::WatchRequest req;
    req.mutable_progress_request();
    s->Write(std::move(req));
  }
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
