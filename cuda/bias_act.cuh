// bias_act: y = activation(x + bias[channel]), and its backward, for any
// activation functor (activations.cuh): the epilogue of the fused calls.
//
// The host (fastact/backends/kernels/fused.py) sees x as a C-contiguous (outer, channels, inner)
// array, the same form as PReLU's: NCHW with the bias on axis 1 has
// inner = H*W, channels-last has inner = 1.  The bias arrives as `channels`
// contiguous values already in the compute type, so x + bias is one rounding
// in the compute type, as in the NumPy backend.
#pragma once

#include "common.cuh"
#include "divider.cuh"
#include "elementwise.cuh"
#include "prelu.cuh"

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

template <typename Activation, typename C, typename Index>
struct BiasActForwardOp {
  Activation activation;
  const C* bias;
  ChannelOf<Index> channel_of;
  __device__ __forceinline__ C operator()(Index i, C x) const { return forward_of(activation, x + bias[channel_of(i)]); }
};

// Forward runs in the elementwise engine: one read and one write per element,
// 16-byte vectors when x and y are aligned (in both layouts: the bias index
// is computed per element, so a vector may straddle channels).
template <typename Activation, typename T, typename Index, int VEC>
__global__ void __launch_bounds__(kElementwiseThreads)
bias_act_forward(Activation activation, ChannelOf<Index> channel_of, Index n, T* y, const T* x,
                 const ComputeType<T>* bias) {
  const T* const in[1] = {x};
  const BiasActForwardOp<Activation, ComputeType<T>, Index> op{activation, bias, channel_of};
  elementwise_loop<VEC>(op, n, y, in);
}

// dx = dy * activation'(x + bias) for every element, and per-block partial
// sums of dbias (in double; prelu_sum_partials adds them up in order).  The
// block walks channels as prelu_backward does (reduce_over_channels).
// dx may be x itself: each element is read before it is written, by the same thread.
template <typename Activation, typename T, typename Index>
__global__ void __launch_bounds__(kElementwiseThreads)
bias_act_backward(Activation activation, Index outer, Index channels, Index inner, T* dx, const T* dy, const T* x,
                  const ComputeType<T>* bias, double* partial) {
  using C = ComputeType<T>;
  reduce_over_channels(outer, channels, inner, partial, [=](Index channel) {
    const C b = bias[channel];
    return [=](Index i) {
      const C gradient = backward_of(activation, to_compute(dy[i]), to_compute(x[i]) + b);
      dx[i] = from_compute<T>(gradient);
      return static_cast<double>(gradient);
    };
  });
}

}  // namespace fastact
