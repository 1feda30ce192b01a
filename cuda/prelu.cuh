// PReLU: y = x if x > 0 else alpha * x, with alpha broadcast against x; and
// the per-channel loops that PReLU and bias_act (bias_act.cuh) share.
//
// The host reduces every broadcastable alpha to one plan (fastact/backends/kernels/plan.py:
// prelu_plan): x seen as a C-contiguous (outer, channels, inner) array and
// alpha as `channels` contiguous slopes in the compute type, so the slope of
// element i is alpha[(i / inner) % channels].  NCHW (C,1,1) has inner = H*W,
// channels-last (C,) has inner = 1, a per-element alpha has channels = n, a
// scalar alpha has channels = 1.  Other patterns are permuted into
// channels-last order by the host first.
//
// Forward (channel_loop): 16-byte vectors of x, and the channel values of a
// vector found once per vector, never per element (ChannelLayout says how);
// the host picks the layout (plan.py: channel_layout).
// Backward (reduce_planes, reduce_rows): dx for every element and per-block
// partial sums per channel, 16-byte vectors where the layout allows; a second
// small kernel (prelu_sum_partials) adds the blocks' sums in order, so the
// result has the same bits run to run.
#pragma once

#include "common.cuh"
#include "divider.cuh"
#include "elementwise.cuh"

