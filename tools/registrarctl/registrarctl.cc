// registrarctl: a command-line client for the Registrar service.
//
// Exit status: 0 on success, 1 when the RPC failed, 2 for usage errors.
// Errors go to stderr as "registrarctl: <command>: <CODE>: <message>",
// followed by the server's BadRequest field violations, if any.

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
#include "absl/time/time.h"
#include "client/client.h"
#include "client/rpc_status.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
#include "registrar/v1/registrar.pb.h"
#include "service/auth/callers_file.h"
#include "service/common/status_macros.h"
#include "service/id/key_ring.h"
#include "service/model/kind.h"
#include "service/store/rocksdb_store.h"
#include "tools/registrarctl/backup_command.h"
#include "tools/registrarctl/cli_args.h"

namespace registrar {
namespace {

using cli::ArgParser;

constexpr int kExitOk = 0;
constexpr int kExitRpcError = 1;
constexpr int kExitUsage = 2;

// clang-format off
constexpr char kUsage[] =
    R"usage(usage: registrarctl [global options] COMMAND [options] [args]

Global options (before the command):
  --target=HOST:PORT   server address (default $REGISTRAR_TARGET, else
                       127.0.0.1:50051)
  --json               print the response as one JSON object
  --timeout=DURATION   per-call deadline, e.g. 500ms, 5s, 1m (default 5s)
  --tls_ca=FILE        use TLS and verify the server's certificate against
                       these PEM CA certificates (any --tls_* option turns
                       TLS on; without --tls_ca the system roots are used)
  --tls_cert=FILE --tls_key=FILE
                       client certificate and private key (PEM) for servers
                       that require mutual TLS
  --tls_server_name=NAME
                       name to check in the server's certificate instead of
                       the target's host, e.g. when dialing 127.0.0.1
  --token=TOKEN        bearer token sent with every call. Prefer the
                       environment variable REGISTRAR_TOKEN (used when
                       --token is absent): options show in `ps`.

Commands:
  issue --kind=thread|run|request|connection --tenant=T --user=U
        [--count=N] [--parent=ID] [--connection=ID] [--lease=ID]
        [--label=k=v ...]
      Mint IDs; prints one ID per line.
  open --tenant=T --user=U [--thread=ID] [--connection=ID] [--label=k=v ...]
      OpenContext; prints "THREAD_ID RUN_ID REQUEST_ID REUSED(true|false)"
  inspect --data_dir=DIR [--json]
      Offline: what a RocksDB data dir holds (node, revisions, records by
      kind and state, leases, events, disk use). Reads it without changing
      it, also while a server runs on it. Exit 1 when DIR cannot be read.
  watch [--from=REV] [--tenant=T] [--limit=N]
      Stream events from revision REV (default: from now), optionally of one
      tenant; stops after N events (default: never; Ctrl-C). Prints
      "REV TYPE ID owner=TENANT/USER STATE" per event (--json: one JSON
      object per line). Resume with --from=<last REV + 1>. No deadline.
  validate --tenant=T --user=U [--kind=K] [--records] ID...
      Prints "ID<TAB>VERDICT" per ID (with --records, the record indented).
  cleanup --tenant=T --user=U (--connection=ID | --all | ID...)
          [--reason=TEXT]
      Release owned records; prints released, already_ended, refused and
      unknown sections.
  describe ID
      Prints the record as "key: value" lines.
  list --tenant=T --user=U [--kind=K] [--include_ended] [--page_size=N]
       [--page_token=T]
      Prints a table of records, then "next_page_token: T" if there is more.
  lease grant --holder=H --ttl=SECONDS
      Prints "LEASE_ID TTL_SECONDS".
  lease keepalive LEASE_ID
      Prints "LEASE_ID TTL_SECONDS".
  lease revoke LEASE_ID
      Prints the released section.
  keygen --out=FILE [--version=N] [--force]
      Offline: write a new tag key file (mode 0600) holding one random key
      of version N (0..3, default 0). Refuses to replace an existing FILE
      unless --force is given.
  keygen --add-to=FILE
      Offline: rotate the tag key. Appends a random key with the next
      version after the signing one (0..3; after 3 comes 0 again, replacing
      the old version-0 key). The last line signs, every line verifies.
      Prints which version signs and which verify. Servers read the file
      at start: restart them with it.
  hash-token [--token=TOKEN]
      Offline: prints the lowercase hex SHA-256 of a bearer token, the
      token_sha256 of a callers file entry. Reads the token from the first
      line of stdin when --token is absent (no echo on a terminal).
  backup DIR
      Admin: the server writes an online backup, consistent at one
      revision, into DIR (a new directory on the server's filesystem,
      absolute path). Prints "DIR revision N records R bytes B".
      Start a server from it with registrar --restore_from=DIR.
  help [COMMAND]

Options take "--name=value" or "--name value"; "-" may replace "_" in names.
Exit status: 0 ok, 1 RPC error, 2 usage error.
)usage";
// clang-format on

struct Globals {
  std::string target;
  bool json = false;
  absl::Duration timeout = absl::Seconds(5);
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  std::string tls_server_name;
  std::string token;  // never printed
};

// What a command needs at run time. Commands that talk to the server get
// their client from Connect() before they run.
class Context {
 public:
  Context(Globals globals, std::string command)
      : globals_(std::move(globals)), command_(std::move(command)) {}

