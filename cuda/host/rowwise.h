// softmax and log_softmax rows on the host.
//
// The host counterpart of ../rowwise.cuh, with its row ops (SoftmaxForward,
// LogSoftmaxBackward, ...: the stats each needs, the per-row constants and
// the output of one element) used unchanged.  Rows are contiguous (the
// Python side moves the axis last when it is not); each row takes three
// vector passes: its max (NaN kept), e = exp(x - max) with its double sums,
// and the output from e.  A row is far smaller than L2 in every realistic case, so
// passes 2 and 3 read it from cache.  Tasks are groups of whole rows: the
// result does not depend on the thread count.
#pragma once

#include <limits>
#include <vector>

#include "../rowwise_ops.cuh"
#include "elementwise.h"

namespace fastact_host {

// Pass 1 over one block of kLanes elements: the block's max and whether it holds a NaN.
template <typename T>
__attribute__((noinline)) void block_max(const T* x, ComputeType<T>& top, bool& nan) {
  using C = ComputeType<T>;
  C m = -std::numeric_limits<C>::infinity();
  int n = 0;  // an int count, not a bool ||: g++ 12 does not vectorize a loop with a bool reduction
#pragma omp simd reduction(max : m) reduction(+ : n)
  for (Index k = 0; k < kLanes; ++k) {
    const C v = to_compute(x[k]);
    m = v > m ? v : m;
    n += isnan(v) ? 1 : 0;
  }
  top = top > m ? top : m;
  nan = nan || n != 0;
}

// Pass 2 over one block: e = exp(x - max) (0 for x = -inf) into `e`, and its
// sums in double (the row op's Dot says which second sum).
template <typename Op, typename T>
__attribute__((noinline)) void block_sums(const T* x, const T* dy, ComputeType<T> top, ComputeType<T>* e,
                                          double& sum, double& dot) {
  using C = ComputeType<T>;
  using fastact::Dot;
  constexpr Dot kDot = Op::Stats::kDot;
  double s = 0.0, d = 0.0;
#pragma omp simd reduction(+ : s, d)
  for (Index k = 0; k < kLanes; ++k) {
    // fastact::exp_below (../rowwise_ops.cuh) with its exp unconditional: g++
    // vectorizes no call inside a branch.  (On sm_90 the unconditional double
    // exp made the row kernels spill, so the CUDA side keeps its branch.)
    const C xk = to_compute(x[k]);
    const C ek = exp(xk - top);
    const C v = xk == -std::numeric_limits<C>::infinity() ? C(0) : ek;
    e[k] = v;
    s += v;
    if (kDot == Dot::kWeighted) d += double(to_compute(dy[k])) * v;
    if (kDot == Dot::kPlain) d += to_compute(dy[k]);
  }
  sum += s;
  dot += d;
}

// Pass 3 over one block: the output from x, dy and e.
template <typename Op, typename T, typename Row>
__attribute__((noinline)) void block_output(const Row& constants, T* out, const T* x, const T* dy,
                                            const ComputeType<T>* e) {
  using C = ComputeType<T>;
  const Row row = constants;
#pragma omp simd
  for (Index k = 0; k < kLanes; ++k) {
    const C g = Op::kReadsDy ? to_compute(dy[k]) : C(0);
    out[k] = from_compute<T>(Op::output_e(row, to_compute(x[k]), g, e[k]));
  }
}

// One contiguous row, in blocks of kLanes elements (the last block on padded
// copies: x = -inf and dy = 0 add nothing to the max or the sums), so every
// element takes the same vector code, as in the elementwise engine.
// e = exp(x - max) is computed once (pass 2) and kept for pass 3 in a
// per-thread buffer: one exp per element, not two.
template <typename Op, typename T>
void row(T* out, const T* x, const T* dy, Index length) {
  using C = ComputeType<T>;
  thread_local std::vector<C> es;
  const Index blocks = (length + kLanes - 1) / kLanes;
  if (static_cast<Index>(es.size()) < blocks * kLanes) es.resize(blocks * kLanes);
  C* e = es.data();
  T pad_x[kLanes], pad_dy[kLanes];
  const Index whole = length / kLanes * kLanes, rest = length - whole;
  if (rest) {
    const T negative_infinity = from_compute<T>(-std::numeric_limits<C>::infinity());
    for (Index k = 0; k < kLanes; ++k) {
      pad_x[k] = k < rest ? x[whole + k] : negative_infinity;
      pad_dy[k] = (Op::kReadsDy && k < rest) ? dy[whole + k] : from_compute<T>(C(0));
    }
  }
  auto x_at = [&](Index b) { return b * kLanes < whole ? x + b * kLanes : pad_x; };
  auto dy_at = [&](Index b) { return !Op::kReadsDy ? pad_dy : (b * kLanes < whole ? dy + b * kLanes : pad_dy); };

  C top = -std::numeric_limits<C>::infinity();
  bool nan = false;
  for (Index b = 0; b < blocks; ++b) block_max(x_at(b), top, nan);
  if (nan) top = std::numeric_limits<C>::quiet_NaN();

  double sum = 0.0, dot = 0.0;
  for (Index b = 0; b < blocks; ++b) block_sums<Op>(x_at(b), dy_at(b), top, e + b * kLanes, sum, dot);
  const auto constants = Op::finish(typename Op::Stats{top, sum, dot});

  for (Index b = 0; b * kLanes < whole; ++b)
    block_output<Op>(constants, out + b * kLanes, x + b * kLanes, dy_at(b), e + b * kLanes);
  if (rest) {
    T tail[kLanes];
    block_output<Op>(constants, tail, pad_x, pad_dy, e + whole);
    for (Index k = 0; k < rest; ++k) out[whole + k] = tail[k];
  }
}

// out = Op over `rows` contiguous rows of `length` elements; dy is read by
// backward ops only.  out may be x or dy itself (each row is read before it
// is written).
template <typename Op, typename T>
void rows(T* out, const T* x, const T* dy, Index count, Index length) {
  const Index per_task = std::max<Index>(1, kChunk / std::max<Index>(length, 1));
  const Index tasks = (count + per_task - 1) / per_task;
  ThreadPool::instance().run(tasks, [&](Index task) {
    const Index end = std::min(count, (task + 1) * per_task);
    for (Index r = task * per_task; r < end; ++r) {
      const Index offset = r * length;
      row<Op>(out + offset, x + offset, Op::kReadsDy ? dy + offset : nullptr, length);
    }
  });
}

}  // namespace fastact_host
