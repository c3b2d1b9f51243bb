// The FFI signatures the kernels share (ramda_group_step.cc,
// ramda_pg_leaf.cc): the attributes of a leaf's view, its blocks and the
// most iterations; and the optimizer's step: g, W, V, U, W⁰, the warm
// start, the coefficients and the restart flag in (StepArgs), V, U, W⁰, θ̂
// and the solver's iterations out.

#ifndef RAMDA_OPTAX_CSRC_STEP_BINDING_H_
#define RAMDA_OPTAX_CSRC_STEP_BINDING_H_

#include <cstdint>
#include <utility>

#include "xla/ffi/api/ffi.h"

namespace ramda_optax {

template <typename Binding>
auto WithView(Binding binding) {
  return std::move(binding)
      .template Attr<int64_t>("rows")
      .template Attr<int64_t>("groups")
      .template Attr<int64_t>("cols")
      .template Attr<int64_t>("block")
      .template Attr<int64_t>("max_iters");
}

// The step's inputs: the thread pool, then g, W, V, U, W⁰, the warm start
// (or the iterate a sweep starts from), the coefficients and the restart.
inline auto StepArgs() {
  namespace ffi = xla::ffi;
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::Buffer<ffi::F32>>()   // g
      .Arg<ffi::Buffer<ffi::F32>>()   // W
      .Arg<ffi::Buffer<ffi::F32>>()   // V
      .Arg<ffi::Buffer<ffi::F32>>()   // U
      .Arg<ffi::Buffer<ffi::F32>>()   // W⁰
      .Arg<ffi::Buffer<ffi::F32>>()   // warm start
      .Arg<ffi::Buffer<ffi::F32>>()   // coefficients
      .Arg<ffi::Buffer<ffi::PRED>>();  // restart
}

inline auto StepBinding() {
  namespace ffi = xla::ffi;
  return WithView(StepArgs()
      .Ret<ffi::Buffer<ffi::F32>>()   // V
      .Ret<ffi::Buffer<ffi::F32>>()   // U
      .Ret<ffi::Buffer<ffi::F32>>()   // W⁰
      .Ret<ffi::Buffer<ffi::F32>>()   // θ̂
      .Ret<ffi::Buffer<ffi::S32>>());  // iterations
}

}  // namespace ramda_optax

#endif  // RAMDA_OPTAX_CSRC_STEP_BINDING_H_