  const std::string& command() const { return command_; }
  bool json() const { return globals_.json; }

  // Creates the client from the global options; INVALID_ARGUMENT naming the
  // option when e.g. a TLS file cannot be read. Does not connect yet.
  absl::Status Connect() {
    ClientOptions options;
    options.target = globals_.target;
    options.deadline = globals_.timeout;
    options.tls_ca_file = globals_.tls_ca;
    options.tls_cert_file = globals_.tls_cert;
    options.tls_key_file = globals_.tls_key;
    options.tls_server_name = globals_.tls_server_name;
    options.bearer_token = globals_.token;
    absl::StatusOr<std::unique_ptr<Client>> client =
        Client::Create(std::move(options));
    if (!client.ok()) {
      // ClientOptions names the fields tls_ca_file etc.; the user typed
      // --tls_ca etc.
      const std::string message = absl::StrReplaceAll(
          client.status().message(),
          {{"tls_ca_file", "--tls_ca"},
           {"tls_cert_file", "--tls_cert"},
           {"tls_key_file", "--tls_key"},
           {"bearer_token", "the token (--token or $REGISTRAR_TOKEN)"}});
      return absl::Status(client.status().code(), message);
    }
    client_ = *std::move(client);
    return absl::OkStatus();
  }

  // Precondition: Connect() succeeded.
  Client& client() { return *client_; }

  // Reports a usage error and returns the exit status for it.
  int UsageError(const absl::Status& status) const {
    std::cerr << "registrarctl: " << command_ << ": "
              << absl::StatusCodeToString(status.code()) << ": "
              << status.message() << "\nrun 'registrarctl help' for usage\n";
    return kExitUsage;
  }

  // Reports a failed call (with its field violations) and returns 1.
  int RpcError(const absl::Status& status) const {
    std::cerr << "registrarctl: " << command_ << ": "
              << absl::StatusCodeToString(status.code());
    if (!status.message().empty()) std::cerr << ": " << status.message();
    std::cerr << "\n";
    if (std::optional<google::rpc::BadRequest> bad =
            grpc_status::GetBadRequest(status)) {
      for (const auto& violation : bad->field_violations()) {
        std::cerr << "  " << violation.field() << ": "
                  << violation.description() << "\n";
      }
    }
    return kExitRpcError;
  }

  // Prints `message` as one line of JSON; returns the exit status.
  int PrintJson(const google::protobuf::Message& message) const {
    google::protobuf::util::JsonPrintOptions options;
    options.preserve_proto_field_names = true;
    options.always_print_primitive_fields = true;
    std::string out;
    auto status =
        google::protobuf::util::MessageToJsonString(message, &out, options);
    if (!status.ok()) {
      return RpcError(absl::InternalError(
          absl::StrCat("cannot print JSON: ", status.ToString())));
    }
    std::cout << out << "\n";
    return kExitOk;
  }

