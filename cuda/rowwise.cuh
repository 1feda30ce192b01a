// softmax and log_softmax: kernels over whole rows.
//
// The host (fastact/backends/kernels/plan.py: rowwise_plan) sees x as a C-contiguous
// (outer, length, inner) array; a row is the `length` elements
// base + k * inner, k = 0 .. length - 1, base = (row / inner) * length * inner
// + row % inner, for rows = outer * inner.  LANES threads work on one row:
//   LANES = 1    inner > 1 (the strided kernel): a thread per row, so that
//                consecutive threads read consecutive addresses (coalesced);
//                also for very short contiguous rows.  With VEC > 1 (inner a
//                multiple of VEC, 16-bit and float32): rowwise_columns below,
//                a thread per vector of VEC rows side by side;
//   LANES = 32   inner == 1, rows of up to 32 chunks of a lane: a warp per
//                row, reduced with warp shuffles;
//   LANES = 256  inner == 1, longer rows: a block per row, warp shuffles and
//                then the block's warps through shared memory.
// VEC: elements per access, 16 bytes (contiguous rows whose length is a
// multiple of VEC, or strided rows whose inner is; every pointer 16-byte
// aligned) or 1 (the rest).
//
// Each lane reads a chunk of SLOTS accesses at a time into registers (slot s
// of a chunk: the row's access start + s * LANES + lane, so that the LANES
// lanes of a slot read consecutive addresses).  A row of one chunk: its max
// over the lanes, then e = exp(x - max) and the sums in each lane, the sums
// over the lanes, and the output from e in the registers: one read, one exp
// per element.  A longer row: pass 1 keeps each lane's running max and its
// sums relative to it ("online" softmax: when the max grows, the sums are
// rescaled by exp(old max - new max), once per chunk, not per element), then
// the row's max over the lanes, one rescale per lane, the sums over the
// lanes; pass 2 reads the row again (from L1 or L2 while it fits there) and
// computes its exps again.
//
// Deterministic: each lane adds its elements in a fixed order, the
// reduction is a fixed butterfly (every lane ends with the same bits) and
// the block's warps are combined in warp order; nothing depends on the grid.
#pragma once

#include "common.cuh"
#include "elementwise.cuh"
#include "rowwise_ops.cuh"

namespace fastact {

#ifdef FASTACT_PLANT_SHUFFLE_SKIPS_LEVEL  // test-only planted bug: the two half-warps never meet
template <int LANES>
__device__ constexpr int first_level() { return (LANES < 32 ? LANES : 32) / 4; }
#else
template <int LANES>
__device__ constexpr int first_level() { return (LANES < 32 ? LANES : 32) / 2; }
#endif

// The max of `value` over the LANES lanes of a row, in every one of them
// (exact: the order does not matter).
template <int LANES, typename C>
__device__ __forceinline__ C reduce_max(C value) {
#pragma unroll
  for (int lane_mask = first_level<LANES>(); lane_mask > 0; lane_mask /= 2)
    value = row_max(value, __shfl_xor_sync(kFullWarp, value, lane_mask));
  if constexpr (LANES > 32) {
    constexpr int kWarps = LANES / 32;
    __shared__ C warps[kWarps];
    if (threadIdx.x % 32 == 0) warps[threadIdx.x / 32] = value;
    __syncthreads();
    value = warps[0];
    for (int w = 1; w < kWarps; ++w) value = row_max(value, warps[w]);
    __syncthreads();  // every warp has read before the next use writes
  }
  return value;
}

// The row's sums in every lane of the LANES that share the row, all relative
// to the same max already: a butterfly of plain double adds (a + b and b + a
// are the same bits, so every lane ends with the same bits), then the
// block's warps in warp order.
template <int LANES, typename Stats>
__device__ __forceinline__ Stats reduce_sums(Stats stats) {
#pragma unroll
  for (int lane_mask = first_level<LANES>(); lane_mask > 0; lane_mask /= 2) {
    stats.sum += __shfl_xor_sync(kFullWarp, stats.sum, lane_mask);
    if (Stats::kDot != Dot::kNone) stats.dot += __shfl_xor_sync(kFullWarp, stats.dot, lane_mask);
  }
  if constexpr (LANES > 32) {
    constexpr int kWarps = LANES / 32;
    __shared__ double sums[kWarps], dots[kWarps];
    if (threadIdx.x % 32 == 0) {
      sums[threadIdx.x / 32] = stats.sum;
      dots[threadIdx.x / 32] = stats.dot;
    }
    __syncthreads();
    stats.sum = sums[0];
    stats.dot = dots[0];
    for (int w = 1; w < kWarps; ++w) {
      stats.sum += sums[w];
      stats.dot += dots[w];
    }
    __syncthreads();  // every warp has read before the next row writes
  }
  return stats;
}

// Accesses per lane per chunk: 8 single elements on the scalar path (8 loads
// in flight per thread); with 16-byte vectors, 4 for a warp per row (a row
// of 1024 float16 in registers) and 2 for a block per row (4096).  float64:
// 2 single elements or 1 vector (its exp has a called slow path, and more
// values kept across the calls spilled on sm_90).
// plan.py: row_items mirrors this.
template <int VEC, int LANES, typename C>
__device__ constexpr int row_slots() {
  return sizeof(C) == 8 ? (VEC == 1 ? 2 : 1) : (VEC == 1 ? 8 : (LANES > 32 ? 2 : 4));
}

// One chunk of a row in registers: this lane's accesses start + s * LANES + lane, s < SLOTS.
template <typename Op, typename T, typename Index, int VEC, int LANES>
struct RowChunk {
  using C = ComputeType<T>;
  using Access = Vector<T, VEC>;
  static constexpr int kSlots = row_slots<VEC, LANES, C>();
  // e kept from pass 1 for the output (float vectors); the scalar path and
  // float64 compute their exps again (keeping them spilled on sm_90).
  static constexpr bool kKeepsE = sizeof(C) == 4 && VEC > 1;
  static constexpr int kItems = kSlots * VEC;
  C x[kItems];
  C dy[kItems];
  C e[kItems];  // exp(x - max), from pass 1

