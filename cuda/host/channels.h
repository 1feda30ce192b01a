// Per-channel operations on the host: PReLU and bias_act, forward and
// backward, with the backward's per-channel sums (dalpha, dbias) reduced
// in-kernel, deterministically.
//
// The host counterpart of ../prelu.cuh and ../bias_act.cuh, with the same
// element math.  The Python side arranges x as a C-contiguous
// (outer, channels, inner) array and the per-channel values (slopes, bias)
// as `channels` contiguous values of the compute type, as for the CUDA kernels.
//
// Work is split into a fixed grid of tasks, (row group g, channel block b,
// plane piece p): rows [g R, (g + 1) R) of `outer`, channels [b K, (b + 1) K),
// and elements [p P, (p + 1) P) of each plane (one row's inner elements of
// one channel; pieces only when there are few long planes, as for a scalar
// slope).  A run of a plane is one vector loop with one value; when
// inner == 1 a row's channels are one vector loop with a value per element.
// A backward task adds its terms into partial[g, p][c] in double, in element
// order; the partial rows are then added in order.  The grid depends only on
// the shapes, never on the thread count, so the same call gives the same
// bits on any number of threads.
#pragma once

#include <algorithm>
#include <vector>

#include "elementwise.h"

namespace fastact_host {

struct ChannelGrid {
  Index outer, channels, inner;
  Index rows_per_group, groups;
  Index channels_per_block, blocks;
  Index piece, pieces;  // each plane of `inner` elements is cut into `pieces` runs of `piece`

  // The grid for an (outer, channels, inner) array; `max_partials` bounds
  // partials() * channels (the reduction's double buffer).  Rows are split
  // first, then channels, then (for few long planes: a scalar PReLU slope, a
  // bias on axis 0) the planes themselves, until there are about n / kChunk
  // tasks.
  ChannelGrid(Index outer_, Index channels_, Index inner_, Index max_partials)
      : outer(outer_), channels(channels_), inner(inner_) {
    const Index n = outer * channels * inner;
    const Index wanted_tasks = std::max<Index>(1, n / kChunk);
    const Index partial_rows = std::max<Index>(1, max_partials / std::max<Index>(channels, 1));
    groups = std::max<Index>(1, std::min<Index>({outer, wanted_tasks, partial_rows}));
    rows_per_group = (outer + groups - 1) / groups;
    groups = (outer + rows_per_group - 1) / rows_per_group;
    blocks = std::min<Index>(channels, std::max<Index>(1, wanted_tasks / groups));
    channels_per_block = (channels + blocks - 1) / blocks;
    blocks = (channels + channels_per_block - 1) / channels_per_block;
    pieces = 1;
    if (inner > 1) {
      const Index more = wanted_tasks / (groups * blocks);
      pieces = std::max<Index>(1, std::min<Index>({more, (inner + kLanes - 1) / kLanes, partial_rows / groups}));
    }
    piece = (inner + pieces - 1) / pieces;
    piece = (piece + kLanes - 1) / kLanes * kLanes;  // whole vector blocks, but the plane's last
    pieces = (inner + piece - 1) / piece;
  }

  Index tasks() const { return groups * blocks * pieces; }
  // Rows of the partial sums: one per (row group, piece).
  Index partials() const { return groups * pieces; }