 private:
  Globals globals_;
  std::string command_;
  std::unique_ptr<Client> client_;
};

// --- Parsing helpers ------------------------------------------------------

absl::StatusOr<v1::Kind> ParseKind(absl::string_view text) {
  std::string name = absl::AsciiStrToLower(text);
  if (absl::StartsWith(name, "kind_")) name.erase(0, 5);
  if (name == "thread") return v1::KIND_THREAD;
  if (name == "run") return v1::KIND_RUN;
  if (name == "request" || name == "req") return v1::KIND_REQUEST;
  if (name == "connection" || name == "conn") return v1::KIND_CONNECTION;
  return absl::InvalidArgumentError(absl::StrCat(
      "--kind=", text, " is not one of thread, run, request, connection"));
}

// The required --tenant and --user options as an Owner.
absl::StatusOr<v1::Owner> RequireOwner(const ArgParser& args) {
  v1::Owner owner;
  for (const char* name : {"tenant", "user"}) {
    std::optional<std::string> value = args.Get(name);
    if (!value.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " is required"));
    }
    if (std::string_view(name) == "tenant") {
      owner.set_tenant(*value);
    } else {
      owner.set_user_id(*value);
    }
  }
  return owner;
}

absl::Status RequireNoPositional(const ArgParser& args) {
  if (args.positional().empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("unexpected argument '", args.positional().front(), "'"));
}

// --- Text formatting ------------------------------------------------------

// An enum value's name without its type prefix: KIND_THREAD -> THREAD.
std::string ShortName(const std::string& full, absl::string_view prefix) {
  if (absl::StartsWith(full, prefix)) return full.substr(prefix.size());
  return full;
}

std::string KindText(v1::Kind kind) {
  return ShortName(v1::Kind_Name(kind), "KIND_");
}
std::string StateText(v1::State state) {
  return ShortName(v1::State_Name(state), "STATE_");
}
std::string VerdictText(v1::Verdict verdict) {
  return ShortName(v1::Verdict_Name(verdict), "VERDICT_");
}

std::string OrDash(const std::string& text) {
  return text.empty() ? "-" : text;
}

std::string TimeText(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "-";
  absl::Time t =
      absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

std::string LabelsText(
    const google::protobuf::Map<std::string, std::string>& labels) {
  // Sorted, so output is stable across runs.
  std::map<std::string, std::string> sorted(labels.begin(), labels.end());
  if (sorted.empty()) return "-";
  return absl::StrJoin(sorted, ",", absl::PairFormatter("="));
}

void PrintRecord(const v1::Record& r, std::string_view indent) {
  auto line = [&](std::string_view key, const std::string& value) {
    std::cout << indent << key << ": " << value << "\n";
  };
  line("id", r.id());
  line("kind", KindText(r.kind()));
  line("tenant", r.owner().tenant());
  line("user_id", r.owner().user_id());
  line("state", StateText(r.state()));
  line("parent_id", OrDash(r.parent_id()));
  line("connection_id", OrDash(r.connection_id()));
  line("lease_id", OrDash(r.lease_id()));
  line("labels", LabelsText(r.labels()));
  line("created_at", TimeText(r.created_at()));
  line("ended_at", TimeText(r.ended_at()));
  line("end_reason", OrDash(r.end_reason()));
  line("revision", absl::StrCat(r.revision()));
}

void PrintSection(std::string_view title,
                  const google::protobuf::RepeatedPtrField<std::string>& ids) {
  std::cout << title << ": " << ids.size() << "\n";
  for (const std::string& id : ids) std::cout << "  " << id << "\n";
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string out;
    for (size_t i = 0; i < row.size(); ++i) {
      out += row[i];
      if (i + 1 < row.size()) out.append(widths[i] - row[i].size() + 2, ' ');
    }
    std::cout << out << "\n";
  }
}

// --- Commands -------------------------------------------------------------

// Parses `argv` with `parser` (adding --help); prints help and sets
// *exit_code when asked for it or on a usage error. Returns true to go on.
bool ParseOrExit(Context& ctx, ArgParser& parser,
                 const std::vector<std::string>& argv, int* exit_code) {
  parser.Flag("help");
  if (absl::Status st = parser.Parse(argv); !st.ok()) {
    *exit_code = ctx.UsageError(st);
    return false;
  }
  if (parser.GetFlag("help")) {
    std::cout << kUsage;
    *exit_code = kExitOk;
    return false;
  }
  return true;
}