namespace fastact {

// The channel of flat element i of a C-contiguous (outer, channels, inner) array.
template <typename Index>
struct ChannelOf {
  Divider<Index> inner;
  Divider<Index> channels;
  __device__ __forceinline__ Index operator()(Index i) const {
    Index rest = inner.div(i);
    return channels.take(rest);
  }
};

// How the forward kernels find the channel values (slopes, biases) of a
// vector of VEC elements starting at flat element `first` (a multiple of VEC):
//   kOneChannel  channels == 1: one value, loaded once per thread;
//   kPlanes      inner >= VEC: a vector spans at most two channels, the one of
//                its first element and the next (wrapping to 0): two loads
//                and a select per element;
//   kRows        inner == 1 and channels % VEC == 0 and the table 16-byte
//                aligned: the vector's channels are VEC consecutive values,
//                loaded as vectors;
//   kWholePlanes inner a multiple of VEC: a vector lies in one plane, one
//                value per vector;
//   kAnyLayout   everything else, and the scalar path (VEC == 1): the
//                channel of each element by two fast divisions.
enum ChannelLayout : int { kOneChannel = 0, kPlanes = 1, kRows = 2, kAnyLayout = 3, kWholePlanes = 4 };

template <int LAYOUT, int VEC, typename Index, typename C>
__device__ __forceinline__ void channel_values(const ChannelOf<Index>& where, const C* table, C only, Index first,
                                               C (&values)[VEC]) {
  if constexpr (LAYOUT == kOneChannel) {
#pragma unroll
    for (int j = 0; j < VEC; ++j) values[j] = only;
  } else if constexpr (LAYOUT == kPlanes) {
    const Index plane = where.inner.div(first);
    const Index room = (plane + 1) * where.inner.divisor - first;  // elements left in the first plane (>= 1)
    Index rest = plane;
    const Index channel = where.channels.take(rest);
    const Index next = channel + 1 == where.channels.divisor ? Index(0) : channel + 1;
    const C here = table[channel];
    const C there = room < VEC ? table[next] : here;
#pragma unroll
    for (int j = 0; j < VEC; ++j) values[j] = j < room ? here : there;
  } else if constexpr (LAYOUT == kWholePlanes) {
    Index rest = where.inner.div(first);
    const C value = table[where.channels.take(rest)];
#pragma unroll
    for (int j = 0; j < VEC; ++j) values[j] = value;
  } else if constexpr (LAYOUT == kRows) {
    constexpr int kPerLoad = 16 / sizeof(C) < VEC ? 16 / sizeof(C) : VEC;
    using Load = Vector<C, kPerLoad>;
    const Index channel = first - where.channels.div(first) * where.channels.divisor;
#pragma unroll
    for (int k = 0; k < VEC / kPerLoad; ++k) {
      const Load loaded = *reinterpret_cast<const Load*>(table + channel + k * kPerLoad);
#pragma unroll
      for (int j = 0; j < kPerLoad; ++j) values[k * kPerLoad + j] = loaded.value[j];
    }
  } else {
#pragma unroll
    for (int j = 0; j < VEC; ++j) values[j] = table[where(first + j)];
  }
}

// out[i] = op(in[i], value of i's channel) for every element: the
// elementwise engine's grid-stride loop over 16-byte vectors (VEC elements,
// or 1 when a pointer is not 16-byte aligned), then the n % VEC tail.
// out may be in itself: each element is read before it is written, by the same thread.
template <int LAYOUT, int VEC, typename Op, typename Index, typename T, typename C>
__device__ __forceinline__ void channel_loop(const Op& op, const ChannelOf<Index>& where, Index n, T* out,
                                             const T* in, const C* table) {
  using Chunk = Vector<T, VEC>;
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  const Index first = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x;
  const Index chunks = n / VEC;
  const C only = LAYOUT == kOneChannel ? table[0] : C(0);
  if constexpr (sizeof(T) == 8) {
#pragma unroll 1  // float64: one chunk per trip, as elementwise_loop
    for (Index c = first; c < chunks; c += stride) {
      const Chunk loaded = reinterpret_cast<const Chunk*>(in)[c];
      C values[VEC];
      channel_values<LAYOUT>(where, table, only, c * VEC, values);
      Chunk result;
#pragma unroll
      for (int j = 0; j < VEC; ++j) result.value[j] = from_compute<T>(op(to_compute(loaded.value[j]), values[j]));
      reinterpret_cast<Chunk*>(out)[c] = result;
    }
  } else {
    for (Index c = first; c < chunks; c += stride) {
      const Chunk loaded = reinterpret_cast<const Chunk*>(in)[c];
      C values[VEC];
      channel_values<LAYOUT>(where, table, only, c * VEC, values);
      Chunk result;
#pragma unroll
      for (int j = 0; j < VEC; ++j) result.value[j] = from_compute<T>(op(to_compute(loaded.value[j]), values[j]));
      reinterpret_cast<Chunk*>(out)[c] = result;
    }
  }
  for (Index i = chunks * VEC + first; i < n; i += stride) {
    const C value = LAYOUT == kOneChannel ? only : table[where(i)];
    out[i] = from_compute<T>(op(to_compute(in[i]), value));
  }
}

template <typename C>
struct PreluForwardOp {
  __device__ __forceinline__ C operator()(C x, C alpha) const {
    return x > C(0) ? x : alpha * x;  // NaN x: alpha * NaN is NaN
  }
};

template <int LAYOUT, typename T, typename Index, int VEC>
__global__ void __launch_bounds__(kElementwiseThreads, (ElementwiseOccupancy<T, Index>::kBlocks))
prelu_forward(ChannelOf<Index> where, Index n, T* y, const T* x, const ComputeType<T>* alpha) {
  channel_loop<LAYOUT, VEC>(PreluForwardOp<ComputeType<T>>{}, where, n, y, x, alpha);
}

// ---------------------------------------------------------------------------
// Backward: dx, and per-block partial sums per channel.
// ---------------------------------------------------------------------------

// value[k] summed over threadIdx.y for each threadIdx.x, in a fixed tree order
// (the same bits run to run).  blockDim.y must be a power of two; the
// results are valid in the threads with threadIdx.y == 0.
// The same in place on N shared arrays of a value per thread (rows[k * kElementwiseThreads + thread],
// thread = threadIdx.y * blockDim.x + threadIdx.x), every thread's values written before the call
// and a barrier since; the results are rows[k * kElementwiseThreads + threadIdx.x].
template <int N>
__device__ __forceinline__ void sum_rows(double* rows) {
  const int slot = threadIdx.y * blockDim.x + threadIdx.x;
  for (int half = blockDim.y / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.y) < half) {
#pragma unroll
      for (int k = 0; k < N; ++k)
        rows[k * kElementwiseThreads + slot] += rows[k * kElementwiseThreads + slot + half * blockDim.x];
    }
#ifndef FASTACT_PLANT_MISSING_BARRIER  // test-only planted bug: a race between tree levels
    __syncthreads();
#endif
  }
}

