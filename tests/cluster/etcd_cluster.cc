#include "tests/cluster/etcd_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace registrar::testing {
namespace {

// A port the kernel says is free on 127.0.0.1 (released again, so another
// process could take it before etcd binds it; unlikely with RUN_SERIAL).
absl::StatusOr<int> FreePort(std::set<int>* taken) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return absl::InternalError(strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    const bool ok =
        bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
    close(fd);
    if (!ok) return absl::InternalError(strerror(errno));
    const int port = ntohs(addr.sin_port);
    if (taken->insert(port).second) return port;
  }
  return absl::InternalError("no free port");
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Url(int port) { return absl::StrCat("http://127.0.0.1:", port); }
std::string ClientUrl(int port, bool tls) {
  return absl::StrCat(tls ? "https" : "http", "://127.0.0.1:", port);
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(
    const Options& options) {
  if (options.members < 1) {
    return absl::InvalidArgumentError("members must be at least 1");
  }
  std::unique_ptr<EtcdCluster> c(new EtcdCluster(options));
  char dir_template[] = "/tmp/registrar-etcd-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", strerror(errno)));
  }
  c->dir_ = dir_template;
  std::set<int> taken;
  std::vector<std::string> peers;
  for (int i = 0; i < options.members; ++i) {
    Member m;
    m.name = absl::StrCat("e", i);
    auto client = FreePort(&taken);
    if (!client.ok()) return client.status();
    auto peer = FreePort(&taken);
    if (!peer.ok()) return peer.status();
    m.client_port = *client;
    m.peer_port = *peer;
    m.data_dir = absl::StrCat(c->dir_, "/", m.name, ".etcd");
    m.log_file = absl::StrCat(c->dir_, "/", m.name, ".log");
    peers.push_back(absl::StrCat(m.name, "=", Url(m.peer_port)));
    c->members_.push_back(std::move(m));
  }
  c->initial_cluster_ = absl::StrJoin(peers, ",");
  for (int i = 0; i < c->size(); ++i) {
    if (absl::Status s = c->Spawn(i, /*initial=*/true); !s.ok()) return s;
  }
  if (absl::Status s = c->WaitHealthy(options.start_timeout); !s.ok()) {
    return s;
  }
  for (int i = 0; i < c->size(); ++i) {
    auto st = c->Status(i, absl::Seconds(5));
    if (!st.ok()) return st.status();
    c->members_[i].id = st->first;
  }
  return c;
}

absl::Status EtcdCluster::Spawn(int i, bool initial) {
  Member& m = members_[i];
  const bool tls = options_.tls.has_value();
  std::vector<std::string> args = {
      options_.etcd_binary,
      "--name=" + m.name,
      "--data-dir=" + m.data_dir,
      "--listen-client-urls=" + ClientUrl(m.client_port, tls),
      "--advertise-client-urls=" + ClientUrl(m.client_port, tls),
      "--listen-peer-urls=" + Url(m.peer_port),
      "--initial-advertise-peer-urls=" + Url(m.peer_port),
      "--initial-cluster=" + initial_cluster_,
      "--initial-cluster-state=new",
      "--initial-cluster-token=" + dir_,
      absl::StrCat("--heartbeat-interval=", options_.heartbeat_ms),
      absl::StrCat("--election-timeout=", options_.election_ms),
      "--logger=zap",
      "--log-outputs=stderr",
  };
  if (tls) {
    args.push_back("--cert-file=" + options_.tls->cert_file);
    args.push_back("--key-file=" + options_.tls->key_file);
    if (!options_.tls->client_ca_file.empty()) {
      args.push_back("--trusted-ca-file=" + options_.tls->client_ca_file);
      args.push_back("--client-cert-auth=true");
    }
  }
  args.insert(args.end(), options_.extra_args.begin(),
              options_.extra_args.end());
  // Built before fork: the child only calls async-signal-safe functions.
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // etcd reads ETCD_* variables as flags: none may leak in.
  std::vector<char*> envp;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (strncmp(*e, "ETCD", 4) != 0) envp.push_back(*e);
  }
  envp.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    // Die with the test process, even when it crashes.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    const int fd =
        open(m.log_file.c_str(),
             O_WRONLY | O_CREAT | (initial ? O_TRUNC : O_APPEND), 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  m.pid = pid;
  m.paused = false;
  return absl::OkStatus();
}

EtcdCluster::~EtcdCluster() {
  for (Member& m : members_) {
    if (m.pid <= 0) continue;
    kill(m.pid, SIGCONT);
    kill(m.pid, SIGKILL);
    int status = 0;
    waitpid(m.pid, &status, 0);
    m.pid = -1;
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string EtcdCluster::client_endpoint(int i) const {
  return absl::StrCat("127.0.0.1:", members_[i].client_port);
}

std::vector<std::string> EtcdCluster::client_endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(client_endpoint(i));
  return out;
}

bool EtcdCluster::Reap(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return true;
  int status = 0;
  if (waitpid(m.pid, &status, WNOHANG) == m.pid) {
    m.pid = -1;
    return true;
  }
  return false;
}

absl::StatusOr<std::pair<uint64_t, uint64_t>> EtcdCluster::Status(
    int i, absl::Duration timeout) {
  std::shared_ptr<grpc::ChannelCredentials> creds =
      grpc::InsecureChannelCredentials();
  if (options_.tls.has_value()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadFile(options_.tls->ca_file);
    ssl.pem_cert_chain = ReadFile(options_.tls->client_cert_file);
    ssl.pem_private_key = ReadFile(options_.tls->client_key_file);
    creds = grpc::SslCredentials(ssl);
  }
  auto channel = grpc::CreateChannel(client_endpoint(i), creds);
  auto stub = etcdserverpb::Maintenance::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  ctx.set_wait_for_ready(true);
  etcdserverpb::StatusRequest req;
  etcdserverpb::StatusResponse resp;
  const grpc::Status s = stub->Status(&ctx, req, &resp);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat(members_[i].name, " Status: ", s.error_message()));
  }
  return std::make_pair(resp.header().member_id(), resp.leader());
}

