// softmax and log_softmax rows on the host.
//
// The host counterpart of ../rowwise.cuh, with its row ops (SoftmaxForward,
// LogSoftmaxBackward, ...: the stats each needs, the per-row constants and
// the output of one element) used unchanged.  Rows are contiguous (the
// Python side moves the axis last when it is not); each row takes three
// vector passes: its max (NaN kept), the double sums relative to that max,
// and the output.  A row is far smaller than L2 in every realistic case, so
// passes 2 and 3 read it from cache.  Tasks are groups of whole rows: the
// result does not depend on the thread count.
#pragma once

#include <limits>

#include "../rowwise_ops.cuh"
#include "elementwise.h"

namespace fastact_host {

template <typename Op, typename T>
void row(T* out, const T* x, const T* dy, Index length) {
  using C = ComputeType<T>;
  using fastact::Dot;
  C top = -std::numeric_limits<C>::infinity();
  bool nan = false;
#pragma omp simd reduction(max : top) reduction(|| : nan)
  for (Index k = 0; k < length; ++k) {
    const C v = to_compute(x[k]);
    top = v > top ? v : top;
    nan = nan || isnan(v);
  }
  if (nan) top = std::numeric_limits<C>::quiet_NaN();

  constexpr Dot kDot = Op::Stats::kDot;
  double sum = 0.0, dot = 0.0;
#pragma omp simd reduction(+ : sum, dot)
  for (Index k = 0; k < length; ++k) {
    const C v = to_compute(x[k]);
    const C e = fastact::exp_below(v, top);
    sum += e;
    if (kDot == Dot::kWeighted) dot += double(to_compute(dy[k])) * e;
    if (kDot == Dot::kPlain) dot += to_compute(dy[k]);
  }
  const auto constants = Op::finish(typename Op::Stats{top, sum, dot});
#pragma omp simd
  for (Index k = 0; k < length; ++k) {
    const C g = Op::kReadsDy ? to_compute(dy[k]) : C(0);
    out[k] = from_compute<T>(Op::output(constants, to_compute(x[k]), g));
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
