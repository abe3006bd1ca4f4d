// registrarctl: a command-line client for the Registrar service.
//
// Exit status: 0 on success, 1 when the RPC failed, 2 for usage errors.
// Errors go to stderr as "registrarctl: <command>: <CODE>: <message>",
// followed by the server's BadRequest field violations, if any.

#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "tools/registrarctl/backup_command.h"
#include "tools/registrarctl/commands.h"
#include "tools/registrarctl/context.h"

namespace registrar::ctl {

// clang-format off
extern const char kUsage[];
const char kUsage[] =
    R"usage(usage: registrarctl [global options] COMMAND [options] [args]

Global options (before the command):
  --target=HOST:PORT   server address (default $REGISTRAR_TARGET, else
                       127.0.0.1:50051); for a cluster, several replicas
                       separated by commas (HOST:PORT,HOST:PORT) or a DNS
                       name of them all (dns:///NAME:PORT): calls go to
                       them in turn and fail over when safe
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
  watch [--from=REV] [--tenant=T] [--limit=N] [--idle=DURATION]
      Stream events from revision REV (default: from now), optionally of one
      tenant; stops after N events, or once no event came for DURATION
      (--from=1 --idle=1s: the history so far), else never (Ctrl-C). Prints
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
  leases [--holder=H] [--page_size=N] [--page_token=T]
      Admin: the live leases of holder H (every holder's without --holder),
      in lease ID order: a table of LEASE_ID, HOLDER, TTL, REMAINING (before
      it expires unless renewed), CONNECTIONS (live ones bound to it) and
      GRANTOR, then "next_page_token: T" if there is more.
  revoke-holder --holder=H
      Admin: revoke every lease of holder H (exact match), e.g. a gateway
      that died without revoking its own: each lease ends as 'lease revoke'
      ends it, with its connections and what was opened through them.
      Prints the revoked section and "released: N" (records ended). Makes
      as many calls as it takes (each revokes up to 100 leases).
  help [COMMAND]

Options take "--name=value" or "--name value"; "-" may replace "_" in names.
Exit status: 0 ok, 1 RPC error, 2 usage error.
)usage";
// clang-format on

namespace {

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
    {"leases", RunLeases, true},
    {"revoke-holder", RunRevokeHolder, true},
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
}  // namespace registrar::ctl

int main(int argc, char** argv) { return registrar::ctl::Main(argc, argv); }
