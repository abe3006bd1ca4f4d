#ifndef REGISTRAR_TOOLS_REGISTRARCTL_CLI_ARGS_H_
#define REGISTRAR_TOOLS_REGISTRARCTL_CLI_ARGS_H_

// A small hand-rolled option parser for registrarctl's sub-commands, which
// need repeated options (--label) and per-command option sets that absl's
// global flags cannot express. Not thread-safe; one parser per command run.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace registrar::cli {

class ArgParser {
 public:
  // Declare the accepted options by name, without the leading "--". Names
  // use '_'; on the command line '-' is accepted in its place.
  //
  // A flag: "--name", or "--name=true|false".
  ArgParser& Flag(std::string name);
  // A value given at most once: "--name=value" or "--name value".
  ArgParser& Value(std::string name);
  // A value that may be given any number of times.
  ArgParser& Repeated(std::string name);

  // Parses `args`. Arguments not starting with "--" are positional; "--"
  // makes all later arguments positional. With `stop_at_positional`, the
  // first positional argument and everything after it are left unparsed in
  // positional() (for global options that precede a command).
  // INVALID_ARGUMENT for an unknown option, a missing or unexpected value,
  // or a single-valued option given twice.
  absl::Status Parse(const std::vector<std::string>& args,
                     bool stop_at_positional = false);

  bool Has(std::string_view name) const;
  // The value of a Value option, or nullopt when absent.
  std::optional<std::string> Get(std::string_view name) const;
  std::string GetOr(std::string_view name, std::string fallback) const;
  // True if a Flag was given (and not as "=false").
  bool GetFlag(std::string_view name) const;
  // Every value of a Repeated option, in command-line order.
  std::vector<std::string> GetAll(std::string_view name) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  enum class Type { kFlag, kValue, kRepeated };

  std::map<std::string, Type, std::less<>> specs_;
  std::map<std::string, std::vector<std::string>, std::less<>> values_;
  std::vector<std::string> positional_;
};

// Parses a decimal uint32 option value; INVALID_ARGUMENT naming `option`.
absl::StatusOr<uint32_t> ParseUint32(absl::string_view option,
                                     absl::string_view text);

// Parses "key=value" strings (split at the first '='; the key must be
// non-empty and appear once) into a map.
absl::StatusOr<std::map<std::string, std::string>> ParseLabels(
    const std::vector<std::string>& items);

}  // namespace registrar::cli

#endif  // REGISTRAR_TOOLS_REGISTRARCTL_CLI_ARGS_H_
