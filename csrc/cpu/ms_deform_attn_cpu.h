// Multi-scale deformable attention on the CPU (forward and backward).
//
// Shapes (all tensors contiguous on the CPU, value/locations/weights share one
// floating dtype, float32 or float64):
//   value              [N, S, M, D]
//   spatial_shapes     [L, 2] int64, (H, W) per level, sum(H * W) == S
//   level_start_index  [L] int64, offset of each level inside S
//   sampling_locations [N, Lq, M, L, P, 2] normalised (x, y)
//   attention_weights  [N, Lq, M, L, P]
//   output             [N, Lq, M * D]
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace hdetr_msda {

at::Tensor ms_deform_attn_cpu_forward(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

// Returns (grad_value [N, S, M, D], grad_sampling_locations [N, Lq, M, L, P, 2],
// grad_attention_weights [N, Lq, M, L, P]) for grad_output [N, Lq, M * D].
std::vector<at::Tensor> ms_deform_attn_cpu_backward(
    const at::Tensor& value,
    const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index,
    const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights,
    const at::Tensor& grad_output);

// Instruction set of the inner loops in use: "avx2" or "generic". The default
// is avx2 where the CPU has AVX2 + FMA, unless HDETR_MSDA_CPU_ISA=generic.
std::string kernel_isa();
// "auto", "generic" or "avx2" (tests compare both paths).
void set_kernel_isa(const std::string& isa);

}  // namespace hdetr_msda
