#include "service/etcd/kv.h"

#include <utility>

#include "service/etcd/unary_call.h"

namespace registrar::etcd {

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    const unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

pb::Compare CompareModRevision(const std::string& key,
                               pb::Compare::CompareResult result,
                               int64_t revision) {
  pb::Compare c;
  c.set_key(key);
  c.set_result(result);
  c.set_target(pb::Compare::MOD);
  c.set_mod_revision(revision);
  return c;
}

pb::Compare CompareCreateRevision(const std::string& key,
                                  pb::Compare::CompareResult result,
                                  int64_t revision) {
  pb::Compare c;
  c.set_key(key);
  c.set_result(result);
  c.set_target(pb::Compare::CREATE);
  c.set_create_revision(revision);
  return c;
}

pb::Compare KeyAbsent(const std::string& key) {
  return CompareCreateRevision(key, pb::Compare::EQUAL, 0);
}

pb::RequestOp PutOp(const std::string& key, const std::string& value,
                    int64_t lease) {
  pb::RequestOp op;
  pb::PutRequest* put = op.mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
  return op;
}

pb::RequestOp DeleteOp(const std::string& key, const std::string& range_end) {
  pb::RequestOp op;
  op.mutable_request_delete_range()->set_key(key);
  op.mutable_request_delete_range()->set_range_end(range_end);
  return op;
}

pb::RequestOp RangeOp(const std::string& key, const std::string& range_end) {
  pb::RequestOp op;
  op.mutable_request_range()->set_key(key);
  op.mutable_request_range()->set_range_end(range_end);
  return op;
}

void Kv::Range(pb::RangeRequest req, Callback<pb::RangeResponse> done,
               absl::Duration attempt_timeout) {
  UnaryCall<pb::RangeRequest, pb::RangeResponse>::Start(
      conn_, "Range", std::move(req), Retry::kOnAnotherMember,
      [](const Endpoint& e, grpc::ClientContext* c, const pb::RangeRequest* q,
         pb::RangeResponse* r, std::function<void(grpc::Status)> f) {
        e.kv->async()->Range(c, q, r, std::move(f));
      },
      std::move(done), attempt_timeout);
}

void Kv::Txn(pb::TxnRequest req, Callback<pb::TxnResponse> done) {
  UnaryCall<pb::TxnRequest, pb::TxnResponse>::Start(
      conn_, "Txn", std::move(req), Retry::kNo,
      [](const Endpoint& e, grpc::ClientContext* c, const pb::TxnRequest* q,
         pb::TxnResponse* r, std::function<void(grpc::Status)> f) {
        e.kv->async()->Txn(c, q, r, std::move(f));
      },
      std::move(done));
}

void Kv::Put(const std::string& key, const std::string& value, int64_t lease,
             Callback<pb::PutResponse> done) {
  pb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  req.set_lease(lease);
  UnaryCall<pb::PutRequest, pb::PutResponse>::Start(
      conn_, "Put", std::move(req), Retry::kNo,
      [](const Endpoint& e, grpc::ClientContext* c, const pb::PutRequest* q,
         pb::PutResponse* r, std::function<void(grpc::Status)> f) {
        e.kv->async()->Put(c, q, r, std::move(f));
      },
      std::move(done));
}

void Kv::Delete(const std::string& key, const std::string& range_end,
                Callback<pb::DeleteRangeResponse> done) {
  pb::DeleteRangeRequest req;
  req.set_key(key);
  req.set_range_end(range_end);
  UnaryCall<pb::DeleteRangeRequest, pb::DeleteRangeResponse>::Start(
      conn_, "DeleteRange", std::move(req), Retry::kNo,
      [](const Endpoint& e, grpc::ClientContext* c,
         const pb::DeleteRangeRequest* q, pb::DeleteRangeResponse* r,
         std::function<void(grpc::Status)> f) {
        e.kv->async()->DeleteRange(c, q, r, std::move(f));
      },
      std::move(done));
}

void Kv::Compact(int64_t revision, bool physical,
                 Callback<pb::CompactionResponse> done) {
  pb::CompactionRequest req;
  req.set_revision(revision);
  req.set_physical(physical);
  // Compacting the same revision twice fails (already compacted): no retry.
  UnaryCall<pb::CompactionRequest, pb::CompactionResponse>::Start(
      conn_, "Compact", std::move(req), Retry::kNo,
      [](const Endpoint& e, grpc::ClientContext* c,
         const pb::CompactionRequest* q, pb::CompactionResponse* r,
         std::function<void(grpc::Status)> f) {
        e.kv->async()->Compact(c, q, r, std::move(f));
      },
      std::move(done));
}

namespace {

// One paged scan: each page's reply starts the next page's Range.
struct Pager : std::enable_shared_from_this<Pager> {
  explicit Pager(std::shared_ptr<Connection> conn) : kv(std::move(conn)) {}
  Kv kv;
  Kv::RangeAllOptions options;
  Kv::PageCallback on_page;
  Kv::Callback<int64_t> done;

  void Next(std::string from) {
    pb::RangeRequest req;
    req.set_key(std::move(from));
    req.set_range_end(options.range_end);
    req.set_limit(options.page_size);
    req.set_revision(options.revision);
    req.set_keys_only(options.keys_only);
    kv.Range(std::move(req),
             [self = shared_from_this()](absl::StatusOr<pb::RangeResponse> r) {
               self->Page(std::move(r));
             });
  }

  void Page(absl::StatusOr<pb::RangeResponse> r) {
    if (!r.ok()) {
      done(r.status());
      return;
    }
    // The first page fixes the revision every later page reads at.
    if (options.revision == 0) options.revision = r->header().revision();
    std::string next;
    if (r->more() && r->kvs_size() > 0) {
      next = r->kvs(r->kvs_size() - 1).key();
      next.push_back('\0');  // the smallest key after the last one
    }
    std::vector<mvccpb::KeyValue> kvs(
        std::make_move_iterator(r->mutable_kvs()->begin()),
        std::make_move_iterator(r->mutable_kvs()->end()));
    on_page(std::move(kvs), options.revision);
    if (next.empty()) {
      done(options.revision);
    } else {
      Next(std::move(next));
    }
  }
};

}  // namespace

void Kv::RangeAll(RangeAllOptions options, PageCallback on_page,
                  Callback<int64_t> done) {
  if (options.page_size <= 0) options.page_size = 1000;
  auto pager = std::make_shared<Pager>(conn_);
  pager->options = std::move(options);
  pager->on_page = std::move(on_page);
  pager->done = std::move(done);
  pager->Next(pager->options.key);
}

}  // namespace registrar::etcd
