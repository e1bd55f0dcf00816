// Multi-scale deformable attention: the CUDA kernels themselves (device code only).
//
// Included by ms_deform_attn_cuda.cu, which validates inputs and launches them,
// and by emulation/emulate_kernels.cpp, which runs these same kernels on the
// CPU (one std::thread per lane) so that their arithmetic and indexing are
// tested on machines without a GPU. Hence: no CUDA-only headers here; CUDA
// built-ins used are threadIdx/blockIdx/blockDim/gridDim, __shfl_xor_sync and
// atomicAdd on float/double.
//
// Semantics follow the official Deformable-DETR op: each query samples every
// level bilinearly at (x * W - 0.5, y * H - 0.5), corners outside the map read
// as zero, and the samples are summed with the attention weights.
//
// Thread layout (why two different ones):
//   forward  - one thread per output element (n, q, m, d). Nothing is reduced,
//              so this keeps every lane busy for any D (1, 30, 33 ...) and needs
//              no batch-divisibility (no im2col_step). Threads of one head read
//              the same sampling location, which the cache broadcasts.
//   backward - one warp per head (n, q, m), channels d strided across lanes.
//              grad_sampling_locations and grad_attention_weights are sums over
//              D, so a warp-shuffle reduction finishes them in registers and
//              lane 0 writes each point exactly once: no atomics and no shared
//              memory for them, and any D works. Only grad_value needs atomics
//              (several queries sample the same pixel); it accumulates in the
//              op-math type (fp32 for half/bfloat16, fp64 for double) because
//              half-precision atomics are slow and lose precision.
//
// The trade-off: for D < 32 some lanes idle in the backward pass (D = 32 in
// every Deformable-DETR configuration, so the common case is fully occupied).
#pragma once

#include <ATen/OpMathType.h>

#include <cmath>
#include <cstdint>

namespace hdetr {
namespace msda_kernels {

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarpMask = 0xffffffffu;

__device__ __forceinline__ float floor_op(float v) { return floorf(v); }
__device__ __forceinline__ double floor_op(double v) { return floor(v); }

// Where a sampling point falls on one level: the four corner pixels (as pixel
// indices into the level, -1 when outside the map) and the bilinear weights.
template <typename opmath_t>
struct BilinearCorners {
  int64_t pixel[4];  // top-left, top-right, bottom-left, bottom-right
  opmath_t lh, lw, hh, hw;

  // Returns false when the point is entirely outside the map (every corner
  // reads zero), matching the official op's early exit.
  __device__ __forceinline__ bool locate(opmath_t x, opmath_t y, int height, int width) {
    const opmath_t h_im = y * height - opmath_t(0.5);
    const opmath_t w_im = x * width - opmath_t(0.5);
    if (!(h_im > opmath_t(-1) && w_im > opmath_t(-1) && h_im < height && w_im < width)) {
      return false;
    }
    const int h_low = static_cast<int>(floor_op(h_im));
    const int w_low = static_cast<int>(floor_op(w_im));
    const int h_high = h_low + 1;
    const int w_high = w_low + 1;
    lh = h_im - h_low;
    lw = w_im - w_low;
    hh = opmath_t(1) - lh;
    hw = opmath_t(1) - lw;
    const bool top = h_low >= 0, bottom = h_high <= height - 1;
    const bool left = w_low >= 0, right = w_high <= width - 1;
    pixel[0] = (top && left) ? static_cast<int64_t>(h_low) * width + w_low : -1;
    pixel[1] = (top && right) ? static_cast<int64_t>(h_low) * width + w_high : -1;
    pixel[2] = (bottom && left) ? static_cast<int64_t>(h_high) * width + w_low : -1;
    pixel[3] = (bottom && right) ? static_cast<int64_t>(h_high) * width + w_high : -1;
    return true;
  }
};

template <typename scalar_t, typename opmath_t>
__device__ __forceinline__ opmath_t read_corner(const scalar_t* level_value, int64_t pixel,
                                                int64_t pixel_stride) {
  return pixel < 0 ? opmath_t(0) : static_cast<opmath_t>(level_value[pixel * pixel_stride]);
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_xor_sync(kFullWarpMask, v, offset);
  }
  return v;
}

struct Sizes {
  int64_t batch, num_keys;
  int num_queries, num_heads, channels, num_levels, num_points;
};

template <typename scalar_t>
__global__ void ms_deform_attn_forward_kernel(const scalar_t* __restrict__ value,
                                              const int64_t* __restrict__ spatial_shapes,
                                              const int64_t* __restrict__ level_start_index,
                                              const scalar_t* __restrict__ sampling_locations,
                                              const scalar_t* __restrict__ attention_weights,
                                              scalar_t* __restrict__ output, Sizes sz) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t total = sz.batch * sz.num_queries * sz.num_heads * sz.channels;
  const int64_t pixel_stride = static_cast<int64_t>(sz.num_heads) * sz.channels;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    // output is [N, Lq, M, D] flattened, so index == ((n * Lq + q) * M + m) * D + d
    const int d = static_cast<int>(index % sz.channels);
    const int64_t head = index / sz.channels;
    const int m = static_cast<int>(head % sz.num_heads);
    const int64_t n = head / sz.num_heads / sz.num_queries;
    const scalar_t* head_value = value + n * sz.num_keys * pixel_stride + m * sz.channels + d;
    const int64_t first_point = head * sz.num_levels * sz.num_points;

