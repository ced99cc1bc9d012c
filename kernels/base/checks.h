#pragma once

// Note [Check macros]
// The one family of checks that turn a failed condition or a library's return code into a
// cdl::Error at the call site, naming the call, its file:line and the rank (kernels/base/error.h).
// Each macro names only the library symbols it needs, so this header includes none of them: use
// CDL_MPI_CHECK where <mpi.h> is included, CDL_CUDA_CHECK with <cuda_runtime_api.h>,
// CDL_NCCL_CHECK with <nccl.h> (NCCL 2.13 or newer: the message carries ncclGetLastError).
#include <cerrno>
#include <cstring>
#include <string>

#include "kernels/base/error.h"

// A system call that returns -1 and sets errno: retried while it fails with EINTR, then an error
// naming the call and strerror(errno). Evaluates to the call's result.
#define CDL_SYS_CHECK(call, ...)                                                             \
  [&]() {                                                                                    \
    auto cdlSysRc_ = (call);                                                                 \
    while (cdlSysRc_ == -1 && errno == EINTR) cdlSysRc_ = (call);                            \
    if (cdlSysRc_ == -1) {                                                                   \
      const int cdlErrno_ = errno;                                                           \
      ::cdl::detail::throwError(__FILE__, __LINE__,                                          \
                                ::cdl::detail::concat(__VA_ARGS__, " (", #call, " failed: ", \
                                                      std::strerror(cdlErrno_), ")"));       \
    }                                                                                        \
    return cdlSysRc_;                                                                        \
  }()

// An MPI call: an error naming it and MPI's error string unless it returns MPI_SUCCESS.
#define CDL_MPI_CHECK(call)                                                                     \
  do {                                                                                          \
    const int cdlMpiRc_ = (call);                                                               \
    if (cdlMpiRc_ != MPI_SUCCESS) {                                                             \
      char cdlMpiText_[MPI_MAX_ERROR_STRING];                                                   \
      int cdlMpiLen_ = 0;                                                                       \
      MPI_Error_string(cdlMpiRc_, cdlMpiText_, &cdlMpiLen_);                                    \
      CDL_THROW(#call, " failed: ", std::string(cdlMpiText_, cdlMpiLen_ > 0 ? cdlMpiLen_ : 0)); \
    }                                                                                           \
  } while (0)

// A CUDA runtime call: an error naming it, the error's name and text unless it returns
// cudaSuccess. The runtime's last-error slot is read and so cleared first, so that a later check
// does not report this failure again; errors that poison the context stay, as CUDA keeps them.
#define CDL_CUDA_CHECK(expr)                                                              \
  do {                                                                                    \
    const cudaError_t cdlCudaStatus_ = (expr);                                            \
    if (cdlCudaStatus_ != cudaSuccess) {                                                  \
      (void)cudaGetLastError();                                                           \
      CDL_THROW("CUDA call ", #expr, " failed: ", cudaGetErrorName(cdlCudaStatus_), " (", \
                cudaGetErrorString(cdlCudaStatus_), ")");                                 \
    }                                                                                     \
  } while (0)

// An NCCL call: an error naming it, NCCL's description of the result and its last error text.
#define CDL_NCCL_CHECK(expr)                                                                   \
  do {                                                                                         \
    const ncclResult_t cdlNcclStatus_ = (expr);                                                \
    if (cdlNcclStatus_ != ncclSuccess) {                                                       \
      const char* cdlNcclLast_ = ncclGetLastError(nullptr);                                    \
      CDL_THROW(                                                                               \
          "NCCL call ", #expr, " failed: ", ncclGetErrorString(cdlNcclStatus_),                \
          (cdlNcclLast_ && *cdlNcclLast_) ? std::string("; ") + cdlNcclLast_ : std::string()); \
    }                                                                                          \
  } while (0)
