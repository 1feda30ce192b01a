// The elementwise engine: the one loop every elementwise activation runs in.
//
// Modelled on PyTorch's Loops.cuh / MemoryAccess.cuh.  An activation supplies
// only an operation `op(index, values...)` on compute-type values; the engine
// owns indexing, the grid-stride loop, 16-byte vector accesses and the
// conversions between storage and compute types.
//
// The host (fastact/backends/kernels/plan.py) picks the template arguments:
//   VEC   elements per 16-byte access, or 1 when any pointer is not 16-byte
//         aligned (the scalar path);
//   Index int when n plus one grid stride fits in 31 bits (cheaper integer
//         math and fewer registers), long long beyond that.
// Pointers are not __restrict__: out may be an input itself (in-place calls);
// each element is read and written by the same thread, so that is safe.
#pragma once

#include "common.cuh"
#include "activations.cuh"

namespace fastact {

// Threads per block of every elementwise launch (the host uses the same number).
constexpr int kElementwiseThreads = 256;
// Resident blocks per SM the launches are sized for (plan.py: BLOCKS_PER_SM).
constexpr int kElementwiseBlocksPerSM = 8;

// The occupancy an activation kernel is built for: 8 blocks per SM (at most
// 32 registers a thread) with 32-bit indices, the kernels the static model
// (python -m fastact gpu-model) holds to the copy roofline; without a cap for
// 64-bit indices, where the cap made the compiler spill around the 64-bit
// address arithmetic (python -m fastact.cuda_check), and for the float64
// kernels in SpillsAt32Registers.
template <typename T, typename Index, bool SPILLS_AT_32 = false>
struct ElementwiseOccupancy {
  static constexpr int kBlocks =
      sizeof(Index) == 4 && !(sizeof(T) == 8 && SPILLS_AT_32) ? kElementwiseBlocksPerSM : 1;
};

// The float64 activation kernels that spill when held to 32 registers on
// sm_90 (the double slow paths of exp, log1p and erfc are called routines,
// and the values live across those calls do not fit): built without the cap.
// bias_act.cuh has the list of its forward kernels.
template <bool BACKWARD, typename Activation>
struct SpillsAt32Registers {
  static constexpr bool value = false;
};
template <> struct SpillsAt32Registers<true, Gelu<double>> { static constexpr bool value = true; };
template <> struct SpillsAt32Registers<false, Softplus<double>> { static constexpr bool value = true; };
template <> struct SpillsAt32Registers<true, Tanh<double>> { static constexpr bool value = true; };
template <> struct SpillsAt32Registers<true, Mish<double>> { static constexpr bool value = true; };

template <typename T, int N>
struct alignas(sizeof(T) * N) Vector {
  T value[N];
};

// op(index, input values...) for ARITY 1 and 2, from the loaded vectors.
template <typename Op, typename Index, typename T, int VEC>
__device__ __forceinline__ auto apply(const Op& op, Index i, const Vector<T, VEC> (&in)[1], int j) {
  return op(i, to_compute(in[0].value[j]));
}
template <typename Op, typename Index, typename T, int VEC>
__device__ __forceinline__ auto apply(const Op& op, Index i, const Vector<T, VEC> (&in)[2], int j) {
  return op(i, to_compute(in[0].value[j]), to_compute(in[1].value[j]));
}

template <int VEC, typename Index, typename T, typename Op, int ARITY>
__device__ __forceinline__ void elementwise_loop(const Op& op, Index n, T* out, const T* const (&in)[ARITY]) {
  using Chunk = Vector<T, VEC>;
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  const Index first = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x;
  const Index chunks = n / VEC;

  // Whole 16-byte chunks: one vector load per input, one vector store.
  if constexpr (sizeof(T) == 8) {
    // float64: one chunk per trip.  Unrolled (by 4, the compiler's choice for
    // the other types), the chunks' loads in flight took 34 to 78 registers;
    // one chunk at a time fits most kernels in 32 (8 blocks per SM) without spills.
#pragma unroll 1
    for (Index c = first; c < chunks; c += stride) {
      Chunk loaded[ARITY];
#pragma unroll
      for (int a = 0; a < ARITY; ++a) loaded[a] = reinterpret_cast<const Chunk*>(in[a])[c];
      Chunk result;
#pragma unroll
      for (int j = 0; j < VEC; ++j) result.value[j] = from_compute<T>(apply(op, c * VEC + j, loaded, j));
      reinterpret_cast<Chunk*>(out)[c] = result;
    }
  } else {
    for (Index c = first; c < chunks; c += stride) {
      Chunk loaded[ARITY];
#pragma unroll
      for (int a = 0; a < ARITY; ++a) loaded[a] = reinterpret_cast<const Chunk*>(in[a])[c];
      Chunk result;
#pragma unroll
      for (int j = 0; j < VEC; ++j) result.value[j] = from_compute<T>(apply(op, c * VEC + j, loaded, j));
      reinterpret_cast<Chunk*>(out)[c] = result;
    }
  }

  // The tail (n % VEC elements, empty when VEC == 1), one element per thread.
#ifdef FASTACT_PLANT_TAIL_OFF_BY_ONE  // test-only planted bug: skips the first tail element
  const Index tail_start = chunks * VEC + 1;
#else
  const Index tail_start = chunks * VEC;
#endif
  for (Index i = tail_start + first; i < n; i += stride) {
    Vector<T, 1> loaded[ARITY];
#pragma unroll
    for (int a = 0; a < ARITY; ++a) loaded[a].value[0] = in[a][i];
    out[i] = from_compute<T>(apply(op, i, loaded, 0));
  }
}

// How every kernel applies an activation functor (activations.cuh), here and
// in the fused epilogues.  NaN in x gives NaN in y and dx for every
// activation (README.md, Conventions: NaN in, NaN out): the rule is applied here, once, explicitly, rather
// than left to each functor's math (a clamp or a selection can turn a NaN
// into a number).  The backward is dy * derivative(x), an IEEE product.
// The functor's value is computed for every x and NaN selected over it, as
// the cpu backend does: `isnan(x) ? x : f(x)` compiled to a branch around
// f per element, which kept the compiler from interleaving the elements of
// a vector.  T is the storage type the result is rounded to (the functors
// use cheaper math for 16-bit storage, see common.cuh); the fused epilogues
// call these with its default, the compute type.
template <typename T = void, typename Activation, typename C>
__device__ __forceinline__ C forward_of(const Activation& activation, C x) {
  const C y = activation.template forward<StorageOr<T, C>>(x);
  return isnan(x) ? x : y;
}

template <typename T = void, typename Activation, typename C>
__device__ __forceinline__ C backward_of(const Activation& activation, C dy, C x) {
  const C dx = dy * activation.template derivative<StorageOr<T, C>>(x);
  return isnan(x) ? x : dx;
}

// Forward and backward of an activation functor as engine operations, on
// results stored as T.
template <typename Activation, typename T>
struct ForwardOp {
  Activation activation;
  template <typename Index, typename C>
  __device__ __forceinline__ C operator()(Index, C x) const { return forward_of<T>(activation, x); }
};

template <typename Activation, typename T>
struct BackwardOp {
  Activation activation;
  template <typename Index, typename C>
  __device__ __forceinline__ C operator()(Index, C dy, C x) const { return backward_of<T>(activation, dy, x); }
};

template <typename T, typename Activation>
__device__ __forceinline__ ForwardOp<Activation, T> forward_op(const Activation& activation) { return {activation}; }
template <typename T, typename Activation>
__device__ __forceinline__ BackwardOp<Activation, T> backward_op(const Activation& activation) { return {activation}; }

// with_form(activation, run) calls run(activation), or, for a functor whose
// parameters choose between whole formulas (Gelu's `approximate`, Relu's
// alpha == 0 and has_max),
// run(that form with the choice fixed at compile time), so that each loop
// holds one formula, not both behind a branch per element
// (cuda/host/elementwise.h does the same for the cpu backend's vector loops).
template <typename Activation, typename Run>
__device__ __forceinline__ void with_form(const Activation& activation, const Run& run) {
  run(activation);
}

template <typename C, typename Run>
__device__ __forceinline__ void with_form(const Relu<C>& relu, const Run& run) {
  const C a = relu.alpha, m = relu.max_value, t = relu.threshold;
  if (relu.alpha == C(0)) {
    if (relu.has_max) run(ReluForm<C, true, true>{a, m, t});
    else run(ReluForm<C, true, false>{a, m, t});
  } else {
    if (relu.has_max) run(ReluForm<C, false, true>{a, m, t});
    else run(ReluForm<C, false, false>{a, m, t});
  }
}

template <typename C, typename Run>
__device__ __forceinline__ void with_form(const Gelu<C>& gelu, const Run& run) {
  if (gelu.approximate)
    run(GeluForm<C, 1>());
  else
    run(GeluForm<C, 0>());
}

// y = activation.forward(x).  The functor is passed by value: it is the
// activation's parameter struct (see activations.cuh).  Built for 8 blocks
// per SM where ElementwiseOccupancy says so (plan.py's grid assumes 8).
template <typename Activation, typename T, typename Index, int VEC>
__global__ void __launch_bounds__(kElementwiseThreads,
                                   (ElementwiseOccupancy<T, Index, SpillsAt32Registers<false, Activation>::value>::kBlocks))
activation_forward(Activation activation, Index n, T* y, const T* x) {
  const T* const in[1] = {x};
  with_form(activation, [&](const auto& form) {
    elementwise_loop<VEC>(forward_op<T>(form), n, y, in);
  });
}

// dx = dy * activation.derivative(x).
template <typename Activation, typename T, typename Index, int VEC>
__global__ void __launch_bounds__(kElementwiseThreads,
                                   (ElementwiseOccupancy<T, Index, SpillsAt32Registers<true, Activation>::value>::kBlocks))
activation_backward(Activation activation, Index n, T* dx, const T* dy, const T* x) {
  const T* const in[2] = {dy, x};
  with_form(activation, [&](const auto& form) {
    elementwise_loop<VEC>(backward_op<T>(form), n, dx, in);
  });
}

}  // namespace fastact
