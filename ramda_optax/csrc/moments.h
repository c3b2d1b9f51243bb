// The statistics of an adaptive method in Moments form, entry by entry:
// the optimizer's step kernels (ramda_group_step.cc, ramda_pg_leaf.cc)
// share them.
//
//   V ← β₁ V + w₁ g,  U ← β₂ U + w₂ g²,  P = root(c U) + ε,  v = ℓ V.
//
// The arithmetic follows ramda_optax's XLA path (statistics,
// _numerics.cbrt).

#ifndef RAMDA_OPTAX_CSRC_MOMENTS_H_
#define RAMDA_OPTAX_CSRC_MOMENTS_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace ramda_optax {

// ∛u for u >= 0 as _numerics.cbrt: a seed from the bits, two Newton steps.
inline float CubeRoot(float u) {
  int32_t bits;
  std::memcpy(&bits, &u, sizeof bits);
  bits = bits / 3 + 0x2A51067F;
  float y;
  std::memcpy(&y, &bits, sizeof y);
  const float third = 1.0f / 3.0f;
  y = y - (y - u / (y * y)) * third;
  y = y - (y - u / (y * y)) * third;
  const bool finite = u > 0 && u < std::numeric_limits<float>::infinity();
  return finite ? y : (u >= 0 ? u : std::numeric_limits<float>::quiet_NaN());
}

// The metric's root of c U: the cube root (3) or the square root (2).
template <int root>
inline float Root(float x) {
  if constexpr (root == 3) {
    return CubeRoot(x);
  } else {
    return std::sqrt(x);
  }
}

// The per-step scalars, in the order of the `scalars` argument.
struct Coefficients {
  float decay1, weight1, decay2, weight2;  // β₁, w₁, β₂, w₂
  float scale, linear, damping, threshold;  // c, ℓ, ε, τ
};

// One entry's statistics and metric: V, U (updated, 0 first on a restart)
// and P = root(c U) + ε.
template <int root, bool restart>
inline void Entry(const Coefficients& c, float g, float v_in, float u_in,
                  float& v, float& u, float& p) {
  v = (restart ? 0.0f : c.decay1 * v_in) + c.weight1 * g;
  u = (restart ? 0.0f : c.decay2 * u_in) + c.weight2 * (g * g);
  p = Root<root>(c.scale * u) + c.damping;
}

}  // namespace ramda_optax

#endif  // RAMDA_OPTAX_CSRC_MOMENTS_H_