  // Accesses `first`, first + LANES, ... of the row (`accesses` in all); padding is x = -inf, dy = 0.
  // A slot past the row's end reads the row's last access again (cached)
  // and replaces the values: a select per element, no predicated loads.
  __device__ __forceinline__ void load(const T* xs, const T* dys, Index base, Index inner, Index accesses,
                                       Index first) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const Index a = first + s * LANES;
      const bool inside = a < accesses;
      const Index at = base + (inside ? a : accesses - 1) * VEC * inner;
      const Access xv = *reinterpret_cast<const Access*>(xs + at);
      Access gv;
      if (Op::kReadsDy) gv = *reinterpret_cast<const Access*>(dys + at);
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        x[s * VEC + j] = inside ? to_compute(xv.value[j]) : negative_infinity(C());
        dy[s * VEC + j] = Op::kReadsDy && inside ? to_compute(gv.value[j]) : C(0);
      }
    }
  }

  // The outputs from x, dy and e (e computed again when `fresh`: pass 2 of a long row).
  template <typename Row>
  __device__ __forceinline__ void store(const Row& row, bool fresh, T* out, Index base, Index inner,
                                        Index accesses, Index first) {
    const C shift = exp_shift(row.max);
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const Index a = first + s * LANES;
      Access result;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        const int i = s * VEC + j;
        const C ei = fresh ? row_exp<Op::kFlushExp>(x[i], shift) : e[i];
        result.value[j] = from_compute<T>(Op::output_e(row, x[i], dy[i], ei));
      }
      if (a < accesses) *reinterpret_cast<Access*>(out + base + a * VEC * inner) = result;
    }
  }
};

