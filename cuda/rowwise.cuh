// softmax and log_softmax: kernels over whole rows.
//
// The host (cuda_plan.py: rowwise_plan) sees x as a C-contiguous
// (outer, length, inner) array; a row is the `length` elements
// base + k * inner, k = 0 .. length - 1, base = (row / inner) * length * inner
// + row % inner, for rows = outer * inner.  LANES threads work on one row:
//   LANES = 1    inner > 1 (the strided kernel): a thread per row, so that
//                consecutive threads read consecutive addresses (coalesced);
//                also for very short contiguous rows;
//   LANES = 32   inner == 1, rows up to 1024 elements: a warp per row,
//                reduced with warp shuffles;
//   LANES = 256  inner == 1, longer rows: a block per row, warp shuffles and
//                then the block's warps through shared memory.
//
// Two passes over a row, each lane reading kRowItems elements at a time
// into registers: pass 1 keeps the row's running max and the sums relative
// to it in registers ("online" softmax: when the max grows, the sums are
// rescaled by exp(old max - new max), once per chunk, not per element);
// pass 2 writes the output.  A row of at most LANES * kRowItems elements is
// read once (pass 2 uses the registers); a longer row is read again, from L1
// or L2 while it fits there.
//
// Deterministic: each lane adds its elements in a fixed order, the
// reduction is a fixed butterfly (every lane ends with the same bits) and
// the block's warps are combined in warp order; nothing depends on the grid.
#pragma once

#include "common.cuh"
#include "elementwise.cuh"

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

  __device__ __forceinline__ RowStats shuffled_xor(int lane_mask) const {
    return {__shfl_xor_sync(kFullWarp, max, lane_mask), __shfl_xor_sync(kFullWarp, sum, lane_mask),
            D == Dot::kNone ? 0.0 : __shfl_xor_sync(kFullWarp, dot, lane_mask)};
  }
};

// The row's stats in every lane of the LANES that share the row.
template <int LANES, typename Stats>
__device__ __forceinline__ Stats reduce_lanes(Stats stats) {
  constexpr int kWarpLanes = LANES < 32 ? LANES : 32;
#ifdef FASTACT_PLANT_SHUFFLE_SKIPS_LEVEL  // test-only planted bug: the two half-warps never meet
  constexpr int kFirstLevel = kWarpLanes / 4;
#else
  constexpr int kFirstLevel = kWarpLanes / 2;
#endif
#pragma unroll
  for (int lane_mask = kFirstLevel; lane_mask > 0; lane_mask /= 2) stats.merge(stats.shuffled_xor(lane_mask));
  if constexpr (LANES > 32) {
    constexpr int kWarps = LANES / 32;
    __shared__ Stats warps[kWarps];
    if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = stats;
    __syncthreads();
    stats = warps[0];
    for (int w = 1; w < kWarps; ++w) stats.merge(warps[w]);
    __syncthreads();  // every warp has read before the next row writes
  }
  return stats;
}

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
  __device__ __forceinline__ static C output(const Row& row, C x, C) { return exp_below(x, row.max) / row.sum; }
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
  __device__ __forceinline__ static C output(const Row& row, C x, C) { return (x - row.max) - row.log_sum; }
};

template <typename C>
struct SoftmaxBackward : RowOp<C, Dot::kWeighted> {
  using typename RowOp<C, Dot::kWeighted>::Stats;
  struct Row {
    C max, sum, weighted;
  };
  __device__ __forceinline__ static Row finish(const Stats& s) { return {s.max, C(s.sum), C(s.dot / s.sum)}; }
  __device__ __forceinline__ static C output(const Row& row, C x, C dy) {
    return exp_below(x, row.max) / row.sum * (dy - row.weighted);
  }
};

template <typename C>
struct LogSoftmaxBackward : RowOp<C, Dot::kPlain> {
  using typename RowOp<C, Dot::kPlain>::Stats;
  struct Row {
    C max, sum, sum_dy;
  };
  __device__ __forceinline__ static Row finish(const Stats& s) { return {s.max, C(s.sum), C(s.dot)}; }
  __device__ __forceinline__ static C output(const Row& row, C x, C dy) {
    return dy - exp_below(x, row.max) / row.sum * row.sum_dy;
  }
};

// kRowItems elements of a row in registers: this lane's elements
// start + lane + j * LANES, j < kRowItems.
template <typename Op, typename T, typename Index, int LANES>
struct RowChunk {
  using C = ComputeType<T>;
  C x[kRowItems];
  C dy[kRowItems];

  __device__ __forceinline__ void load(const T* xs, const T* dys, Index base, Index inner, Index length, Index first) {
#pragma unroll
    for (int j = 0; j < kRowItems; ++j) {
      const Index k = first + j * LANES;
      const bool inside = k < length;
      x[j] = inside ? to_compute(xs[base + k * inner]) : negative_infinity(C());
      dy[j] = (Op::kReadsDy && inside) ? to_compute(dys[base + k * inner]) : C(0);
    }
  }

  template <typename Row>
  __device__ __forceinline__ void store(const Row& row, T* out, Index base, Index inner, Index length, Index first) const {
#pragma unroll
    for (int j = 0; j < kRowItems; ++j) {
      const Index k = first + j * LANES;
      if (k < length) out[base + k * inner] = from_compute<T>(Op::output(row, x[j], dy[j]));
    }
  }
};

// out = Op over each row; dy is read by backward ops only (nullptr for forward).
// out may be x or dy itself: each element is read (pass 1 and 2) by the
// thread that writes it, before it writes it.
template <typename Op, typename T, typename Index, int LANES>
__global__ void __launch_bounds__(kElementwiseThreads)
rowwise(Index rows, Index length, Index inner, T* out, const T* x, const T* dy) {
  constexpr int kRowsPerBlock = kElementwiseThreads / LANES;
  constexpr Index kChunk = Index(LANES) * kRowItems;
  const Index lane = threadIdx.x % LANES;
  const Index step = static_cast<Index>(gridDim.x) * kRowsPerBlock;
  // Every thread of a row runs the same iterations: the shuffles and barriers
  // inside are reached by all of them.
  for (Index row = static_cast<Index>(blockIdx.x) * kRowsPerBlock + threadIdx.x / LANES; row < rows; row += step) {
    const Index base = (row / inner) * length * inner + row % inner;
    RowChunk<Op, T, Index, LANES> chunk;
    auto stats = Op::Stats::empty();
    for (Index start = 0; start < length; start += kChunk) {
      chunk.load(x, dy, base, inner, length, start + lane);
      stats.add(chunk.x, chunk.dy);
    }
    const auto finished = Op::finish(reduce_lanes<LANES>(stats));
    if (length <= kChunk) {  // the row is still in registers
      chunk.store(finished, out, base, inner, length, lane);
      continue;
    }
    for (Index start = 0; start < length; start += kChunk) {
      chunk.load(x, dy, base, inner, length, start + lane);
      chunk.store(finished, out, base, inner, length, start + lane);
    }
  }
}

}  // namespace fastact
