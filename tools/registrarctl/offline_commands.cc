// registrarctl's offline commands: inspect a data dir, key files, token
// hashes.

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
#include "tools/registrarctl/commands.h"

namespace registrar::ctl {

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

}  // namespace registrar::ctl