// out = Op over each row; dy is read by backward ops only (nullptr for forward).
// out may be x or dy itself: each element is read (pass 1 and 2) by the
// thread that writes it, before it writes it.
template <typename Op, typename T, typename Index, int VEC, int LANES>
__device__ __forceinline__ void rowwise_rows(Index rows, Index length, Index inner, T* out, const T* x, const T* dy) {
  using Chunk = RowChunk<Op, T, Index, VEC, LANES>;
  using C = ComputeType<T>;
  constexpr int kRowsPerBlock = kElementwiseThreads / LANES;
  constexpr Index kChunk = Index(LANES) * Chunk::kSlots;  // accesses per chunk
  const Index accesses = length / VEC;
  const Index lane = threadIdx.x % LANES;
  const Index step = static_cast<Index>(gridDim.x) * kRowsPerBlock;
  // Every thread of a row runs the same iterations: the shuffles and barriers
  // inside are reached by all of them.
  for (Index row = static_cast<Index>(blockIdx.x) * kRowsPerBlock + threadIdx.x / LANES; row < rows; row += step) {
    const Index base = VEC > 1 ? row * length : (row / inner) * length * inner + row % inner;  // VEC > 1: inner == 1
    Chunk chunk;
    auto stats = Op::Stats::empty();
    // float64 always reads a row twice (keeping its rows in registers spilled on sm_90).
    const bool single = sizeof(C) == 4 && accesses <= kChunk;
    if (single) {
      // The row is read once: its max first, then e = exp(x - max) relative
      // to it, kept in registers for the output.
      chunk.load(x, dy, base, inner, accesses, lane);
      C top = stats.max;
#pragma unroll
      for (int i = 0; i < Chunk::kItems; ++i) top = row_max(top, chunk.x[i]);
      stats.max = reduce_max<LANES>(top);
      stats.template add_at_max<Op::kFlushExp>(chunk.x, chunk.dy, chunk.e);
    } else {
      for (Index start = 0; start < accesses; start += kChunk) {
        chunk.load(x, dy, base, inner, accesses, start + lane);
        stats.template add<Op::kFlushExp>(chunk.x, chunk.dy, chunk.e);
      }
      stats.move_to(reduce_max<LANES>(stats.max));  // each lane's sums relative to the row's max
    }
    const auto finished = Op::finish(reduce_sums<LANES>(stats));
    if (single) {
      chunk.store(finished, !Chunk::kKeepsE, out, base, inner, accesses, lane);
      continue;
    }
    for (Index start = 0; start < accesses; start += kChunk) {
      chunk.load(x, dy, base, inner, accesses, start + lane);
      chunk.store(finished, true, out, base, inner, accesses, start + lane);
    }
  }
}

// Strided rows (inner > 1) with 16-byte vectors: VEC > 1, LANES == 1.  The
// VEC consecutive inner positions of a vector are VEC rows side by side, so
// a thread owns a vector-wide column of VEC rows and every access is a
// 16-byte vector, consecutive threads on consecutive vectors.  A block takes
// a tile of column_tile such columns (column_tile * VEC rows) and splits the
// reduction axis among its kColumnSplit groups of threads: group p reads the
// row elements k = p, p + kColumnSplit, ... of its column (column_steps of
// them per chunk).  Three passes over a thread's elements:
//   1. the max of each row over the thread's elements, then the row's max
//      over the groups through shared memory (exact in any order);
//   2. the sums relative to the row's max (no rescale: the max is final), then
//      the groups' sums added in group order (fixed: deterministic, and the
//      same whatever the grid);
//   3. the outputs, exps computed again.
// Pass 2's exps may flush results below 2^-126 to 0 (they only enter sums of
// at least 1); pass 3's follow the op (softmax forward keeps bfloat16's
// subnormal outputs).  Passes 2 and 3 read the thread's elements again: from
// L2, as the host sizes the grid (the tiles resident at once) to keep them
// within 36 MB of it (plan.py: COLUMN_L2_BYTES; the static model assumes
// they hit), but for rows too long for one block per SM, which read memory.  The
// row math (RowStats::add_at_max, Op::finish, Op::output_e) is the other
// path's: the same sums in double, the same NaN and inf rules.  rows: outer * inner;
// inner a multiple of VEC and every pointer 16-byte aligned (plan.py:
// rowwise_launch); any length.  float64 keeps the scalar kernel (plan.py says why).
//
// plan.py mirrors column_tile (column_tile), column_steps and
// kColumnBlocksPerSm (COLUMN_BLOCKS_PER_SM); the static GPU model counts the
// chunk loops' trips from them.
// Columns of a tile: 16 (a warp: 16 consecutive vectors, 256 bytes, at each of 2 row elements);
// a backward re-reads dy as well as x, so its tiles are half as wide (8 vectors, a 128-byte line
// at each of 4 row elements), keeping the resident tiles within the same share of L2.
template <bool READS_DY>
__device__ constexpr int column_tile() { return READS_DY ? 8 : 16; }

// Row elements per thread per chunk (kSteps loads of x, and of dy, in flight):
// the most that fit 64 registers without spilling on sm_90 (the double sums
// of a thread's rows take 16 registers for 8 rows, 32 with backward's second sum).
template <typename T, bool READS_DY>
__device__ constexpr int column_steps() { return READS_DY ? 1 : sizeof(T) == 4 ? 4 : 2; }