// Fills the labels of a request from the repeated --label option.
absl::Status AddLabels(const ArgParser& args,
                       google::protobuf::Map<std::string, std::string>* out) {
  ASSIGN_OR_RETURN(auto labels, cli::ParseLabels(args.GetAll("label")));
  out->insert(labels.begin(), labels.end());
  return absl::OkStatus();
}

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

// JSON string literal of `text` (quotes included).
std::string JsonQuote(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppend(
              &out, "\\u00",
              absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// DataDirInfo as one line of JSON; records_by lists only non-zero counts,
// by kind name and state name.
std::string DataDirInfoJson(const DataDirInfo& info) {
  static constexpr const char* kStates[4] = {"unspecified", "live", "released",
                                             "expired"};
  std::string by_kind;
  for (int k = 0; k < kNumKinds; ++k) {
    std::string states;
    for (int s = 0; s < 4; ++s) {
      if (info.records_by[k][s] == 0) continue;
      absl::StrAppend(&states, states.empty() ? "" : ",", "\"", kStates[s],
                      "\":", info.records_by[k][s]);
    }
    if (states.empty()) continue;
    absl::StrAppend(&by_kind, by_kind.empty() ? "" : ",",
                    JsonQuote(KindName(static_cast<Kind>(k))), ":{", states,
                    "}");
  }
  return absl::StrCat(
      "{\"path\":", JsonQuote(info.path),
      ",\"format_version\":", info.format_version,
      ",\"node_id\":", info.node_id, ",\"created_ms\":", info.created_ms,
      ",\"last_revision\":", info.last_revision,
      ",\"clock_high_water_ms\":", info.clock_high_water_ms,
      ",\"records\":", info.records, ",\"records_by\":{", by_kind, "}",
      ",\"leases\":", info.leases,
      ",\"oldest_event_revision\":", info.oldest_event_revision,
      ",\"newest_event_revision\":", info.newest_event_revision,
      ",\"sst_bytes\":", info.sst_bytes, ",\"wal_bytes\":", info.wal_bytes,
      ",\"dir_bytes\":", info.dir_bytes, "}");
}

// Offline: no server involved.
int RunInspect(Context& ctx, const std::vector<std::string>& argv) {
  ArgParser args;
  args.Value("data_dir").Flag("json");
  int code;
  if (!ParseOrExit(ctx, args, argv, &code)) return code;
  if (absl::Status st = RequireNoPositional(args); !st.ok()) {
    return ctx.UsageError(st);
  }
  const std::string data_dir = args.GetOr("data_dir", "");
  if (data_dir.empty()) {
    return ctx.UsageError(absl::InvalidArgumentError("--data_dir is required"));
  }
  absl::StatusOr<DataDirInfo> info = RocksDbStore::Inspect(data_dir);
  if (!info.ok()) return ctx.RpcError(info.status());
  if (ctx.json() || args.GetFlag("json")) {
    std::cout << DataDirInfoJson(*info) << "\n";
  } else {
    std::cout << info->ToString();
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

int RunWatch(Context& ctx, const std::vector<std::string>& argv) {
  ArgParser args;
  args.Value("from").Value("tenant").Value("limit");
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

  uint64_t seen = 0;
  int print_status = kExitOk;
  absl::Status status =
      ctx.client().Watch(request, [&](const v1::WatchEvent& event) {
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
      });
  if (!status.ok()) return ctx.RpcError(status);
  return print_status;
}

// --- Offline commands: keys and tokens -------------------------------------

// Writes `text` to `path` with mode 0600. With `replace`, through a
// temporary file renamed over `path` (readers see the old or the new file,
// never a part); without, creating `path` and failing if it exists.
absl::Status WriteSecretFile(const std::string& path, std::string_view text,
                             bool replace) {
  auto errno_error = [&](absl::string_view what) {
    return absl::ErrnoToStatus(errno, absl::StrCat(what, " ", path));
  };
  auto write_all = [&](int fd) -> absl::Status {
    for (size_t done = 0; done < text.size();) {
      ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_error("cannot write");
      done += static_cast<size_t>(n);
    }
    if (::fchmod(fd, 0600) != 0) return errno_error("cannot chmod");
    if (::fsync(fd) != 0) return errno_error("cannot sync");
    return absl::OkStatus();
  };

  if (!replace) {
    int fd =
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (errno == EEXIST) {
        return absl::AlreadyExistsError(absl::StrCat(
            path,
            " exists; use --force to replace it (or --add-to to add "
            "a key to it)"));
      }
      return errno_error("cannot create");
    }
    absl::Status st = write_all(fd);
    if (::close(fd) != 0 && st.ok()) st = errno_error("cannot close");
    if (!st.ok()) ::unlink(path.c_str());
    return st;
  }

  // Replace the file a symlink points to (e.g. a mounted secret), not the
  // link.
  std::string target = path;
  if (char* real = ::realpath(path.c_str(), nullptr); real != nullptr) {
    target = real;
    std::free(real);
  }
  std::string tmp = absl::StrCat(target, ".tmp.XXXXXX");
  int fd = ::mkstemp(tmp.data());  // mode 0600
  if (fd < 0) return errno_error("cannot create a temporary file next to");
  absl::Status st = write_all(fd);
  if (::close(fd) != 0 && st.ok()) st = errno_error("cannot close");
  if (st.ok() && ::rename(tmp.c_str(), target.c_str()) != 0) {
    st = errno_error("cannot replace");
  }
  if (!st.ok()) {
    ::unlink(tmp.c_str());
    return st;
  }
  // Make the rename itself durable.
  const std::string dir = std::filesystem::path(target).parent_path().string();
  if (int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_CLOEXEC);
      dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

// "<version> <32 hex digits>\n" for a fresh random key.
std::string NewKeyLine(uint32_t version) {
  if (sodium_init() < 0) {
    std::cerr << "registrarctl: libsodium failed to initialise\n";
    std::abort();
  }
  TagKeyBytes key;
  randombytes_buf(key.data(), key.size());
  std::string line =
      absl::StrCat(version, " ",
                   absl::BytesToHexString(absl::string_view(
                       reinterpret_cast<const char*>(key.data()), key.size())),
                   "\n");
  sodium_memzero(key.data(), key.size());
  return line;
}

// The key version a key file line holds, or nullopt for blank and comment
// lines (KeyRing::Parse's format: "<version> <hex>", or bare "<hex>" = 0).
std::optional<uint32_t> LineVersion(absl::string_view line) {
  line = absl::StripAsciiWhitespace(line);
  if (line.empty() || line[0] == '#') return std::nullopt;
  std::vector<absl::string_view> fields =
      absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  uint32_t version = 0;
  if (fields.size() == 2 && absl::SimpleAtoi(fields[0], &version)) {
    return version;
  }
  return 0;  // a bare key; anything else was refused by KeyRing::Parse
}

std::string VersionList(const KeyRing& ring) {
  std::vector<uint32_t> versions;
  for (uint32_t v = 0; v <= kMaxKeyVersion; ++v) {
    if (ring.has_version(v)) versions.push_back(v);
  }
  return absl::StrJoin(versions, ", ");
}

// keygen --add-to=FILE: rotation.
int AddKey(Context& ctx, const std::string& path) {
  absl::StatusOr<KeyRing> old_ring = KeyRing::LoadFile(path);
  if (!old_ring.ok()) return ctx.RpcError(old_ring.status());
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  if (in.bad()) {
    return ctx.RpcError(
        absl::ErrnoToStatus(errno, absl::StrCat("cannot read ", path)));
  }

  const uint32_t version =
      (old_ring->signing_version() + 1) % (kMaxKeyVersion + 1);
  const bool replaces = old_ring->has_version(version);
  // Keep every line (comments too) but the one of the reused version; the
  // new key goes last, where it signs.
  std::string out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (LineVersion(line) == version) continue;
    absl::StrAppend(&out, line, "\n");
  }
  // StrSplit yields a last empty piece after a final newline; drop the
  // extra newline that produced.
  if (absl::EndsWith(text, "\n") || text.empty()) out.pop_back();
  absl::StrAppend(&out, NewKeyLine(version));

  absl::StatusOr<KeyRing> ring = KeyRing::Parse(out);
  if (!ring.ok() || ring->signing_version() != version) {
    return ctx.RpcError(absl::InternalError(absl::StrCat(
        "the rotated key file would not parse as intended: ",
        ring.ok() ? "wrong signing version" : ring.status().ToString())));
  }
  if (absl::Status st = WriteSecretFile(path, out, /*replace=*/true);
      !st.ok()) {
    return ctx.RpcError(st);
  }
  std::cout << path << ": version " << version << " signs; versions "
            << VersionList(*ring) << " verify\n";
  if (replaces) {
    std::cout << "replaced the old version " << version
              << " key: IDs tagged with it no longer verify by tag\n";
  }
  return kExitOk;
}

int RunKeygen(Context& ctx, const std::vector<std::string>& argv) {
  ArgParser args;
  args.Value("out").Value("add_to").Value("version").Flag("force");
  int code;
  if (!ParseOrExit(ctx, args, argv, &code)) return code;
  if (absl::Status st = RequireNoPositional(args); !st.ok()) {
    return ctx.UsageError(st);
  }
  if (args.Has("out") == args.Has("add_to")) {
    return ctx.UsageError(
        absl::InvalidArgumentError("give exactly one of --out or --add_to"));
  }
  if (std::optional<std::string> path = args.Get("add_to")) {
    if (args.Has("version") || args.GetFlag("force")) {
      return ctx.UsageError(absl::InvalidArgumentError(
          "--version and --force go with --out, not --add_to (the next "
          "version is chosen)"));
    }
    return AddKey(ctx, *path);
  }

  const std::string path = *args.Get("out");
  uint32_t version = 0;
  if (std::optional<std::string> text = args.Get("version")) {
    absl::StatusOr<uint32_t> parsed = cli::ParseUint32("version", *text);
    if (!parsed.ok()) return ctx.UsageError(parsed.status());
    if (*parsed > kMaxKeyVersion) {
      return ctx.UsageError(absl::InvalidArgumentError(
          absl::StrCat("--version must be 0..", kMaxKeyVersion)));
    }
    version = *parsed;
  }
  const std::string text = absl::StrCat(
      "# registrar ID tag keys: <version> <32 hex digits>; the last line "
      "signs, every line verifies.\n",
      NewKeyLine(version));
  if (absl::Status st =
          WriteSecretFile(path, text, /*replace=*/args.GetFlag("force"));
      !st.ok()) {
    return ctx.RpcError(st);
  }
  std::cout << path << ": version " << version << " signs\n";
  return kExitOk;
}

// Reads one line from stdin without echoing it when stdin is a terminal.
std::optional<std::string> ReadTokenLine() {
  termios saved{};
  const bool quiet =
      ::isatty(STDIN_FILENO) == 1 && ::tcgetattr(STDIN_FILENO, &saved) == 0;
  if (quiet) {
    std::cerr << "token: " << std::flush;
    termios no_echo = saved;
    no_echo.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &no_echo);
  }
  std::string line;
  const bool ok = static_cast<bool>(std::getline(std::cin, line));
  if (quiet) {
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    std::cerr << "\n";
  }
  if (!ok && line.empty()) return std::nullopt;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

int RunHashToken(Context& ctx, const std::vector<std::string>& argv) {
  ArgParser args;
  args.Value("token");
  int code;
  if (!ParseOrExit(ctx, args, argv, &code)) return code;
  if (absl::Status st = RequireNoPositional(args); !st.ok()) {
    return ctx.UsageError(st);
  }
  std::optional<std::string> token = args.Get("token");
  if (!token.has_value()) token = ReadTokenLine();
  if (!token.has_value() || token->empty()) {
    return ctx.UsageError(absl::InvalidArgumentError(
        "no token: give --token or one line on stdin"));
  }
  std::cout << HashToken(*token) << "\n";
  sodium_memzero(token->data(), token->size());
  return kExitOk;
}

using CommandFn = int (*)(Context&, const std::vector<std::string>&);

struct CommandEntry {
  std::string_view name;
  CommandFn run;
  bool needs_server;
};

constexpr CommandEntry kCommands[] = {
    {"issue", RunIssue, true},
    {"open", RunOpen, true},
    {"validate", RunValidate, true},
    {"cleanup", RunCleanup, true},
    {"describe", RunDescribe, true},
    {"list", RunList, true},
    {"inspect", RunInspect, false},
    {"lease grant", RunLeaseGrant, true},
    {"lease keepalive", RunLeaseKeepAlive, true},
    {"lease revoke", RunLeaseRevoke, true},
    {"watch", RunWatch, true},
    {"backup",
     [](Context& ctx, const std::vector<std::string>& argv) {
       return RunBackupCommand(ctx.client().options(), argv, ctx.json(),
                               std::cout, std::cerr);
     },
     true},
    {"keygen", RunKeygen, false},
    {"hash-token", RunHashToken, false},
};

int Main(int argc, char** argv) {
  std::vector<std::string> all(argv + 1, argv + argc);
  ArgParser global;
  global.Value("target").Flag("json").Value("timeout").Flag("help");
  global.Value("tls_ca").Value("tls_cert").Value("tls_key");
  global.Value("tls_server_name").Value("token");
  if (absl::Status st = global.Parse(all, /*stop_at_positional=*/true);
      !st.ok()) {
    return Context(Globals{}, "global options").UsageError(st);
  }
  std::vector<std::string> rest = global.positional();
  if (global.GetFlag("help")) {
    std::cout << kUsage;
    return kExitOk;
  }
  if (rest.empty()) {
    std::cerr << kUsage;
    return kExitUsage;
  }

  Globals globals;
  const char* env_target = std::getenv("REGISTRAR_TARGET");
  globals.target =
      global.GetOr("target", env_target != nullptr && *env_target != '\0'
                                 ? env_target
                                 : "127.0.0.1:50051");
  globals.json = global.GetFlag("json");
  globals.tls_ca = global.GetOr("tls_ca", "");
  globals.tls_cert = global.GetOr("tls_cert", "");
  globals.tls_key = global.GetOr("tls_key", "");
  globals.tls_server_name = global.GetOr("tls_server_name", "");
  if (std::optional<std::string> token = global.Get("token")) {
    globals.token = *std::move(token);
  } else if (const char* env_token = std::getenv("REGISTRAR_TOKEN")) {
    globals.token = env_token;
  }
  if (std::optional<std::string> text = global.Get("timeout")) {
    absl::Duration timeout;
    int64_t seconds = 0;
    if (absl::SimpleAtoi(*text, &seconds)) {
      timeout = absl::Seconds(seconds);  // a bare number means seconds
    } else if (!absl::ParseDuration(*text, &timeout)) {
      return Context(globals, "global options")
          .UsageError(absl::InvalidArgumentError(absl::StrCat(
              "--timeout=", *text, " is not a duration like 500ms or 5s")));
    }
    if (timeout <= absl::ZeroDuration()) {
      return Context(globals, "global options")
          .UsageError(absl::InvalidArgumentError("--timeout must be positive"));
    }
    globals.timeout = timeout;
  }
  if (globals.target.empty()) {
    return Context(globals, "global options")
        .UsageError(absl::InvalidArgumentError("--target must not be empty"));
  }

  std::string command = rest.front();
  rest.erase(rest.begin());
  if (command == "help") {
    std::cout << kUsage;
    return kExitOk;
  }
  if (command == "lease") {
    if (rest.empty() || absl::StartsWith(rest.front(), "-")) {
      return Context(globals, "lease")
          .UsageError(absl::InvalidArgumentError(
              "expected 'lease grant', 'lease keepalive' or 'lease revoke'"));
    }
    command = absl::StrCat("lease ", rest.front());
    rest.erase(rest.begin());
  }
  for (const CommandEntry& entry : kCommands) {
    if (entry.name == command) {
      Context ctx(std::move(globals), command);
      if (entry.needs_server) {
        if (absl::Status st = ctx.Connect(); !st.ok()) {
          return ctx.UsageError(st);
        }
      }
      return entry.run(ctx, rest);
    }
  }
  return Context(globals, command)
      .UsageError(absl::InvalidArgumentError("unknown command"));
}

}  // namespace
}  // namespace registrar

int main(int argc, char** argv) { return registrar::Main(argc, argv); }
