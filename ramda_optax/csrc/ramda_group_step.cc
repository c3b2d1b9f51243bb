// The step of an adaptive method on one group-lasso leaf, fused: the
// statistics, the metric and the exact subproblem solution, block of groups
// by block.
//
// The leaf is viewed as (A, G, B), group g being x[:, g, :]. Two buffers of
// statistics, V and U, are updated entry by entry and give the subproblem
//
//   V ← β₁ V + w₁ g,  U ← β₂ U + w₂ g²,  P = root(c U) + ε,  v = ℓ V,
//   θ̂ = argmin <v, θ − a> + ½‖θ − a‖²_P + τ Σ_g √|g| ‖θ_g‖,
//
// root being the cube root (RAMDA: V the dual average, U = Σ s g², a = W⁰)
// or the square root (ProxGen, ProxSSI: Adam's moments, a = W). For each
// block of whole groups, one pass reads g, V, U, a and the warm start and
// writes V and U (V, U ← 0 first and W⁰ ← W on a restart), keeping
// b = P a − v and P in a scratch block; Newton's method then finds each
// group's radius r, the root of f(r) = Σ b²/(P r + κ)² − 1 (κ = τ √|g|), on
// the scratch block in cache, and a last pass writes θ̂ = b r/(P r + κ)
// (0 for a group with ‖b‖ ≤ κ; a − v/P when τ = 0) or, with `offsets`,
// skips that pass and writes each group's κ/r (θ̂ = b/(P + κ/r), formed by
// the caller). Blocks run on XLA's intra-op threads.
//
// References: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Algorithm 1;
// Yun, Lozano & Yang, NeurIPS 2021 (ProxGen). The arithmetic follows
// ramda_optax's XLA path (solvers.ExactSolver, statistics, _numerics.cbrt).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "moments.h"
#include "parallel.h"
#include "step_binding.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using ramda_optax::Coefficients;
using ramda_optax::Entry;
using ramda_optax::ParallelFor;

struct Step {
  int64_t rows, groups, cols, block;  // (A, G, B), groups per block
  Coefficients k;
  float group_weight;  // √|g|
  bool restart, warm_start;
  int64_t max_iters;
  const float *grad, *params, *v_in, *u_in, *anchor_in, *theta_in;
  float *v_out, *u_out, *anchor_out, *theta_out;
};

