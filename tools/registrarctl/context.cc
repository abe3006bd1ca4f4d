#include "tools/registrarctl/context.h"

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

namespace registrar::ctl {

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

}  // namespace registrar::ctl