template <int N>
__device__ __forceinline__ void sum_over_rows(double (&value)[N]) {
  __shared__ double rows[N * kElementwiseThreads];
  const int slot = threadIdx.y * blockDim.x + threadIdx.x;
#pragma unroll
  for (int k = 0; k < N; ++k) rows[k * kElementwiseThreads + slot] = value[k];
  __syncthreads();
  sum_rows<N>(rows);
#pragma unroll
  for (int k = 0; k < N; ++k) value[k] = rows[k * kElementwiseThreads + threadIdx.x];
}

// The VEC values of one vector added up in a fixed pairwise tree (depth log2 VEC).
template <int VEC, typename C>
__device__ __forceinline__ C tree_sum(C (&v)[VEC]) {
#pragma unroll
  for (int width = VEC / 2; width > 0; width /= 2) {
#pragma unroll
    for (int j = 0; j < width; ++j) v[j] += v[j + width];
  }
  return v[0];
}

// The backward of one element: returns dx and sets `term`, what the element
// adds to its channel's sum.
template <typename C>
struct PreluBackwardOp {
  __device__ __forceinline__ C operator()(C x, C g, C alpha, C& term) const {
    const bool positive = x > C(0);
    term = positive ? C(0) : rounded_product(x, g);  // exactly 0 at x > 0, whatever dy holds there (inf, NaN)
    return isnan(x) ? x : (positive ? g : alpha * g);
  }
};

// inner > 1: block (1, rows) works on channel blockIdx.x, its rows (threadIdx.y)
// and blockIdx.y walking that channel's outer * inner / VEC vectors; with
// VEC > 1 (inner % VEC == 0, pointers 16-byte aligned) a vector lies in one
// plane, so the channel is fixed per block.  A thread keeps its place as a
// (plane, vector) pair advanced by the grid step, with no division in the
// loop.  Each vector's VEC terms are added in float in a fixed tree (depth
// log2 VEC: at most 3 roundings of float per term), then into the thread's
// double sum; blocks' rows in double (sum_over_rows), blocks in order in
// double (prelu_sum_partials).  Block (x, y) writes partial[y * channels + x].
template <int VEC, typename Op, typename Index, typename T, typename C>
__device__ __forceinline__ void reduce_planes(const Op& op, Index outer, Index channels, Index inner, T* dx,
                                              const T* dy, const T* x, const C* values, double* partial) {
  using Chunk = Vector<T, VEC>;
  const Index channel = blockIdx.x;
  const Index run = inner / VEC;  // vectors per plane
  const Index count = outer * run;
  const Index step = static_cast<Index>(gridDim.y) * blockDim.y;
  const Index plane_stride = channels * run;
  const Index start = channel * run;
  Index m = static_cast<Index>(blockIdx.y) * blockDim.y + threadIdx.y;
  Index plane = m / run, k = m - plane * run;  // once per thread
  const Index step_planes = step / run, step_k = step - step_planes * run;
  const C value = values[channel];
  double sum[1] = {0.0};
  for (; m < count; m += step) {
    const Index at = plane * plane_stride + start + k;
    const Chunk xs = reinterpret_cast<const Chunk*>(x)[at];
    const Chunk gs = reinterpret_cast<const Chunk*>(dy)[at];
    C terms[VEC];
    Chunk result;
#pragma unroll
    for (int j = 0; j < VEC; ++j)
      result.value[j] = from_compute<T>(op(to_compute(xs.value[j]), to_compute(gs.value[j]), value, terms[j]));
    reinterpret_cast<Chunk*>(dx)[at] = result;
    sum[0] += static_cast<double>(tree_sum(terms));
    k += step_k;
    plane += step_planes;
    if (k >= run) {
      k -= run;
      plane += 1;
    }
  }
  sum_over_rows(sum);
  if (threadIdx.y == 0) partial[static_cast<Index>(blockIdx.y) * channels + channel] = sum[0];
}

