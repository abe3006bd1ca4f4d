#ifndef REGISTRAR_TESTS_UNIT_METRICS_HTTP_GET_H_
#define REGISTRAR_TESTS_UNIT_METRICS_HTTP_GET_H_

// A tiny blocking HTTP/1.0 GET over a plain IPv4 socket, for tests that scrape
// /metrics without a curl dependency. Header-only; POSIX only.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace registrar::testing {

struct HttpResponse {
  int status_code = 0;  // e.g. 200
  std::string headers;  // raw header lines after the status line
  std::string body;
};

// GETs http://<ipv4>:<port><path> with HTTP/1.0 (so the body is neither
// chunked nor kept alive: it ends at EOF) and no Accept-Encoding (so it is
// not compressed). Fails with Unavailable if it cannot connect or the
// exchange takes longer than `timeout_ms` per socket operation, with
// DataLoss if the reply is not HTTP. Any HTTP status is a success here; check
// status_code.
inline absl::StatusOr<HttpResponse> HttpGet(const std::string& ipv4, int port,
                                            const std::string& path,
                                            int timeout_ms = 5000) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, ipv4.c_str(), &addr.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("not an IPv4: ", ipv4));
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::UnavailableError(absl::StrCat("socket: ", strerror(errno)));
  }
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  timeval tv{};
  tv.tv_sec = timeout_ms / 1000;
  tv.tv_usec = (timeout_ms % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) !=
      0) {
    return absl::UnavailableError(
        absl::StrCat("connect ", ipv4, ":", port, ": ", strerror(errno)));
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", ipv4, ":", port,
                   "\r\nConnection: close\r\n\r\n");
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n =
        send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      return absl::UnavailableError(absl::StrCat("send: ", strerror(errno)));
    }
    sent += static_cast<size_t>(n);
  }
  std::string raw;
  char buf[16384];
  while (true) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("recv: ", strerror(errno)));
    }
    raw.append(buf, static_cast<size_t>(n));
  }

  // "HTTP/1.x 200 OK\r\n<headers>\r\n\r\n<body>"
  const size_t header_end = raw.find("\r\n\r\n");
  const size_t line_end = raw.find("\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || header_end == std::string::npos ||
      raw.size() < 12) {
    return absl::DataLossError(
        absl::StrCat("not an HTTP response: ", raw.substr(0, 64)));
  }
  HttpResponse response;
  if (!absl::SimpleAtoi(raw.substr(9, 3), &response.status_code)) {
    return absl::DataLossError(
        absl::StrCat("bad status line: ", raw.substr(0, line_end)));
  }
  if (header_end > line_end) {
    response.headers = raw.substr(line_end + 2, header_end - line_end - 2);
  }
  response.body = raw.substr(header_end + 4);
  return response;
}

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_UNIT_METRICS_HTTP_GET_H_
