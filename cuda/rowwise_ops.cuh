// The math of softmax and log_softmax rows: the running stats of a row and
// the four row ops (the stats each needs, the per-row constants, the output
// of one element).  Shared by the CUDA kernels (rowwise.cuh) and the host
// engine (host/rowwise.h); nothing here depends on threads or blocks.
#pragma once

#include "common.cuh"

namespace fastact {

constexpr unsigned kFullWarp = 0xffffffffu;

// The max that ignores NaN (one FMNMX): a NaN anywhere in a row still makes
// the whole row NaN, through its term exp(NaN - max) in the row's sum.
template <typename C>
__device__ __forceinline__ C row_max(C a, C b) { return fmax(a, b); }

// What exp(x - max) is computed relative to: max itself, or 0 when max is
// -inf (a lane that has seen only -inf, or padding, so far), so that
// exp(-inf - shift) = 0 needs no test per element.  A row that is all -inf
// still gives NaN, through 0 / 0, as in PyTorch.
template <typename C>
__device__ __forceinline__ C exp_shift(C max) { return max == negative_infinity(max) ? C(0) : max; }

// exp(x - shift).  float: exp2f of (x - shift) log2(e), CUDA's MUFU.EX2 with
// subnormal results kept, within 2 ulp plus the rounding of the product,
// |x - shift| 2^-24 relative: under 6e-6 where exp(x - shift) is a normal
// float32, below 1e-6 absolute where it is below 0.1, inside the README's
// bounds, and a few instructions instead of expf's range reduction.  double:
// exp itself (the bounds there are 1e-13).
//
// FLUSH: results below 2^-126 may come out as 0 (one MUFU.EX2, without the
// rescaling around it that keeps subnormal results), for exps that only
// enter a sum of at least 1, or an output held to an absolute bound (every
// op but softmax forward, whose bfloat16 outputs keep float32's subnormal
// range).  Host builds (the emulator) never flush.
template <bool FLUSH>
__device__ __forceinline__ float row_exp(float x, float shift) {
  const float t = (x - shift) * 1.44269504088896341f;
#ifndef FASTACT_HOST_COMPILER
  if (FLUSH) {
    float e;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(t));
    return e;
  }
#endif
  return exp2f(t);
}
template <bool FLUSH>
__device__ __forceinline__ double row_exp(double x, double shift) { return exp(x - shift); }

// 1 / sum and log(sum) of a row's double sum (>= 1 unless the row is all
// -inf), in the compute type.  float: an IEEE division, and log1p of sum - 1
// taken in double (for the row's max element log_softmax is -log(1 + rest),
// which would round to 0 with the sum rounded to float when rest < 6e-8; a
// double log is a called routine that made the kernels spill on sm_90).
// double: no called routine either (the double division's and log1p's slow
// paths made the float64 kernels spill on sm_90): the reciprocal by two
// Newton steps from a float estimate (within 1 ulp; 0 and NaN give NaN, so an
// all -inf row still gives NaN), and log itself (sum - 1 below 1e-16 is
// lost, far inside the float64 bound of 1e-15 absolute).
__device__ __forceinline__ float row_reciprocal(float, double sum) { return 1.0f / static_cast<float>(sum); }
__device__ __forceinline__ double row_reciprocal(double, double sum) {
#ifdef FASTACT_HOST_COMPILER
  return 1.0 / sum;
#else
  double r = static_cast<double>(__fdividef(1.0f, static_cast<float>(sum)));
  r = fma(r, fma(-sum, r, 1.0), r);
  return fma(r, fma(-sum, r, 1.0), r);
#endif
}
__device__ __forceinline__ float row_log_sum(float, double sum) { return log1p(static_cast<float>(sum - 1.0)); }
__device__ __forceinline__ double row_log_sum(double, double sum) { return log(sum); }

// How a row's second sum is formed.
enum class Dot { kNone, kWeighted /* sum of dy exp(x - max) */, kPlain /* sum of dy */ };

// What a lane (then the row) has seen: the max of x and, relative to it,
// sum = sum of exp(x - max) and dot (see Dot).
//
// The sums are kept in double for every dtype.  sum adds each exp(x - max)
// in double: the max element's term is 1, and a float sum would drop the
// rest of a row whose other terms are below 6e-8 (log_softmax's max element
// is -log(1 + rest), log1p of sum - 1 in double); likewise the plain sum of
// dy, whose error would be relative to sum |dy|, not to the result
// (log_softmax_backward's dx = dy - y sum(dy) cancels).  The weighted sum of
// dy exp(x - max), whose error only needs to be small against max |dy|, adds
// a chunk of a lane in the compute type by a fixed pairwise tree (depth
// log2 of the chunk, at most 5 roundings), then once into the double.
template <typename C, Dot D>
struct RowStats {
  static constexpr Dot kDot = D;
  C max;
  double sum;
  double dot;

  __device__ __forceinline__ static RowStats empty() { return {negative_infinity(C()), 0.0, 0.0}; }

  // A sum relative to `from` made relative to `to` (>= from).  Unchanged when
  // from == to (also both -inf, where from - to is NaN).  The product is
  // rounded on its own, so that the two sides of a butterfly step compute the
  // same bits (no FMA on one side only).  exp in the compute type: a double
  // exp is a called routine on sm_90 and made these kernels spill.  Each
  // rescale adds up to 2 ulp of C to the sum's relative error: a lane
  // rescales only when a chunk raises its max (a few times in a row of random
  // logits; every chunk of a sorted row), plus once to the row's max.
  __device__ __forceinline__ static double rescaled(double value, C from, C to) {
    return from == to ? value : rounded_product(value, double(exp(from - to)));
  }

