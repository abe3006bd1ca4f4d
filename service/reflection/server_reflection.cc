#include "service/reflection/server_reflection.h"

#include <grpcpp/impl/server_builder_option.h>
#include <grpcpp/impl/server_builder_plugin.h>
#include <grpcpp/impl/server_initializer.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace registrar {
namespace {

constexpr char kV1Name[] = "grpc.reflection.v1.ServerReflection";
constexpr char kV1AlphaName[] = "grpc.reflection.v1alpha.ServerReflection";

template <typename Response>
void SetError(const absl::Status& status, Response* response) {
  auto* error = response->mutable_error_response();
  // absl::StatusCode and grpc::StatusCode share their numbering.
  error->set_error_code(static_cast<int32_t>(status.code()));
  error->set_error_message(std::string(status.message()));
}

template <typename Response>
void SetFiles(absl::StatusOr<std::vector<std::string>> files,
              Response* response) {
  if (!files.ok()) {
    SetError(files.status(), response);
    return;
  }
  auto* out = response->mutable_file_descriptor_response();
  for (std::string& file : *files) {
    out->add_file_descriptor_proto(std::move(file));
  }
}

// Fills `response` with the answer to `request`. Total: every request gets
// exactly one answer (possibly an error_response).
template <typename Request, typename Response>
void Answer(const ReflectionSource& source, const Request& request,
            Response* response) {
  if (request.ByteSizeLong() > kMaxReflectionRequestBytes) {
    // Not echoed: the answer stays small whatever was sent.
    SetError(absl::InvalidArgumentError(
                 "reflection request larger than " +
                 std::to_string(kMaxReflectionRequestBytes) + " bytes"),
             response);
    return;
  }
  response->set_valid_host(request.host());
  *response->mutable_original_request() = request;
  const DescriptorIndex& index = *source.index;
  switch (request.message_request_case()) {
    case Request::kFileByFilename:
      SetFiles(index.FileByName(request.file_by_filename()), response);
      return;
    case Request::kFileContainingSymbol:
      SetFiles(index.FileContainingSymbol(request.file_containing_symbol()),
               response);
      return;
    case Request::kFileContainingExtension:
      SetFiles(index.FileContainingExtension(
                   request.file_containing_extension().containing_type(),
                   request.file_containing_extension().extension_number()),
               response);
      return;
    case Request::kAllExtensionNumbersOfType: {
      absl::StatusOr<std::vector<int>> numbers =
          index.ExtensionNumbersOf(request.all_extension_numbers_of_type());
      if (!numbers.ok()) {
        SetError(numbers.status(), response);
        return;
      }
      auto* out = response->mutable_all_extension_numbers_response();
      out->set_base_type_name(request.all_extension_numbers_of_type());
      for (int number : *numbers) out->add_extension_number(number);
      return;
    }
    case Request::kListServices: {
      auto* out = response->mutable_list_services_response();
      for (const std::string& name : source.services) {
        out->add_service()->set_name(name);
      }
      return;
    }
    default:
      SetError(absl::InvalidArgumentError(
                   "reflection request: no (known) message_request set"),
               response);
      return;
  }
}

// One reflection call: reads a request, writes its answer, repeats until the
// client half-closes (Finish OK) or the call breaks (cancelled by the client
// or by server shutdown: the pending read or write fails, Finish). Only one
// operation is outstanding at a time, so request_ and response_ need no
// lock. Deletes itself in OnDone, after gRPC is done with it.
template <typename Request, typename Response>
class ReflectionReactor final
    : public grpc::ServerBidiReactor<Request, Response> {
 public:
  explicit ReflectionReactor(std::shared_ptr<const ReflectionSource> source)
      : source_(std::move(source)) {
    this->StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // half-close, cancellation, or an unparseable message
      this->Finish(grpc::Status::OK);
      return;
    }
    response_.Clear();
    Answer(*source_, request_, &response_);
    this->StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      this->Finish(grpc::Status(grpc::StatusCode::CANCELLED,
                                "reflection stream broken"));
      return;
    }
    request_.Clear();
    this->StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  const std::shared_ptr<const ReflectionSource> source_;
  Request request_;
  Response response_;
};

