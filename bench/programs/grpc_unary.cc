#include "bench/programs/grpc_unary.h"

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"

namespace registrar::bench {
namespace {

std::mutex unary_mu;
std::condition_variable unary_cv;
int64_t unary_rpcs = 0;  // guarded by unary_mu

}  // namespace

namespace internal {

void UnaryRpcStarted() {
  std::lock_guard<std::mutex> lock(unary_mu);
  ++unary_rpcs;
}

void UnaryRpcDestroyed() {
  std::lock_guard<std::mutex> lock(unary_mu);
  if (--unary_rpcs == 0) unary_cv.notify_all();
}

}  // namespace internal

void WaitForUnaryRpcs() {
  std::unique_lock<std::mutex> lock(unary_mu);
  unary_cv.wait(lock, [] { return unary_rpcs == 0; });
}

std::shared_ptr<grpc::Channel> ConnectChannel(const std::string& target,
                                              int index,
                                              absl::Duration timeout) {
  grpc::ChannelArguments args;
  // Distinct args and a local subchannel pool: one TCP connection each.
  args.SetInt("registrar.bench.channel", index);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(64 << 20);
  const std::vector<std::string> addresses =
      absl::StrSplit(target, ',', absl::SkipEmpty());
  if (addresses.empty()) return nullptr;
  auto channel = grpc::CreateCustomChannel(
      addresses[static_cast<size_t>(index) % addresses.size()],
      grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                 absl::ToChronoNanoseconds(timeout))) {
    return nullptr;
  }
  return channel;
}

}  // namespace registrar::bench