absl::Status EtcdCluster::WaitAnswers(int i, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last = absl::UnavailableError("not asked");
  while (absl::Now() < deadline) {
    if (members_[i].pid <= 0 || Reap(i)) {
      return absl::InternalError(absl::StrCat(
          members_[i].name, " exited before answering:\n", Log(i)));
    }
    auto st = Status(i, absl::Milliseconds(500));
    if (st.ok()) return absl::OkStatus();
    last = st.status();
    // A real child process: poll it (bounded by the deadline).
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      members_[i].name, " did not answer: ", last.message(), "\n", Log(i)));
}

absl::Status EtcdCluster::WaitHealthy(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string last = "no member asked";
  while (absl::Now() < deadline) {
    std::set<uint64_t> leaders;
    std::set<uint64_t> ids;
    bool all = true;
    for (int i = 0; i < size(); ++i) {
      if (members_[i].pid <= 0 || members_[i].paused) continue;
      if (Reap(i)) {
        return absl::InternalError(
            absl::StrCat(members_[i].name, " exited unexpectedly:\n", Log(i)));
      }
      auto st = Status(i, absl::Milliseconds(500));
      if (!st.ok()) {
        all = false;
        last = std::string(st.status().message());
        break;
      }
      ids.insert(st->first);
      leaders.insert(st->second);
    }
    if (all && leaders.size() == 1 && *leaders.begin() != 0 &&
        ids.count(*leaders.begin()) == 1) {
      return absl::OkStatus();
    }
    if (all) last = "members do not agree on a leader among them";
    absl::SleepFor(absl::Milliseconds(50));  // polling real children
  }
  std::string logs;
  for (int i = 0; i < size(); ++i) {
    logs += absl::StrCat("--- ", members_[i].name, " ---\n", Log(i));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("etcd cluster not healthy: ", last, "\n", logs));
}

absl::StatusOr<int> EtcdCluster::Leader(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last = absl::UnavailableError("no running member");
  while (absl::Now() < deadline) {
    std::set<uint64_t> leaders;
    bool all = true;
    for (int i = 0; i < size(); ++i) {
      if (members_[i].pid <= 0 || members_[i].paused || Reap(i)) continue;
      auto st = Status(i, absl::Milliseconds(500));
      if (!st.ok()) {
        all = false;
        last = st.status();
        break;
      }
      leaders.insert(st->second);
    }
    if (all && leaders.size() == 1) {
      for (int i = 0; i < size(); ++i) {
        if (members_[i].id == *leaders.begin() && running(i) &&
            !members_[i].paused) {
          return i;
        }
      }
      last = absl::UnavailableError("the named leader is not running");
    }
    absl::SleepFor(absl::Milliseconds(50));  // polling real children
  }
  return absl::DeadlineExceededError(
      absl::StrCat("no agreed leader: ", last.message()));
}

absl::Status EtcdCluster::Kill(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return absl::FailedPreconditionError("not running");
  kill(m.pid, SIGKILL);
  if (m.paused) kill(m.pid, SIGCONT);
  int status = 0;
  waitpid(m.pid, &status, 0);
  m.pid = -1;
  m.paused = false;
  return absl::OkStatus();
}

absl::Status EtcdCluster::Restart(int i) {
  if (members_[i].pid > 0) return absl::FailedPreconditionError("running");
  // The data dir holds the member's WAL: etcd ignores the initial-cluster
  // flags and rejoins as itself.
  if (absl::Status s = Spawn(i, /*initial=*/false); !s.ok()) return s;
  return WaitAnswers(i, options_.start_timeout);
}

absl::Status EtcdCluster::Pause(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return absl::FailedPreconditionError("not running");
  if (kill(m.pid, SIGSTOP) != 0) return absl::InternalError(strerror(errno));
  // Returns once the kernel reports the member stopped.
  int status = 0;
  if (waitpid(m.pid, &status, WUNTRACED) != m.pid || !WIFSTOPPED(status)) {
    m.pid = -1;
    return absl::InternalError("the member exited instead of stopping");
  }
  m.paused = true;
  return absl::OkStatus();
}

absl::Status EtcdCluster::Resume(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return absl::FailedPreconditionError("not running");
  if (kill(m.pid, SIGCONT) != 0) return absl::InternalError(strerror(errno));
  int status = 0;
  if (waitpid(m.pid, &status, WCONTINUED) != m.pid || !WIFCONTINUED(status)) {
    m.pid = -1;
    return absl::InternalError("the member exited instead of continuing");
  }
  m.paused = false;
  return absl::OkStatus();
}

std::string EtcdCluster::Log(int i) const {
  std::string log = ReadFile(members_[i].log_file);
  // Bounded: the tail is what explains a failure.
  constexpr size_t kMax = 8000;
  if (log.size() > kMax) log = "..." + log.substr(log.size() - kMax);
  return log;
}

}  // namespace registrar::testing
