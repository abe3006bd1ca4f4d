#ifndef REGISTRAR_SERVICE_SERVER_LOG_FORMAT_H_
#define REGISTRAR_SERVICE_SERVER_LOG_FORMAT_H_

// How the server's log lines look (--log_format):
//   text: [2026-12-02 10:40:26.123] [info] message
//   json: {"ts":"2026-12-02T10:40:26.123456Z","level":"info","msg":"message"}
// One line per event either way; JSON lines are valid JSON whatever the
// message holds (service/common/text.h AppendJsonString).

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "spdlog/formatter.h"

namespace registrar {

enum class LogFormat { kText, kJson };

// "text" or "json"; InvalidArgument naming --log_format otherwise.
absl::Status ParseLogFormat(std::string_view text, LogFormat* format);

// spdlog formatter writing one JSON object per line: ts, level, msg.
class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg,
              spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

// Applies `format` to spdlog's default logger.
void UseLogFormat(LogFormat format);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_SERVER_LOG_FORMAT_H_
