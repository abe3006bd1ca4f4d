#include "tools/registrarctl/cli_args.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace registrar::cli {

ArgParser& ArgParser::Flag(std::string name) {
  specs_[std::move(name)] = Type::kFlag;
  return *this;
}

ArgParser& ArgParser::Value(std::string name) {
  specs_[std::move(name)] = Type::kValue;
  return *this;
}

ArgParser& ArgParser::Repeated(std::string name) {
  specs_[std::move(name)] = Type::kRepeated;
  return *this;
}

absl::Status ArgParser::Parse(const std::vector<std::string>& args,
                              bool stop_at_positional) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional_.insert(positional_.end(), args.begin() + i + 1, args.end());
      return absl::OkStatus();
    }
    if (arg.size() < 2 || arg[0] != '-' || (arg[1] != '-' && arg != "-h")) {
      if (arg.size() > 1 && arg[0] == '-') {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown option ", arg, " (options are --name)"));
      }
      if (stop_at_positional) {
        positional_.insert(positional_.end(), args.begin() + i, args.end());
        return absl::OkStatus();
      }
      positional_.push_back(arg);
      continue;
    }
    std::string name = arg == "-h" ? "help" : arg.substr(2);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    std::replace(name.begin(), name.end(), '-', '_');
    auto spec = specs_.find(name);
    if (spec == specs_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown option --", name));
    }
    std::vector<std::string>& slot = values_[name];
    switch (spec->second) {
      case Type::kFlag: {
        std::string text = absl::AsciiStrToLower(value.value_or("true"));
        if (text != "true" && text != "false") {
          return absl::InvalidArgumentError(absl::StrCat(
              "--", name, " is a flag; it takes no value (or true/false)"));
        }
        slot.assign(1, text);
        break;
      }
      case Type::kValue:
      case Type::kRepeated:
        if (!value.has_value()) {
          if (i + 1 >= args.size()) {
            return absl::InvalidArgumentError(
                absl::StrCat("--", name, " needs a value (--", name, "=...)"));
          }
          value = args[++i];
        }
        if (spec->second == Type::kValue && !slot.empty()) {
          return absl::InvalidArgumentError(
              absl::StrCat("--", name, " given more than once"));
        }
        slot.push_back(*std::move(value));
        break;
    }
  }
  return absl::OkStatus();
}

bool ArgParser::Has(std::string_view name) const {
  auto it = values_.find(name);
  return it != values_.end() && !it->second.empty();
}

std::optional<std::string> ArgParser::Get(std::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.front();
}

std::string ArgParser::GetOr(std::string_view name,
                             std::string fallback) const {
  return Get(name).value_or(std::move(fallback));
}

bool ArgParser::GetFlag(std::string_view name) const {
  std::optional<std::string> value = Get(name);
  return value.has_value() && *value == "true";
}

std::vector<std::string> ArgParser::GetAll(std::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return {};
  return it->second;
}

absl::StatusOr<uint32_t> ParseUint32(absl::string_view option,
                                     absl::string_view text) {
  uint32_t value = 0;
  if (text.empty() || text[0] == '-' || !absl::SimpleAtoi(text, &value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", option, "=", text, " is not a non-negative 32-bit integer"));
  }
  return value;
}

absl::StatusOr<std::map<std::string, std::string>> ParseLabels(
    const std::vector<std::string>& items) {
  std::map<std::string, std::string> labels;
  for (const std::string& item : items) {
    size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--label=", item, " is not key=value"));
    }
    std::string key = item.substr(0, eq);
    if (!labels.emplace(key, item.substr(eq + 1)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", key, " given more than once"));
    }
  }
  return labels;
}

}  // namespace registrar::cli
