#ifndef REGISTRAR_BENCH_PROGRAMS_GRPC_UNARY_H_
#define REGISTRAR_BENCH_PROGRAMS_GRPC_UNARY_H_

// One unary RPC through gRPC's callback client API, for the backends that
// speak gRPC (registrar, echo, etcd).

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <utility>

#include "absl/time/time.h"

namespace registrar::bench {

// Context, request and response of one call; they live until it completed.
template <typename Req, typename Resp>
struct UnaryRpc {
  grpc::ClientContext ctx;
  Req req;
  Resp resp;
};

// The callback-API method of a generated stub's async() interface, e.g.
// &v1::Registrar::Stub::async::Issue (the std::function overload).
template <typename Async, typename Req, typename Resp>
using AsyncMethod = void (Async::*)(grpc::ClientContext*, const Req*, Resp*,
                                    std::function<void(grpc::Status)>);

namespace internal {
// Counts the UnaryRpcs StartUnary started and has not destroyed yet.
void UnaryRpcStarted();
void UnaryRpcDestroyed();
}  // namespace internal

// Starts `rpc` with a deadline; `then(status, rpc)` runs once when it
// completes (on a gRPC thread), then the rpc is deleted.
template <typename Async, typename Req, typename Resp, typename Then>
void StartUnary(Async* async, AsyncMethod<Async, Req, Resp> method,
                std::unique_ptr<UnaryRpc<Req, Resp>> rpc,
                absl::Duration deadline, Then then) {
  rpc->ctx.set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoNanoseconds(deadline));
  UnaryRpc<Req, Resp>* r = rpc.release();
  internal::UnaryRpcStarted();
  (async->*method)(&r->ctx, &r->req, &r->resp,
                   [r, then = std::move(then)](grpc::Status s) mutable {
                     {
                       std::unique_ptr<UnaryRpc<Req, Resp>> owned(r);
                       then(s, *owned);
                     }
                     internal::UnaryRpcDestroyed();
                   });
}

// Waits until every rpc StartUnary started has completed and been deleted.
// Call it before the stubs and channels are destroyed: an rpc's ClientContext
// holds a reference to its channel, and when the last one is dropped on a
// gRPC callback thread, gRPC (1.51) shuts down and frees its callback
// completion queue under that thread, which then polls the freed queue (a
// double free in grpc_cq_internal_unref as the bench exits).
void WaitForUnaryRpcs();

// A channel of its own TCP connection (distinct args and a local subchannel
// pool), connected within `timeout`; null if it could not connect. `target`
// may list several addresses, comma-separated (replicas of a cluster,
// members of etcd): channel `index` goes to address index % their count, so
// --channels=N spreads the calls round-robin over them.
std::shared_ptr<grpc::Channel> ConnectChannel(const std::string& target,
                                              int index,
                                              absl::Duration timeout);

}  // namespace registrar::bench

#endif  // REGISTRAR_BENCH_PROGRAMS_GRPC_UNARY_H_
