// im2col and col2im for conv2d_bias_act (host: fastact/backends/kernels/fused.py).
//
// Both work on one batch chunk of x, C-contiguous in its data format, and on
// the column buffer the GEMMs use, whose memory order is chosen so that the
// GEMM output lands in the data format directly:
//   NCHW: (n, G, K, L), K = (Cg, kh, kw), L = (OH, OW): y_s = w (G, Og, K) @ cols_s
//   NHWC: (G, n * L, K), K = (kh, kw, Cg):              y   = cols @ w (G, K, Og)
// im2col writes the buffer in its memory order (coalesced writes; reads of x
// follow: consecutive ow in NCHW, consecutive channels in NHWC).  col2im is
// a gather: each element of dx adds the column entries that came from it,
// kernel taps in order, in the compute type, so the result is the same bits
// run to run with no atomics.
#pragma once

#include "common.cuh"
#include "divider.cuh"
#include "elementwise.cuh"

namespace fastact {

// The sizes of one batch chunk's convolution, and the column buffer's element
// strides (used by col2im; im2col walks the buffer in order).  Packed by the
// host field for field (kernels/plan.py: conv_windows).
template <typename Index>
struct ConvWindows {
  Divider<Index> batch, channels, height, width;  // x chunk
  Divider<Index> out_height, out_width, kernel_height, kernel_width, group_channels;
  // Spatial sizes fit in 32 bits whatever the chunk's size: the stride
  // divisions, once per kernel tap in col2im, stay 32-bit (a 64-bit division
  // is a called routine, and spilled registers there).
  Divider<int> stride_h, stride_w;
  Index dilation_h, dilation_w, pad_top, pad_left;
  Index col_sample, col_group, col_channel, col_tap, col_pixel;
};

// One entry of the column buffer: the input pixel that output pixel
// (out_row, out_col) meets at kernel tap (tap_row, tap_col).
template <typename Index>
struct Window {
  Index sample, channel, tap_row, tap_col, out_row, out_col;
};

template <bool ChannelsLast, typename Index>
__device__ __forceinline__ Window<Index> window_at(const ConvWindows<Index>& g, Index e) {
  Window<Index> w;
  if constexpr (ChannelsLast) {  // (G, n, OH, OW, kh, kw, Cg)
    const Index channel_in_group = g.group_channels.take(e);
    w.tap_col = g.kernel_width.take(e);
    w.tap_row = g.kernel_height.take(e);
    w.out_col = g.out_width.take(e);
    w.out_row = g.out_height.take(e);
    w.sample = g.batch.take(e);
    w.channel = e * g.group_channels.divisor + channel_in_group;
  } else {  // (n, C, kh, kw, OH, OW)
    w.out_col = g.out_width.take(e);
    w.out_row = g.out_height.take(e);
    w.tap_col = g.kernel_width.take(e);
    w.tap_row = g.kernel_height.take(e);
    w.channel = g.channels.take(e);
    w.sample = e;
  }
  return w;
}

// Offset of (sample, channel, row, column) in the C-contiguous x chunk.
template <bool ChannelsLast, typename Index>
__device__ __forceinline__ Index image_offset(const ConvWindows<Index>& g, Index sample, Index channel, Index row,
                                              Index column) {
  if constexpr (ChannelsLast) {
    return ((sample * g.height.divisor + row) * g.width.divisor + column) * g.channels.divisor + channel;
  } else {
    return ((sample * g.channels.divisor + channel) * g.height.divisor + row) * g.width.divisor + column;
  }
}

// cols[e] = x at window entry e, or 0 in the padding.
template <typename T, typename Index, bool ChannelsLast>
__global__ void __launch_bounds__(kElementwiseThreads)
im2col(ConvWindows<Index> g, Index total, T* cols, const T* x) {
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  for (Index e = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    const Window<Index> w = window_at<ChannelsLast>(g, e);
    const Index row = w.out_row * g.stride_h.divisor - g.pad_top + w.tap_row * g.dilation_h;
    const Index column = w.out_col * g.stride_w.divisor - g.pad_left + w.tap_col * g.dilation_w;
    const bool inside = row >= 0 && row < g.height.divisor && column >= 0 && column < g.width.divisor;
    cols[e] = inside ? x[image_offset<ChannelsLast>(g, w.sample, w.channel, row, column)]
                     : from_compute<T>(ComputeType<T>(0));
  }
}

// The output position (row or column) that input position `in` meets at
// kernel tap `tap`, or -1 when none does (between strides or past the edge).
__device__ __forceinline__ int output_position(int in, int tap, int dilation, int pad, const Divider<int>& stride,
                                               int out_size) {
  const int padded = in + pad - tap * dilation;
  if (padded < 0) return -1;
  const int out = stride.div(padded);
  return (out * stride.divisor == padded && out < out_size) ? out : -1;
}

// dx[e] = the sum of the column-buffer entries that im2col copied from x[e].
template <typename T, typename Index, bool ChannelsLast>
__global__ void __launch_bounds__(kElementwiseThreads)
col2im(ConvWindows<Index> g, Index total, T* dx, const T* cols) {
  const Index stride = static_cast<Index>(gridDim.x) * blockDim.x;
  const Index kernel_width = g.kernel_width.divisor;
#ifdef FASTACT_PLANT_COL2IM_LAST_TAP  // test-only planted bug: drops the last kernel column
  const Index columns_summed = kernel_width - 1;
#else
  const Index columns_summed = kernel_width;
#endif
  for (Index e = static_cast<Index>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    Index rest = e, channel, row, column;
    if constexpr (ChannelsLast) {
      channel = g.channels.take(rest);
      column = g.width.take(rest);
      row = g.height.take(rest);
    } else {
      column = g.width.take(rest);
      row = g.height.take(rest);
      channel = g.channels.take(rest);
    }
    const Index group = g.group_channels.div(channel);
    const Index base = rest * g.col_sample + group * g.col_group + (channel - group * g.group_channels.divisor) * g.col_channel;
    ComputeType<T> sum(0);
    for (Index i = 0; i < g.kernel_height.divisor; ++i) {
      const int out_row = output_position(int(row), int(i), int(g.dilation_h), int(g.pad_top), g.stride_h,
                                          int(g.out_height.divisor));
      if (out_row < 0) continue;
      for (Index j = 0; j < columns_summed; ++j) {
        const int out_col = output_position(int(column), int(j), int(g.dilation_w), int(g.pad_left), g.stride_w,
                                            int(g.out_width.divisor));
        if (out_col < 0) continue;
        const Index pixel = out_row * g.out_width.divisor + out_col;
        sum += to_compute(cols[base + (i * kernel_width + j) * g.col_tap + pixel * g.col_pixel]);
      }
    }
    dx[e] = from_compute<T>(sum);
  }
}

}  // namespace fastact
