#ifndef REGISTRAR_BENCH_PROGRAMS_GRPC_BACKEND_H_
#define REGISTRAR_BENCH_PROGRAMS_GRPC_BACKEND_H_

// What the backends that speak gRPC (registrar and echo, etcd) share:
// operations of one RPC, and the bookkeeping of a gateway session, whose
// RPCs run one after another.

#include <cstdint>
#include <memory>
#include <utility>

#include "bench/programs/backend.h"
#include "bench/programs/grpc_unary.h"

namespace registrar::bench {

class GrpcBackend : public Backend {
 protected:
  // One gateway session. A backend's session derives from it with what its
  // steps carry; each step is started from the previous one's callback and
  // counts its RPC in `rpcs`.
  struct GatewaySession {
    GatewaySession(uint64_t k, const CallToken& token) : k(k), token(token) {}
    virtual ~GatewaySession() = default;

    const uint64_t k;
    const CallToken token;
    int message = 0;
    uint32_t rpcs = 0;
    uint64_t unexpected = 0;
  };

  explicit GrpcBackend(const BenchOptions& opts) : opts_(opts) {}

  static CallResult Failed(const grpc::Status& s) {
    CallResult r;
    r.code = static_cast<int>(s.error_code());
    r.message = s.error_message();
    return r;
  }

  // Starts `rpc`; on success `count(resp, &result)` fills the result; the
  // operation then completes with it.
  template <typename Async, typename Req, typename Resp, typename Count>
  void Call(Async* async, const CallToken& token,
            std::unique_ptr<UnaryRpc<Req, Resp>> rpc,
            AsyncMethod<Async, Req, Resp> method, Count count) {
    StartUnary(
        async, method, std::move(rpc), opts_.deadline,
        [this, token, count](const grpc::Status& s, UnaryRpc<Req, Resp>& r) {
          CallResult result;
          if (s.ok()) {
            count(r.resp, &result);
          } else {
            result = Failed(s);
          }
          sink_->Done(token, std::move(result));
        });
  }

  // Completes the session's operation and deletes the session. `result` is
  // a step's failure, or CallResult{} after the last step: then its items
  // are the session's RPCs.
  void GatewayEnd(GatewaySession* s, CallResult result) {
    result.rpcs = s->rpcs;
    if (result.code == 0) {
      result.items = s->rpcs;
      result.unexpected = s->unexpected;
    }
    const CallToken token = s->token;
    delete s;
    sink_->Done(token, std::move(result));
  }

  const BenchOptions opts_;
  CompletionSink* sink_ = nullptr;
};

}  // namespace registrar::bench

#endif  // REGISTRAR_BENCH_PROGRAMS_GRPC_BACKEND_H_
