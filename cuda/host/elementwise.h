// The cpu backend's elementwise engine: the activation functors of
// ../activations.cuh applied by vectorized loops on all cores.
//
// The host counterpart of ../elementwise.cuh.  An array is cut into chunks
// of kChunk elements (tasks of the thread pool).  A chunk of operands that
// are all contiguous in the same order runs straight from memory; any other
// layout (steps, transposes, broadcast-free mixes of orders) is gathered
// into per-thread buffers of kChunk elements, computed there and scattered
// back, so no full-size copy is ever made.
//
// The loops are written for the compiler's vectorizer: one `#pragma omp
// simd` loop per chunk in which every call (expf, ...) is unconditional, so
// g++ turns it into calls of libmvec's vector functions (device.h), and
// every selection is a comparison, which becomes a blend.  The NaN rule of
// forward_of/backward_of (../elementwise.cuh) is applied the same way: the
// functor's result is computed for every element and NaN x selected over it.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "../common.cuh"
#include "thread_pool.h"

namespace fastact_host {

using fastact::ComputeType;
using fastact::from_compute;
using fastact::to_compute;
using Index = std::int64_t;

// Elements per task: 16 Ki elements is 64 KiB of float32 per operand, so a
// backward's three operands stay in L2 while a chunk is worked on, and a
// 2**20-element call still has 64 tasks to balance between the threads.
constexpr Index kChunk = 16384;

// Up to this many dimensions per operand (NumPy allows 64).
constexpr int kMaxDims = 64;

// One operand of a strided call: its data, and its byte strides along the
// call's common shape.
struct Operand {
  char* data;
  Index strides[kMaxDims];
};

// The common shape of a strided call, after merging dimensions that are
// contiguous in every operand (see merge_dimensions).
struct Shape {
  int ndim;
  Index extent[kMaxDims];
};

// Merges dimension k into k + 1 wherever every operand steps over k exactly
// as far as over all of k + 1, and drops dimensions of extent 1: a
// transposed matrix keeps two dimensions, a slice of contiguous rows becomes one.
inline void merge_dimensions(Shape& shape, Operand* operands, int count) {
  int kept = 0;
  for (int k = 0; k < shape.ndim; ++k) {
    if (shape.extent[k] == 1) continue;
    bool mergeable = kept > 0;
    for (int o = 0; o < count && mergeable; ++o)
      mergeable = operands[o].strides[kept - 1] == operands[o].strides[k] * shape.extent[k];
    if (mergeable) {
      shape.extent[kept - 1] *= shape.extent[k];
      for (int o = 0; o < count; ++o) operands[o].strides[kept - 1] = operands[o].strides[k];
    } else {
      shape.extent[kept] = shape.extent[k];
      for (int o = 0; o < count; ++o) operands[o].strides[kept] = operands[o].strides[k];
      ++kept;
    }
  }
  if (kept == 0) {  // a single element (or a 0-d array)
    shape.extent[0] = 1;
    for (int o = 0; o < count; ++o) operands[o].strides[0] = 0;
    kept = 1;
  }
  shape.ndim = kept;
}

// Copies `count` elements starting at logical (C-order) element `first` of a
// strided operand to `buffer` (Gather) or back (Scatter).
enum class Direction { kGather, kScatter };

template <typename T, Direction D>
inline void move_strided(const Shape& shape, const Operand& operand, Index first, Index count, T* buffer) {
  const int last = shape.ndim - 1;
  Index position[kMaxDims];
  Index rest = first;
  for (int k = last; k >= 0; --k) {
    position[k] = rest % shape.extent[k];
    rest /= shape.extent[k];
  }
  char* row = operand.data;  // element 0 of the current innermost row
  for (int k = 0; k < last; ++k) row += position[k] * operand.strides[k];
  const Index step = operand.strides[last];
  Index column = position[last];
  for (Index done = 0; done < count;) {
    const Index run = shape.extent[last] - column < count - done ? shape.extent[last] - column : count - done;
    char* p = row + column * step;
    T* b = buffer + done;
    if (D == Direction::kGather) {
      for (Index i = 0; i < run; ++i, p += step) std::memcpy(&b[i], p, sizeof(T));
    } else {
      for (Index i = 0; i < run; ++i, p += step) std::memcpy(p, &b[i], sizeof(T));
    }
    done += run;
    column = 0;
    for (int k = last - 1; k >= 0; --k) {  // the next row: carry through the outer dimensions
      row += operand.strides[k];
      if (++position[k] < shape.extent[k]) break;
      row -= shape.extent[k] * operand.strides[k];
      position[k] = 0;
    }
  }
}

// ---- the vector loops --------------------------------------------------------
// Every loop runs in blocks of kLanes elements (a multiple of every vector
// width: 4, 8 and 16 floats), whole blocks in place and the last, partial
// block on zero-padded copies.  So every element takes the same vector code:
// a compiler's scalar remainder loop would call the C library's scalar expf,
// which can differ from libmvec's vector expf in the last bit, and an
// element's result would depend on where it sits in the array.
constexpr Index kLanes = 64;

template <typename V>
struct Padded {
  V values[kLanes] = {};
  Padded(const V* from, Index count) { std::memcpy(static_cast<void*>(values), from, count * sizeof(V)); }
};

// One block, compiled once: whole blocks and the padded tail call the same
// machine code (inlined at two call sites, g++ may vectorize the two
// differently, e.g. the tail with SSE variants of the vector functions).
template <typename Block, typename Out, typename... In>
__attribute__((noinline)) void one_block(const Block& block, Out* out, const In*... in) {
  block(out, in...);
}

// block(out, in...) over exactly kLanes elements, for n elements.
template <typename Block, typename Out, typename... In>
inline void in_blocks(Index n, const Block& block, Out* out, const In*... in) {
  Index i = 0;
  for (; i + kLanes <= n; i += kLanes) one_block(block, out + i, (in + i)...);
  if (i == n) return;
  Out tail[kLanes];
  one_block(block, tail, static_cast<const In*>(Padded<In>(in + i, n - i).values)...);
  std::memcpy(static_cast<void*>(out + i), tail, (n - i) * sizeof(Out));
}

// y = activation(x), with NaN x giving NaN.
template <typename Activation, typename T>
inline void forward_loop(const Activation activation, T* y, const T* x, Index n) {
  using C = ComputeType<T>;
  in_blocks(n, [&](T* yb, const T* xb) {
    const Activation f = activation;  // a local: stores to yb cannot change it, so the loop vectorizes
#pragma omp simd
    for (Index i = 0; i < kLanes; ++i) {
      const C v = to_compute(xb[i]);
      const C r = f.forward(v);
      yb[i] = from_compute<T>(isnan(v) ? v : r);
    }
  }, y, x);
}

// dx = dy * activation'(x), with NaN x giving NaN.
template <typename Activation, typename T>
inline void backward_loop(const Activation activation, T* dx, const T* dy, const T* x, Index n) {
  using C = ComputeType<T>;
  in_blocks(n, [&](T* dxb, const T* dyb, const T* xb) {
    const Activation f = activation;
#pragma omp simd
    for (Index i = 0; i < kLanes; ++i) {
      const C v = to_compute(xb[i]);
      const C r = to_compute(dyb[i]) * f.derivative(v);
      dxb[i] = from_compute<T>(isnan(v) ? v : r);
    }
  }, dx, dy, x);
}

// with_form(activation, visit) calls visit(activation), or, for a functor
// whose parameter chooses between two whole formulas (Gelu's `approximate`),
// visit(that form with the choice fixed at compile time): a vector loop
// computes both sides of a selection, and both GELU forms (an erfc and an
// exp per element) would cost the sum of the two.
template <typename Activation, typename Visit>
inline void with_form(const Activation& activation, const Visit& visit) {
  visit(activation);
}

template <typename C, int Approximate>
struct GeluForm {
  __forceinline__ C forward(C x) const { return fastact::Gelu<C>{Approximate}.forward(x); }
  __forceinline__ C derivative(C x) const { return fastact::Gelu<C>{Approximate}.derivative(x); }
};

template <typename C, typename Visit>
inline void with_form(const fastact::Gelu<C>& gelu, const Visit& visit) {
  if (gelu.approximate)
    visit(GeluForm<C, 1>());
  else
    visit(GeluForm<C, 0>());
}

// In-place calls pass the same array as output and input: safe, since each
// element is read before it is written in the same iteration, and `omp simd`
// vectorizes without assuming anything about aliasing between iterations.

// Per-thread buffers for the strided path: one chunk of each of up to four
// operands of the widest type, allocated once per thread.
constexpr Index kScratchOperands = 4;
inline char* scratch() {
  thread_local std::vector<double> buffer(kScratchOperands * kChunk);
  return reinterpret_cast<char*>(buffer.data());
}

// Runs `chunk(out, inputs..., count)` over the whole call: on memory when
// every operand is contiguous in one order, else through per-thread buffers.
template <typename T, int Inputs, typename Chunk>
void run_elementwise(Shape shape, Operand* operands, bool flat, Index n, const Chunk& chunk) {
  const Index tasks = (n + kChunk - 1) / kChunk;
  if (flat) {
    ThreadPool::instance().run(tasks, [&](Index t) {
      const Index first = t * kChunk;
      const Index count = n - first < kChunk ? n - first : kChunk;
      T* out = reinterpret_cast<T*>(operands[0].data) + first;
      const T* in[Inputs];
      for (int k = 0; k < Inputs; ++k) in[k] = reinterpret_cast<const T*>(operands[k + 1].data) + first;
      chunk(out, in, count);
    });
    return;
  }
  merge_dimensions(shape, operands, Inputs + 1);
  ThreadPool::instance().run(tasks, [&](Index t) {
    T* buffers = reinterpret_cast<T*>(scratch());
    const Index first = t * kChunk;
    const Index count = n - first < kChunk ? n - first : kChunk;
    const T* in[Inputs];
    for (int k = 0; k < Inputs; ++k) {
      T* buffer = buffers + (k + 1) * kChunk;
      move_strided<T, Direction::kGather>(shape, operands[k + 1], first, count, buffer);
      in[k] = buffer;
    }
    chunk(buffers, in, count);
    move_strided<T, Direction::kScatter>(shape, operands[0], first, count, buffers);
  });
}

}  // namespace fastact_host
