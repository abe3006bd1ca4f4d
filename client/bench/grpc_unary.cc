#include "client/bench/grpc_unary.h"

namespace registrar::bench {

std::shared_ptr<grpc::Channel> ConnectChannel(const std::string& target,
                                              int index,
                                              absl::Duration timeout) {
  grpc::ChannelArguments args;
  // Distinct args and a local subchannel pool: one TCP connection each.
  args.SetInt("registrar.bench.channel", index);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(
      target, grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                 absl::ToChronoNanoseconds(timeout))) {
    return nullptr;
  }
  return channel;
}

}  // namespace registrar::bench
