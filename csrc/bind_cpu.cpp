// Python binding of the CPU kernel. Same two functions, same signatures as the
// CUDA extension, so one autograd Function serves both compiled backends.
#include <torch/extension.h>

#include "cpu/ms_deform_attn_cpu.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "hdetr multi-scale deformable attention, C++ CPU kernel";
  m.def("forward", &hdetr_msda::ms_deform_attn_cpu_forward,
        "forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights) -> "
        "output [N, Lq, M*D]",
        pybind11::arg("value"), pybind11::arg("spatial_shapes"), pybind11::arg("level_start_index"),
        pybind11::arg("sampling_locations"), pybind11::arg("attention_weights"));
  m.def("backward", &hdetr_msda::ms_deform_attn_cpu_backward,
        "backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, "
        "grad_output) -> (grad_value, grad_sampling_locations, grad_attention_weights)",
        pybind11::arg("value"), pybind11::arg("spatial_shapes"), pybind11::arg("level_start_index"),
        pybind11::arg("sampling_locations"), pybind11::arg("attention_weights"),
        pybind11::arg("grad_output"));
  m.def("kernel_isa", &hdetr_msda::kernel_isa, "instruction set of the inner loops: 'avx2' or 'generic'");
  m.def("set_kernel_isa", &hdetr_msda::set_kernel_isa, "use 'auto', 'generic' or 'avx2' inner loops",
        pybind11::arg("isa"));
}
