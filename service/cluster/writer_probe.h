#ifndef REGISTRAR_SERVICE_CLUSTER_WRITER_PROBE_H_
#define REGISTRAR_SERVICE_CLUSTER_WRITER_PROBE_H_

// Is the writer's process gone? A follower that could not reach the
// writer asks the one question a TCP connect answers without doubt: does
// the writer's address refuse connections (ECONNREFUSED: nothing listens
// there, the process is dead or has closed its port)? A timeout, an
// unreachable host or a name that does not resolve prove nothing (a
// partition, a slow host) and answer kUnknown. Plain POSIX sockets; blocks
// for up to `timeout`, so call it from a thread that may wait, holding no
// lock.

#include <string>

#include "absl/time/time.h"

namespace registrar::cluster {

enum class Reachability {
  kListening,  // a connection was accepted
  kRefused,    // every address of host:port refused the connection
  kUnknown,    // anything else: timeout, unreachable, bad address
};

// `address` is host:port or [v6]:port, as --advertise_address.
Reachability ProbeAddress(const std::string& address, absl::Duration timeout);

}  // namespace registrar::cluster

#endif  // REGISTRAR_SERVICE_CLUSTER_WRITER_PROBE_H_
