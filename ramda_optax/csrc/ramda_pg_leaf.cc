// The paper's inexact proximal-gradient solve of one group-lasso leaf, with
// its per-leaf stopping rule, by blocks of groups kept in cache; alone
// (RamdaPgLeaf, given a, v and P) or as the optimizer's whole step
// (RamdaPgStep, given g and the statistics V, U of moments.h, from which
// its first sweep forms V, U and its every sweep a, v and P); or, on a
// shard of a leaf's groups, the whole step's sweeps one call at a time
// (RamdaPgSweep), their groups' Q gathered by the caller for the test
// (RamdaPgStop).
//
// The leaf is viewed as (A, G, B), group g being x[:, g, :]. For
//
//   Q(θ) = <v, θ − a> + ½‖θ − a‖²_P + τ Σ_g √|g| ‖θ_g‖,
//
// a group is screened (θ̂_g = 0) when ‖P a − v‖_g <= κ = τ √|g|; the others
// start at z⁰ and iterate, with η_g = 1/max_g P,
//
//   z ← prox_{η_g κ}(z − η_g (v + P (z − a))),
//
// and the leaf stops after iteration j >= 2 once
// (Q_{j−1} − Q_j)/(|Q_j| + 1) < rtol, Q summed over the groups not screened,
// or after max_iters. The test needs the whole leaf's Q at every iteration,
// while a block's iterations need nothing from other blocks. So the leaf
// runs in chunks of iterations: every block runs the chunk's iterations in
// cache, recording its Q after each, and writes its last iterate to a
// second buffer; the blocks' records, summed in block order, then give the
// leaf's test (the same sums whatever the chunks). Where the leaf stops
// inside a chunk, its blocks rerun from the chunk's first iterate, kept in
// the other buffer, to the stopping iteration (a first chunk aimed at a
// remembered stop keeps every iterate about it instead: Solve). While a
// block iterates, it prefetches the block its thread runs next. One pass
// over a group's entries makes an iteration: it scales the previous
// gradient step by the group's prox factor, adds the entries' terms of Q
// to the group's sum, and takes the next gradient step. The whole step
// updates V and U in its first sweep only, and its later sweeps read them
// back: its subproblem is never written out.
//
// References: Huang & Lee, NeurIPS 2024 (arXiv 2403.14398), Algorithm 2 and
// App. A.1. The arithmetic follows ramda_optax's XLA path
// (solvers.PGSolver, regularizers.GroupNorm.prox, statistics).

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#ifdef __AVX__
#include <immintrin.h>
#endif

#include "moments.h"
#include "parallel.h"
#include "step_binding.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using ramda_optax::Coefficients;
using ramda_optax::Entry;
using ramda_optax::ParallelFor;
using ramda_optax::Root;

struct Leaf {
  int64_t rows, groups, cols, block;  // (A, G, B), groups per block
  float kappa;                        // κ = τ √|g|
  const float* start;                 // z⁰
  uint8_t* active;                    // per group: not screened
  float* step;                        // per group: η_g (0 where max P <= 0)
};

// The subproblem's arrays a, v and P, given (RamdaPgLeaf).
struct Given {
  const float *a, *v, *p;

  std::array<const float*, 4> Streams(bool) const {
    return {a, v, p, nullptr};
  }

  // Copies `n` entries at `at` of a, v and P into a block's scratch.
  void Fill(bool, int64_t at, int64_t n, float* a_s, float* v_s,
            float* p_s) const {
    std::memcpy(a_s, a + at, n * sizeof(float));
    std::memcpy(v_s, v + at, n * sizeof(float));
    std::memcpy(p_s, p + at, n * sizeof(float));
  }
};

// The statistics of moments.h (RamdaPgStep), root and restart fixed (a
// select between loads in the loop would keep it from vectorising). The
// first sweep updates V and U from g into their outputs (and W⁰ ← W on a
// restart); every sweep forms a, v = ℓ V and P = root(c U) + ε, the later
// ones from the outputs, to the same floats.
template <int root, bool restart>
struct FromMoments {
  Coefficients k;
  const float *grad, *v_in, *u_in;
  const float* a;  // W on a restart, else W⁰
  float *v_out, *u_out;
  float* anchor_out;  // W⁰'s buffer, or null without restarts

  std::array<const float*, 4> Streams(bool first) const {
    if (first) return {a, grad, v_in, u_in};
    return {a, v_out, u_out, nullptr};
  }

  void Fill(bool first, int64_t at, int64_t n, float* a_s, float* v_s,
            float* p_s) const {
    std::memcpy(a_s, a + at, n * sizeof(float));
    if (first) {
      const float *g = grad + at, *v_old = v_in + at, *u_old = u_in + at;
      float *v_new = v_out + at, *u_new = u_out + at;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) {
        float v, u;
        Entry<root, restart>(k, g[j], v_old[j], u_old[j], v, u, p_s[j]);
        v_new[j] = v;
        u_new[j] = u;
        v_s[j] = k.linear * v;
      }
      if (restart && anchor_out != nullptr) {
        std::memcpy(anchor_out + at, a + at, n * sizeof(float));
      }
      return;
    }
    const float *v = v_out + at, *u = u_out + at;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      v_s[j] = k.linear * v[j];
      p_s[j] = Root<root>(k.scale * u[j]) + k.damping;
    }
  }
};

// A thread's block of groups in cache, each group's entries contiguous,
// kept between calls (new scratch would be faulted in page by page).
struct Scratch {
  std::vector<float> a, v, p, y;

  static Scratch& OfThread(int64_t entries) {
    thread_local Scratch s;
    for (auto* x : {&s.a, &s.v, &s.p, &s.y}) {
      if (static_cast<int64_t>(x->size()) < entries) x->resize(entries);
    }
    return s;
  }
};

