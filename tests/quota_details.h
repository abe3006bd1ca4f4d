#ifndef REGISTRAR_TESTS_QUOTA_DETAILS_H_
#define REGISTRAR_TESTS_QUOTA_DETAILS_H_

// The rich details of a RESOURCE_EXHAUSTED grpc::Status (a rate limit's
// refusal): its RetryInfo delay and its QuotaFailure subjects, as tests
// check them. Header-only.

#include <grpcpp/support/status.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"

namespace registrar::testing {

struct QuotaDetails {
  bool parsed = false;                               // error_details parsed
  std::optional<absl::Duration> retry_delay;         // RetryInfo, if attached
  std::optional<std::vector<std::string>> subjects;  // QuotaFailure, if any
};

inline QuotaDetails QuotaDetailsOf(const grpc::Status& status) {
  QuotaDetails out;
  google::rpc::Status details;
  if (!details.ParseFromString(status.error_details())) return out;
  out.parsed = true;
  for (const auto& any : details.details()) {
    google::rpc::RetryInfo info;
    google::rpc::QuotaFailure failure;
    if (any.UnpackTo(&info)) {
      out.retry_delay = absl::Seconds(info.retry_delay().seconds()) +
                        absl::Nanoseconds(info.retry_delay().nanos());
    }
    if (any.UnpackTo(&failure)) {
      out.subjects.emplace();
      for (const auto& v : failure.violations()) {
        out.subjects->push_back(v.subject());
      }
    }
  }
  return out;
}

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_QUOTA_DETAILS_H_
