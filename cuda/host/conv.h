// The cpu backend's im2col and col2im: the copies around conv2d's GEMMs.
//
// fastact/backends/numpy/fused.py (_Conv) runs conv2d as im2col + BLAS GEMM
// (np.matmul) + fused epilogue, batch chunk by batch chunk; the cpu backend
// swaps in these two loops for NumPy's (a zero-padded copy, then a
// sliding_window_view copy; for col2im one strided add per kernel tap over
// the whole chunk).  Here padding is never materialized: a tap that falls
// outside the image writes a zero (im2col) or contributes nothing (col2im).
// 16-bit inputs are converted to float32 on the way in and rounded once on
// the way out, so no float32 copy of x or dx exists.
//
// Buffer layouts (the column buffer's, chosen by _Conv so that every GEMM
// reads and writes BLAS-ready matrices, one GEMM per group per chunk):
//   NCHW: x (n, C, H, W);  cols (C, kh, kw, n, OH, OW) = per group (K, n*L)
//   NHWC: x (n, H, W, C);  cols (n, OH, OW, G, kh, kw, Cg) = per group (n*L, K)
// with C = G * Cg, K = Cg * kh * kw (NCHW) or kh * kw * Cg (NHWC), L = OH * OW.
//
// Determinism: col2im is a gather.  Each task owns a set of input pixels
// (one image row of dx), sums the column entries that each of its pixels
// receives in a fixed order (kernel row i, then column j, ascending: the
// NumPy backend's order, so both give the same bits) into a compute-type
// accumulator and writes the row once; no two tasks touch one location, so
// the result does not depend on the thread count or on which thread ran what.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "elementwise.h"
#include "thread_pool.h"

namespace fastact_host {

struct ConvShape {
  Index n, channels, height, width, groups;
  Index kh, kw, sh, sw, dh, dw;
  Index pad_top, pad_left;
  Index out_h, out_w;

