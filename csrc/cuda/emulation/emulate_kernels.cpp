// Runs the CUDA kernels of ms_deform_attn_kernels.cuh on the CPU, for tests on
// machines without a GPU (tests/test_ops_cuda_compile.py). Not part of the op.
//
// Each launch uses one block of 32 threads (one warp) and a small grid, so the
// kernels' grid-stride loops run many times. The 32 lanes are real std::threads
// that step through the blocks together: __shfl_xor_sync exchanges values
// through a shared array between two barrier waits, and atomicAdd is an atomic
// fetch_add. What this checks: the kernels' arithmetic, indexing and warp
// reductions. What it cannot check: launch configuration and GPU memory
// behaviour (the cuda-marked tests do, on a GPU).
#include <torch/extension.h>

#include <atomic>
#include <barrier>
#include <thread>
#include <vector>

namespace {

struct Dim3 {
  unsigned x = 0, y = 0, z = 0;
};

constexpr int kEmulatedLanes = 32;
thread_local Dim3 threadIdx;
thread_local Dim3 blockIdx;
Dim3 blockDim;
Dim3 gridDim;
std::barrier<>* warp_barrier = nullptr;
double lane_values[kEmulatedLanes];

template <typename T>
T __shfl_xor_sync(unsigned /*mask*/, T v, int lane_mask) {
  const unsigned lane = threadIdx.x % kEmulatedLanes;
  lane_values[lane] = static_cast<double>(v);  // exact for float and double
  warp_barrier->arrive_and_wait();
  const T other = static_cast<T>(lane_values[lane ^ lane_mask]);
  warp_barrier->arrive_and_wait();  // nobody overwrites a slot before all have read
  return other;
}

template <typename T>
T atomicAdd(T* address, T v) {
  return std::atomic_ref<T>(*address).fetch_add(v);
}

}  // namespace

#define __global__
#define __device__
#define __forceinline__ inline

#include "../ms_deform_attn_kernels.cuh"

namespace {

using hdetr::msda_kernels::Sizes;

// Runs kernel() as blocks x 32 threads: every lane walks the same block sequence.
template <typename Kernel>
void launch(unsigned blocks, const Kernel& kernel) {
  blockDim = Dim3{kEmulatedLanes, 1, 1};
  gridDim = Dim3{blocks, 1, 1};
  std::barrier<> barrier(kEmulatedLanes);
  warp_barrier = &barrier;
  std::vector<std::thread> lanes;
  for (unsigned lane = 0; lane < kEmulatedLanes; ++lane) {
    lanes.emplace_back([&, lane] {
      threadIdx = Dim3{lane, 0, 0};
      for (unsigned b = 0; b < blocks; ++b) {
        blockIdx = Dim3{b, 0, 0};
        kernel();
      }
    });
  }
  for (auto& t : lanes) t.join();
  warp_barrier = nullptr;
}

Sizes sizes_of(const at::Tensor& value, const at::Tensor& locations) {
  Sizes sz;
  sz.batch = value.size(0);
  sz.num_keys = value.size(1);
  sz.num_heads = static_cast<int>(value.size(2));
  sz.channels = static_cast<int>(value.size(3));
  sz.num_queries = static_cast<int>(locations.size(1));
  sz.num_levels = static_cast<int>(locations.size(3));
  sz.num_points = static_cast<int>(locations.size(4));
  return sz;
}

at::Tensor forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                   const at::Tensor& level_start_index, const at::Tensor& locations,
                   const at::Tensor& weights, int64_t blocks) {
  const Sizes sz = sizes_of(value, locations);
  at::Tensor output = at::empty({sz.batch, sz.num_queries, sz.num_heads * sz.channels}, value.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "emulated_forward", [&] {
    launch(static_cast<unsigned>(blocks), [&] {
      hdetr::msda_kernels::ms_deform_attn_forward_kernel<scalar_t>(
          value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
          level_start_index.data_ptr<int64_t>(), locations.data_ptr<scalar_t>(),
          weights.data_ptr<scalar_t>(), output.data_ptr<scalar_t>(), sz);
    });
  });
  return output;
}

std::vector<at::Tensor> backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                 const at::Tensor& level_start_index, const at::Tensor& locations,
                                 const at::Tensor& weights, const at::Tensor& grad_output,
                                 int64_t blocks) {
  const Sizes sz = sizes_of(value, locations);
  at::Tensor grad_value = at::zeros(value.sizes(), value.options().dtype(at::toOpMathType(value.scalar_type())));
  // NaN-filled so that a point the kernel forgets to write shows up in the test.
  at::Tensor grad_locations = at::full_like(locations, std::numeric_limits<double>::quiet_NaN());
  at::Tensor grad_weights = at::full_like(weights, std::numeric_limits<double>::quiet_NaN());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "emulated_backward", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    launch(static_cast<unsigned>(blocks), [&] {
      hdetr::msda_kernels::ms_deform_attn_backward_kernel<scalar_t, opmath_t>(
          value.data_ptr<scalar_t>(), spatial_shapes.data_ptr<int64_t>(),
          level_start_index.data_ptr<int64_t>(), locations.data_ptr<scalar_t>(),
          weights.data_ptr<scalar_t>(), grad_output.data_ptr<scalar_t>(), grad_value.data_ptr<opmath_t>(),
          grad_locations.data_ptr<scalar_t>(), grad_weights.data_ptr<scalar_t>(), sz);
    });
  });
  return {grad_value.to(value.scalar_type()), grad_locations, grad_weights};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "the CUDA forward kernel, emulated on CPU tensors");
  m.def("backward", &backward, "the CUDA backward kernel, emulated on CPU tensors");
}
