#ifndef REGISTRAR_TESTS_CLUSTER_ETCD_CLUSTER_H_
#define REGISTRAR_TESTS_CLUSTER_ETCD_CLUSTER_H_

// Starts a real etcd cluster (Debian's `etcd`, 3.4) on loopback for tests:
// N members (3, or 1 in single-member mode), each with free client and peer
// ports, its own data dir under one temp dir, and `--initial-cluster`
// naming all of them. Start() returns once every running member answers
// Maintenance.Status and they agree on a leader.
//
// Members can be killed (SIGKILL) and restarted on the same data dir and
// ports, or paused (SIGSTOP) and resumed (SIGCONT). The destructor resumes
// and SIGKILLs every member and removes the temp dir; each member also gets
// PR_SET_PDEATHSIG so it dies with the test process even if the test
// crashes. Not thread-safe: drive one cluster from one thread (the thread
// that started it, for PDEATHSIG's sake).

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace registrar::testing {

class EtcdCluster {
 public:
  struct Options {
    int members = 3;
    // Raft timing (etcd's defaults are 100 / 1000 ms).
    int heartbeat_ms = 100;
    int election_ms = 1000;
    // Passed to every member, e.g. "--max-txn-ops=256".
    std::vector<std::string> extra_args;
    absl::Duration start_timeout = absl::Seconds(30);
    // Client TLS (PEM files): with cert_file set, members serve clients on
    // https with this certificate; with client_ca_file also, they require
    // client certificates signed by it (--client-cert-auth). The harness's
    // own health checks present client_cert_file / client_key_file.
    struct Tls {
      std::string cert_file;
      std::string key_file;
      std::string client_ca_file;
      std::string ca_file;  // what the harness trusts
      std::string client_cert_file;
      std::string client_key_file;
    };
    std::optional<Tls> tls;
    std::string etcd_binary = "/usr/bin/etcd";
  };

  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(
      const Options& options);
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start() {
    return Start(Options{});
  }
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> StartSingle() {
    Options o;
    o.members = 1;
    return Start(o);
  }
  ~EtcdCluster();

  int size() const { return static_cast<int>(members_.size()); }
  // "127.0.0.1:port" of member i's client URL.
  std::string client_endpoint(int i) const;
  std::vector<std::string> client_endpoints() const;
  // Member i's etcd member id (as in ResponseHeader.member_id).
  uint64_t member_id(int i) const { return members_[i].id; }
  bool running(int i) const { return members_[i].pid > 0; }
  pid_t pid(int i) const { return members_[i].pid; }

  // Waits until every running, unpaused member answers Status and they all
  // name the same leader that is one of them.
  absl::Status WaitHealthy(absl::Duration timeout);
  // The index of the current leader, as the running unpaused members see it
  // (waits until they agree, up to timeout).
  absl::StatusOr<int> Leader(absl::Duration timeout = absl::Seconds(15));

  // SIGKILL member i and reap it.
  absl::Status Kill(int i);
  // Start member i again on its data dir and ports (after Kill); returns
  // once it answers Status (not waiting for the others).
  absl::Status Restart(int i);
  // SIGSTOP / SIGCONT member i.
  absl::Status Pause(int i);
  absl::Status Resume(int i);

  // The member's log (stdout and stderr of etcd).
  std::string Log(int i) const;
  const std::string& dir() const { return dir_; }

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    std::string data_dir;
    std::string log_file;
    pid_t pid = -1;
    bool paused = false;
    uint64_t id = 0;
  };

  explicit EtcdCluster(Options options) : options_(std::move(options)) {}
  absl::Status Spawn(int i, bool initial);
  // Member i's Status: its member id and the leader id it knows (0: none).
  absl::StatusOr<std::pair<uint64_t, uint64_t>> Status(int i,
                                                       absl::Duration timeout);
  absl::Status WaitAnswers(int i, absl::Duration timeout);
  // Reaps member i if it has exited; true if it is gone.
  bool Reap(int i);

  Options options_;
  std::string dir_;
  std::string initial_cluster_;
  std::vector<Member> members_;
};

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_CLUSTER_ETCD_CLUSTER_H_
