#include "service/cluster/writer_probe.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"

namespace registrar::cluster {
namespace {

bool SplitHostPort(absl::string_view address, std::string* host,
                   std::string* port) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon + 1 == address.size()) {
    return false;
  }
  absl::string_view h = address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
    h = h.substr(1, h.size() - 2);
  }
  uint32_t number;
  if (h.empty() || !absl::SimpleAtoi(address.substr(colon + 1), &number) ||
      number == 0 || number > 65535) {
    return false;
  }
  *host = std::string(h);
  *port = std::string(address.substr(colon + 1));
  return true;
}

// One non-blocking connect, waited for up to `timeout`.
Reachability Connect(const addrinfo& a, absl::Duration timeout) {
  const int fd = socket(
      a.ai_family, a.ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a.ai_protocol);
  if (fd < 0) return Reachability::kUnknown;
  Reachability result = Reachability::kUnknown;
  int err = 0;
  if (connect(fd, a.ai_addr, a.ai_addrlen) == 0) {
    result = Reachability::kListening;
  } else if (errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    const int ms = static_cast<int>(absl::ToInt64Milliseconds(timeout));
    if (poll(&p, 1, ms) == 1) {
      socklen_t len = sizeof(err);
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      result = err == 0 ? Reachability::kListening : Reachability::kUnknown;
    }
  } else {
    err = errno;
  }
  if (err == ECONNREFUSED) result = Reachability::kRefused;
  close(fd);
  return result;
}

}  // namespace

Reachability ProbeAddress(const std::string& address, absl::Duration timeout) {
  std::string host, port;
  if (!SplitHostPort(address, &host, &port)) return Reachability::kUnknown;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &list) != 0) {
    return Reachability::kUnknown;
  }
  // Refused only when every address refuses.
  Reachability result = Reachability::kUnknown;
  for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
    const Reachability r = Connect(*a, timeout);
    if (r != Reachability::kRefused) {
      result = r;
      break;
    }
    result = Reachability::kRefused;
  }
  freeaddrinfo(list);
  return result;
}

}  // namespace registrar::cluster