// Gathers groups [g0, g1) of a, v, P (from `source`; `first` on the step's
// first sweep) and the iterate `from` into scratch. With `screen`, `from`
// is z⁰: the groups' screening and steps are set, and a screened group
// starts (and stays) at 0.
template <bool screen, typename Source>
void Gather(const Leaf& leaf, const Source& source, bool first, int64_t g0,
            int64_t g1, const float* from, Scratch& s) {
  const int64_t n = g1 - g0, per = leaf.rows * leaf.cols, cols = leaf.cols;
  std::vector<float> b2(screen ? n : 0, 0.0f), pmax(screen ? n : 0, 0.0f);
  // The block's runs (A per array) are short (of n·B entries) for the
  // hardware prefetcher to ramp up on each: asking for all of them first
  // took a sweep of VGG19's largest leaf from 4.3 to 3.3 ms.
  const auto streams = source.Streams(first);
  for (int64_t row = 0; row < leaf.rows; ++row) {
    const int64_t at = (row * leaf.groups + g0) * cols;
    for (const float* x : streams) {
      if (x == nullptr) continue;
      const char* bytes = reinterpret_cast<const char*>(x + at);
      for (int64_t o = 0; o < n * cols * 4; o += 64) {
        __builtin_prefetch(bytes + o);
      }
    }
    const char* bytes = reinterpret_cast<const char*>(from + at);
    for (int64_t o = 0; o < n * cols * 4; o += 64) {
      __builtin_prefetch(bytes + o);
    }
  }
  for (int64_t row = 0; row < leaf.rows; ++row) {
    for (int64_t k = 0; k < n; ++k) {
      const int64_t at = (row * leaf.groups + g0 + k) * cols;
      const int64_t to = k * per + row * cols;
      float *a = &s.a[to], *v = &s.v[to], *p = &s.p[to];
      source.Fill(first, at, cols, a, v, p);
      std::memcpy(&s.y[to], from + at, cols * sizeof(float));
      if constexpr (screen) {
        float sum = 0, most = 0;
#pragma omp simd reduction(+ : sum) reduction(max : most)
        for (int64_t j = 0; j < cols; ++j) {
          const float b = p[j] * a[j] - v[j];
          sum += b * b;
          most = most > p[j] ? most : p[j];
        }
        b2[k] += sum;
        pmax[k] = std::max(pmax[k], most);
      }
    }
  }
  if constexpr (screen) {
    for (int64_t k = 0; k < n; ++k) {
      leaf.active[g0 + k] = std::sqrt(b2[k]) > leaf.kappa;
      leaf.step[g0 + k] = pmax[k] > 0 ? 1.0f / pmax[k] : 0.0f;
      if (!leaf.active[g0 + k]) {
        std::fill(&s.y[k * per], &s.y[(k + 1) * per], 0.0f);
      }
    }
  }
}

// The lines of the block of groups a thread runs next, in its streams'
// rows, prefetched into the L2 a few at a time (Issue) while the thread
// iterates on the current block, so that its reads from memory overlap
// the iterations instead of following them.
class Ahead {
 public:
  Ahead() = default;  // nothing to prefetch

  // Groups [g0, g1) of `streams` (null ones skipped), spread over `calls`
  // calls of Issue.
  Ahead(const std::array<const float*, 5>& streams, const Leaf& leaf,
        int64_t g0, int64_t g1, int64_t calls)
      : streams_(streams), rows_(leaf.rows), stride_(leaf.groups * leaf.cols),
        first_(g0 * leaf.cols), bytes_((g1 - g0) * leaf.cols * 4) {
    int64_t present = 0;
    for (const float* x : streams_) present += x != nullptr;
    const int64_t lines = rows_ * present * ((bytes_ + 63) / 64);
    per_call_ = calls > 0 ? (lines + calls - 1) / calls : lines;
    Skip();
  }

  void Issue() {
    for (int64_t k = 0; k < per_call_ && row_ < rows_; ++k) {
      const char* line = reinterpret_cast<const char*>(
          streams_[stream_] + row_ * stride_ + first_);
      __builtin_prefetch(line + offset_, 0, 2);
      offset_ += 64;
      if (offset_ >= bytes_) {
        offset_ = 0;
        ++stream_;
        Skip();
      }
    }
  }

 private:
  // Moves to the next stream present, row by row.
  void Skip() {
    while (row_ < rows_) {
      for (; stream_ < 5; ++stream_) {
        if (streams_[stream_] != nullptr) return;
      }
      stream_ = 0;
      ++row_;
    }
  }

  std::array<const float*, 5> streams_{};
  int64_t rows_ = 0, stride_ = 0, first_ = 0, bytes_ = 0, per_call_ = 0;
  int64_t row_ = 0, stream_ = 0, offset_ = 0;
};

// Entries of a pass between two calls of Ahead::Issue. Each segment ends
// in a reduction of its sums: on VGG19's largest leaf the step's sweep of
// 40 iterations took 10.2 ms with segments of 4096 entries, 10.9 ms with
// 1024 and 11.8 ms with 256.
constexpr int64_t kSegment = 4096;
// The passes of a group over which a block spreads the prefetches of the
// next: its first four. With segments of 1024 entries, the solve's sweep
// of 40 iterations on VGG19's largest leaf took 9.9 to 10.2 ms so, against
// 10.3 to 10.6 ms with the prefetches spread over all 41 passes; with
// 4096, the step's sweep took 10.2 to 10.4 ms over two, four or eight.
constexpr int64_t kAheadPasses = 4;

// Entries [i, e) of a pass (see Pass): adds their terms of 2Q to `qs` and,
// unless `last`, their ‖y‖² to `ys`, one entry at a time. The products
// round once where they fuse into a sum (fmaf), z = c y rounds alone: a
// chunk's last z, written and read back, is what the next pass would have
// formed.
template <bool last>
inline void Entries(float c, float step, int64_t i, int64_t e, const float* a,
                    const float* v, const float* p, float* y, float& qs,
                    float& ys) {
  float q = 0, n = 0;
#pragma omp simd reduction(+ : q, n)
  for (int64_t j = i; j < e; ++j) {
    const float z = c * y[j];
    const float d = z - a[j];
    const float g = __builtin_fmaf(p[j], d, v[j]);
    q = __builtin_fmaf(d, v[j] + g, q);
    if constexpr (last) {
      y[j] = z;
    } else {
      const float next = __builtin_fmaf(step, g, z);
      n = __builtin_fmaf(next, next, n);
      y[j] = next;
    }
  }
  qs += q;
  ys += n;
}

#if defined(__AVX2__) && defined(__FMA__)
// The sum of a vector's lanes, in a fixed order.
inline float LaneSum(__m256 x) {
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}
#endif

