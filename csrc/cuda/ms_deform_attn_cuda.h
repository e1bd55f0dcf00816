// Multi-scale deformable attention, CUDA kernels (declarations shared by the
// .cu translation unit and the Python binding).
//
// Shapes (all tensors contiguous, on one CUDA device):
//   value               [N, S, M, D]          float64 / float32 / float16 / bfloat16
//   spatial_shapes      [L, 2] int64          (H, W) of each level, sum(H*W) == S
//   level_start_index   [L] int64             offset of each level inside S
//   sampling_locations  [N, Lq, M, L, P, 2]   (x, y) in [0, 1], same dtype as value
//   attention_weights   [N, Lq, M, L, P]      same dtype as value
//   output              [N, Lq, M*D]
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace hdetr {

at::Tensor ms_deform_attn_cuda_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index,
                                       const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights);

// Returns (grad_value [N, S, M, D], grad_sampling_locations [N, Lq, M, L, P, 2],
// grad_attention_weights [N, Lq, M, L, P]), each in the dtype of value.
std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_cuda_backward(
    const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations, const at::Tensor& attention_weights,
    const at::Tensor& grad_output);

}  // namespace hdetr
