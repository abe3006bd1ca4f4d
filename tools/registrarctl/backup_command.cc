#include "tools/registrarctl/backup_command.h"

#include <algorithm>
#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/rpc_status.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/client_context.h"
#include "registrar/v1/admin.grpc.pb.h"

namespace registrar {

void PrepareAdminCall(const ClientOptions& options, absl::Duration min_deadline,
                      grpc::ClientContext* ctx) {
  const absl::Duration deadline = std::max(options.deadline, min_deadline);
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  if (!options.bearer_token.empty()) {
    ctx->AddMetadata("authorization",
                     absl::StrCat("Bearer ", options.bearer_token));
  }
}

int RunBackupCommand(const ClientOptions& options,
                     const std::vector<std::string>& args, bool json,
                     std::ostream& out, std::ostream& err) {
  if (args.size() != 1 || args[0].empty() || args[0].rfind("--", 0) == 0) {
    err << "registrarctl: backup: INVALID_ARGUMENT: give one DIR, a new "
           "directory on the server's filesystem\nrun 'registrarctl help' "
           "for usage\n";
    return 2;
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      Client::CreateChannel(options);
  if (!channel.ok()) {
    err << "registrarctl: backup: " << channel.status().message() << "\n";
    return 2;
  }
  std::unique_ptr<v1::Admin::Stub> stub = v1::Admin::NewStub(*channel);
  grpc::ClientContext ctx;
  PrepareAdminCall(options, absl::Minutes(10), &ctx);
  v1::BackupRequest request;
  request.set_dir(args[0]);
  v1::BackupResponse response;
  const grpc::Status status = stub->Backup(&ctx, request, &response);
  if (!status.ok()) {
    const absl::Status st = grpc_status::ToAbsl(status);
    err << "registrarctl: backup: " << absl::StatusCodeToString(st.code())
        << ": " << st.message() << "\n";
    return 1;
  }
  if (json) {
    std::string text;
    google::protobuf::util::JsonPrintOptions print;
    print.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(response, &text, print);
    out << text << "\n";
  } else {
    out << response.dir() << " revision " << response.revision() << " records "
        << response.records() << " bytes " << response.bytes() << "\n";
  }
  return 0;
}

}  // namespace registrar
