#ifndef REGISTRAR_SERVICE_API_RAW_REQUEST_H_
#define REGISTRAR_SERVICE_API_RAW_REQUEST_H_

// Parsing the raw request bytes of the handlers that take them (the data
// API's unary methods, Admin's lease calls): protobuf refuses a proto3
// string that is not UTF-8, and gRPC would then answer UNIMPLEMENTED
// before any handler ran; parsed here, such a request gets
// INVALID_ARGUMENT naming `request`.

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/message_lite.h"
#include "service/common/field_error.h"

namespace registrar {

// True when `bytes` parse as `message`.
inline bool ParseBytes(const grpc::ByteBuffer& bytes,
                       google::protobuf::MessageLite* message) {
  grpc::ByteBuffer copy(bytes);  // shares the slices; the reader consumes
  grpc::ProtoBufferReader reader(&copy);
  return reader.status().ok() && message->ParseFromZeroCopyStream(&reader);
}

// ParseBytes, or INVALID_ARGUMENT for the field `request`.
template <typename Req>
absl::Status StrictParse(const grpc::ByteBuffer& bytes, Req* request) {
  if (ParseBytes(bytes, request)) return absl::OkStatus();
  return InvalidField(
      "request", absl::StrCat("cannot be parsed as ", request->GetTypeName(),
                              " (every string field must be valid UTF-8)"));
}

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_RAW_REQUEST_H_