// Runs groups [g0, g1); `b` and `p` hold (g1 − g0)·A·B floats, `sums` 4 per
// group. Returns the Newton passes of the group that took most. (A restart
// is a template argument: a select between loads in the loop would keep it
// from vectorising, at 2.4x the step's time.) With `offsets` it writes each
// group's offset q = κ/r in θ̂'s place, θ̂_g being b/(P + q), and skips the
// last pass.
template <int root, bool restart, bool offsets>
int64_t RunBlock(const Step& st, int64_t g0, int64_t g1, float* b, float* p,
                 float* sums) {
  const int64_t n = g1 - g0, per = st.rows * st.cols, cols = st.cols;
  float* b2sum = sums;
  float* pmax = sums + n;
  float* z2sum = sums + 2 * n;
  float* radius = sums + 3 * n;
  std::fill(sums, sums + 4 * n, 0.0f);
  const Coefficients& c = st.k;
  for (int64_t row = 0; row < st.rows; ++row) {
    for (int64_t k = 0; k < n; ++k) {
      const int64_t at = (row * st.groups + g0 + k) * cols;
      float* bk = b + k * per + row * cols;
      float* pk = p + k * per + row * cols;
      const float* g = st.grad + at;
      const float* v_in = st.v_in + at;
      const float* u_in = st.u_in + at;
      const float* z = st.theta_in + at;
      const float* a = (restart ? st.params : st.anchor_in) + at;
      float* v_out = st.v_out + at;
      float* u_out = st.u_out + at;
      float b2 = 0, z2 = 0, pm = 0;
#pragma omp simd reduction(+ : b2, z2) reduction(max : pm)
      for (int64_t j = 0; j < cols; ++j) {
        float v, u, pj;
        Entry<root, restart>(c, g[j], v_in[j], u_in[j], v, u, pj);
        v_out[j] = v;
        u_out[j] = u;
        const float bj = pj * a[j] - c.linear * v;
        bk[j] = bj;
        pk[j] = pj;
        b2 += bj * bj;
        z2 += z[j] * z[j];
        pm = pm > pj ? pm : pj;
      }
      b2sum[k] += b2;
      z2sum[k] += z2;
      pmax[k] = std::max(pmax[k], pm);
      if (restart && st.anchor_out != nullptr) {
        std::memcpy(st.anchor_out + at, a, cols * sizeof(float));
      }
    }
  }
  const float kappa = c.threshold * st.group_weight;
  const float rtol = std::sqrt(std::numeric_limits<float>::epsilon());
  int64_t most = 0;
  for (int64_t k = 0; k < n; ++k) {
    const float norm_b = std::sqrt(b2sum[k]);
    if (!(norm_b > kappa)) continue;  // screened: θ̂_g = 0
    const float lower = pmax[k] > 0 ? (norm_b - kappa) / pmax[k] : 0.0f;
    float r = st.warm_start ? std::max(lower, std::sqrt(z2sum[k])) : lower;
    const float* bk = b + k * per;
    const float* pk = p + k * per;
    int64_t passes = 0;
    while (passes < st.max_iters) {
      float f = 0, df = 0;
#pragma omp simd reduction(+ : f, df)
      for (int64_t i = 0; i < per; ++i) {
        const float inv = 1.0f / (pk[i] * r + kappa);
        const float t = bk[i] * bk[i] * inv * inv;
        f += t;
        df += t * pk[i] * inv;
      }
      f -= 1;
      df *= 2;
      const float delta = df > 0 ? f / df : 0.0f;
      // After the first step the iterates lie left of the root: a step
      // δ <= 0 comes of f's rounding (solvers.ExactSolver).
      const bool moved =
          std::fabs(delta) > rtol * r && (passes == 0 || delta > 0);
      r = std::max(r + delta, lower);
      ++passes;
      if (!moved) break;
    }
    radius[k] = r;
    most = std::max(most, passes);
  }
  if constexpr (offsets) {
    // θ̂_g = b/(P + κ/r): the group's offset κ/r (∞ where r = 0).
    for (int64_t k = 0; k < n; ++k) {
      st.theta_out[g0 + k] = radius[k] > 0
                                 ? kappa / radius[k]
                                 : std::numeric_limits<float>::infinity();
    }
    return most;
  }
  for (int64_t row = 0; row < st.rows; ++row) {
    for (int64_t k = 0; k < n; ++k) {
      const int64_t at = (row * st.groups + g0 + k) * cols;
      const float* bk = b + k * per + row * cols;
      const float* pk = p + k * per + row * cols;
      float* theta = st.theta_out + at;
      const float r = radius[k];
      if (r > 0) {
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) {
          theta[j] = bk[j] * r / (pk[j] * r + kappa);
        }
      } else {
        std::fill(theta, theta + cols, 0.0f);
      }
    }
  }
  return most;
}

// Without a threshold (τ = 0, or a leaf without a penalty) the solution is
// θ̂ = a − v/P (a where P = 0), written in the statistics' pass; with
// `offsets`, the groups' offsets are 0 (θ̂ = b/P).
template <int root, bool restart, bool offsets>
void RunClosedForm(const Step& st, int64_t g0, int64_t g1) {
  const Coefficients& c = st.k;
  const int64_t cols = st.cols;
  for (int64_t row = 0; row < st.rows; ++row) {
    for (int64_t k = g0; k < g1; ++k) {
      const int64_t at = (row * st.groups + k) * cols;
      const float* g = st.grad + at;
      const float* v_in = st.v_in + at;
      const float* u_in = st.u_in + at;
      const float* a = (restart ? st.params : st.anchor_in) + at;
      float* v_out = st.v_out + at;
      float* u_out = st.u_out + at;
      // With `offsets` θ̂'s buffer holds one float per group.
      float* theta = offsets ? nullptr : st.theta_out + at;
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) {
        float v, u, pj;
        Entry<root, restart>(c, g[j], v_in[j], u_in[j], v, u, pj);
        v_out[j] = v;
        u_out[j] = u;
        if constexpr (!offsets) {
          theta[j] = a[j] - (pj > 0 ? c.linear * v / pj : 0.0f);
        }
      }
      if (restart && st.anchor_out != nullptr) {
        std::memcpy(st.anchor_out + at, a, cols * sizeof(float));
      }
    }
  }
  if constexpr (offsets) {
    std::fill(st.theta_out + g0, st.theta_out + g1, 0.0f);
  }
}

