// Python binding of the CUDA multi-scale deformable attention kernels.
// Built on demand by hdetr/ops/cuda_backend.py (torch.utils.cpp_extension.load).
#include <torch/extension.h>

#include "ms_deform_attn_cuda.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "hdetr multi-scale deformable attention, CUDA kernels";
  m.def("forward", &hdetr::ms_deform_attn_cuda_forward,
        "forward(value [N,S,M,D], spatial_shapes [L,2] int64, level_start_index [L] int64, "
        "sampling_locations [N,Lq,M,L,P,2], attention_weights [N,Lq,M,L,P]) -> [N,Lq,M*D]",
        py::arg("value"), py::arg("spatial_shapes"), py::arg("level_start_index"),
        py::arg("sampling_locations"), py::arg("attention_weights"));
  m.def("backward", &hdetr::ms_deform_attn_cuda_backward,
        "backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, "
        "grad_output [N,Lq,M*D]) -> (grad_value, grad_sampling_locations, grad_attention_weights)",
        py::arg("value"), py::arg("spatial_shapes"), py::arg("level_start_index"),
        py::arg("sampling_locations"), py::arg("attention_weights"), py::arg("grad_output"));
}
