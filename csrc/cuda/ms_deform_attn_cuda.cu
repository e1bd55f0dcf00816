// Multi-scale deformable attention: input checks and kernel launches (host side).
// The kernels and the reasoning behind their thread layout are in
// ms_deform_attn_kernels.cuh.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include "ms_deform_attn_cuda.h"
#include "ms_deform_attn_kernels.cuh"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <limits>

namespace hdetr {
namespace {

using msda_kernels::kWarpSize;
using msda_kernels::Sizes;
constexpr int kThreadsPerBlock = 256;
// Grid-stride loops cover anything beyond this many blocks.
constexpr int64_t kMaxBlocks = 65535LL * 16;

int blocks_for(int64_t threads) {
  return static_cast<int>(std::min<int64_t>((threads + kThreadsPerBlock - 1) / kThreadsPerBlock,
                                            kMaxBlocks));
}

int checked_int(int64_t v, const char* what) {
  TORCH_CHECK(v <= std::numeric_limits<int>::max(), "ms_deform_attn (cuda): ", what, " = ", v,
              " is too large (at most ", std::numeric_limits<int>::max(), ")");
  return static_cast<int>(v);
}

void check_tensor(const at::Tensor& t, const char* name, const at::Tensor& value, int64_t dim) {
  TORCH_CHECK(t.is_cuda(), "ms_deform_attn (cuda): ", name, " must be a CUDA tensor, got ", t.device());
  TORCH_CHECK(t.device() == value.device(), "ms_deform_attn (cuda): ", name, " is on ", t.device(),
              " but value is on ", value.device());
  TORCH_CHECK(t.is_contiguous(), "ms_deform_attn (cuda): ", name, " must be contiguous");
  TORCH_CHECK(t.dim() == dim, "ms_deform_attn (cuda): ", name, " must have ", dim,
              " dimensions, got shape ", t.sizes());
}

Sizes check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                   const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                   const at::Tensor& attention_weights) {
  check_tensor(value, "value [N, S, M, D]", value, 4);
  check_tensor(spatial_shapes, "spatial_shapes [L, 2]", value, 2);
  check_tensor(level_start_index, "level_start_index [L]", value, 1);
  check_tensor(sampling_locations, "sampling_locations [N, Lq, M, L, P, 2]", value, 6);
  check_tensor(attention_weights, "attention_weights [N, Lq, M, L, P]", value, 5);
  const auto dtype = value.scalar_type();
  TORCH_CHECK(dtype == at::kDouble || dtype == at::kFloat || dtype == at::kHalf ||
                  dtype == at::kBFloat16,
              "ms_deform_attn (cuda): value must be float64, float32, float16 or bfloat16, got ", dtype);
  TORCH_CHECK(sampling_locations.scalar_type() == dtype && attention_weights.scalar_type() == dtype,
              "ms_deform_attn (cuda): sampling_locations (", sampling_locations.scalar_type(),
              ") and attention_weights (", attention_weights.scalar_type(),
              ") must have the dtype of value (", dtype, ")");
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong && level_start_index.scalar_type() == at::kLong,
              "ms_deform_attn (cuda): spatial_shapes and level_start_index must be int64, got ",
              spatial_shapes.scalar_type(), " and ", level_start_index.scalar_type());

  Sizes sz;
  sz.batch = value.size(0);
  sz.num_keys = value.size(1);
  sz.num_heads = checked_int(value.size(2), "M (heads)");
  sz.channels = checked_int(value.size(3), "D (channels per head)");
  sz.num_queries = checked_int(sampling_locations.size(1), "Lq (queries)");
  sz.num_levels = checked_int(sampling_locations.size(3), "L (levels)");
  sz.num_points = checked_int(sampling_locations.size(4), "P (points)");
  TORCH_CHECK(spatial_shapes.size(0) == sz.num_levels && spatial_shapes.size(1) == 2 &&
                  level_start_index.size(0) == sz.num_levels,
              "ms_deform_attn (cuda): spatial_shapes ", spatial_shapes.sizes(), " and level_start_index ",
              level_start_index.sizes(), " must be [L, 2] and [L] with L = ", sz.num_levels,
              " (from sampling_locations ", sampling_locations.sizes(), ")");
  TORCH_CHECK(sampling_locations.size(0) == sz.batch && sampling_locations.size(2) == sz.num_heads &&
                  sampling_locations.size(5) == 2,
              "ms_deform_attn (cuda): sampling_locations must be [N, Lq, M, L, P, 2] with N = ",
              sz.batch, ", M = ", sz.num_heads, "; got ", sampling_locations.sizes());
  TORCH_CHECK(attention_weights.sizes() == sampling_locations.sizes().slice(0, 5),
              "ms_deform_attn (cuda): attention_weights must be [N, Lq, M, L, P] = ",
              sampling_locations.sizes().slice(0, 5), ", got ", attention_weights.sizes());
  return sz;
}

}  // namespace

