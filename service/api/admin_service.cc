#include "service/api/admin_service.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/api/raw_request.h"
#include "service/api/status_conversion.h"
#include "service/common/field_error.h"
#include "service/store/rocksdb_store.h"

namespace registrar {
namespace {

constexpr size_t kMaxDirBytes = 4096;

absl::Status CheckDir(const std::string& dir) {
  if (dir.empty()) {
    return absl::InvalidArgumentError("dir is required");
  }
  if (dir.size() > kMaxDirBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dir is ", dir.size(), " bytes; the limit is ", kMaxDirBytes));
  }
  if (dir.front() != '/') {
    return absl::InvalidArgumentError(
        "dir must be an absolute path (it is on the server's filesystem)");
  }
  for (unsigned char c : dir) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("dir holds a control character");
    }
  }
  return absl::OkStatus();
}

// One lease call's messages, and the registry answering it, kept until the
// call is finished.
template <typename Req, typename Resp>
struct LeaseCall {
  std::shared_ptr<Registry> registry;
  Req request;
  Resp response;
};

}  // namespace

AdminService::~AdminService() {
  if (worker_.joinable()) worker_.join();
}

grpc::ServerUnaryReactor* AdminService::Backup(grpc::CallbackServerContext* ctx,
                                               const v1::BackupRequest* request,
                                               v1::BackupResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<CallerPtr> caller = access_->Authenticate(*ctx);
  absl::Status st = caller.status();
  if (st.ok()) st = access_->Authorize(caller->get(), Method::kBackup, {});
  if (st.ok()) st = CheckDir(request->dir());
  if (st.ok() && store_ == nullptr) {
    st = absl::FailedPreconditionError(
        "backup needs the rocksdb store; this server keeps its records in "
        "memory");
  }
  if (st.ok() && busy_.exchange(true)) {
    st = absl::UnavailableError("a backup is already running; try later");
  }
  if (!st.ok()) {
    reactor->Finish(ToGrpcStatus(st));
    return reactor;
  }
  // busy_ was false: the previous worker has finished (or is finishing).
  if (worker_.joinable()) worker_.join();
  worker_ = std::thread([this, reactor, request, response] {
    absl::StatusOr<BackupInfo> info = store_->Backup(request->dir());
    grpc::Status status = ToGrpcStatus(info.status());
    if (info.ok()) {
      response->set_dir(info->dir);
      response->set_revision(info->revision);
      response->set_records(info->records);
      response->set_bytes(info->bytes);
    }
    busy_.store(false);
    reactor->Finish(status);
  });
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::ListLeases(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return HandleLeaseCall<v1::ListLeasesRequest, v1::ListLeasesResponse>(
      ctx, Method::kListLeases, request, response, &AdminService::DoListLeases);
}

grpc::ServerUnaryReactor* AdminService::RevokeLeases(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return HandleLeaseCall<v1::RevokeLeasesRequest, v1::RevokeLeasesResponse>(
      ctx, Method::kRevokeLeases, request, response,
      &AdminService::DoRevokeLeases);
}

template <typename Req, typename Resp>
grpc::ServerUnaryReactor* AdminService::HandleLeaseCall(
    grpc::CallbackServerContext* ctx, Method method,
    const grpc::ByteBuffer* request, grpc::ByteBuffer* response,
    Body<Req, Resp> body) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  ClusterHook* const cluster = leases_.cluster;
  // A follower hands the call to the writer, which checks, authorizes and
  // answers it; the reply comes back unchanged.
  if (cluster != nullptr &&
      cluster->Forward(
          ctx, method, *request, response,
          [reactor](const grpc::Status& status) { reactor->Finish(status); })) {
    return reactor;
  }
  auto call = std::make_shared<LeaseCall<Req, Resp>>();
  absl::Status st = StrictParse(*request, &call->request);
  absl::StatusOr<CallerPtr> caller = access_->Authenticate(*ctx);
  if (st.ok()) st = caller.status();
  if (st.ok()) st = access_->Authorize(caller->get(), method, {});
  if (st.ok() && cluster == nullptr && leases_.registry == nullptr) {
    st = absl::UnimplementedError("this server has no registry to ask");
  }
  if (!st.ok()) {
    reactor->Finish(ToGrpcStatus(st));
    return reactor;
  }
  call->registry = cluster != nullptr
                       ? cluster->registry()
                       // Not owned: the single registry outlives the service.
                       : std::shared_ptr<Registry>(std::shared_ptr<Registry>(),
                                                   leases_.registry);
  const absl::Time start = absl::Now();
  // A change still queued for the store when the caller has given up, or
  // --call_timeout after arrival, is not written.
  const absl::Time deadline = std::min(start + leases_.limits.call_timeout,
                                       absl::FromChrono(ctx->deadline()));
  Registry& registry = *call->registry;
  const Req& req = call->request;
  Resp* resp = &call->response;
  (this->*body)(registry, req, resp, deadline,
                [this, reactor, method, response, start,
                 call = std::move(call)](absl::Status status) mutable {
                  if (leases_.metrics != nullptr) {
                    leases_.metrics->ObserveCall(method, absl::Now() - start);
                  }
                  grpc::Status result = ToGrpcStatus(status);
                  if (status.ok()) {
                    bool own_buffer = false;
                    result = grpc::SerializationTraits<Resp>::Serialize(
                        call->response, response, &own_buffer);
                  }
                  call.reset();
                  reactor->Finish(result);
                });
  return reactor;
}