    opmath_t acc = 0;
    for (int l = 0; l < sz.num_levels; ++l) {
      const int height = static_cast<int>(spatial_shapes[2 * l]);
      const int width = static_cast<int>(spatial_shapes[2 * l + 1]);
      const scalar_t* level_value = head_value + level_start_index[l] * pixel_stride;
      for (int p = 0; p < sz.num_points; ++p) {
        const int64_t point = first_point + l * sz.num_points + p;
        BilinearCorners<opmath_t> c;
        if (!c.locate(static_cast<opmath_t>(sampling_locations[2 * point]),
                      static_cast<opmath_t>(sampling_locations[2 * point + 1]), height, width)) {
          continue;
        }
        const opmath_t sampled =
            c.hh * c.hw * read_corner<scalar_t, opmath_t>(level_value, c.pixel[0], pixel_stride) +
            c.hh * c.lw * read_corner<scalar_t, opmath_t>(level_value, c.pixel[1], pixel_stride) +
            c.lh * c.hw * read_corner<scalar_t, opmath_t>(level_value, c.pixel[2], pixel_stride) +
            c.lh * c.lw * read_corner<scalar_t, opmath_t>(level_value, c.pixel[3], pixel_stride);
        acc += static_cast<opmath_t>(attention_weights[point]) * sampled;
      }
    }
    output[index] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t, typename opmath_t>
__global__ void ms_deform_attn_backward_kernel(const scalar_t* __restrict__ value,
                                               const int64_t* __restrict__ spatial_shapes,
                                               const int64_t* __restrict__ level_start_index,
                                               const scalar_t* __restrict__ sampling_locations,
                                               const scalar_t* __restrict__ attention_weights,
                                               const scalar_t* __restrict__ grad_output,
                                               opmath_t* __restrict__ grad_value,
                                               scalar_t* __restrict__ grad_sampling_locations,
                                               scalar_t* __restrict__ grad_attention_weights,
                                               Sizes sz) {
  const int64_t total_heads = sz.batch * sz.num_queries * sz.num_heads;
  const int64_t pixel_stride = static_cast<int64_t>(sz.num_heads) * sz.channels;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps_in_grid = static_cast<int64_t>(blockDim.x) * gridDim.x / kWarpSize;
  // The loop bound is the same for every lane of a warp, so whole warps stay
  // together and the full-mask shuffles below are safe.
  for (int64_t head = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / kWarpSize;
       head < total_heads; head += warps_in_grid) {
    const int m = static_cast<int>(head % sz.num_heads);
    const int64_t n = head / sz.num_heads / sz.num_queries;
    const int64_t head_offset = n * sz.num_keys * pixel_stride + m * sz.channels;
    const scalar_t* head_grad_output = grad_output + head * sz.channels;
    const int64_t first_point = head * sz.num_levels * sz.num_points;

    for (int l = 0; l < sz.num_levels; ++l) {
      const int height = static_cast<int>(spatial_shapes[2 * l]);
      const int width = static_cast<int>(spatial_shapes[2 * l + 1]);
      const int64_t level_offset = head_offset + level_start_index[l] * pixel_stride;
      const scalar_t* level_value = value + level_offset;
      opmath_t* level_grad_value = grad_value + level_offset;
      for (int p = 0; p < sz.num_points; ++p) {
        const int64_t point = first_point + l * sz.num_points + p;
        const opmath_t weight = static_cast<opmath_t>(attention_weights[point]);
        opmath_t grad_weight = 0, grad_x = 0, grad_y = 0;
        BilinearCorners<opmath_t> c;
        if (c.locate(static_cast<opmath_t>(sampling_locations[2 * point]),
                     static_cast<opmath_t>(sampling_locations[2 * point + 1]), height, width)) {
          const opmath_t corner_weight[4] = {c.hh * c.hw, c.hh * c.lw, c.lh * c.hw, c.lh * c.lw};
          for (int d = lane; d < sz.channels; d += kWarpSize) {
            const opmath_t g = static_cast<opmath_t>(head_grad_output[d]);
            opmath_t v[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              v[k] = read_corner<scalar_t, opmath_t>(level_value + d, c.pixel[k], pixel_stride);
            }
            const opmath_t sampled = corner_weight[0] * v[0] + corner_weight[1] * v[1] +
                                     corner_weight[2] * v[2] + corner_weight[3] * v[3];
            grad_weight += g * sampled;
            const opmath_t g_weighted = g * weight;
            // d(sampled)/d(h_im) and d(sampled)/d(w_im) of the bilinear form above
            grad_y += g_weighted * (c.hw * (v[2] - v[0]) + c.lw * (v[3] - v[1]));
            grad_x += g_weighted * (c.hh * (v[1] - v[0]) + c.lh * (v[3] - v[2]));
#pragma unroll
            for (int k = 0; k < 4; ++k) {
              if (c.pixel[k] >= 0) {
                atomicAdd(level_grad_value + c.pixel[k] * pixel_stride + d,
                          g_weighted * corner_weight[k]);
              }
            }
          }
        }
        grad_weight = warp_sum(grad_weight);
        grad_x = warp_sum(grad_x);
        grad_y = warp_sum(grad_y);
        if (lane == 0) {
          grad_attention_weights[point] = static_cast<scalar_t>(grad_weight);
          // h_im = y * H - 0.5 and w_im = x * W - 0.5
          grad_sampling_locations[2 * point] = static_cast<scalar_t>(grad_x * width);
          grad_sampling_locations[2 * point + 1] = static_cast<scalar_t>(grad_y * height);
        }
      }
    }
  }
}

}  // namespace msda_kernels
}  // namespace hdetr