// Entries [s, e) of a pass, their sums into `qs` and `ys`: with AVX2, 32
// at a time into four vectors of partial sums, the rest by Entries. With
// one vector per sum, as `omp simd reduction` compiles it, each step also
// stores both sums to the stack and waits on their last additions: in one
// process of benchmarks.kernel_ab, RAMDA's VGG19 step with the paper's
// rule took 6.83x and 7.18x Adam's against 7.34x and 7.49x so, ProxGen's
// 9.30x against 10.55x.
template <bool last>
inline void Segment(float c, float step, int64_t s, int64_t e, const float* a,
                    const float* v, const float* p, float* y, float& qs,
                    float& ys) {
  int64_t i = s;
  qs = ys = 0;
#if defined(__AVX2__) && defined(__FMA__)
  if (e - s >= 32) {
    const __m256 scale = _mm256_set1_ps(c), eta = _mm256_set1_ps(step);
    __m256 q[4], n[4];
    for (int u = 0; u < 4; ++u) q[u] = n[u] = _mm256_setzero_ps();
    for (; i + 32 <= e; i += 32) {
      for (int u = 0; u < 4; ++u) {
        const int64_t j = i + 8 * u;
        const __m256 vj = _mm256_loadu_ps(v + j);
        const __m256 z = _mm256_mul_ps(scale, _mm256_loadu_ps(y + j));
        const __m256 d = _mm256_sub_ps(z, _mm256_loadu_ps(a + j));
        const __m256 g = _mm256_fmadd_ps(_mm256_loadu_ps(p + j), d, vj);
        q[u] = _mm256_fmadd_ps(d, _mm256_add_ps(vj, g), q[u]);
        if constexpr (last) {
          _mm256_storeu_ps(y + j, z);
        } else {
          const __m256 next = _mm256_fmadd_ps(eta, g, z);
          n[u] = _mm256_fmadd_ps(next, next, n[u]);
          _mm256_storeu_ps(y + j, next);
        }
      }
    }
    qs = LaneSum(_mm256_add_ps(_mm256_add_ps(q[0], q[1]),
                               _mm256_add_ps(q[2], q[3])));
    ys = LaneSum(_mm256_add_ps(_mm256_add_ps(n[0], n[1]),
                               _mm256_add_ps(n[2], n[3])));
  }
#endif
  Entries<last>(c, step, i, e, a, v, p, y, qs, ys);
}

// One pass over a group's entries: z = c y (the previous step's iterate)
// and its term of Q, ½ d (v + g) with d = z − a and the gradient
// g = v + P d, then (unless `last`) the next gradient step y ← z − η g in
// y's place, else z in y's place. Returns the group's smooth part of Q(z)
// and sets `norm2` to ‖y‖² (unless `last`); both are summed by segments
// of kSegment entries (Segment), after each of which `ahead` issues its
// share.
template <bool last>
inline float Pass(float c, float eta, int64_t per, const float* a,
                  const float* v, const float* p, float* y, float& norm2,
                  Ahead& ahead) {
  float q = 0, y2 = 0;
  for (int64_t s = 0; s < per; s += kSegment) {
    float qs, ys;
    Segment<last>(c, -eta, s, std::min(per, s + kSegment), a, v, p, y, qs,
                  ys);
    q += qs;
    y2 += ys;
    ahead.Issue();
  }
  norm2 = y2;
  return 0.5f * q;
}

// The prox factor of a gradient step y with ‖y‖ = norm: z = y max(0,
// ‖y‖ − η κ)/‖y‖ (0 where ‖y‖ = 0), and ψ's part of Q, τ √|g| ‖z‖.
inline float Shrink(const Leaf& leaf, float eta, float norm, float& penalty) {
  const float shrunk = std::max(norm - eta * leaf.kappa, 0.0f);
  penalty = leaf.kappa * shrunk;
  return norm > 0 ? shrunk / norm : 0.0f;
}

// Writes c times n floats of src at dst, past the caches where it can
// (32-byte aligned rows, x86 with AVX): a sweep's output is read again only
// by the next sweep, from memory, and a cached store would first read its
// line (streaming them took a one-iteration sweep of VGG19's largest leaf
// from 3.46 to 3.01 ms). Done() orders these stores before the block is
// reported done.
inline void Store(float* dst, const float* src, int64_t n, float c = 1.0f) {
#ifdef __AVX__
  if (reinterpret_cast<uintptr_t>(dst) % 32 == 0 && n % 8 == 0) {
    const __m256 scale = _mm256_set1_ps(c);
    for (int64_t j = 0; j < n; j += 8) {
      _mm256_stream_ps(dst + j, _mm256_mul_ps(scale, _mm256_loadu_ps(src + j)));
    }
    return;
  }
#endif
  for (int64_t j = 0; j < n; ++j) dst[j] = c * src[j];
}

inline void Done() {
#ifdef __AVX__
  _mm_sfence();
#endif
}

// The iterates a sweep keeps besides its last: the one after iteration
// first + i in at[i].
struct Kept {
  int64_t first = 0;
  std::vector<float*> at;

  // The buffer of the iterate after iteration j, or null.
  float* After(int64_t j) const {
    const int64_t i = j - first;
    return i >= 0 && i < static_cast<int64_t>(at.size()) ? at[i] : nullptr;
  }
};

// Runs `count` iterations of groups [g0, g1) from the iterate `from` and
// writes the last to `to`, and those that `kept` names to its buffers;
// q[i] gets the block's Q after iteration i + 1, summed over
// its groups in order (screened groups add nothing), or, with `per_group`,
// q[k·count + i] group k's. Screened groups are written as 0. Meanwhile it
// prefetches the thread's next block, groups [n0, n1) (none where n0 <
// 0).
template <bool screen, typename Source>
void RunBlock(const Leaf& leaf, const Source& source, bool first, int64_t g0,
              int64_t g1, int64_t n0, int64_t n1, const float* from,
              float* to, int64_t count, const Kept& kept, double* q,
              bool per_group, Scratch& s) {
  Gather<screen>(leaf, source, first, g0, g1, from, s);
  const int64_t n = g1 - g0, per = leaf.rows * leaf.cols, cols = leaf.cols;
  Ahead ahead;
  if (n0 >= 0) {
    const auto streams = source.Streams(first);
    const int64_t active = std::count_if(
        leaf.active + g0, leaf.active + g1, [](uint8_t x) { return x != 0; });
    ahead = Ahead({streams[0], streams[1], streams[2], streams[3], from},
                  leaf, n0, n1,
                  active * std::min<int64_t>(count + 1, kAheadPasses) *
                      ((per + kSegment - 1) / kSegment));
  }
  // Writes c times group k's scratch iterate at its rows of `x`.
  auto write = [&](float* x, int64_t k, float c) {
    for (int64_t row = 0; row < leaf.rows; ++row) {
      Store(x + (row * leaf.groups + g0 + k) * cols,
            &s.y[k * per + row * cols], cols, c);
    }
  };
  std::fill(q, q + (per_group ? n : 1) * count, 0.0);
  for (int64_t k = 0; k < n; ++k) {
    float* y = &s.y[k * per];
    if (!leaf.active[g0 + k]) {
      if constexpr (!screen) std::fill(y, y + per, 0.0f);
      for (float* x : kept.at) write(x, k, 1.0f);  // 0 from the start
      continue;
    }
    double* qk = per_group ? q + k * count : q;
    const float eta = leaf.step[g0 + k];
    const float *a = &s.a[k * per], *v = &s.v[k * per], *p = &s.p[k * per];
    float c = 1, penalty = 0, norm2;
    for (int64_t i = 0; i <= count; ++i) {
      const float smooth =
          i < count ? Pass<false>(c, eta, per, a, v, p, y, norm2, ahead)
                    : Pass<true>(c, eta, per, a, v, p, y, norm2, ahead);
      if (i > 0) qk[i - 1] += static_cast<double>(smooth) + penalty;
      if (i < count) c = Shrink(leaf, eta, std::sqrt(norm2), penalty);
      // The iterate after iteration i + 1 is c y, as Pass<true> writes it.
      if (float* x = kept.After(i + 1)) write(x, k, c);
    }
  }
  for (int64_t k = 0; k < n; ++k) write(to, k, 1.0f);
  Done();
}