  __device__ __forceinline__ void move_to(C new_max) {
    sum = rescaled(sum, max, new_max);
    if (D == Dot::kWeighted) dot = rescaled(dot, max, new_max);
    max = new_max;
  }

  // Adds one chunk of N elements (padding is x = -inf, dy = 0): one rescale
  // per chunk.  Leaves e = exp(x - max) in `e` for the output.
  template <bool FLUSH, int N>
  __device__ __forceinline__ void add(const C (&x)[N], const C (&dy)[N], C (&e)[N]) {
    C top = max;
#pragma unroll
    for (int j = 0; j < N; ++j) top = row_max(top, x[j]);
    move_to(top);
    add_at_max<FLUSH>(x, dy, e);
  }

  // The same when max is already at least every x of the chunk (no rescale).
  template <bool FLUSH, int N>
  __device__ __forceinline__ void add_at_max(const C (&x)[N], const C (&dy)[N], C (&e)[N]) {
    const C shift = exp_shift(max);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      e[j] = row_exp<FLUSH>(x[j], shift);
      sum += static_cast<double>(e[j]);
    }
    if (D == Dot::kWeighted) {
      // Trees of at most 8 terms: a tree over a whole chunk of 32 was left
      // partly rolled by the compiler, its array in local memory.
      constexpr int kGroup = N < 8 ? N : 8;
#pragma unroll
      for (int g = 0; g < N; g += kGroup) {
        C group[kGroup];
#pragma unroll
        for (int j = 0; j < kGroup; ++j) group[j] = dy[g + j] * e[g + j];
        dot += static_cast<double>(pairwise_sum(group));
      }
    }
    if (D == Dot::kPlain) {
#pragma unroll
      for (int j = 0; j < N; ++j) dot += static_cast<double>(dy[j]);
    }
  }

  // v[0] + ... + v[N-1] in a fixed pairwise tree (N a power of two); v is overwritten.
  template <int N>
  __device__ __forceinline__ static C pairwise_sum(C (&v)[N]) {
#pragma unroll
    for (int width = N / 2; width > 0; width /= 2) {
#pragma unroll
      for (int j = 0; j < width; ++j) v[j] += v[j + width];
    }
    return v[0];
  }
};

// softmax and log_softmax, forward and backward: the stats each needs, the
// per-row constants made from them once, and the output of one element.
//   softmax:              y  = exp(x - max) / sum
//   log_softmax:          y  = (x - max) - log(sum)
//   softmax backward:     dx = y (dy - sum(dy y)),  sum(dy y) = dot / sum
//   log_softmax backward: dx = dy - y sum(dy)
// Backward ops (a second sum) read dy; forward ops do not.
template <typename C, Dot D>
struct RowOp {
  using Stats = RowStats<C, D>;
  static constexpr bool kReadsDy = D != Dot::kNone;
  static constexpr bool kFlushExp = true;  // row_exp's FLUSH
};

// Each op's Row holds the per-row constants, reciprocals included, so that an
// output is a product, not a division: y = e * (1 / sum) is within 1 ulp of
// the compute type of e / sum (both roundings, of the reciprocal and of the
// product, are half an ulp).  output_e: the output of one element given
// e = exp(x - max) (0 for x = -inf), which the kernels compute once per element.
template <typename C>
struct SoftmaxForward : RowOp<C, Dot::kNone> {
  using typename RowOp<C, Dot::kNone>::Stats;
  static constexpr bool kFlushExp = false;
  struct Row {
    C max, inverse;
  };
  __device__ __forceinline__ static Row finish(const Stats& s) { return {s.max, row_reciprocal(C(), s.sum)}; }
  __device__ __forceinline__ static C output_e(const Row& row, C, C, C e) { return e * row.inverse; }
};

// log_softmax: log(sum) by row_log_sum.
template <typename C>
struct LogSoftmaxForward : RowOp<C, Dot::kNone> {
  using typename RowOp<C, Dot::kNone>::Stats;
  struct Row {
    C max, log_sum;
  };
  __device__ __forceinline__ static Row finish(const Stats& s) { return {s.max, row_log_sum(C(), s.sum)}; }
  __device__ __forceinline__ static C output_e(const Row& row, C x, C, C) { return (x - row.max) - row.log_sum; }
};

template <typename C>
struct SoftmaxBackward : RowOp<C, Dot::kWeighted> {
  using typename RowOp<C, Dot::kWeighted>::Stats;
  struct Row {
    C max, inverse, weighted;
  };
  __device__ __forceinline__ static Row finish(const Stats& s) {
    const double inverse = row_reciprocal(double(), s.sum);
    return {s.max, C(inverse), C(s.dot * inverse)};
  }
  __device__ __forceinline__ static C output_e(const Row& row, C, C dy, C e) { return e * row.inverse * (dy - row.weighted); }
};

template <typename C>
struct LogSoftmaxBackward : RowOp<C, Dot::kPlain> {
  using typename RowOp<C, Dot::kPlain>::Stats;
  struct Row {
    C max, scale;  // scale = sum(dy) / sum
  };
  __device__ __forceinline__ static Row finish(const Stats& s) { return {s.max, C(s.dot * row_reciprocal(double(), s.sum))}; }
  __device__ __forceinline__ static C output_e(const Row& row, C, C dy, C e) { return dy - e * row.scale; }
};

}  // namespace fastact
