// registrarctl's commands that call a server.

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/rpc_status.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/client_context.h"
#include "registrar/v1/registrar.pb.h"
#include "service/auth/callers_file.h"
#include "service/common/status_macros.h"
#include "service/id/key_ring.h"
#include "service/model/kind.h"
#include "service/store/rocksdb_store.h"
#include "tools/registrarctl/backup_command.h"
#include "tools/registrarctl/cli_args.h"
#include "tools/registrarctl/commands.h"

namespace registrar::ctl {

absl::Status BuildIssue(const ArgParser& args, v1::IssueRequest* request) {
  RETURN_IF_ERROR(RequireNoPositional(args));
  if (!args.Has("kind")) {
    return absl::InvalidArgumentError("--kind is required");
  }
  ASSIGN_OR_RETURN(v1::Kind kind, ParseKind(*args.Get("kind")));
  request->set_kind(kind);
  ASSIGN_OR_RETURN(*request->mutable_owner(), RequireOwner(args));
  if (args.Has("count")) {
    ASSIGN_OR_RETURN(uint32_t count,
                     cli::ParseUint32("count", *args.Get("count")));
    if (count == 0) {
      return absl::InvalidArgumentError("--count must be at least 1");
    }
    request->set_count(count);
  }
  RETURN_IF_ERROR(AddLabels(args, request->mutable_labels()));
  request->set_parent_id(args.GetOr("parent", ""));
  request->set_connection_id(args.GetOr("connection", ""));
  request->set_lease_id(args.GetOr("lease", ""));
  return absl::OkStatus();
}

int RunIssue(Context& ctx, const std::vector<std::string>& argv) {
  ArgParser args;
  args.Value("kind").Value("tenant").Value("user").Value("count");
  args.Value("parent").Value("connection").Value("lease").Repeated("label");
  int code;
  if (!ParseOrExit(ctx, args, argv, &code)) return code;
  v1::IssueRequest request;
  if (absl::Status st = BuildIssue(args, &request); !st.ok()) {
    return ctx.UsageError(st);
  }

  absl::StatusOr<v1::IssueResponse> response = ctx.client().Issue(request);
  if (!response.ok()) return ctx.RpcError(response.status());
  if (ctx.json()) return ctx.PrintJson(*response);
  for (const std::string& id : response->ids()) std::cout << id << "\n";
  return kExitOk;
}

absl::Status BuildOpen(const ArgParser& args, v1::OpenContextRequest* request) {
  RETURN_IF_ERROR(RequireNoPositional(args));
  ASSIGN_OR_RETURN(*request->mutable_owner(), RequireOwner(args));
  RETURN_IF_ERROR(AddLabels(args, request->mutable_labels()));
  request->set_thread_id(args.GetOr("thread", ""));
  request->set_connection_id(args.GetOr("connection", ""));
  return absl::OkStatus();
}

int RunOpen(Context& ctx, const std::vector<std::string>& argv) {
  ArgParser args;
  args.Value("tenant").Value("user").Value("thread").Value("connection");
  args.Repeated("label");
  int code;
  if (!ParseOrExit(ctx, args, argv, &code)) return code;
  v1::OpenContextRequest request;
  if (absl::Status st = BuildOpen(args, &request); !st.ok()) {
    return ctx.UsageError(st);
  }

  absl::StatusOr<v1::OpenContextResponse> response =
      ctx.client().OpenContext(request);
  if (!response.ok()) return ctx.RpcError(response.status());
  if (ctx.json()) return ctx.PrintJson(*response);
  std::cout << response->thread_id() << " " << response->run_id() << " "
            << response->request_id() << " "
            << (response->thread_reused() ? "true" : "false") << "\n";
  return kExitOk;
}

int RunValidate(Context& ctx, const std::vector<std::string>& argv) {
  ArgParser args;
  args.Value("tenant").Value("user").Value("kind").Flag("records");
  int code;
  if (!ParseOrExit(ctx, args, argv, &code)) return code;

  v1::ValidateRequest request;
  absl::StatusOr<v1::Owner> owner = RequireOwner(args);
  if (!owner.ok()) return ctx.UsageError(owner.status());
  *request.mutable_owner() = *owner;
  v1::Kind kind = v1::KIND_UNSPECIFIED;
  if (args.Has("kind")) {
    absl::StatusOr<v1::Kind> parsed = ParseKind(*args.Get("kind"));
    if (!parsed.ok()) return ctx.UsageError(parsed.status());
    kind = *parsed;
  }
  if (args.positional().empty()) {
    return ctx.UsageError(absl::InvalidArgumentError("give at least one ID"));
  }
  for (const std::string& id : args.positional()) {
    v1::ValidateItem* item = request.add_items();
    item->set_id(id);
    item->set_expected_kind(kind);
  }
  request.set_include_records(args.GetFlag("records"));

  absl::StatusOr<v1::ValidateResponse> response =
      ctx.client().Validate(request);
  if (!response.ok()) return ctx.RpcError(response.status());
  if (ctx.json()) return ctx.PrintJson(*response);
  for (const v1::ValidateResult& result : response->results()) {
    std::cout << result.id() << "\t" << VerdictText(result.verdict()) << "\n";
    if (request.include_records() && result.has_record()) {
      PrintRecord(result.record(), "  ");
    }
  }
  return kExitOk;
}

int RunCleanup(Context& ctx, const std::vector<std::string>& argv) {
  ArgParser args;
  args.Value("tenant").Value("user").Value("connection").Flag("all");
  args.Value("reason");
  int code;
  if (!ParseOrExit(ctx, args, argv, &code)) return code;

  v1::CleanupRequest request;
  absl::StatusOr<v1::Owner> owner = RequireOwner(args);
  if (!owner.ok()) return ctx.UsageError(owner.status());
  *request.mutable_owner() = *owner;
  const int targets = (args.Has("connection") ? 1 : 0) +
                      (args.GetFlag("all") ? 1 : 0) +
                      (args.positional().empty() ? 0 : 1);
  if (targets != 1) {
    return ctx.UsageError(absl::InvalidArgumentError(
        "give exactly one of --connection=ID, --all or IDs"));
  }
  if (args.Has("connection")) {
    request.set_connection_id(*args.Get("connection"));
  } else if (args.GetFlag("all")) {
    request.set_all_owned(true);
  } else {
    for (const std::string& id : args.positional()) {
      request.mutable_ids()->add_ids(id);
    }
  }
  request.set_reason(args.GetOr("reason", ""));

  absl::StatusOr<v1::CleanupResponse> response = ctx.client().Cleanup(request);
  if (!response.ok()) return ctx.RpcError(response.status());
  if (ctx.json()) return ctx.PrintJson(*response);
  PrintSection("released", response->released());
  PrintSection("already_ended", response->already_ended());
  PrintSection("refused", response->refused());
  PrintSection("unknown", response->unknown());
  return kExitOk;
}

int RunDescribe(Context& ctx, const std::vector<std::string>& argv) {
  ArgParser args;
  int code;
  if (!ParseOrExit(ctx, args, argv, &code)) return code;
  if (args.positional().size() != 1) {
    return ctx.UsageError(
        absl::InvalidArgumentError("give exactly one ID to describe"));
  }
  v1::DescribeRequest request;
  request.set_id(args.positional().front());

  absl::StatusOr<v1::DescribeResponse> response =
      ctx.client().Describe(request);
  if (!response.ok()) return ctx.RpcError(response.status());
  if (ctx.json()) return ctx.PrintJson(*response);
  PrintRecord(response->record(), "");
  return kExitOk;
}

int RunList(Context& ctx, const std::vector<std::string>& argv) {
  ArgParser args;
  args.Value("tenant").Value("user").Value("kind").Flag("include_ended");
  args.Value("page_size").Value("page_token");
  int code;
  if (!ParseOrExit(ctx, args, argv, &code)) return code;

  v1::ListOwnedRequest request;
  if (absl::Status st = RequireNoPositional(args); !st.ok()) {
    return ctx.UsageError(st);
  }
  absl::StatusOr<v1::Owner> owner = RequireOwner(args);
  if (!owner.ok()) return ctx.UsageError(owner.status());
  *request.mutable_owner() = *owner;
  if (args.Has("kind")) {
    absl::StatusOr<v1::Kind> kind = ParseKind(*args.Get("kind"));
    if (!kind.ok()) return ctx.UsageError(kind.status());
    request.set_kind(*kind);
  }
  if (args.Has("page_size")) {
    absl::StatusOr<uint32_t> size =
        cli::ParseUint32("page_size", *args.Get("page_size"));
    if (!size.ok()) return ctx.UsageError(size.status());
    request.set_page_size(*size);
  }
  request.set_include_ended(args.GetFlag("include_ended"));
  request.set_page_token(args.GetOr("page_token", ""));

  absl::StatusOr<v1::ListOwnedResponse> response =
      ctx.client().ListOwned(request);
  if (!response.ok()) return ctx.RpcError(response.status());
  if (ctx.json()) return ctx.PrintJson(*response);
  std::vector<std::vector<std::string>> rows = {
      {"ID", "KIND", "STATE", "CREATED", "PARENT", "CONNECTION", "LABELS"}};
  for (const v1::Record& r : response->records()) {
    rows.push_back({r.id(), KindText(r.kind()), StateText(r.state()),
                    TimeText(r.created_at()), OrDash(r.parent_id()),
                    OrDash(r.connection_id()), LabelsText(r.labels())});
  }
  PrintTable(rows);
  if (!response->next_page_token().empty()) {
    std::cout << "next_page_token: " << response->next_page_token() << "\n";
  }
  return kExitOk;
}

int RunLeaseGrant(Context& ctx, const std::vector<std::string>& argv) {
  ArgParser args;
  args.Value("holder").Value("ttl");
  int code;
  if (!ParseOrExit(ctx, args, argv, &code)) return code;
  if (absl::Status st = RequireNoPositional(args); !st.ok()) {
    return ctx.UsageError(st);
  }
  if (!args.Has("holder") || !args.Has("ttl")) {
    return ctx.UsageError(
        absl::InvalidArgumentError("--holder and --ttl are required"));
  }
  absl::StatusOr<uint32_t> ttl = cli::ParseUint32("ttl", *args.Get("ttl"));
  if (!ttl.ok()) return ctx.UsageError(ttl.status());
  v1::GrantLeaseRequest request;
  request.set_holder(*args.Get("holder"));
  request.set_ttl_seconds(*ttl);

  absl::StatusOr<v1::GrantLeaseResponse> response =
      ctx.client().GrantLease(request);
  if (!response.ok()) return ctx.RpcError(response.status());
  if (ctx.json()) return ctx.PrintJson(*response);
  std::cout << response->lease_id() << " " << response->ttl_seconds() << "\n";
  return kExitOk;
}

// Parses the single LEASE_ID argument of keepalive and revoke.
bool ParseLeaseId(Context& ctx, const std::vector<std::string>& argv,
                  std::string* lease_id, int* exit_code) {
  ArgParser args;
  if (!ParseOrExit(ctx, args, argv, exit_code)) return false;
  if (args.positional().size() != 1) {
    *exit_code =
        ctx.UsageError(absl::InvalidArgumentError("give exactly one LEASE_ID"));
    return false;
  }
  *lease_id = args.positional().front();
  return true;
}

int RunLeaseKeepAlive(Context& ctx, const std::vector<std::string>& argv) {
  v1::KeepAliveRequest request;
  int code;
  if (!ParseLeaseId(ctx, argv, request.mutable_lease_id(), &code)) {
    return code;
  }
  absl::StatusOr<v1::KeepAliveResponse> response =
      ctx.client().KeepAlive(request);
  if (!response.ok()) return ctx.RpcError(response.status());
  if (ctx.json()) return ctx.PrintJson(*response);
  std::cout << response->lease_id() << " " << response->ttl_seconds() << "\n";
  return kExitOk;
}

int RunLeaseRevoke(Context& ctx, const std::vector<std::string>& argv) {
  v1::RevokeLeaseRequest request;
  int code;
  if (!ParseLeaseId(ctx, argv, request.mutable_lease_id(), &code)) {
    return code;
  }
  absl::StatusOr<v1::RevokeLeaseResponse> response =
      ctx.client().RevokeLease(request);
  if (!response.ok()) return ctx.RpcError(response.status());
  if (ctx.json()) return ctx.PrintJson(*response);
  PrintSection("released", response->released());
  return kExitOk;
}

// Cancels a watch's context once no event has come for `idle` (never when
// `idle` is unset). Touch() at each event; Stop() ends the watchdog and
// tells whether it cancelled.
class IdleWatchdog {
 public:
  IdleWatchdog(std::optional<absl::Duration> idle, grpc::ClientContext* context)
      : idle_(idle), context_(context), last_(absl::Now()) {
    if (idle_.has_value()) thread_ = std::thread([this] { Run(); });
  }
  ~IdleWatchdog() { Stop(); }