// Leaf-sized buffers kept between calls: a new one would be mapped and
// faulted in page by page at every step. Aligned() is a buffer's first
// 64-byte aligned float.
class BufferPool {
 public:
  static float* Aligned(std::vector<float>& buffer) {
    const uintptr_t at = reinterpret_cast<uintptr_t>(buffer.data());
    return buffer.data() + ((64 - at % 64) % 64) / sizeof(float);
  }

  std::unique_ptr<std::vector<float>> Take(int64_t size) {
    size += 64 / sizeof(float);
    std::unique_ptr<std::vector<float>> buffer;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        buffer = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (buffer == nullptr) buffer = std::make_unique<std::vector<float>>();
    if (static_cast<int64_t>(buffer->size()) < size) buffer->resize(size);
    return buffer;
  }

  void Give(std::unique_ptr<std::vector<float>> buffer) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(buffer));
  }

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<std::vector<float>>> free_;
};

BufferPool& Buffers() {
  static BufferPool* pool = new BufferPool();
  return *pool;
}

// Where the last two solves of a leaf of each view stopped, by (rows,
// groups, cols, max_iters), to aim the next solve's first chunk just past
// its stop. Stops move little from one step to the next, and early in
// training they fall at every step, at much the same rate for every leaf:
// a view's hint is its last stop, scaled by how far the stop of the
// latest solve, of another view, moved from that view's solve before,
// where it moved by more than the steady noise of stops (a factor
// kSteady). Only the chunks depend on it: θ̂ and the iterations are the
// same floats whatever the chunks.
class StopHints {
 public:
  using Key = std::array<int64_t, 4>;

  // Moves of a stop within (kSteady, 1/kSteady) leave other views' hints
  // as they were: in the LeNet run on MNIST of benchmarks.solver_accuracy
  // (150 steps of the paper's rule, stops of 8 to 100 iterations), 97% of
  // the moves from one step to the next stayed within it.
  static constexpr double kSteady = 0.8;

  // The hint for a solve of `key`'s view: 0 for none.
  int64_t Get(const Key& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto own = stops_.find(key);
    const auto latest = stops_.find(latest_);
    if (latest == stops_.end()) return 0;
    if (own == stops_.end()) return latest->second[0];
    const auto [now, before] = latest->second;
    if (own == latest || before == 0) return own->second[0];
    const double move = static_cast<double>(now) / before;
    if (move > kSteady && move < 1 / kSteady) return own->second[0];
    return std::max<int64_t>(1, std::llround(own->second[0] * move));
  }

  // A run of solves of one view (the same shape repeated in a network)
  // keeps the stop before the run as the one it moved from: each is the
  // next one's hint, and the run's move is from step to step.
  void Set(const Key& key, int64_t stop) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& stops = stops_[key];
    stops = {stop, key == latest_ ? stops[1] : stops[0]};
    latest_ = key;
  }

 private:
  std::mutex mutex_;
  // Per view, its last stop and the one before.
  std::map<Key, std::array<int64_t, 2>> stops_;
  Key latest_{};
};

StopHints& Hints() {
  static StopHints* hints = new StopHints();
  return *hints;
}

// The bytes that a window's kept iterates may take beside the output.
constexpr int64_t kWindowBytes = int64_t{256} << 20;

// The window m about a remembered stop h of a leaf of `size` floats: the
// first chunk runs to h + m and keeps each iterate from the one after
// iteration h − m. m = max(2, h/16), at most 4: a window of at most 9
// iterates, 8 of them in buffers beside the output (in the early training
// of VGG19's problem, step_time's early regime, 85% of the entries stopped
// within it); and at most what kWindowBytes holds, down to 0 (h's iterate
// alone) for a leaf of over 128 MiB.
int64_t Margin(int64_t hint, int64_t size) {
  const int64_t most = kWindowBytes / (2 * size * int64_t{sizeof(float)});
  return std::min(std::clamp<int64_t>(hint / 16, 2, 4), most);
}

// The paper's test after iteration j >= 1 of Q_j = `now`, Q_{j−1} = `before`
// (read only where j >= 2).
inline bool Stops(int64_t j, float before, float now, float rtol,
                  int64_t max_iters) {
  return (j >= 2 && (before - now) / (std::fabs(now) + 1.0f) < rtol) ||
         j == max_iters;
}