void AdminService::DoListLeases(Registry& registry,
                                const v1::ListLeasesRequest& req,
                                v1::ListLeasesResponse* resp, absl::Time,
                                Finish finish) {
  absl::Status st =
      CheckHolder(req.holder(), /*required=*/false, leases_.limits);
  if (st.ok()) st = CheckPageToken(req.page_token(), leases_.limits);
  if (!st.ok()) {
    std::move(finish)(std::move(st));
    return;
  }
  ListLeasesSpec spec;
  if (!req.holder().empty()) spec.holder = req.holder();
  spec.page_size = req.page_size();
  spec.page_token = req.page_token();
  absl::StatusOr<ListLeasesResult> result = registry.ListLeases(spec);
  if (result.ok()) {
    for (LeaseInfo& lease : result->leases) {
      v1::LeaseInfo* out = resp->add_leases();
      out->set_lease_id(std::move(lease.lease_id));
      out->set_holder(std::move(lease.holder));
      out->set_grantor(std::move(lease.grantor));
      out->set_ttl_seconds(
          static_cast<uint32_t>(absl::ToInt64Seconds(lease.ttl)));
      out->set_remaining_ms(static_cast<uint64_t>(
          std::max<int64_t>(0, absl::ToInt64Milliseconds(lease.remaining))));
      out->set_connections(lease.connections);
    }
    resp->set_next_page_token(std::move(result->next_page_token));
  }
  std::move(finish)(result.status());
}

void AdminService::DoRevokeLeases(Registry& registry,
                                  const v1::RevokeLeasesRequest& req,
                                  v1::RevokeLeasesResponse* resp,
                                  absl::Time deadline, Finish finish) {
  if (absl::Status st =
          CheckHolder(req.holder(), /*required=*/true, leases_.limits);
      !st.ok()) {
    std::move(finish)(std::move(st));
    return;
  }
  registry.RevokeHolderAsync(
      req.holder(), deadline,
      [resp, finish = std::move(finish)](
          absl::StatusOr<RevokeHolderResult> result) mutable {
        if (result.ok()) {
          for (std::string& id : result->revoked) {
            resp->add_revoked(std::move(id));
          }
          resp->set_released(result->released);
          resp->set_more(result->more);
        }
        std::move(finish)(result.status());
      });
}

}  // namespace registrar
