// registrarctl's lease commands for operators (registrar.v1.Admin, admin
// role): `leases` lists leases by holder, `revoke-holder` revokes every
// lease of a holder (a dead gateway's) with what is bound to them.

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/rpc_status.h"
#include "grpcpp/client_context.h"
#include "registrar/v1/admin.grpc.pb.h"
#include "tools/registrarctl/backup_command.h"
#include "tools/registrarctl/commands.h"

namespace registrar::ctl {
namespace {

// RevokeLeases calls one revoke-holder makes at most (each revokes up to
// 100 leases): a holder still granting leases cannot keep it going.
constexpr int kMaxRevokeCalls = 100;

// An Admin stub over the client's connection settings, or the usage error.
absl::StatusOr<std::unique_ptr<v1::Admin::Stub>> AdminStub(Context& ctx) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      Client::CreateChannel(ctx.client().options());
  if (!channel.ok()) return channel.status();
  return v1::Admin::NewStub(*channel);
}

}  // namespace

int RunLeases(Context& ctx, const Args& argv) {
  ArgParser args;
  args.Value("holder").Value("page_size").Value("page_token");
  int code;
  if (!ParseOrExit(ctx, args, argv, &code)) return code;
  if (absl::Status st = RequireNoPositional(args); !st.ok()) {
    return ctx.UsageError(st);
  }
  v1::ListLeasesRequest request;
  request.set_holder(args.GetOr("holder", ""));
  if (args.Has("page_size")) {
    absl::StatusOr<uint32_t> size =
        cli::ParseUint32("page_size", *args.Get("page_size"));
    if (!size.ok()) return ctx.UsageError(size.status());
    request.set_page_size(*size);
  }
  request.set_page_token(args.GetOr("page_token", ""));
  absl::StatusOr<std::unique_ptr<v1::Admin::Stub>> stub = AdminStub(ctx);
  if (!stub.ok()) return ctx.UsageError(stub.status());

  grpc::ClientContext call;
  PrepareAdminCall(ctx.client().options(), absl::ZeroDuration(), &call);
  v1::ListLeasesResponse response;
  const grpc::Status status = (*stub)->ListLeases(&call, request, &response);
  if (!status.ok()) return ctx.RpcError(grpc_status::ToAbsl(status));
  if (ctx.json()) return ctx.PrintJson(response);
  std::vector<std::vector<std::string>> rows = {
      {"LEASE_ID", "HOLDER", "TTL", "REMAINING", "CONNECTIONS", "GRANTOR"}};
  for (const v1::LeaseInfo& l : response.leases()) {
    rows.push_back({l.lease_id(), l.holder(),
                    absl::StrCat(l.ttl_seconds(), "s"),
                    absl::FormatDuration(absl::Milliseconds(l.remaining_ms())),
                    absl::StrCat(l.connections()), OrDash(l.grantor())});
  }
  PrintTable(rows);
  if (!response.next_page_token().empty()) {
    std::cout << "next_page_token: " << response.next_page_token() << "\n";
  }
  return kExitOk;
}

int RunRevokeHolder(Context& ctx, const Args& argv) {
  ArgParser args;
  args.Value("holder");
  int code;
  if (!ParseOrExit(ctx, args, argv, &code)) return code;
  if (absl::Status st = RequireNoPositional(args); !st.ok()) {
    return ctx.UsageError(st);
  }
  if (args.GetOr("holder", "").empty()) {
    return ctx.UsageError(absl::InvalidArgumentError("--holder is required"));
  }
  absl::StatusOr<std::unique_ptr<v1::Admin::Stub>> stub = AdminStub(ctx);
  if (!stub.ok()) return ctx.UsageError(stub.status());

  v1::RevokeLeasesRequest request;
  request.set_holder(*args.Get("holder"));
  // Every call's leases, added up: one reply for the whole holder.
  v1::RevokeLeasesResponse all;
  for (int calls = 0; calls == 0 || (all.more() && calls < kMaxRevokeCalls);
       ++calls) {
    grpc::ClientContext call;
    PrepareAdminCall(ctx.client().options(), absl::ZeroDuration(), &call);
    v1::RevokeLeasesResponse response;
    const grpc::Status status =
        (*stub)->RevokeLeases(&call, request, &response);
    if (!status.ok()) {
      if (all.revoked_size() > 0) {
        std::cerr << "registrarctl: " << ctx.command() << ": revoked "
                  << all.revoked_size() << " leases before this error\n";
      }
      return ctx.RpcError(grpc_status::ToAbsl(status));
    }
    all.mutable_revoked()->MergeFrom(response.revoked());
    all.set_released(all.released() + response.released());
    all.set_more(response.more());
  }
  if (ctx.json()) return ctx.PrintJson(all);
  PrintSection("revoked", all.revoked());
  std::cout << "released: " << all.released() << "\n";
  if (all.more()) {
    std::cout << "more: the holder still has leases; run again\n";
  }
  return kExitOk;
}

}  // namespace registrar::ctl