// The solve of a leaf into `out`, its subproblem from `source`; returns the
// iterations (0 where every group is screened: θ̂ = 0). Without a
// remembered stop it runs `chunk` iterations at a time, and where the leaf
// stops inside a chunk, reruns that chunk to the stop. With one, h, its
// first chunk runs to h + m (m = Margin(h, size)) and keeps every iterate
// from h − m on, h's in `out`: a stop within m of h costs one sweep (and a
// copy of the kept iterate where it is not h's), which a second would cost
// where only the chunk's first iterate were kept. A stop before h − m
// reruns from z⁰, one after h + m goes on by chunks.
template <typename Source>
int64_t Solve(ffi::ThreadPool& pool, const Leaf& leaf, const Source& source,
              float* out, int64_t max_iters, int64_t chunk, float rtol,
              bool remember) {
  const int64_t rows = leaf.rows, groups = leaf.groups, cols = leaf.cols;
  const int64_t size = rows * groups * cols, per = rows * cols;
  const int64_t blocks = (groups + leaf.block - 1) / leaf.block;
  // Buffers taken from the pool, given back at the end.
  std::vector<std::unique_ptr<std::vector<float>>> taken;
  auto take = [&]() {
    taken.push_back(Buffers().Take(size));
    return BufferPool::Aligned(*taken.back());
  };
  // Per block, its Q after each iteration of the current chunk.
  std::vector<double> records;
  int64_t sweeps = 0;
  // Runs `count` iterations of every block from `from` into `to`, keeping
  // the iterates that `kept` names.
  auto sweep = [&](const float* from, float* to, int64_t count, bool screen,
                   const Kept& kept) {
    records.assign(blocks * count, 0.0);
    const bool first = sweeps++ == 0;
    ParallelFor(pool, blocks, [&]() {
      Scratch* s = &Scratch::OfThread(per * leaf.block);
      return [&, s](int64_t i, int64_t next) {
        const int64_t g0 = i * leaf.block;
        const int64_t g1 = std::min(groups, g0 + leaf.block);
        const int64_t n0 = next < 0 ? -1 : next * leaf.block;
        const int64_t n1 = std::min(groups, n0 + leaf.block);
        double* q = &records[i * count];
        if (screen) {
          RunBlock<true>(leaf, source, first, g0, g1, n0, n1, from, to, count,
                         kept, q, false, *s);
        } else {
          RunBlock<false>(leaf, source, first, g0, g1, n0, n1, from, to,
                          count, kept, q, false, *s);
        }
      };
    });
  };
  const StopHints::Key key{rows, groups, cols, max_iters};
  const int64_t hint = remember ? Hints().Get(key) : 0;
  std::vector<float> q;  // the leaf's Q after each iteration
  int64_t stop = 0;
  // Appends the records of a chunk of `count` iterations to q, up to the
  // stop where the leaf stops in it.
  auto test = [&](int64_t count) {
    for (int64_t i = 0; i < count && stop == 0; ++i) {
      double sum = 0;
      for (int64_t b = 0; b < blocks; ++b) sum += records[b * count + i];
      q.push_back(static_cast<float>(sum));
      const int64_t j = q.size();
      if (Stops(j, j >= 2 ? q[j - 2] : 0.0f, q[j - 1], rtol, max_iters)) {
        stop = j;
      }
    }
  };
  auto screened = [&]() {
    return std::none_of(leaf.active, leaf.active + groups,
                        [](uint8_t x) { return x != 0; });
  };
  const float* from = leaf.start;
  const float* result = out;
  bool solved = false;
  if (hint > 0) {
    const int64_t margin = Margin(hint, size);
    const int64_t count = std::min(hint + margin, max_iters);
    const int64_t low = std::clamp<int64_t>(hint - margin, 1, count);
    const int64_t aim = std::min(hint, count);
    Kept kept{low, {}};
    for (int64_t j = low; j < count; ++j) {
      kept.at.push_back(j == aim ? out : take());
    }
    float* last = count == aim ? out : take();
    sweep(from, last, count, true, kept);
    solved = true;
    if (screened()) {
      result = last;  // θ̂ = 0, no iteration
    } else if (test(count); stop >= low) {
      result = stop == count ? last : kept.After(stop);
    } else if (stop > 0) {
      sweep(from, out, stop, true, Kept{});
    } else {
      from = last;
      solved = false;
    }
  }
  float* spare = nullptr;  // a buffer that is neither `out` nor kept
  while (!solved) {
    const int64_t done = q.size();
    const int64_t count = std::min(chunk, max_iters - done);
    float* to = from != out ? out : spare != nullptr ? spare : spare = take();
    sweep(from, to, count, done == 0, Kept{});
    if (done == 0 && screened()) {
      result = to;  // θ̂ = 0, no iteration
      break;
    }
    test(count);
    if (stop == 0) {
      from = to;
    } else if (stop < done + count) {
      // Rerun to the stop: in place where `from` is `out`, since a block
      // gathers its groups before it writes them and no other block's.
      sweep(from, out, stop - done, done == 0, Kept{});
      solved = true;
    } else {
      result = to;
      solved = true;
    }
  }
  if (remember && stop > 0) Hints().Set(key, stop);
  if (result != out) std::memcpy(out, result, size * sizeof(float));
  for (auto& buffer : taken) Buffers().Give(std::move(buffer));
  return stop;
}

bool ValidView(int64_t rows, int64_t groups, int64_t cols, int64_t block,
               int64_t max_iters, int64_t chunk, size_t entries) {
  return rows >= 1 && groups >= 1 && cols >= 1 && block >= 1 &&
         max_iters >= 1 && chunk >= 1 &&
         entries == static_cast<size_t>(rows * groups * cols);
}

ffi::Error PgLeaf(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a,
                  ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> p,
                  ffi::Buffer<ffi::F32> start, ffi::Buffer<ffi::F32> tau,
                  ffi::ResultBuffer<ffi::F32> theta,
                  ffi::ResultBuffer<ffi::S32> iterations, int64_t rows,
                  int64_t groups, int64_t cols, int64_t block,
                  int64_t max_iters, int64_t chunk, float rtol,
                  float group_weight, bool remember) {
  if (!ValidView(rows, groups, cols, block, max_iters, chunk,
                 a.element_count()) ||
      tau.element_count() != 1) {
    return ffi::Error::InvalidArgument("ramda_pg_leaf: bad arguments");
  }
  std::vector<uint8_t> active(groups);
  std::vector<float> step(groups);
  const Leaf leaf{rows, groups, cols, std::min(block, groups),
                  *tau.typed_data() * group_weight, start.typed_data(),
                  active.data(), step.data()};
  const Given given{a.typed_data(), v.typed_data(), p.typed_data()};
  *iterations->typed_data() = static_cast<int32_t>(Solve(
      pool, leaf, given, theta->typed_data(), max_iters, chunk, rtol,
      remember));
  return ffi::Error::Success();
}

// Without a threshold the step's solution is θ̂ = a − v/P (a where P = 0),
// written in the statistics' pass.
template <typename Source>
void ClosedForm(ffi::ThreadPool& pool, const Leaf& leaf, const Source& source,
                float* out) {
  const int64_t cols = leaf.cols, per = leaf.rows * cols;
  ParallelFor(pool, (leaf.groups + leaf.block - 1) / leaf.block, [&]() {
    Scratch* s = &Scratch::OfThread(per * leaf.block);
    return [&, s](int64_t i) {
      const int64_t g0 = i * leaf.block;
      const int64_t g1 = std::min(leaf.groups, g0 + leaf.block);
      const int64_t n = (g1 - g0) * cols;
      for (int64_t row = 0; row < leaf.rows; ++row) {
        const int64_t at = (row * leaf.groups + g0) * cols;
        float *a = s->a.data(), *v = s->v.data(), *p = s->p.data();
        source.Fill(true, at, n, a, v, p);
        float* theta = out + at;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) {
          theta[j] = a[j] - (p[j] > 0 ? v[j] / p[j] : 0.0f);
        }
      }
    };
  });
}