// Owns the two reflection services on behalf of the server. It has no
// methods, so registering it (through ServerInitializer, the one place a
// grpc::Server takes shared ownership of a service) serves nothing and only
// ties the services' lifetime to the server's.
class ServiceOwner final : public grpc::Service {
 public:
  std::shared_ptr<grpc::Service> v1;
  std::shared_ptr<grpc::Service> v1alpha;
};

// Puts the two services on the server being built. They are registered on
// the builder itself in UpdateServerBuilder (called first in BuildAndStart),
// so the builder counts their callback methods when it sets the server up
// (gRPC does not count callback methods of services a plugin registers in
// InitServer, and refuses a server whose only services are those). Their
// owner is handed to the server in InitServer: the plugin itself dies with
// the builder, the server usually outlives it.
class ReflectionPlugin final : public grpc::ServerBuilderPlugin {
 public:
  explicit ReflectionPlugin(std::shared_ptr<const ReflectionSource> source)
      : owner_(std::make_shared<ServiceOwner>()) {
    owner_->v1 = std::make_shared<ServerReflectionV1>(source);
    owner_->v1alpha = std::make_shared<ServerReflectionV1Alpha>(source);
  }

  std::string name() override { return "registrar_server_reflection"; }
  void UpdateServerBuilder(grpc::ServerBuilder* builder) override {
    builder->RegisterService(owner_->v1.get());
    builder->RegisterService(owner_->v1alpha.get());
  }
  void InitServer(grpc::ServerInitializer* initializer) override {
    initializer->RegisterService(owner_);
  }
  void Finish(grpc::ServerInitializer* /*initializer*/) override {}
  void ChangeArguments(const std::string& /*name*/, void* /*value*/) override {}

 private:
  std::shared_ptr<ServiceOwner> owner_;
};

// The builder calls UpdatePlugins while building; that is the supported way
// to attach a plugin to one builder (rather than to every builder).
class ReflectionOption final : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionOption(std::unique_ptr<ReflectionPlugin> plugin)
      : plugin_(std::move(plugin)) {}

  void UpdateArguments(grpc::ChannelArguments* /*args*/) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>*
                         plugins) override {
    if (plugin_ != nullptr) plugins->push_back(std::move(plugin_));
  }

 private:
  std::unique_ptr<ReflectionPlugin> plugin_;
};

}  // namespace

ServerReflectionV1::ServerReflectionV1(
    std::shared_ptr<const ReflectionSource> source)
    : source_(std::move(source)) {}

grpc::ServerBidiReactor<grpc::reflection::v1::ServerReflectionRequest,
                        grpc::reflection::v1::ServerReflectionResponse>*
ServerReflectionV1::ServerReflectionInfo(
    grpc::CallbackServerContext* /*context*/) {
  return new ReflectionReactor<grpc::reflection::v1::ServerReflectionRequest,
                               grpc::reflection::v1::ServerReflectionResponse>(
      source_);
}

ServerReflectionV1Alpha::ServerReflectionV1Alpha(
    std::shared_ptr<const ReflectionSource> source)
    : source_(std::move(source)) {}

grpc::ServerBidiReactor<grpc::reflection::v1alpha::ServerReflectionRequest,
                        grpc::reflection::v1alpha::ServerReflectionResponse>*
ServerReflectionV1Alpha::ServerReflectionInfo(
    grpc::CallbackServerContext* /*context*/) {
  return new ReflectionReactor<
      grpc::reflection::v1alpha::ServerReflectionRequest,
      grpc::reflection::v1alpha::ServerReflectionResponse>(source_);
}

absl::Status RegisterServerReflection(grpc::ServerBuilder& builder,
                                      std::vector<std::string> services) {
  absl::StatusOr<std::shared_ptr<const DescriptorIndex>> index =
      DescriptorIndex::Embedded();
  if (!index.ok()) return index.status();
  auto source = std::make_shared<ReflectionSource>();
  source->index = *std::move(index);
  source->services = std::move(services);
  source->services.push_back(kV1Name);
  source->services.push_back(kV1AlphaName);
  builder.SetOption(std::make_unique<ReflectionOption>(
      std::make_unique<ReflectionPlugin>(std::move(source))));
  return absl::OkStatus();
}

}  // namespace registrar