// RunBlock, or RunClosedForm without a threshold; returns the Newton
// passes.
template <int root, bool restart, bool offsets>
int64_t Solve(const Step& st, int64_t g0, int64_t g1, float* b, float* p,
              float* sums) {
  if (st.k.threshold > 0) {
    return RunBlock<root, restart, offsets>(st, g0, g1, b, p, sums);
  }
  RunClosedForm<root, restart, offsets>(st, g0, g1);
  return 0;
}

// Solve for the step's root, restart and output.
int64_t Dispatch(const Step& st, int64_t root, bool offsets, int64_t g0,
                 int64_t g1, float* b, float* p, float* sums) {
  if (root == 3) {
    if (st.restart) return Solve<3, true, false>(st, g0, g1, b, p, sums);
    return offsets ? Solve<3, false, true>(st, g0, g1, b, p, sums)
                   : Solve<3, false, false>(st, g0, g1, b, p, sums);
  }
  if (st.restart) return Solve<2, true, false>(st, g0, g1, b, p, sums);
  return offsets ? Solve<2, false, true>(st, g0, g1, b, p, sums)
                 : Solve<2, false, false>(st, g0, g1, b, p, sums);
}

ffi::Error GroupStep(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> grad,
                     ffi::Buffer<ffi::F32> params, ffi::Buffer<ffi::F32> v,
                     ffi::Buffer<ffi::F32> u, ffi::Buffer<ffi::F32> anchor,
                     ffi::Buffer<ffi::F32> theta, ffi::Buffer<ffi::F32> scalars,
                     ffi::Buffer<ffi::PRED> restart,
                     ffi::ResultBuffer<ffi::F32> v_out,
                     ffi::ResultBuffer<ffi::F32> u_out,
                     ffi::ResultBuffer<ffi::F32> anchor_out,
                     ffi::ResultBuffer<ffi::F32> theta_out,
                     ffi::ResultBuffer<ffi::S32> passes, int64_t rows,
                     int64_t groups, int64_t cols, int64_t block,
                     int64_t max_iters, float group_weight, bool warm_start,
                     int64_t root, bool offsets) {
  if (rows < 1 || groups < 1 || cols < 1 || block < 1 ||
      grad.element_count() != static_cast<size_t>(rows * groups * cols) ||
      scalars.element_count() != 8 || (root != 2 && root != 3) ||
      (offsets && *restart.typed_data())) {
    return ffi::Error::InvalidArgument("ramda_group_step: bad arguments");
  }
  const float* sc = scalars.typed_data();
  Step st{rows, groups, cols, std::min(block, groups),
          Coefficients{sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6], sc[7]},
          group_weight,
          *restart.typed_data(), warm_start, max_iters,
          grad.typed_data(), params.typed_data(), v.typed_data(),
          u.typed_data(), anchor.typed_data(), theta.typed_data(),
          v_out->typed_data(), u_out->typed_data(),
          anchor_out->typed_data(), theta_out->typed_data()};
  // Without restarts W⁰ is not an output (an empty buffer); with them it
  // is W⁰'s own buffer, which a step without a restart leaves as it is.
  if (anchor_out->element_count() == 0) {
    st.anchor_out = nullptr;
  } else if (!st.restart && st.anchor_out != st.anchor_in) {
    std::memcpy(st.anchor_out, st.anchor_in, grad.size_bytes());
  }
  const int64_t per = rows * cols;
  std::atomic<int64_t> most{0};
  ParallelFor(pool, (groups + st.block - 1) / st.block, [&]() {
    return [&, b = std::vector<float>(per * st.block),
            p = std::vector<float>(per * st.block),
            sums = std::vector<float>(4 * st.block)](int64_t i) mutable {
      const int64_t g0 = i * st.block;
      const int64_t g1 = std::min(groups, g0 + st.block);
      const int64_t passes =
          Dispatch(st, root, offsets, g0, g1, b.data(), p.data(), sums.data());
      int64_t seen = most.load();
      while (passes > seen && !most.compare_exchange_weak(seen, passes)) {
      }
    };
  });
  *passes->typed_data() = static_cast<int32_t>(most.load());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RamdaGroupStep, GroupStep,
                              ramda_optax::StepBinding()
                                  .Attr<float>("group_weight")
                                  .Attr<bool>("warm_start")
                                  .Attr<int64_t>("root")
                                  .Attr<bool>("offsets"));
