// softmax and log_softmax: kernels over whole rows.
//
// The host (fastact/backends/kernels/plan.py: rowwise_plan) sees x as a C-contiguous
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
#include "rowwise_ops.cuh"

namespace fastact {

// A lane's stats from the lane `lane_mask` away (a butterfly step).
template <typename C, Dot D>
__device__ __forceinline__ RowStats<C, D> shuffled_xor(const RowStats<C, D>& s, int lane_mask) {
  return {__shfl_xor_sync(kFullWarp, s.max, lane_mask), __shfl_xor_sync(kFullWarp, s.sum, lane_mask),
          D == Dot::kNone ? 0.0 : __shfl_xor_sync(kFullWarp, s.dot, lane_mask)};
}

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
  for (int lane_mask = kFirstLevel; lane_mask > 0; lane_mask /= 2) stats.merge(shuffled_xor(stats, lane_mask));
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
