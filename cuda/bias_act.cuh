// bias_act: y = activation(x + bias[channel]), and its backward, for any
// activation functor (activations.cuh): the epilogue of the fused calls.
//
// The host (fastact/backends/kernels/fused.py) sees x as a C-contiguous (outer, channels, inner)
// array, the same form as PReLU's: NCHW with the bias on axis 1 has
// inner = H*W, channels-last has inner = 1.  The bias arrives as `channels`
// contiguous values already in the compute type, so x + bias is one rounding
// in the compute type, as in the NumPy backend.  Both directions run in
// PReLU's per-channel loops (prelu.cuh), with the layouts the host picks.
#pragma once

#include "common.cuh"
#include "divider.cuh"
#include "elementwise.cuh"
#include "prelu.cuh"

namespace fastact {

// T: the storage type the result is rounded to, which picks the functor's
// math (its cheaper 16-bit forms for float16 and bfloat16, as the
// elementwise kernels use; common.cuh).
template <typename Activation, typename T>
struct BiasActForwardOp {
  Activation activation;
  template <typename C>
  __device__ __forceinline__ C operator()(C x, C bias) const { return forward_of<T>(activation, x + bias); }
};

// One read and one write per element, 16-byte vectors when x and y are
// aligned; the bias values of a vector are found once per vector (ChannelLayout).
// Built for the elementwise kernels' occupancy (ElementwiseOccupancy: 8
// blocks per SM with 32-bit indices, as the grid assumes, but for the float64
// kernels in BiasActSpillsAt32Registers).
// The float64 forward kernels that spill (or take a stack frame) at 32
// registers on sm_90, built without the cap (as SpillsAt32Registers).
template <int LAYOUT, typename Activation>
struct BiasActSpillsAt32Registers {
  static constexpr bool value = false;
};
template <int LAYOUT> struct BiasActSpillsAt32Registers<LAYOUT, Softplus<double>> { static constexpr bool value = true; };
template <int LAYOUT> struct BiasActSpillsAt32Registers<LAYOUT, HardSigmoid<double>> { static constexpr bool value = true; };
template <int LAYOUT> struct BiasActSpillsAt32Registers<LAYOUT, HardSilu<double>> { static constexpr bool value = true; };
template <int LAYOUT> struct BiasActSpillsAt32Registers<LAYOUT, Mish<double>> { static constexpr bool value = LAYOUT == kRows; };

template <int LAYOUT, typename Activation, typename T, typename Index, int VEC>
__global__ void __launch_bounds__(kElementwiseThreads,
                                  (ElementwiseOccupancy<T, Index, BiasActSpillsAt32Registers<LAYOUT, Activation>::value>::kBlocks))
bias_act_forward(Activation activation, ChannelOf<Index> where, Index n, T* y, const T* x,
                 const ComputeType<T>* bias) {
  channel_loop<LAYOUT, VEC>(BiasActForwardOp<Activation, T>{activation}, where, n, y, x, bias);
}

// dx = dy * activation'(x + bias); the element's term of dbias is dx itself
// (in the compute type, before the rounding to T).
template <typename Activation, typename T>
struct BiasActBackwardOp {
  Activation activation;
  template <typename C>
  __device__ __forceinline__ C operator()(C x, C g, C bias, C& term) const {
    term = backward_of<T>(activation, g, x + bias);
    return term;
  }
};

// dx for every element and per-block partial sums of dbias (prelu_sum_partials
// adds them up in order).  dx may be x itself: each element is read before it
// is written, by the same thread.
template <int LAYOUT, typename Activation, typename T, typename Index, int VEC>
__global__ void __launch_bounds__(kElementwiseThreads)
bias_act_backward(Activation activation, Index outer, Index channels, Index inner, T* dx, const T* dy, const T* x,
                  const ComputeType<T>* bias, double* partial) {
  reduce_over_channels<LAYOUT, VEC>(BiasActBackwardOp<Activation, T>{activation}, outer, channels, inner, dx, dy, x,
                                    bias, partial);
}

}  // namespace fastact