// inner == 1 (channels-last): block (lanes, rows); threadIdx.x + blockIdx.x *
// lanes picks a vector of VEC consecutive channels (channels % VEC == 0 and
// pointers 16-byte aligned when VEC > 1), threadIdx.y and blockIdx.y walk the
// outer rows.  Each element's term goes into its channel's double sum (one
// per channel in the thread, added in row order; no two terms of a channel
// share a vector).  The thread's VEC sums live in shared memory, read and
// written at every row: in registers, 8 double sums (16-byte float16
// vectors) took 48 registers on sm_90, and the kernel must fit 32 for the 8
// blocks per SM its grid is sized for.  Then the block's rows in double
// (sum_rows, in place), blocks in order (prelu_sum_partials).
template <int VEC, typename Op, typename Index, typename T, typename C>
__device__ __forceinline__ void reduce_rows(const Op& op, Index outer, Index channels, T* dx, const T* dy,
                                            const T* x, const C* values, double* partial) {
  using Chunk = Vector<T, VEC>;
  __shared__ double sums[VEC * kElementwiseThreads];  // [channel of the vector][thread]
  // volatile: read and written in shared memory at every row; kept in registers by the compiler,
  // the sums of 8 channels took 16 of them.
  volatile double* const mine = sums + threadIdx.y * blockDim.x + threadIdx.x;
#pragma unroll
  for (int j = 0; j < VEC; ++j) mine[j * kElementwiseThreads] = 0.0;
  const Index vectors = channels / VEC;  // per row
  const Index vector = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (vector < vectors) {
    C value[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) value[j] = values[vector * VEC + j];
    const Index step = static_cast<Index>(gridDim.y) * blockDim.y;
#pragma unroll 1
    for (Index row = static_cast<Index>(blockIdx.y) * blockDim.y + threadIdx.y; row < outer; row += step) {
      const Index at = row * vectors + vector;
      const Chunk xs = reinterpret_cast<const Chunk*>(x)[at];
      const Chunk gs = reinterpret_cast<const Chunk*>(dy)[at];
      Chunk result;
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        C term;
        result.value[j] = from_compute<T>(op(to_compute(xs.value[j]), to_compute(gs.value[j]), value[j], term));
        mine[j * kElementwiseThreads] += static_cast<double>(term);
      }
      reinterpret_cast<Chunk*>(dx)[at] = result;
    }
  }
  __syncthreads();
  sum_rows<VEC>(sums);
  if (threadIdx.y == 0 && vector < vectors) {
#pragma unroll
    for (int j = 0; j < VEC; ++j)
      partial[static_cast<Index>(blockIdx.y) * channels + vector * VEC + j] = sums[j * kElementwiseThreads + threadIdx.x];
  }
}

// Either of the two by the layout (kPlanes: inner > 1, kRows: inner == 1).
template <int LAYOUT, int VEC, typename Op, typename Index, typename T, typename C>
__device__ __forceinline__ void reduce_over_channels(const Op& op, Index outer, Index channels, Index inner, T* dx,
                                                     const T* dy, const T* x, const C* values, double* partial) {
  static_assert(LAYOUT == kPlanes || LAYOUT == kRows, "the backward kernels take kPlanes or kRows");
  if constexpr (LAYOUT == kPlanes) {
    reduce_planes<VEC>(op, outer, channels, inner, dx, dy, x, values, partial);
  } else {
    reduce_rows<VEC>(op, outer, channels, dx, dy, x, values, partial);
  }
}

// dx for every element, and per-block partial sums of dalpha.
template <int LAYOUT, typename T, typename Index, int VEC>
__global__ void __launch_bounds__(kElementwiseThreads)
prelu_backward(Index outer, Index channels, Index inner, T* dx, const T* dy, const T* x,
               const ComputeType<T>* alpha, double* partial) {
  reduce_over_channels<LAYOUT, VEC>(PreluBackwardOp<ComputeType<T>>{}, outer, channels, inner, dx, dy, x, alpha,
                                    partial);
}

// dalpha[c] = sum over k of partial[k * channels + c], k in order, in double; stored as Out: double, or float
// for a float32 parameter (its gradient in its own dtype: the one rounding a float64 -> float32 astype makes,
// without that extra launch on the host path).
template <typename Index, typename Out>
__global__ void __launch_bounds__(kElementwiseThreads)
prelu_sum_partials(Index channels, Index chunks, const double* partial, Out* dalpha) {
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index c = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; c < channels; c += stride) {
    double total = 0.0;
    for (Index k = 0; k < chunks; ++k) total += partial[k * channels + c];
    dalpha[c] = static_cast<Out>(total);
  }
}

}  // namespace fastact
