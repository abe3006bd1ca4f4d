#ifndef REGISTRAR_TOOLS_REGISTRARCTL_CONTEXT_H_
#define REGISTRAR_TOOLS_REGISTRARCTL_CONTEXT_H_

// What every registrarctl command shares: the global options, the run-time
// context (client, error reporting, JSON output), argument parsing helpers
// and text formatting.

#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/rpc_status.h"
#include "google/protobuf/map.h"
#include "google/protobuf/message.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "registrar/v1/registrar.pb.h"
#include "tools/registrarctl/cli_args.h"

namespace registrar::ctl {

using cli::ArgParser;

constexpr int kExitOk = 0;
constexpr int kExitRpcError = 1;
constexpr int kExitUsage = 2;

// `registrarctl help` (registrarctl.cc).
extern const char kUsage[];

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

absl::StatusOr<v1::Kind> ParseKind(absl::string_view text);
// The owner from --tenant and --user, both required.
absl::StatusOr<v1::Owner> RequireOwner(const ArgParser& args);
absl::Status RequireNoPositional(const ArgParser& args);
// Parses `argv` with `parser` (adding --help); prints help and sets
// *exit_code when asked for it or on a usage error. Returns true to go on.
bool ParseOrExit(Context& ctx, ArgParser& parser,
                 const std::vector<std::string>& argv, int* exit_code);
// Fills the labels of a request from the repeated --label option.
absl::Status AddLabels(const ArgParser& args,
                       google::protobuf::Map<std::string, std::string>* out);

// --- Text formatting ------------------------------------------------------

// `full` without `prefix` ("KIND_THREAD" -> "THREAD").
std::string ShortName(const std::string& full, absl::string_view prefix);
std::string KindText(v1::Kind kind);
std::string StateText(v1::State state);
std::string VerdictText(v1::Verdict verdict);
std::string OrDash(const std::string& text);
std::string TimeText(const google::protobuf::Timestamp& ts);
std::string LabelsText(
    const google::protobuf::Map<std::string, std::string>& labels);
void PrintRecord(const v1::Record& r, std::string_view indent);
void PrintSection(std::string_view title,
                  const google::protobuf::RepeatedPtrField<std::string>& ids);
void PrintTable(const std::vector<std::vector<std::string>>& rows);

}  // namespace registrar::ctl

#endif  // REGISTRAR_TOOLS_REGISTRARCTL_CONTEXT_H_