// Word w of a 16-byte vector of -inf (pass 2's padding).
__device__ __forceinline__ unsigned negative_infinity_word(__half, int) { return 0xfc00fc00u; }
__device__ __forceinline__ unsigned negative_infinity_word(__nv_bfloat16, int) { return 0xff80ff80u; }
__device__ __forceinline__ unsigned negative_infinity_word(float, int) { return 0xff800000u; }

template <typename Op, typename T, typename Index, int VEC>
__device__ __forceinline__ void rowwise_columns(Index rows, Index length, Index inner, T* out, const T* x,
                                                const T* dy) {
  using C = ComputeType<T>;
  static_assert(sizeof(C) == 4, "float64 strided rows take the scalar kernel (plan.py: rowwise_launch)");
  using Access = Vector<T, VEC>;
  using Stats = typename Op::Stats;
  using Row = typename Op::Row;
  constexpr int kColumnTile = column_tile<Op::kReadsDy>();
  constexpr int kColumnSplit = kElementwiseThreads / kColumnTile;
  constexpr int kColumns = kColumnTile * VEC;  // rows of a tile
  constexpr int kSteps = column_steps<T, Op::kReadsDy>();
  __shared__ double partial[kColumnSplit * kColumns];  // each group's max or sums, [group][row of the tile]
  __shared__ C row_max_of[kColumns];
  __shared__ Row row_of[kColumns];
  const int lane = threadIdx.x % kColumnTile, group = threadIdx.x / kColumnTile;
  const int column = lane * VEC;  // first row of this thread's column in the tile
  const Index slice = inner / VEC;  // vectors per (outer) slice
  const Index vectors = rows / VEC;
  const Index tiles = (vectors + kColumnTile - 1) / kColumnTile;
  const Index chunk = Index(kColumnSplit) * kSteps;  // row elements per chunk of the block
  for (Index tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const Index v = tile * kColumnTile + lane;
    const bool live = v < vectors;  // a lane past the last vector reads the last one and writes nothing
    const Index at = live ? v : vectors - 1;
    const Index o = at / slice;
    const Index base = o * length * inner + (at - o * slice) * VEC;

    // Pass 1: the max.  A step past the row's end reads the row's last
    // element again, which cannot change a max (no select).
    C top[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) top[j] = negative_infinity(C());
    // One chunk per trip (plan.py's column_steps: the static model counts trips of this loop).
#pragma unroll 1
    for (Index first = group; first < length; first += chunk) {
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        const Index k = first + s * kColumnSplit;
        const Access xv = *reinterpret_cast<const Access*>(x + base + (k < length ? k : length - 1) * inner);
#pragma unroll
        for (int j = 0; j < VEC; ++j) top[j] = row_max(top[j], to_compute(xv.value[j]));
      }
    }
    C* const maxes = reinterpret_cast<C*>(partial);
#pragma unroll
    for (int j = 0; j < VEC; ++j) maxes[group * kColumns + column + j] = top[j];
    __syncthreads();
    if (threadIdx.x < kColumns) {
      C m = maxes[threadIdx.x];
      for (int p = 1; p < kColumnSplit; ++p) m = row_max(m, maxes[p * kColumns + threadIdx.x]);
      row_max_of[threadIdx.x] = m;
    }
    __syncthreads();

    // Pass 2: the sums relative to the row's max; padding is x = -inf, dy = 0.
    Stats stats[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) stats[j] = {row_max_of[column + j], 0.0, 0.0};
    // One chunk per trip (plan.py's column_steps: the static model counts trips of this loop).
#pragma unroll 1
    for (Index first = group; first < length; first += chunk) {
      C xs[VEC][kSteps], dys[VEC][kSteps], es[VEC][kSteps];
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        const Index k = first + s * kColumnSplit;
        const bool inside = k < length;
        const Index offset = base + (inside ? k : length - 1) * inner;
        // The padding replaces whole vectors: a select per 32-bit word, not per element.
        Access xv = *reinterpret_cast<const Access*>(x + offset);
        Access gv;
        if (Op::kReadsDy) gv = *reinterpret_cast<const Access*>(dy + offset);
        unsigned* const x_words = reinterpret_cast<unsigned*>(&xv);
        unsigned* const dy_words = reinterpret_cast<unsigned*>(&gv);
#pragma unroll
        for (int w = 0; w < 4; ++w) {
          x_words[w] = inside ? x_words[w] : negative_infinity_word(T(), w);
          if (Op::kReadsDy) dy_words[w] = inside ? dy_words[w] : 0u;
        }
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          xs[j][s] = to_compute(xv.value[j]);
          dys[j][s] = Op::kReadsDy ? to_compute(gv.value[j]) : C(0);
        }
      }
      // FLUSH always: these exps only enter sums of at least 1 (the row's max
      // element adds exp(0)); the outputs' exps are pass 3's.
