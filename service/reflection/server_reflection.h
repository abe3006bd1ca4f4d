#ifndef REGISTRAR_SERVICE_REFLECTION_SERVER_REFLECTION_H_
#define REGISTRAR_SERVICE_REFLECTION_SERVER_REFLECTION_H_

// gRPC server reflection, v1 and v1alpha (grpcurl tries v1, then v1alpha),
// answered from a DescriptorIndex: unlike gRPC's stock plugin the files carry
// their comments (source_code_info) and include grpc.health.v1.
//
// Each call is a bidirectional stream of requests, each answered by exactly
// one response, in order:
// - list_services: the service names given at construction;
// - file_by_filename, file_containing_symbol, file_containing_extension:
//   the file and its transitive imports (DescriptorIndex);
// - all_extension_numbers_of_type: the type's extension numbers;
// - anything else (no request set, a request over
//   kMaxReflectionRequestBytes, a name over DescriptorIndex::kMaxNameBytes):
//   error_response INVALID_ARGUMENT; an unknown file, symbol or type:
//   error_response NOT_FOUND.
// An error answers one request and never ends the stream. The stream ends
// with OK when the client half-closes (or sends bytes that do not parse as a
// request), and is cancelled when the client cancels or the server shuts
// down; each call's state is freed when it ends.
//
// Do not link gRPC::grpc++_reflection into the same binary: it has its own
// compiled copy of grpc/reflection/v1alpha/reflection.proto.

#include <grpcpp/server_builder.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "service/reflection/descriptor_index.h"

namespace registrar {

// Largest reflection request answered; a larger one gets INVALID_ARGUMENT.
inline constexpr size_t kMaxReflectionRequestBytes = 4096;

// What both versions answer from. Immutable, shared by all streams.
struct ReflectionSource {
  std::shared_ptr<const DescriptorIndex> index;  // not null
  std::vector<std::string> services;             // for list_services
};

// grpc.reflection.v1.ServerReflection.
class ServerReflectionV1 final
    : public grpc::reflection::v1::ServerReflection::CallbackService {
 public:
  // `source` and `source->index` must not be null.
  explicit ServerReflectionV1(std::shared_ptr<const ReflectionSource> source);

  grpc::ServerBidiReactor<grpc::reflection::v1::ServerReflectionRequest,
                          grpc::reflection::v1::ServerReflectionResponse>*
  ServerReflectionInfo(grpc::CallbackServerContext* context) override;

 private:
  std::shared_ptr<const ReflectionSource> source_;
};

// grpc.reflection.v1alpha.ServerReflection: same protocol, older package.
class ServerReflectionV1Alpha final
    : public grpc::reflection::v1alpha::ServerReflection::CallbackService {
 public:
  // `source` and `source->index` must not be null.
  explicit ServerReflectionV1Alpha(
      std::shared_ptr<const ReflectionSource> source);

  grpc::ServerBidiReactor<grpc::reflection::v1alpha::ServerReflectionRequest,
                          grpc::reflection::v1alpha::ServerReflectionResponse>*
  ServerReflectionInfo(grpc::CallbackServerContext* context) override;

 private:
  std::shared_ptr<const ReflectionSource> source_;
};

// Registers both reflection services, answering from
// DescriptorIndex::Embedded(), on the server `builder` will build; that
// server owns them (they live until it is destroyed), so the caller keeps
// nothing. list_services reports `services` (e.g. "registrar.v1.Registrar",
// "grpc.health.v1.Health") followed by the two reflection services. Call
// before builder.BuildAndStart(), at most once per builder. An error (the
// embedded descriptor set does not build: a build bug) registers nothing.
absl::Status RegisterServerReflection(grpc::ServerBuilder& builder,
                                      std::vector<std::string> services);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_REFLECTION_SERVER_REFLECTION_H_