// The step for the statistics' root and restart.
template <int root, bool restart>
int64_t Step(ffi::ThreadPool& pool, const Leaf& leaf,
             const FromMoments<root, restart>& source, float* out,
             int64_t max_iters, int64_t chunk, float rtol, bool remember) {
  if (!(source.k.threshold > 0)) {
    ClosedForm(pool, leaf, source, out);
    return 0;
  }
  return Solve(pool, leaf, source, out, max_iters, chunk, rtol, remember);
}

// W⁰'s output: null without restarts (an empty buffer); with them W⁰'s
// own buffer (aliased) or one of its own, which a step without a restart
// gets W⁰ in.
float* NewAnchor(ffi::ResultBuffer<ffi::F32>& anchor_out,
                 const ffi::Buffer<ffi::F32>& anchor, bool restarted) {
  if (anchor_out->element_count() == 0) return nullptr;
  float* out = anchor_out->typed_data();
  if (!restarted && out != anchor.typed_data()) {
    std::memcpy(out, anchor.typed_data(), anchor.size_bytes());
  }
  return out;
}

// run(source) for the FromMoments source of `root` (2 or 3) and the
// restart, its coefficients and inputs set; its outputs are run's to set.
template <typename Run>
auto WithMoments(int64_t root, bool restarted, const Coefficients& k,
                 const float* grad, const float* v, const float* u,
                 const float* a, Run run) {
  auto bound = [&](auto source) {
    source.k = k;
    source.grad = grad;
    source.v_in = v;
    source.u_in = u;
    source.a = a;
    return run(source);
  };
  if (root == 3) {
    return restarted ? bound(FromMoments<3, true>{})
                     : bound(FromMoments<3, false>{});
  }
  return restarted ? bound(FromMoments<2, true>{})
                   : bound(FromMoments<2, false>{});
}

ffi::Error PgStep(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> grad,
                  ffi::Buffer<ffi::F32> params, ffi::Buffer<ffi::F32> v,
                  ffi::Buffer<ffi::F32> u, ffi::Buffer<ffi::F32> anchor,
                  ffi::Buffer<ffi::F32> start, ffi::Buffer<ffi::F32> scalars,
                  ffi::Buffer<ffi::PRED> restart,
                  ffi::ResultBuffer<ffi::F32> v_out,
                  ffi::ResultBuffer<ffi::F32> u_out,
                  ffi::ResultBuffer<ffi::F32> anchor_out,
                  ffi::ResultBuffer<ffi::F32> theta,
                  ffi::ResultBuffer<ffi::S32> iterations, int64_t rows,
                  int64_t groups, int64_t cols, int64_t block,
                  int64_t max_iters, int64_t chunk, float rtol,
                  float group_weight, bool remember, int64_t root) {
  if (!ValidView(rows, groups, cols, block, max_iters, chunk,
                 grad.element_count()) ||
      scalars.element_count() != 8 || (root != 2 && root != 3)) {
    return ffi::Error::InvalidArgument("ramda_pg_step: bad arguments");
  }
  const float* sc = scalars.typed_data();
  const Coefficients k{sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6], sc[7]};
  const bool restarted = *restart.typed_data();
  float* anchor_new = NewAnchor(anchor_out, anchor, restarted);
  std::vector<uint8_t> active(groups);
  std::vector<float> step(groups);
  const Leaf leaf{rows, groups, cols, std::min(block, groups),
                  k.threshold * group_weight, start.typed_data(),
                  active.data(), step.data()};
  const int64_t stop = WithMoments(
      root, restarted, k, grad.typed_data(), v.typed_data(), u.typed_data(),
      restarted ? params.typed_data() : anchor.typed_data(),
      [&](auto source) {
        source.v_out = v_out->typed_data();
        source.u_out = u_out->typed_data();
        source.anchor_out = anchor_new;
        return Step(pool, leaf, source, theta->typed_data(), max_iters,
                    chunk, rtol, remember);
      });
  *iterations->typed_data() = static_cast<int32_t>(stop);
  return ffi::Error::Success();
}

// One sweep of a solve on a shard of a leaf whose groups other devices
// share the test of: `count` iterations of every block from the iterate
// `from` into `to`, keeping the iterate after iteration `snap` (0: none)
// in `kept`, each group's Q after each iteration in `records` (groups ×
// count). The first sweep (`first`) screens the groups and sets their
// steps; a later one takes them from `leaf`.
template <typename Source>
void Sweep(ffi::ThreadPool& pool, const Leaf& leaf, const Source& source,
           bool first, const float* from, float* to, int64_t count,
           int64_t snap, float* kept, double* records) {
  const int64_t blocks = (leaf.groups + leaf.block - 1) / leaf.block;
  const int64_t per = leaf.rows * leaf.cols;
  const Kept keep = snap > 0 ? Kept{snap, {kept}} : Kept{};
  ParallelFor(pool, blocks, [&]() {
    Scratch* s = &Scratch::OfThread(per * leaf.block);
    return [&, s](int64_t i, int64_t next) {
      const int64_t g0 = i * leaf.block;
      const int64_t g1 = std::min(leaf.groups, g0 + leaf.block);
      const int64_t n0 = next < 0 ? -1 : next * leaf.block;
      const int64_t n1 = std::min(leaf.groups, n0 + leaf.block);
      double* q = records + g0 * count;
      if (first) {
        RunBlock<true>(leaf, source, true, g0, g1, n0, n1, from, to, count,
                       keep, q, true, *s);
      } else {
        RunBlock<false>(leaf, source, false, g0, g1, n0, n1, from, to, count,
                        keep, q, true, *s);
      }
    };
  });
}