  Index per_group() const { return channels / groups; }
  Index cols_size() const { return n * channels * kh * kw * out_h * out_w; }
  Index x_size() const { return n * channels * height * width; }
};

// The output columns [lo, hi) whose input column ow * sw - pad_left + j * dw
// lies inside the image (the others read the zero padding).
inline void valid_columns(const ConvShape& s, Index j, Index& lo, Index& hi) {
  const Index offset = j * s.dw - s.pad_left;  // input column of output column 0
  lo = offset >= 0 ? 0 : (-offset + s.sw - 1) / s.sw;
  hi = offset > s.width - 1 ? 0 : (s.width - 1 - offset) / s.sw + 1;
  hi = std::min(hi, s.out_w);
  lo = std::min(lo, hi);
}

// The output row of input row `ih` under kernel row i, or -1 when none
// (between two strides, or outside the output).
inline Index output_row(const ConvShape& s, Index ih, Index i) {
  const Index t = ih + s.pad_top - i * s.dh;
  if (t < 0 || t % s.sh) return -1;
  const Index oh = t / s.sh;
  return oh < s.out_h ? oh : -1;
}

// ---- im2col ----------------------------------------------------------------------
// NCHW: one task per (channel, kernel row, sample): kw rows of OH*OW columns,
// each a contiguous copy of an image row segment (a strided one for sw > 1)
// between runs of zeros.
template <typename T, typename C>
void im2col_nchw(const ConvShape& s, const T* x, C* cols) {
  const Index L = s.out_h * s.out_w;
  ThreadPool::instance().run(s.channels * s.kh * s.n, [&](Index task) {
    const Index n = task % s.n, ci = task / s.n, i = ci % s.kh, c = ci / s.kh;
    const T* plane = x + (n * s.channels + c) * s.height * s.width;
    for (Index j = 0; j < s.kw; ++j) {
      C* dst = cols + (((c * s.kh + i) * s.kw + j) * s.n + n) * L;
      Index lo, hi;
      valid_columns(s, j, lo, hi);
      const Index offset = j * s.dw - s.pad_left;
      for (Index oh = 0; oh < s.out_h; ++oh, dst += s.out_w) {
        const Index ih = oh * s.sh - s.pad_top + i * s.dh;
        if (ih < 0 || ih >= s.height) {
          std::fill(dst, dst + s.out_w, C(0));
          continue;
        }
        const T* src = plane + ih * s.width + offset;
        std::fill(dst, dst + lo, C(0));
        if (s.sw == 1) {
#pragma omp simd
          for (Index ow = lo; ow < hi; ++ow) dst[ow] = to_compute(src[ow]);
        } else {
          for (Index ow = lo; ow < hi; ++ow) dst[ow] = to_compute(src[ow * s.sw]);
        }
        std::fill(dst + hi, dst + s.out_w, C(0));
      }
    }
  });
}

// NHWC: one task per output row (sample, oh): for each pixel and tap, the
// Cg channels of a group are contiguous on both sides.
template <typename T, typename C>
void im2col_nhwc(const ConvShape& s, const T* x, C* cols) {
  const Index cg = s.per_group(), taps = s.kh * s.kw;
  ThreadPool::instance().run(s.n * s.out_h, [&](Index task) {
    const Index n = task / s.out_h, oh = task % s.out_h;
    C* dst = cols + task * s.out_w * s.channels * taps;
    for (Index ow = 0; ow < s.out_w; ++ow) {
      for (Index g = 0; g < s.groups; ++g) {
        for (Index i = 0; i < s.kh; ++i) {
          const Index ih = oh * s.sh - s.pad_top + i * s.dh;
          for (Index j = 0; j < s.kw; ++j, dst += cg) {
            const Index iw = ow * s.sw - s.pad_left + j * s.dw;
            if (ih < 0 || ih >= s.height || iw < 0 || iw >= s.width) {
              std::fill(dst, dst + cg, C(0));
              continue;
            }
            const T* src = x + ((n * s.height + ih) * s.width + iw) * s.channels + g * cg;
#pragma omp simd
            for (Index c = 0; c < cg; ++c) dst[c] = to_compute(src[c]);
          }
        }
      }
    }
  });
}

// ---- col2im ----------------------------------------------------------------------
// The per-thread accumulator of one dx row, in the compute type.
template <typename C>
C* row_accumulator(Index size) {
  thread_local std::vector<C> row;
  if (static_cast<Index>(row.size()) < size) row.resize(size);
  return row.data();
}

// NCHW: one task per (sample, channel) plane, row by row (a task per row
// was mostly task overhead: 32 columns x 9 taps of work each).
template <typename T, typename C>
void col2im_nchw(const ConvShape& s, const C* cols, T* dx) {
  const Index L = s.out_h * s.out_w;
  ThreadPool::instance().run(s.n * s.channels, [&](Index task) {
    const Index c = task % s.channels, n = task / s.channels;
    C* acc = row_accumulator<C>(s.width);
    T* out = dx + task * s.height * s.width;
    for (Index ih = 0; ih < s.height; ++ih, out += s.width) {
      std::fill(acc, acc + s.width, C(0));
      for (Index i = 0; i < s.kh; ++i) {
        const Index oh = output_row(s, ih, i);
        if (oh < 0) continue;
        for (Index j = 0; j < s.kw; ++j) {
          const C* src = cols + (((c * s.kh + i) * s.kw + j) * s.n + n) * L + oh * s.out_w;
          Index lo, hi;
          valid_columns(s, j, lo, hi);
          const Index offset = j * s.dw - s.pad_left;  // iw = ow * sw + offset
          if (s.sw == 1) {
            C* a = acc + offset;
#pragma omp simd
            for (Index ow = lo; ow < hi; ++ow) a[ow] += src[ow];
          } else {
            for (Index ow = lo; ow < hi; ++ow) acc[ow * s.sw + offset] += src[ow];
          }
        }
      }
#pragma omp simd
      for (Index w = 0; w < s.width; ++w) out[w] = from_compute<T>(acc[w]);
    }
  });
}

// NHWC: one task per (sample, input row); a pixel's channels are contiguous
// in dx and, group by group, in the columns.
template <typename T, typename C>
void col2im_nhwc(const ConvShape& s, const C* cols, T* dx) {
  const Index cg = s.per_group(), taps = s.kh * s.kw, pixel = s.channels * taps;
  const Index row_size = s.width * s.channels;
  ThreadPool::instance().run(s.n * s.height, [&](Index task) {
    const Index n = task / s.height, ih = task % s.height;
    C* acc = row_accumulator<C>(row_size);
    std::fill(acc, acc + row_size, C(0));
    for (Index i = 0; i < s.kh; ++i) {
      const Index oh = output_row(s, ih, i);
      if (oh < 0) continue;
      const C* src_row = cols + (n * s.out_h + oh) * s.out_w * pixel;
      for (Index j = 0; j < s.kw; ++j) {
        Index lo, hi;
        valid_columns(s, j, lo, hi);
        const Index offset = j * s.dw - s.pad_left;
        for (Index ow = lo; ow < hi; ++ow) {
          C* a = acc + (ow * s.sw + offset) * s.channels;
          const C* src = src_row + ow * pixel + (i * s.kw + j) * cg;
          for (Index g = 0; g < s.groups; ++g) {
#pragma omp simd
            for (Index c = 0; c < cg; ++c) a[g * cg + c] += src[g * taps * cg + c];
          }
        }
      }
    }
    T* out = dx + (n * s.height + ih) * row_size;
#pragma omp simd
    for (Index k = 0; k < row_size; ++k) out[k] = from_compute<T>(acc[k]);
  });
}

}  // namespace fastact_host