at::Tensor ms_deform_attn_cuda_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index,
                                       const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights) {
  const Sizes sz =
      check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const c10::cuda::CUDAGuard device_guard(value.device());
  at::Tensor output =
      at::empty({sz.batch, sz.num_queries, static_cast<int64_t>(sz.num_heads) * sz.channels},
                value.options());
  const int64_t total = output.numel();
  if (total == 0) {
    return output;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_cuda_forward", [&] {
        msda_kernels::ms_deform_attn_forward_kernel<scalar_t><<<blocks_for(total), kThreadsPerBlock, 0, stream>>>(
            value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
            level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr<scalar_t>(),
            attention_weights.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), sz);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_cuda_backward(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights,
    const at::Tensor& grad_output) {
  const Sizes sz =
      check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  check_tensor(grad_output, "grad_output [N, Lq, M*D]", value, 3);
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type(), "ms_deform_attn (cuda): grad_output (",
              grad_output.scalar_type(), ") must have the dtype of value (", value.scalar_type(), ")");
  TORCH_CHECK(grad_output.size(0) == sz.batch && grad_output.size(1) == sz.num_queries &&
                  grad_output.size(2) == static_cast<int64_t>(sz.num_heads) * sz.channels,
              "ms_deform_attn (cuda): grad_output must be [N, Lq, M*D] = [", sz.batch, ", ",
              sz.num_queries, ", ", static_cast<int64_t>(sz.num_heads) * sz.channels, "], got ",
              grad_output.sizes());
  const c10::cuda::CUDAGuard device_guard(value.device());

  const at::ScalarType opmath_dtype = at::toOpMathType(value.scalar_type());
  at::Tensor grad_value_acc = at::zeros(value.sizes(), value.options().dtype(opmath_dtype));
  // Every point is written exactly once by the kernel, so no zero-fill is needed.
  at::Tensor grad_sampling_locations = at::empty_like(sampling_locations);
  at::Tensor grad_attention_weights = at::empty_like(attention_weights);

  const int64_t total_heads = sz.batch * sz.num_queries * sz.num_heads;
  if (total_heads > 0 && sz.channels > 0) {
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, value.scalar_type(), "ms_deform_attn_cuda_backward", [&] {
          using opmath_t = at::opmath_type<scalar_t>;
          msda_kernels::ms_deform_attn_backward_kernel<scalar_t, opmath_t>
              <<<blocks_for(total_heads * kWarpSize), kThreadsPerBlock, 0, stream>>>(
                  value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
                  level_start_index.data_ptr<int64_t>(), sampling_locations.data_ptr<scalar_t>(),
                  attention_weights.data_ptr<scalar_t>(), grad_output.data_ptr<scalar_t>(),
                  grad_value_acc.data_ptr<opmath_t>(), grad_sampling_locations.data_ptr<scalar_t>(),
                  grad_attention_weights.data_ptr<scalar_t>(), sz);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  } else {
    grad_sampling_locations.zero_();
    grad_attention_weights.zero_();
  }
  at::Tensor grad_value =
      grad_value_acc.scalar_type() == value.scalar_type() ? grad_value_acc : grad_value_acc.to(value.scalar_type());
  return std::make_tuple(grad_value, grad_sampling_locations, grad_attention_weights);
}

}  // namespace hdetr
