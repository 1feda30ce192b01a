// The math of softmax and log_softmax rows: the running stats of a row and
// the four row ops (the stats each needs, the per-row constants, the output
// of one element).  Shared by the CUDA kernels (rowwise.cuh) and the host
// engine (host/rowwise.h); nothing here depends on threads or blocks.
#pragma once

#include "common.cuh"

namespace fastact {

// Elements per lane per chunk: 8 independent loads in flight per thread,
// and few rescales of the sums (their rounding errors add up).
constexpr int kRowItems = 8;
constexpr unsigned kFullWarp = 0xffffffffu;

// The max that keeps a NaN (fmax would drop it).
template <typename C>
__device__ __forceinline__ C nan_max(C a, C b) { return (a > b || isnan(a)) ? a : b; }

// exp(x - max) with exp(-inf) = 0 also where max is -inf: a lane that has seen
// only -inf (or padding) so far must add 0, not exp(NaN).  A row that is all
// -inf still gives NaN (pass 2 computes exp(-inf - -inf)), as in PyTorch.
template <typename C>
__device__ __forceinline__ C exp_below(C x, C max) { return x == negative_infinity(x) ? C(0) : exp(x - max); }

// How a row's second sum is formed.
enum class Dot { kNone, kWeighted /* sum of dy exp(x - max) */, kPlain /* sum of dy */ };

// What a lane (then the row) has seen: the max of x and, relative to it,
// sum = sum of exp(x - max) and dot (see Dot).
//
// The sums are kept in double for every dtype.  Each exp(x - max) is within
// 2 ulp of the compute type, and a double sum of such positive terms stays
// within that; a float sum would add an error growing with the row length
// (a lane adds length / LANES terms in sequence) that the float32 bound of
// 1e-5 cannot absorb for long rows: log_softmax's max element is
// -log(1 + rest), log_softmax_backward's dx = dy - y sum(dy) cancels.
// (Double adds are cheap on sm_80/sm_90, and the kernel stays memory bound;
// on GPUs with 1/64-rate double they may not be.)
template <typename C, Dot D>
struct RowStats {
  static constexpr Dot kDot = D;
  C max;
  double sum;
  double dot;

  __device__ __forceinline__ static RowStats empty() { return {negative_infinity(C()), 0.0, 0.0}; }

  // A sum relative to `from` made relative to `to` (>= from).  Unchanged when
  // from == to (also both -inf, where from - to is NaN); a NaN max makes it
  // NaN.  The product is rounded on its own, so that the two sides of a
  // butterfly step compute the same bits (no FMA on one side only).
  // exp in the compute type: a double exp is a called routine on sm_90 and
  // made these kernels spill.  Each rescale adds up to 2 ulp of C to the
  // sum's relative error: a lane rescales only when a chunk raises its max
  // (a few times in a row of random logits; every chunk of a sorted row),
  // plus once per reduction level.
  __device__ __forceinline__ static double rescaled(double value, C from, C to) {
    return from == to ? value : rounded_product(value, double(exp(from - to)));
  }

  __device__ __forceinline__ void move_to(C new_max) {
    sum = rescaled(sum, max, new_max);
    if (D == Dot::kWeighted) dot = rescaled(dot, max, new_max);
    max = new_max;
  }

  // Adds kRowItems elements (padding is x = -inf, dy = 0): one rescale per chunk.
  __device__ __forceinline__ void add(const C (&x)[kRowItems], const C (&dy)[kRowItems]) {
    C top = max;
#pragma unroll
    for (int j = 0; j < kRowItems; ++j) top = nan_max(top, x[j]);
    move_to(top);
#pragma unroll
    for (int j = 0; j < kRowItems; ++j) {
      const C e = exp_below(x[j], max);
      sum += e;
      if (D == Dot::kWeighted) dot += double(dy[j]) * e;  // exact product for 16/32-bit types
      if (D == Dot::kPlain) dot += dy[j];
    }
  }

  // Symmetric in (this, other), bit for bit.
  __device__ __forceinline__ void merge(const RowStats& other) {
    const C top = nan_max(max, other.max);
    move_to(top);
    sum += rescaled(other.sum, other.max, top);
    dot += D == Dot::kWeighted ? rescaled(other.dot, other.max, top) : other.dot;
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
};

template <typename C>
struct SoftmaxForward : RowOp<C, Dot::kNone> {
  using typename RowOp<C, Dot::kNone>::Stats;
  struct Row {
    C max, sum;
  };
  __device__ __forceinline__ static Row finish(const Stats& s) { return {s.max, C(s.sum)}; }
  // output_e: the output given e = exp_below(x, max), which the host computes once per element.
  __device__ __forceinline__ static C output_e(const Row& row, C, C, C e) { return e / row.sum; }
  __device__ __forceinline__ static C output(const Row& row, C x, C dy) { return output_e(row, x, dy, exp_below(x, row.max)); }
};

// log(sum) as log1p(sum - 1), sum - 1 taken in double: for the row's max
// element y = -log(1 + rest), which would round to 0 with the sum rounded to
// float when rest < 6e-8.  (log1p of C, not log of double: a double log is a
// called routine that made the kernel spill on sm_90.)
template <typename C>
struct LogSoftmaxForward : RowOp<C, Dot::kNone> {
  using typename RowOp<C, Dot::kNone>::Stats;
  struct Row {
    C max, log_sum;
  };
  __device__ __forceinline__ static Row finish(const Stats& s) { return {s.max, log1p(C(s.sum - 1.0))}; }
  __device__ __forceinline__ static C output_e(const Row& row, C x, C, C) { return (x - row.max) - row.log_sum; }
  __device__ __forceinline__ static C output(const Row& row, C x, C dy) { return output_e(row, x, dy, C(0)); }
};

template <typename C>
struct SoftmaxBackward : RowOp<C, Dot::kWeighted> {
  using typename RowOp<C, Dot::kWeighted>::Stats;
  struct Row {
    C max, sum, weighted;
  };
  __device__ __forceinline__ static Row finish(const Stats& s) { return {s.max, C(s.sum), C(s.dot / s.sum)}; }
  __device__ __forceinline__ static C output_e(const Row& row, C, C dy, C e) { return e / row.sum * (dy - row.weighted); }
  __device__ __forceinline__ static C output(const Row& row, C x, C dy) { return output_e(row, x, dy, exp_below(x, row.max)); }
};

template <typename C>
struct LogSoftmaxBackward : RowOp<C, Dot::kPlain> {
  using typename RowOp<C, Dot::kPlain>::Stats;
  struct Row {
    C max, sum, sum_dy;
  };
  __device__ __forceinline__ static Row finish(const Stats& s) { return {s.max, C(s.sum), C(s.dot)}; }
  __device__ __forceinline__ static C output_e(const Row& row, C, C dy, C e) { return dy - e / row.sum * row.sum_dy; }
  __device__ __forceinline__ static C output(const Row& row, C x, C dy) { return output_e(row, x, dy, exp_below(x, row.max)); }
};

}  // namespace fastact