  // plane(offset, count, channel, partial row, per_element) for every run of the task:
  // per_element false: `count` elements of one channel;
  // per_element true (inner == 1): `count` consecutive channels from `channel`.
  template <typename Plane>
  void for_each_run(Index task, const Plane& plane) const {
    const Index p = task % pieces, b = (task / pieces) % blocks, g = task / (pieces * blocks);
    const Index row_end = std::min(outer, (g + 1) * rows_per_group);
    const Index c_begin = b * channels_per_block, c_end = std::min(channels, c_begin + channels_per_block);
    const Index first = p * piece, count = std::min(piece, inner - first);
    const Index partial_row = g * pieces + p;
    for (Index row = g * rows_per_group; row < row_end; ++row) {
      if (inner == 1) {
        plane(row * channels + c_begin, c_end - c_begin, c_begin, partial_row, true);
        continue;
      }
      for (Index c = c_begin; c < c_end; ++c) plane((row * channels + c) * inner + first, count, c, partial_row, false);
    }
  }
};

// The deterministic sum of partial[r][c] over the partial rows r, in order, into totals[c].
inline void add_partials(const std::vector<double>& partial, Index groups, Index channels, double* totals) {
  for (Index c = 0; c < channels; ++c) totals[c] = 0.0;
  for (Index g = 0; g < groups; ++g)
    for (Index c = 0; c < channels; ++c) totals[c] += partial[g * channels + c];
}

// The reduction buffer is at most this many doubles (256 MiB is never
// reached for a grid of one group, whose partials are the totals).
constexpr Index kMaxPartials = Index(1) << 22;

// A forward over channels: y = op(x, value of the channel).
template <typename T, typename Op>
void channel_forward(const ChannelGrid& grid, T* y, const T* x, const ComputeType<T>* values, const Op& op) {
  using C = ComputeType<T>;
  ThreadPool::instance().run(grid.tasks(), [&](Index task) {
    grid.for_each_run(task, [&](Index offset, Index count, Index channel, Index, bool per_element) {
      if (per_element) {
        in_blocks(count, [&](T* yb, const T* xb, const C* vb) {
          const Op f = op;  // a local: stores to yb cannot change it, so the loop vectorizes
#pragma omp simd
          for (Index i = 0; i < kLanes; ++i) yb[i] = from_compute<T>(f(to_compute(xb[i]), vb[i]));
        }, y + offset, x + offset, values + channel);
      } else {
        const C v = values[channel];
        in_blocks(count, [&](T* yb, const T* xb) {
          const Op f = op;
#pragma omp simd
          for (Index i = 0; i < kLanes; ++i) yb[i] = from_compute<T>(f(to_compute(xb[i]), v));
        }, y + offset, x + offset);
      }
    });
  });
}

// dx = op.gradient(dy, x, value) and terms = op.term(dy, x, gradient) (double)
// for one block of kLanes elements; the value is values[i] per element, or
// `value` for all when values is null.
template <typename T, typename Op>
__attribute__((noinline)) void channel_backward_block(const Op& shared_op, T* dx, const T* dy, const T* x, const ComputeType<T>* values,
                                   ComputeType<T> value, double* terms) {
  using C = ComputeType<T>;
  const Op op = shared_op;  // a local: stores to dx cannot change it, so the loops vectorize
  if (values) {
#pragma omp simd
    for (Index i = 0; i < kLanes; ++i) {
      const C xv = to_compute(x[i]), g = to_compute(dy[i]);
      const C gradient = op.gradient(g, xv, values[i]);
      terms[i] = op.term(g, xv, gradient);
      dx[i] = from_compute<T>(gradient);
    }
  } else {
#pragma omp simd
    for (Index i = 0; i < kLanes; ++i) {
      const C xv = to_compute(x[i]), g = to_compute(dy[i]);
      const C gradient = op.gradient(g, xv, value);
      terms[i] = op.term(g, xv, gradient);
      dx[i] = from_compute<T>(gradient);
    }
  }
}

// The backward over one run of `count` elements: dx, and add(k, terms, n)
// for each block (the padded tail's extra terms are not passed on).
template <typename T, typename Op, typename Add>
inline void channel_backward_run(const Op& op, T* dx, const T* dy, const T* x, Index count,
                                 const ComputeType<T>* values, ComputeType<T> value, const Add& add) {
  using C = ComputeType<T>;
  double terms[kLanes];
  Index i = 0;
  for (; i + kLanes <= count; i += kLanes) {
    channel_backward_block(op, dx + i, dy + i, x + i, values ? values + i : nullptr, value, terms);
    add(i, terms, kLanes);
  }
  if (i == count) return;
  T tail[kLanes];
  const Index rest = count - i;
  channel_backward_block(op, tail, Padded<T>(dy + i, rest).values, Padded<T>(x + i, rest).values,
                         values ? Padded<C>(values + i, rest).values : nullptr, value, terms);
  std::memcpy(static_cast<void*>(dx + i), tail, rest * sizeof(T));
  add(i, terms, rest);
}

// A backward over channels: dx = op.gradient(dy, x, value), and
// totals[c] = the sum over channel c of op.term(dy, x, gradient) (double).
template <typename T, typename Op>
void channel_backward(const ChannelGrid& grid, T* dx, const T* dy, const T* x, const ComputeType<T>* values,
                      double* totals, const Op& op) {
  using C = ComputeType<T>;
  const bool direct = grid.partials() == 1;  // one row of partials: they are the totals
  std::vector<double> partial(direct ? 0 : grid.partials() * grid.channels, 0.0);
  double* sums = direct ? totals : partial.data();
  if (direct)
    for (Index c = 0; c < grid.channels; ++c) totals[c] = 0.0;
  ThreadPool::instance().run(grid.tasks(), [&](Index task) {
    grid.for_each_run(task, [&](Index offset, Index count, Index channel, Index partial_row, bool per_element) {
      double* s = sums + partial_row * grid.channels + channel;
      if (per_element) {  // a value and a sum per element (consecutive channels)
        channel_backward_run(op, dx + offset, dy + offset, x + offset, count, values + channel, C(0),
                             [&](Index first, const double* terms, Index n) {
                               for (Index k = 0; k < n; ++k) s[first + k] += terms[k];
                             });
      } else {  // one channel: one value and one sum for the run
        double total = 0.0;
        channel_backward_run(op, dx + offset, dy + offset, x + offset, count, nullptr, values[channel],
                             [&](Index, const double* terms, Index n) {
                               double block = 0.0;
#pragma omp simd reduction(+ : block)
                               for (Index k = 0; k < n; ++k) block += terms[k];
                               total += block;
                             });
        *s += total;
      }
    });
  });
  if (!direct) add_partials(partial, grid.partials(), grid.channels, totals);
}

// ---- the element math (as ../prelu.cuh and ../bias_act.cuh) ---------------------
// PReLU: y = x if x > 0 else alpha x (NaN x: alpha NaN is NaN).
struct PreluForward {
  template <typename C>
  C operator()(C x, C alpha) const { return x > C(0) ? x : alpha * x; }
};

// dx = dy where x > 0, else alpha dy (NaN x gives NaN); dalpha's term is
// x dy where x <= 0, exactly 0 where x > 0 whatever dy holds there.
struct PreluBackward {
  template <typename C>
  C gradient(C dy, C x, C alpha) const {
    const C below = alpha * dy;
    return isnan(x) ? x : (x > C(0) ? dy : below);
  }
  template <typename C>
  double term(C dy, C x, C) const {
    const double product = static_cast<double>(fastact::rounded_product(x, dy));
    return x > C(0) ? 0.0 : product;
  }
};

// bias_act: y = activation(x + bias), dx = dy activation'(x + bias), dbias's term dx.
template <typename Activation>
struct BiasActForward {
  Activation activation;
  template <typename C>
  C operator()(C x, C bias) const {
    const C z = x + bias;
    const C r = activation.forward(z);
    return isnan(z) ? z : r;
  }
};

template <typename Activation>
struct BiasActBackward {
  Activation activation;
  template <typename C>
  C gradient(C dy, C x, C bias) const {
    const C z = x + bias;
    const C r = dy * activation.derivative(z);
    return isnan(z) ? z : r;
  }
  template <typename C>
  double term(C, C, C gradient) const { return static_cast<double>(gradient); }
};

}  // namespace fastact_host