// What the sweeps' handlers (RamdaPgSweep, RamdaPgLeafSweep) share: the
// checks, the groups' screening flags and steps (given to a later sweep,
// set by the first), the iterate kept after iteration `snap` (0: none; an
// empty `kept` keeps none), and the records, given back as groups × chunk
// doubles (pairs of 32-bit words), `chunk` their room for iterations.
// run(leaf, count, snap, kept, records) runs the sweep.
template <typename Run>
ffi::Error SweepCall(int64_t rows, int64_t groups, int64_t cols, int64_t block,
                     int64_t max_iters, int64_t chunk, size_t entries,
                     const ffi::Buffer<ffi::S32>& count_in,
                     const ffi::Buffer<ffi::S32>& snap_in, bool first,
                     float kappa, const float* from,
                     const ffi::Buffer<ffi::U8>& active_in,
                     const ffi::Buffer<ffi::F32>& step_in,
                     ffi::ResultBuffer<ffi::F32>& kept,
                     ffi::ResultBuffer<ffi::U32>& records,
                     ffi::ResultBuffer<ffi::U8>& active_out,
                     ffi::ResultBuffer<ffi::F32>& step_out, Run run) {
  const int64_t count = *count_in.typed_data();
  const int64_t snap = *snap_in.typed_data();
  const size_t n = static_cast<size_t>(groups);
  if (!ValidView(rows, groups, cols, block, max_iters, chunk, entries) ||
      count < 1 || count > chunk || snap < 0 || snap >= count ||
      (snap > 0 && kept->element_count() != entries) ||
      records->element_count() != 2 * n * chunk ||
      (first ? active_out->element_count() != n ||
                   step_out->element_count() != n
             : active_in.element_count() != n ||
                   step_in.element_count() != n)) {
    return ffi::Error::InvalidArgument("ramda_pg sweep: bad arguments");
  }
  std::vector<uint8_t> active(groups);
  std::vector<float> step(groups);
  if (!first) {
    std::memcpy(active.data(), active_in.typed_data(), groups);
    std::memcpy(step.data(), step_in.typed_data(), groups * sizeof(float));
  }
  const Leaf leaf{rows, groups, cols, std::min(block, groups), kappa, from,
                  active.data(), step.data()};
  std::vector<double> q(groups * count, 0.0);
  run(leaf, count, snap, snap > 0 ? kept->typed_data() : nullptr, q.data());
  double* out = reinterpret_cast<double*>(records->typed_data());
  std::fill(out, out + groups * chunk, 0.0);
  for (int64_t g = 0; g < groups; ++g) {
    std::memcpy(out + g * chunk, &q[g * count], count * sizeof(double));
  }
  if (first) {
    std::memcpy(active_out->typed_data(), active.data(), groups);
    std::memcpy(step_out->typed_data(), step.data(), groups * sizeof(float));
  }
  return ffi::Error::Success();
}

// A sweep of the whole step (RamdaPgSweep). The first updates V and U
// (and W⁰ on a restart) into its outputs; a later one takes the new V, U
// and W⁰ as its inputs. Without a threshold the first writes the closed
// form and screens every group.
ffi::Error PgSweep(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> grad,
                   ffi::Buffer<ffi::F32> params, ffi::Buffer<ffi::F32> v,
                   ffi::Buffer<ffi::F32> u, ffi::Buffer<ffi::F32> anchor,
                   ffi::Buffer<ffi::F32> from, ffi::Buffer<ffi::F32> scalars,
                   ffi::Buffer<ffi::PRED> restart,
                   ffi::Buffer<ffi::U8> active_in,
                   ffi::Buffer<ffi::F32> step_in,
                   ffi::Buffer<ffi::S32> count,
                   ffi::Buffer<ffi::S32> snap,
                   ffi::ResultBuffer<ffi::F32> v_out,
                   ffi::ResultBuffer<ffi::F32> u_out,
                   ffi::ResultBuffer<ffi::F32> anchor_out,
                   ffi::ResultBuffer<ffi::F32> to,
                   ffi::ResultBuffer<ffi::F32> kept,
                   ffi::ResultBuffer<ffi::U32> records,
                   ffi::ResultBuffer<ffi::U8> active_out,
                   ffi::ResultBuffer<ffi::F32> step_out, int64_t rows,
                   int64_t groups, int64_t cols, int64_t block,
                   int64_t max_iters, int64_t chunk, float group_weight,
                   int64_t root, bool first) {
  if (scalars.element_count() != 8 || (root != 2 && root != 3)) {
    return ffi::Error::InvalidArgument("ramda_pg_sweep: bad arguments");
  }
  const float* sc = scalars.typed_data();
  const Coefficients k{sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6], sc[7]};
  const bool restarted = first && *restart.typed_data();
  return SweepCall(
      rows, groups, cols, block, max_iters, chunk, grad.element_count(),
      count, snap, first, k.threshold * group_weight, from.typed_data(),
      active_in, step_in, kept, records, active_out, step_out,
      [&](const Leaf& leaf, int64_t iterations, int64_t after,
          float* keep, double* q) {
        float* anchor_new = first ? NewAnchor(anchor_out, anchor, restarted)
                                  : nullptr;
        WithMoments(
            root, restarted, k, grad.typed_data(), v.typed_data(),
            u.typed_data(),
            restarted ? params.typed_data() : anchor.typed_data(),
            [&](auto source) {
              // Past the first sweep, V and U given are the step's outputs.
              source.v_out = first ? v_out->typed_data()
                                   : const_cast<float*>(v.typed_data());
              source.u_out = first ? u_out->typed_data()
                                   : const_cast<float*>(u.typed_data());
              source.anchor_out = anchor_new;
              if (first && !(k.threshold > 0)) {
                ClosedForm(pool, leaf, source, to->typed_data());
                std::fill(leaf.active, leaf.active + leaf.groups, 0);
              } else {
                Sweep(pool, leaf, source, first, from.typed_data(),
                      to->typed_data(), iterations, after, keep, q);
              }
            });
      });
}

// A sweep of the solve alone (RamdaPgLeafSweep), given a, v and P.
ffi::Error PgLeafSweep(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a,
                       ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> p,
                       ffi::Buffer<ffi::F32> from, ffi::Buffer<ffi::F32> tau,
                       ffi::Buffer<ffi::U8> active_in,
                       ffi::Buffer<ffi::F32> step_in,
                       ffi::Buffer<ffi::S32> count,
                       ffi::Buffer<ffi::S32> snap,
                       ffi::ResultBuffer<ffi::F32> to,
                       ffi::ResultBuffer<ffi::F32> kept,
                       ffi::ResultBuffer<ffi::U32> records,
                       ffi::ResultBuffer<ffi::U8> active_out,
                       ffi::ResultBuffer<ffi::F32> step_out, int64_t rows,
                       int64_t groups, int64_t cols, int64_t block,
                       int64_t max_iters, int64_t chunk, float group_weight,
                       bool first) {
  if (tau.element_count() != 1) {
    return ffi::Error::InvalidArgument("ramda_pg_leaf_sweep: bad arguments");
  }
  const Given given{a.typed_data(), v.typed_data(), p.typed_data()};
  return SweepCall(
      rows, groups, cols, block, max_iters, chunk, a.element_count(), count,
      snap, first, *tau.typed_data() * group_weight, from.typed_data(),
      active_in, step_in, kept, records, active_out, step_out,
      [&](const Leaf& leaf, int64_t iterations, int64_t after,
          float* keep, double* q) {
        Sweep(pool, leaf, given, first, from.typed_data(), to->typed_data(),
              iterations, after, keep, q);
      });
}

