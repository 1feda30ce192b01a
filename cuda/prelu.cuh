// PReLU: y = x if x > 0 else alpha * x, with alpha broadcast against x.
//
// The host reduces every broadcastable alpha to one plan (fastact/backends/kernels/plan.py:
// prelu_plan): x seen as a C-contiguous (outer, channels, inner) array and
// alpha as `channels` contiguous slopes in the compute type, so the slope of
// element i is alpha[(i / inner) % channels].  NCHW (C,1,1) has inner = H*W,
// channels-last (C,) has inner = 1, a per-element alpha has channels = n; a
// scalar alpha takes the ScalarSlope fast path.  Other patterns are permuted
// into channels-last order by the host first.
#pragma once

#include "common.cuh"
#include "elementwise.cuh"

namespace fastact {

template <typename Index>
struct ScalarSlope {
  __device__ ScalarSlope(Index, Index) {}
  __device__ __forceinline__ Index operator()(Index) const { return 0; }
};

// Unsigned division: indices are never negative, and unsigned division is the
// shorter instruction sequence.
template <typename Index>
struct ChannelSlope {
  using Unsigned = decltype(0u + Index());
  Unsigned inner, channels;
  __device__ ChannelSlope(Index inner_, Index channels_) : inner(inner_), channels(channels_) {}
  __device__ __forceinline__ Index operator()(Index i) const {
    return static_cast<Index>((static_cast<Unsigned>(i) / inner) % channels);
  }
};

template <typename C, typename Slope>
struct PreluForwardOp {
  const C* alpha;
  Slope slope;
  template <typename Index>
  __device__ __forceinline__ C operator()(Index i, C x) const {
    return x > C(0) ? x : alpha[slope(i)] * x;  // NaN x: alpha * NaN is NaN
  }
};

// Forward runs in the elementwise engine (vector loads included).
template <template <typename> class Slope, typename T, typename Index, int VEC>
__global__ void __launch_bounds__(kElementwiseThreads)
prelu_forward(Index n, T* y, const T* x, const ComputeType<T>* alpha, Index inner, Index channels) {
  const T* const in[1] = {x};
  const PreluForwardOp<ComputeType<T>, Slope<Index>> op{alpha, Slope<Index>(inner, channels)};
  elementwise_loop<VEC>(op, n, y, in);
}

// Sum of `value` over threadIdx.y for each threadIdx.x, in a fixed tree order
// (the same bits run to run).  blockDim.y must be a power of two; the
// result is valid in the threads with threadIdx.y == 0.
__device__ __forceinline__ double sum_over_rows(double value) {
  __shared__ double rows[kElementwiseThreads];
  const int slot = threadIdx.y * blockDim.x + threadIdx.x;
  rows[slot] = value;
  __syncthreads();
  for (int half = blockDim.y / 2; half > 0; half /= 2) {
    if (static_cast<int>(threadIdx.y) < half) rows[slot] += rows[slot + half * blockDim.x];
#ifndef FASTACT_PLANT_MISSING_BARRIER  // test-only planted bug: a race between tree levels
    __syncthreads();
#endif
  }
  return rows[threadIdx.x];
}

// The per-channel reductions of the backward kernels (prelu_backward,
// bias_act_backward): calls element(i) for every element i of each channel of
// a C-contiguous (outer, channels, inner) array, where element = per_channel(channel)
// (per-channel values loaded once), and writes the per-block sums of what
// element returns to partial.
//
// Block (lanes, rows): threadIdx.x picks the channel, threadIdx.y and
// blockIdx.y walk that channel's outer * inner elements.  The host makes
// lanes = 1 when inner > 1 (consecutive threads read consecutive elements of
// one channel), 32 when inner == 1 (consecutive threads read consecutive
// channels), so reads are coalesced in both layouts.  Block (x, y) writes
// partial[y * channels + channel]; prelu_sum_partials adds the rows of
// partial in order.  Sums are in double, like the NumPy backend's.
template <typename Index, typename PerChannel>
__device__ __forceinline__ void reduce_over_channels(Index outer, Index channels, Index inner, double* partial,
                                                     const PerChannel& per_channel) {
  const Index channel = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x;
  const Index per_channel_count = outer * inner;
  const Index step = static_cast<Index>(gridDim.y) * blockDim.y;
  double sum = 0.0;
  if (channel < channels) {
    const auto element = per_channel(channel);
    for (Index m = static_cast<Index>(blockIdx.y) * blockDim.y + threadIdx.y; m < per_channel_count; m += step) {
      // One division: the 64-bit one is a called routine, and two calls spilled on sm_90.
      const Index row = m / inner;
      sum += element((row * channels + channel) * inner + (m - row * inner));
    }
  }
  const double block_sum = sum_over_rows(sum);
  if (threadIdx.y == 0 && channel < channels) partial[static_cast<Index>(blockIdx.y) * channels + channel] = block_sum;
}

// dx for every element, and per-block partial sums of dalpha.
template <typename T, typename Index>
__global__ void __launch_bounds__(kElementwiseThreads)
prelu_backward(Index outer, Index channels, Index inner, T* dx, const T* dy, const T* x,
               const ComputeType<T>* alpha, double* partial) {
  using C = ComputeType<T>;
  reduce_over_channels(outer, channels, inner, partial, [=](Index channel) {
    const C a = alpha[channel];
    return [=](Index i) {
      const C xv = to_compute(x[i]);
      const C g = to_compute(dy[i]);
      const bool positive = xv > C(0);
      dx[i] = from_compute<T>(isnan(xv) ? xv : (positive ? g : a * g));
      // Exactly 0 at x > 0, whatever dy holds there (inf, NaN).
      return positive ? 0.0 : static_cast<double>(rounded_product(xv, g));
    };
  });
}

// dalpha[c] = sum over k of partial[k * channels + c], k in order.
template <typename Index>
__global__ void __launch_bounds__(kElementwiseThreads)
prelu_sum_partials(Index channels, Index chunks, const double* partial, double* dalpha) {
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index c = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; c < channels; c += stride) {
    double total = 0.0;
    for (Index k = 0; k < chunks; ++k) total += partial[k * channels + c];
    dalpha[c] = total;
  }
}

}  // namespace fastact
