#ifndef REGISTRAR_SERVICE_COMMON_STATUS_MACROS_H_
#define REGISTRAR_SERVICE_COMMON_STATUS_MACROS_H_

// abseil 20220623 ships no status macros; these are the two we need.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define REGISTRAR_CONCAT_INNER_(a, b) a##b
#define REGISTRAR_CONCAT_(a, b) REGISTRAR_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    if (absl::Status _st = (expr); !_st.ok()) return _st; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, StatusOrExpr());` unwraps or returns the error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL_(REGISTRAR_CONCAT_(_statusor_, __LINE__), lhs, expr)
#define ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                           \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()

#endif  // REGISTRAR_SERVICE_COMMON_STATUS_MACROS_H_