// The paper's test on a chunk's records of the whole leaf (RamdaPgStop):
// each iteration's Q summed as the leaf's solve sums it (groups in order
// within blocks of `block` groups, then the blocks in order), tested from
// Q before the chunk (`before`, after iteration `done`). Gives the
// stopping iteration (0: none in the chunk) and the chunk's last Q.
ffi::Error PgStop(ffi::Buffer<ffi::U32> records, ffi::Buffer<ffi::S32> count,
                  ffi::Buffer<ffi::F32> before, ffi::Buffer<ffi::S32> done,
                  ffi::ResultBuffer<ffi::S32> stop,
                  ffi::ResultBuffer<ffi::F32> last, int64_t block,
                  int64_t max_iters, float rtol) {
  const auto dims = records.dimensions();
  if (dims.size() != 3 || dims[2] != 2 || block < 1) {
    return ffi::Error::InvalidArgument("ramda_pg_stop: bad arguments");
  }
  const int64_t groups = dims[0], chunk = dims[1];
  const int64_t n = std::min<int64_t>(*count.typed_data(), chunk);
  const double* q = reinterpret_cast<const double*>(records.typed_data());
  float prev = *before.typed_data();
  int64_t found = 0;
  for (int64_t i = 0; i < n && found == 0; ++i) {
    double sum = 0;
    for (int64_t g0 = 0; g0 < groups; g0 += block) {
      double part = 0;
      for (int64_t g = g0; g < std::min(groups, g0 + block); ++g) {
        part += q[g * chunk + i];
      }
      sum += part;
    }
    const float now = static_cast<float>(sum);
    const int64_t j = *done.typed_data() + i + 1;
    if (Stops(j, prev, now, rtol, max_iters)) found = j;
    prev = now;
  }
  *stop->typed_data() = static_cast<int32_t>(found);
  *last->typed_data() = prev;
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RamdaPgLeaf, PgLeaf,
                              ramda_optax::WithView(
                                  ffi::Ffi::Bind()
                                      .Ctx<ffi::ThreadPool>()
                                      .Arg<ffi::Buffer<ffi::F32>>()  // a
                                      .Arg<ffi::Buffer<ffi::F32>>()  // v
                                      .Arg<ffi::Buffer<ffi::F32>>()  // P
                                      .Arg<ffi::Buffer<ffi::F32>>()  // z⁰
                                      .Arg<ffi::Buffer<ffi::F32>>()  // τ
                                      .Ret<ffi::Buffer<ffi::F32>>()  // θ̂
                                      .Ret<ffi::Buffer<ffi::S32>>())  // iterations
                                  .Attr<int64_t>("chunk")
                                  .Attr<float>("rtol")
                                  .Attr<float>("group_weight")
                                  .Attr<bool>("remember"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(RamdaPgStep, PgStep,
                              ramda_optax::StepBinding()
                                  .Attr<int64_t>("chunk")
                                  .Attr<float>("rtol")
                                  .Attr<float>("group_weight")
                                  .Attr<bool>("remember")
                                  .Attr<int64_t>("root"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(RamdaPgSweep, PgSweep,
                              ramda_optax::WithView(
                                  ramda_optax::StepArgs()
                                      .Arg<ffi::Buffer<ffi::U8>>()   // screening
                                      .Arg<ffi::Buffer<ffi::F32>>()  // steps
                                      .Arg<ffi::Buffer<ffi::S32>>()  // count
                                      .Arg<ffi::Buffer<ffi::S32>>()  // snap
                                      .Ret<ffi::Buffer<ffi::F32>>()  // V
                                      .Ret<ffi::Buffer<ffi::F32>>()  // U
                                      .Ret<ffi::Buffer<ffi::F32>>()  // W⁰
                                      .Ret<ffi::Buffer<ffi::F32>>()  // to
                                      .Ret<ffi::Buffer<ffi::F32>>()  // kept
                                      .Ret<ffi::Buffer<ffi::U32>>()  // records
                                      .Ret<ffi::Buffer<ffi::U8>>()   // screening
                                      .Ret<ffi::Buffer<ffi::F32>>())  // steps
                                  .Attr<int64_t>("chunk")
                                  .Attr<float>("group_weight")
                                  .Attr<int64_t>("root")
                                  .Attr<bool>("first"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(RamdaPgLeafSweep, PgLeafSweep,
                              ramda_optax::WithView(
                                  ffi::Ffi::Bind()
                                      .Ctx<ffi::ThreadPool>()
                                      .Arg<ffi::Buffer<ffi::F32>>()  // a
                                      .Arg<ffi::Buffer<ffi::F32>>()  // v
                                      .Arg<ffi::Buffer<ffi::F32>>()  // P
                                      .Arg<ffi::Buffer<ffi::F32>>()  // from
                                      .Arg<ffi::Buffer<ffi::F32>>()  // τ
                                      .Arg<ffi::Buffer<ffi::U8>>()   // screening
                                      .Arg<ffi::Buffer<ffi::F32>>()  // steps
                                      .Arg<ffi::Buffer<ffi::S32>>()  // count
                                      .Arg<ffi::Buffer<ffi::S32>>()  // snap
                                      .Ret<ffi::Buffer<ffi::F32>>()  // to
                                      .Ret<ffi::Buffer<ffi::F32>>()  // kept
                                      .Ret<ffi::Buffer<ffi::U32>>()  // records
                                      .Ret<ffi::Buffer<ffi::U8>>()   // screening
                                      .Ret<ffi::Buffer<ffi::F32>>())  // steps
                                  .Attr<int64_t>("chunk")
                                  .Attr<float>("group_weight")
                                  .Attr<bool>("first"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(RamdaPgStop, PgStop,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::U32>>()  // records
                                  .Arg<ffi::Buffer<ffi::S32>>()  // count
                                  .Arg<ffi::Buffer<ffi::F32>>()  // Q before
                                  .Arg<ffi::Buffer<ffi::S32>>()  // done
                                  .Ret<ffi::Buffer<ffi::S32>>()  // stop
                                  .Ret<ffi::Buffer<ffi::F32>>()  // last Q
                                  .Attr<int64_t>("block")
                                  .Attr<int64_t>("max_iters")
                                  .Attr<float>("rtol"));