#pragma unroll
      for (int j = 0; j < VEC; ++j) stats[j].template add_at_max<true>(xs[j], dys[j], es[j]);
    }
    // The groups' sums, added in group order by the thread of each row.
#pragma unroll
    for (int j = 0; j < VEC; ++j) partial[group * kColumns + column + j] = stats[j].sum;
    __syncthreads();
    Stats total = Stats::empty();
    if (threadIdx.x < kColumns) {
      total.max = row_max_of[threadIdx.x];
      for (int p = 0; p < kColumnSplit; ++p) total.sum += partial[p * kColumns + threadIdx.x];
    }
    if (Stats::kDot != Dot::kNone) {
      __syncthreads();  // every sum is read before the dots take their place
#pragma unroll
      for (int j = 0; j < VEC; ++j) partial[group * kColumns + column + j] = stats[j].dot;
      __syncthreads();
      if (threadIdx.x < kColumns)
        for (int p = 0; p < kColumnSplit; ++p) total.dot += partial[p * kColumns + threadIdx.x];
    }
    if (threadIdx.x < kColumns) row_of[threadIdx.x] = Op::finish(total);
    __syncthreads();

    // Pass 3: the outputs.
    Row row[VEC];
    C shift[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      row[j] = row_of[column + j];
      shift[j] = exp_shift(row[j].max);
    }
    // One chunk per trip (plan.py's column_steps: the static model counts trips of this loop).
#pragma unroll 1
    for (Index first = group; first < length; first += chunk) {
#pragma unroll
      for (int s = 0; s < kSteps; ++s) {
        const Index k = first + s * kColumnSplit;
        if (k >= length) break;
        const Index offset = base + k * inner;
        const Access xv = *reinterpret_cast<const Access*>(x + offset);
        Access gv, result;
        if (Op::kReadsDy) gv = *reinterpret_cast<const Access*>(dy + offset);
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const C xj = to_compute(xv.value[j]);
          const C dyj = Op::kReadsDy ? to_compute(gv.value[j]) : C(0);
          result.value[j] = from_compute<T>(Op::output_e(row[j], xj, dyj, row_exp<Op::kFlushExp>(xj, shift[j])));
        }
        if (live) *reinterpret_cast<Access*>(out + offset) = result;
      }
    }
    // The next tile writes partial before its first barrier, but after this
    // tile's last one, which every read of partial precedes; row_max_of and
    // row_of after a barrier of the next tile, which every thread reaches
    // only once done with this tile's.
  }
}

// Blocks per SM the compiler must fit: the strided vector kernel is sized for
// kColumnBlocksPerSm (plan.py: COLUMN_BLOCKS_PER_SM), at most 64 registers;
// with 64-bit indices (arrays past 2^31 elements) 3, at most 80: 64 spilled.
constexpr int kColumnBlocksPerSm = 4;
template <typename Index, int VEC, int LANES>
__device__ constexpr int row_min_blocks() {
  return LANES == 1 && VEC > 1 ? (sizeof(Index) == 4 ? kColumnBlocksPerSm : 3) : 1;
}

// out = Op over each row (rowwise_rows, or rowwise_columns for strided rows
// with 16-byte vectors); dy is read by backward ops only.  out may be x or dy
// itself: each element is read (every pass) by the thread that writes it,
// before it writes it; in rowwise_columns passes 1 and 2 of a tile end at a
// barrier before any of its outputs is written.
template <typename Op, typename T, typename Index, int VEC, int LANES>
__global__ void __launch_bounds__(kElementwiseThreads, (row_min_blocks<Index, VEC, LANES>()))
rowwise(Index rows, Index length, Index inner, T* out, const T* x, const T* dy) {
  if constexpr (LANES == 1 && VEC > 1)
    rowwise_columns<Op, T, Index, VEC>(rows, length, inner, out, x, dy);
  else
    rowwise_rows<Op, T, Index, VEC, LANES>(rows, length, inner, out, x, dy);
}

}  // namespace fastact
