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
// slope).  float32/float64 (the flat path below): a task's elements are
// worked as few long runs of consecutive elements, in vector blocks that may
// straddle planes, with a value per lane; the backward computes dx for a
// sub-run and then sums each plane's piece of it (terms in double, a fixed
// order that depends only on the piece's length) into partial[g, p][c].
// float16/bfloat16 (the per-plane path): a run of a plane is one vector loop
// with one value (when inner == 1 a row's channels are one vector loop with a
// value per element), and a backward task adds its terms into
// partial[g, p][c] in double, block by block in element order.  The partial
// rows are then added in order.  The grid depends only on the shapes, never
// on the thread count, so the same call gives the same bits on any number of
// threads.
#pragma once

#include <algorithm>
#include <type_traits>
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

// A forward over channels: y = op(x, value of the channel), one vector loop
// per plane run (the float16/bfloat16 path; see channel_forward).
template <typename T, typename Op>
void channel_forward_planes(const ChannelGrid& grid, T* y, const T* x, const ComputeType<T>* values, const Op& op) {
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
// totals[c] = the sum over channel c of op.term(dy, x, gradient) (double),
// plane run by plane run with the terms of each block stored (the
// float16/bfloat16 path, whose terms are the unrounded compute-type
// gradients; see channel_backward).
template <typename T, typename Op>
void channel_backward_planes(const ChannelGrid& grid, T* dx, const T* dy, const T* x, const ComputeType<T>* values,
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

// ---- the flat path (float32, float64) ------------------------------------------------
// A task's elements are worked as few long runs: a row group's whole rows
// when a channel block is all channels, else one run per row (its block's
// planes), else (plane pieces) one per plane piece.  A run is cut into
// blocks of kLanes elements that may straddle planes and rows, each with a
// per-lane value array; only the run's end takes the zero-padded tail block.
// Whole blocks and the tail call the same function (run_blocks), so every
// element takes the same machine code wherever it sits, without a call per
// block.  Each element's result is op(x, value) as on the per-plane path,
// bit for bit.

// The kLanes per-lane values of consecutive blocks, from element offset
// `o` within a row (`period` = channels * inner elements, the values'
// period).  With `expanded` (period + kLanes values: value of element k is
// expanded[k % period], built once per call), a block's values are a
// pointer into it; without, they are filled per block into a buffer, which
// a block inside one plane reuses from the block before.
template <typename C>
struct ValueCursor {
  const C* values;
  const C* expanded;
  Index channels, inner, period;
  Index o = 0;        // the block's first element's offset in its row
  Index c = 0, pos = 0;  // without `expanded`: its channel and offset in its plane
  Index buffered = -1;   // the channel whose value fills the buffer, or -1

  void seek(Index offset) {
    o = offset % period;
    c = o / inner;
    pos = o - c * inner;
  }
  const C* block(C* buffer) {
    if (expanded) return expanded + o;
    if (inner == 1 && c + kLanes <= channels) return values + c;
    if (pos + kLanes <= inner) {  // one plane: its value, broadcast once for all its blocks
      if (buffered != c) {
        const C v = values[c];
        for (Index i = 0; i < kLanes; ++i) buffer[i] = v;
        buffered = c;
      }
      return buffer;
    }
    buffered = -1;
    if (inner >= kLanes) {  // two planes: the block's first `split` lanes are in the first
      const Index split = inner - pos;
      const C first = values[c], second = values[c + 1 == channels ? 0 : c + 1];
#pragma omp simd
      for (Index i = 0; i < kLanes; ++i) buffer[i] = i < split ? first : second;
      return buffer;
    }
    Index ch = c, at = pos;
    for (Index i = 0; i < kLanes;) {
      const Index run = std::min(kLanes - i, inner - at);
      const C v = values[ch];
      for (Index k = 0; k < run; ++k) buffer[i + k] = v;
      i += run;
      at = 0;
      if (++ch == channels) ch = 0;
    }
    return buffer;
  }
  void advance() {
    o += kLanes;
    if (o >= period) o %= period;
    if (!expanded) {
      pos += kLanes;
      if (pos >= inner) {
        c = (c + pos / inner) % channels;
        pos %= inner;
      }
    }
  }
};

// The per-element values of one row (plus kLanes more, wrapping) when
// planes are shorter than a block (a block then spans several planes), and
// a row has at most kExpandMax elements; else none, and each block's values
// are filled in a buffer (a broadcast, reused while blocks stay in one
// plane, or a blend of two planes' values).
constexpr Index kExpandMax = Index(1) << 16;

template <typename C>
struct ChannelValues {
  std::vector<C> storage;
  ValueCursor<C> cursor;
  ChannelValues(const ChannelGrid& grid, const C* values) {
    const Index period = grid.channels * grid.inner;
    cursor = ValueCursor<C>{values, nullptr, grid.channels, grid.inner, period};
    if (grid.inner >= kLanes || period + kLanes > kExpandMax) return;
    storage.resize(period + kLanes);
    C* e = storage.data();
    for (Index c = 0; c < grid.channels; ++c) {
      const C v = values[c];
      for (Index k = 0; k < grid.inner; ++k) e[c * grid.inner + k] = v;
    }
    for (Index k = period; k < period + kLanes; ++k) e[k] = e[k - period];
    cursor.expanded = e;
  }
};

// run(offset, count, partial row) for the task's runs of consecutive elements.
template <typename Run>
void for_each_flat_run(const ChannelGrid& grid, Index task, const Run& run) {
  const Index p = task % grid.pieces, b = (task / grid.pieces) % grid.blocks, g = task / (grid.pieces * grid.blocks);
  const Index row_begin = g * grid.rows_per_group, row_end = std::min(grid.outer, row_begin + grid.rows_per_group);
  const Index c_begin = b * grid.channels_per_block, c_end = std::min(grid.channels, c_begin + grid.channels_per_block);
  const Index partial_row = g * grid.pieces + p;
  const Index row = grid.channels * grid.inner;
  if (grid.pieces == 1 && grid.blocks == 1) {
    run(row_begin * row, (row_end - row_begin) * row, partial_row);
  } else if (grid.pieces == 1) {
    for (Index r = row_begin; r < row_end; ++r)
      run((r * grid.channels + c_begin) * grid.inner, (c_end - c_begin) * grid.inner, partial_row);
  } else {
    const Index first = p * grid.piece, count = std::min(grid.piece, grid.inner - first);
    for (Index r = row_begin; r < row_end; ++r)
      for (Index c = c_begin; c < c_end; ++c) run((r * grid.channels + c) * grid.inner + first, count, partial_row);
  }
}

// `blocks` whole blocks from the cursor's position: y = op(x, value).
// Compiled once per (T, Op): the tail block runs this same code.
template <typename T, typename Op>
__attribute__((noinline, noclone)) void forward_blocks(const Op& shared_op, T* y, const T* x, Index blocks,
                                              ValueCursor<T>& shared_cursor) {
  const Op op = shared_op;  // a local: stores to y cannot change it, so the loop vectorizes
  ValueCursor<T> cursor = shared_cursor;  // a local too: kept in registers
  alignas(64) T buffer[kLanes];
  for (Index b = 0; b < blocks; ++b, y += kLanes, x += kLanes) {
    const T* v = cursor.block(buffer);
#pragma omp simd
    for (Index i = 0; i < kLanes; ++i) y[i] = op(x[i], v[i]);
    cursor.advance();
  }
  cursor.buffered = -1;  // the buffer is this call's
  shared_cursor = cursor;
}

// `blocks` whole blocks: dx = op.gradient(dy, x, value).
template <typename T, typename Op>
__attribute__((noinline, noclone)) void backward_blocks(const Op& shared_op, T* dx, const T* dy, const T* x, Index blocks,
                                               ValueCursor<T>& shared_cursor) {
  const Op op = shared_op;
  ValueCursor<T> cursor = shared_cursor;
  alignas(64) T buffer[kLanes];
  for (Index b = 0; b < blocks; ++b, dx += kLanes, dy += kLanes, x += kLanes) {
    const T* v = cursor.block(buffer);
#pragma omp simd
    for (Index i = 0; i < kLanes; ++i) dx[i] = op.gradient(dy[i], x[i], v[i]);
    cursor.advance();
  }
  cursor.buffered = -1;
  shared_cursor = cursor;
}

// The tail of a run: `rest` < kLanes elements through the same block code on zero-padded copies.
template <typename T, typename Op>
inline void forward_tail(const Op& op, T* y, const T* x, Index rest, ValueCursor<T>& cursor) {
  T out[kLanes];
  forward_blocks(op, out, Padded<T>(x, rest).values, 1, cursor);
  std::memcpy(static_cast<void*>(y), out, rest * sizeof(T));
}

template <typename T, typename Op>
void channel_forward_flat(const ChannelGrid& grid, T* y, const T* x, const T* values, const Op& op) {
  const ChannelValues<T> shared(grid, values);
  const Index period = grid.channels * grid.inner;
  ThreadPool::instance().run(grid.tasks(), [&](Index task) {
    for_each_flat_run(grid, task, [&](Index offset, Index count, Index) {
      ValueCursor<T> cursor = shared.cursor;
      cursor.seek(offset % period);
      const Index whole = count / kLanes * kLanes;
      forward_blocks(op, y + offset, x + offset, whole / kLanes, cursor);
      if (whole < count) forward_tail(op, y + offset + whole, x + offset + whole, count - whole, cursor);
    });
  });
}

// The sum in double of term(k) for k < n, in a fixed order that depends on
// n only: kSumLanes running sums over whole steps (independent vector
// chains, so a short plane does not wait on one chain of adds), a fixed tree
// over the lanes, and the last n % kSumLanes terms added in order.
constexpr Index kSumLanes = 16;

template <typename Term>
inline double sum_terms(Index n, const Term& term) {
  double acc[kSumLanes] = {};
  Index k = 0;
  for (; k + kSumLanes <= n; k += kSumLanes) {
#pragma omp simd
    for (Index i = 0; i < kSumLanes; ++i) acc[i] += term(k + i);
  }
  double tail = 0.0;
  for (; k < n; ++k) tail += term(k);
  for (Index width = kSumLanes / 2; width >= 1; width /= 2) {
#pragma omp simd
    for (Index i = 0; i < width; ++i) acc[i] += acc[i + width];
  }
  return acc[0] + tail;
}

// Adds the terms of elements [offset, offset + count) to sums[channel]: one
// sum_terms per piece of a plane, or, when planes are single elements, an
// element's term to its channel's sum.  The pieces are cut at plane
// boundaries and at the caller's sub-run boundaries, which depend only on
// the shapes.
template <bool FromGradient, typename T, typename Op>
inline void add_terms(const Op& op, const T* dx, const T* dy, const T* x, Index offset, Index count, Index channels,
                      Index inner, double* sums) {
  const Index period = channels * inner;
  Index o = offset % period;
  if (inner == 1) {  // a row's consecutive channels
    for (Index done = 0; done < count;) {
      const Index j = offset + done, n = std::min(count - done, period - o);
      const T* g = dx + j;
      const T* d = dy + j;
      const T* v = x + j;
      double* s = sums + o;
#pragma omp simd
      for (Index k = 0; k < n; ++k) s[k] += FromGradient ? static_cast<double>(g[k]) : op.term(d[k], v[k], T(0));
      done += n;
      o = 0;
    }
    return;
  }
  Index c = o / inner, pos = o - c * inner;
  for (Index done = 0; done < count;) {
    const Index j = offset + done, n = std::min(count - done, inner - pos);
    const T* g = dx + j;
    const T* d = dy + j;
    const T* v = x + j;
    if constexpr (FromGradient)
      sums[c] += sum_terms(n, [g](Index k) { return static_cast<double>(g[k]); });
    else
      sums[c] += sum_terms(n, [&op, d, v](Index k) { return op.term(d[k], v[k], T(0)); });
    done += n;
    pos += n;
    if (pos == inner) {
      pos = 0;
      if (++c == channels) c = 0;
    }
  }
}

// Elements per sub-run of the backward: dx is computed for a sub-run and
// its terms summed while it is in L1.
constexpr Index kSubRun = 2048;

template <typename T, typename Op>
void channel_backward_flat(const ChannelGrid& grid, T* dx, const T* dy, const T* x, const T* values, double* totals,
                           const Op& op) {
  const ChannelValues<T> shared(grid, values);
  const Index period = grid.channels * grid.inner;
  const bool direct = grid.partials() == 1;
  std::vector<double> partial(direct ? 0 : grid.partials() * grid.channels, 0.0);
  double* sums = direct ? totals : partial.data();
  if (direct)
    for (Index c = 0; c < grid.channels; ++c) totals[c] = 0.0;
  ThreadPool::instance().run(grid.tasks(), [&](Index task) {
    for_each_flat_run(grid, task, [&](Index offset, Index count, Index partial_row) {
      double* s = sums + partial_row * grid.channels;
      ValueCursor<T> cursor = shared.cursor;
      cursor.seek(offset % period);
      for (Index done = 0; done < count;) {
        const Index j = offset + done, n = std::min(kSubRun, count - done);
        // terms not made from dx are summed first: dx may be the memory of dy or x
        if constexpr (!Op::kTermIsGradient) add_terms<false>(op, dx, dy, x, j, n, grid.channels, grid.inner, s);
        const Index whole = n / kLanes * kLanes;
        backward_blocks(op, dx + j, dy + j, x + j, whole / kLanes, cursor);
        if (whole < n) {
          T out[kLanes];
          const Index rest = n - whole;
          backward_blocks(op, out, Padded<T>(dy + j + whole, rest).values, Padded<T>(x + j + whole, rest).values, 1,
                          cursor);
          std::memcpy(static_cast<void*>(dx + j + whole), out, rest * sizeof(T));
        }
        if constexpr (Op::kTermIsGradient) add_terms<true>(op, dx, dy, x, j, n, grid.channels, grid.inner, s);
        done += n;
      }
    });
  });
  if (!direct) add_partials(partial, grid.partials(), grid.channels, totals);
}

// The entry points: the flat path for float32/float64, the per-plane path
// for float16/bfloat16 (whose dbias terms are not the stored dx).
template <typename T, typename Op>
void channel_forward(const ChannelGrid& grid, T* y, const T* x, const ComputeType<T>* values, const Op& op) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
    channel_forward_flat(grid, y, x, values, op);
  else
    channel_forward_planes(grid, y, x, values, op);
}

template <typename T, typename Op>
void channel_backward(const ChannelGrid& grid, T* dx, const T* dy, const T* x, const ComputeType<T>* values,
                      double* totals, const Op& op) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
    channel_backward_flat(grid, dx, dy, x, values, totals, op);
  else
    channel_backward_planes(grid, dx, dy, x, values, totals, op);
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
  static constexpr bool kTermIsGradient = false;  // term(dy, x, _) does not read the gradient
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
  static constexpr bool kTermIsGradient = true;  // term(_, _, gradient) is the gradient
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
