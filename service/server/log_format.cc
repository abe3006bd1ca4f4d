#include "service/server/log_format.h"

#include <chrono>
#include <string>

#include "absl/strings/str_cat.h"
#include "service/common/text.h"
#include "spdlog/spdlog.h"

namespace registrar {

absl::Status ParseLogFormat(std::string_view text, LogFormat* format) {
  if (text == "text") {
    *format = LogFormat::kText;
  } else if (text == "json") {
    *format = LogFormat::kJson;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--log_format must be text or json, got \"", LogSafe(text), "\""));
  }
  return absl::OkStatus();
}

void JsonLogFormatter::format(const spdlog::details::log_msg& msg,
                              spdlog::memory_buf_t& dest) {
  std::string line = "{\"ts\":\"";
  line += JsonTimestamp(absl::FromChrono(msg.time));
  line += "\",\"level\":";
  const spdlog::string_view_t level = spdlog::level::to_string_view(msg.level);
  AppendJsonString(std::string_view(level.data(), level.size()), &line);
  line += ",\"msg\":";
  AppendJsonString(std::string_view(msg.payload.data(), msg.payload.size()),
                   &line);
  line += "}\n";
  dest.append(line.data(), line.data() + line.size());
}

std::unique_ptr<spdlog::formatter> JsonLogFormatter::clone() const {
  return std::make_unique<JsonLogFormatter>();
}

void UseLogFormat(LogFormat format) {
  if (format == LogFormat::kJson) {
    spdlog::set_formatter(std::make_unique<JsonLogFormatter>());
  }
}

}  // namespace registrar