  void Touch() {
    absl::MutexLock lock(&mu_);
    last_ = absl::Now();
  }

  bool Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopped_ = true;
    }
    if (thread_.joinable()) thread_.join();
    absl::MutexLock lock(&mu_);
    return fired_;
  }

 private:
  void Run() {
    {
      absl::MutexLock lock(&mu_);
      while (!stopped_) {
        const absl::Time deadline = last_ + *idle_;
        if (absl::Now() >= deadline) {
          fired_ = true;
          break;
        }
        mu_.AwaitWithDeadline(absl::Condition(&stopped_), deadline);
      }
      if (!fired_) return;
    }
    context_->TryCancel();
  }

  const std::optional<absl::Duration> idle_;
  grpc::ClientContext* const context_;
  absl::Mutex mu_;
  absl::Time last_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool fired_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

int RunWatch(Context& ctx, const std::vector<std::string>& argv) {
  ArgParser args;
  args.Value("from").Value("tenant").Value("limit").Value("idle");
  int code;
  if (!ParseOrExit(ctx, args, argv, &code)) return code;
  if (absl::Status st = RequireNoPositional(args); !st.ok()) {
    return ctx.UsageError(st);
  }
  v1::WatchRequest request;
  if (std::optional<std::string> from = args.Get("from")) {
    uint64_t revision = 0;
    if (!absl::SimpleAtoi(*from, &revision)) {
      return ctx.UsageError(absl::InvalidArgumentError(
          absl::StrCat("--from=", *from, " is not a revision number")));
    }
    request.set_start_revision(revision);
  }
  request.set_tenant(args.GetOr("tenant", ""));
  uint64_t limit = 0;  // 0: no limit
  if (std::optional<std::string> text = args.Get("limit")) {
    absl::StatusOr<uint32_t> n = cli::ParseUint32("limit", *text);
    if (!n.ok()) return ctx.UsageError(n.status());
    if (*n == 0) {
      return ctx.UsageError(
          absl::InvalidArgumentError("--limit must be at least 1"));
    }
    limit = *n;
  }

  std::optional<absl::Duration> idle;
  if (std::optional<std::string> text = args.Get("idle")) {
    absl::Duration d;
    if (!absl::ParseDuration(*text, &d) || d <= absl::ZeroDuration()) {
      return ctx.UsageError(absl::InvalidArgumentError(absl::StrCat(
          "--idle=", *text, " is not a positive duration like 500ms or 2s")));
    }
    idle = d;
  }

  // With --idle, a watchdog cancels the stream once no event has come for
  // that long: `--from=1 --idle=1s` prints the history and returns.
  grpc::ClientContext context;
  IdleWatchdog watchdog(idle, &context);
  uint64_t seen = 0;
  int print_status = kExitOk;
  absl::Status status = ctx.client().Watch(
      request,
      [&](const v1::WatchEvent& event) {
        watchdog.Touch();
        if (ctx.json()) {
          print_status = ctx.PrintJson(event);
        } else {
          const v1::Record& r = event.record();
          std::cout << event.revision() << " "
                    << ShortName(v1::EventType_Name(event.type()),
                                 "EVENT_TYPE_")
                    << " " << r.id() << " owner=" << r.owner().tenant() << "/"
                    << r.owner().user_id() << " " << StateText(r.state())
                    << "\n";
        }
        std::cout.flush();  // a reader may be waiting for each line
        return print_status == kExitOk && (limit == 0 || ++seen < limit);
      },
      &context);
  if (watchdog.Stop() && status.code() == absl::StatusCode::kCancelled) {
    return print_status;  // stopped by --idle
  }
  if (!status.ok()) return ctx.RpcError(status);
  return print_status;
}

}  // namespace registrar::ctl
