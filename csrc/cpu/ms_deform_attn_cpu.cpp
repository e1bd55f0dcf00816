// Multi-scale deformable attention on the CPU: checks, allocation, threading.
// The inner loops live in msda_kernels_impl.h, compiled per instruction set.
//
// The loops run on head-major copies ([N, M, ...], see heads_first), where
// the heads are part of the batch.
// Forward parallelises over (n, m, q): each task owns one output row of D.
// Chunks of work go to whichever thread is free (parallel_dynamic).
// Backward must scatter-add into grad_value from every query; tasks are
// (head, query-chunk) pairs, and each query-chunk writes its own copy of
// grad_value, so no two tasks ever write the same memory. Copies beyond the
// first exist only when there are fewer heads than threads.
#include "ms_deform_attn_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

#include "msda_kernels.h"

namespace hdetr_msda {
namespace {

std::atomic<const KernelTable*> active_table{nullptr};

const KernelTable* default_table() {
  const char* forced = std::getenv("HDETR_MSDA_CPU_ISA");
  if (forced != nullptr && std::string(forced) == "generic") return &generic_kernels();
  if (avx2_kernels() != nullptr && cpu_supports_avx2_fma()) return avx2_kernels();
  return &generic_kernels();
}

const KernelTable& active_kernels() {
  const KernelTable* table = active_table.load();
  if (table == nullptr) {
    table = default_table();
    active_table.store(table);
  }
  return *table;
}

template <typename scalar_t>
ForwardRows<scalar_t> forward_kernel(const KernelTable& table);
template <>
ForwardRows<float> forward_kernel<float>(const KernelTable& table) { return table.forward_f32; }
template <>
ForwardRows<double> forward_kernel<double>(const KernelTable& table) { return table.forward_f64; }

template <typename scalar_t>
BackwardHead<scalar_t> backward_kernel(const KernelTable& table);
template <>
BackwardHead<float> backward_kernel<float>(const KernelTable& table) { return table.backward_f32; }
template <>
BackwardHead<double> backward_kernel<double>(const KernelTable& table) { return table.backward_f64; }

// Below this many multiply-adds a task list runs on the calling thread:
// waking the thread pool would cost more than the work.
constexpr int64_t kSerialWork = 1 << 15;
// Chunks per thread in the forward: enough for late threads to catch up.
constexpr int64_t kChunksPerThread = 8;

// Runs body(begin, end) over [0, items) in chunks of `chunk` handed out first
// come, first served. With at::parallel_for's fixed split, a thread that the
// OS deschedules (other processes, data-loader workers on the same cores)
// holds back a whole share of the work; here it holds back one chunk.
template <typename Body>
void parallel_dynamic(int64_t items, int64_t chunk, bool serial, const Body& body) {
  if (items <= 0) return;
  const int64_t threads = at::get_num_threads();
  if (serial || threads == 1 || items <= chunk) {
    body(0, items);
    return;
  }
  const int64_t num_chunks = (items + chunk - 1) / chunk;
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min(threads, num_chunks), 1, [&](int64_t, int64_t) {
    for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < num_chunks;
         c = next.fetch_add(1, std::memory_order_relaxed)) {
      body(c * chunk, std::min(items, (c + 1) * chunk));
    }
  });
}

// [N, A, M, ...] -> [N, M, A, ...], contiguous: the rows of one head become
// consecutive. In the [N, S, M, D] layout a head's rows sit M * D apart, a
// power-of-two stride that maps them onto a few cache sets; the loops ran
// about twice as fast on head-major copies (heads folded into the batch).
at::Tensor heads_first(const at::Tensor& t) { return t.transpose(1, 2).contiguous(); }
// [N, M, A, ...] -> [N, A, M, ...], contiguous.
at::Tensor heads_back(const at::Tensor& t) { return t.transpose(1, 2).contiguous(); }

// The same problem with the M heads folded into the batch (layout [N * M, ..., 1, ...]).
Problem heads_as_batch(const Problem& pb) {
  return Problem{pb.batch * pb.heads, pb.spatial, 1, pb.channels, pb.queries, pb.levels, pb.points};
}

struct CheckedInputs {
  Problem problem;
  at::Tensor value, shapes, starts, locations, weights;
};

CheckedInputs check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                           const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                           const at::Tensor& attention_weights) {
  TORCH_CHECK(value.device().is_cpu() && sampling_locations.device().is_cpu() &&
                  attention_weights.device().is_cpu(),
              "hdetr msda cpu: value, sampling_locations and attention_weights must be CPU tensors");
  TORCH_CHECK(value.dim() == 4, "hdetr msda cpu: value must be [N, S, M, D], got ", value.sizes());
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(5) == 2,
              "hdetr msda cpu: sampling_locations must be [N, Lq, M, L, P, 2], got ", sampling_locations.sizes());
  TORCH_CHECK(attention_weights.dim() == 5,
              "hdetr msda cpu: attention_weights must be [N, Lq, M, L, P], got ", attention_weights.sizes());
  TORCH_CHECK(value.scalar_type() == at::kFloat || value.scalar_type() == at::kDouble,
              "hdetr msda cpu: value must be float32 or float64, got ", value.scalar_type());
  TORCH_CHECK(sampling_locations.scalar_type() == value.scalar_type() &&
                  attention_weights.scalar_type() == value.scalar_type(),
              "hdetr msda cpu: value, sampling_locations and attention_weights must share one dtype");
  Problem pb{value.size(0), value.size(1), value.size(2), value.size(3),
             sampling_locations.size(1), sampling_locations.size(3), sampling_locations.size(4)};
  TORCH_CHECK(sampling_locations.size(0) == pb.batch && sampling_locations.size(2) == pb.heads,
              "hdetr msda cpu: sampling_locations ", sampling_locations.sizes(), " does not match value ",
              value.sizes());
  TORCH_CHECK(attention_weights.sizes() == sampling_locations.sizes().slice(0, 5),
              "hdetr msda cpu: attention_weights ", attention_weights.sizes(),
              " must equal sampling_locations.shape[:5] ", sampling_locations.sizes().slice(0, 5));
  auto shapes = spatial_shapes.to(at::kCPU, at::kLong).contiguous();
  auto starts = level_start_index.to(at::kCPU, at::kLong).contiguous();
  TORCH_CHECK(shapes.dim() == 2 && shapes.size(0) == pb.levels && shapes.size(1) == 2,
              "hdetr msda cpu: spatial_shapes must be [L, 2] with L = ", pb.levels, ", got ", shapes.sizes());
  TORCH_CHECK(starts.dim() == 1 && starts.size(0) == pb.levels,
              "hdetr msda cpu: level_start_index must be [L] with L = ", pb.levels, ", got ", starts.sizes());
  // Guards every pixel read against the bounds of value.
  const int64_t* s = shapes.data_ptr<int64_t>();
  const int64_t* o = starts.data_ptr<int64_t>();
  for (int64_t l = 0; l < pb.levels; ++l) {
    TORCH_CHECK(s[2 * l] >= 0 && s[2 * l + 1] >= 0 && o[l] >= 0 && o[l] + s[2 * l] * s[2 * l + 1] <= pb.spatial,
                "hdetr msda cpu: level ", l, " (H=", s[2 * l], ", W=", s[2 * l + 1], ", start=", o[l],
                ") does not fit in S = ", pb.spatial);
  }
  return {pb, value.contiguous(), shapes, starts, sampling_locations.contiguous(), attention_weights.contiguous()};
}

}  // namespace

std::string kernel_isa() { return active_kernels().isa; }

void set_kernel_isa(const std::string& isa) {
  if (isa == "auto") {
    active_table.store(default_table());
  } else if (isa == "generic") {
    active_table.store(&generic_kernels());
  } else if (isa == "avx2") {
    TORCH_CHECK(avx2_kernels() != nullptr, "hdetr msda cpu: this build has no AVX2 kernels (GCC on x86-64 only)");
    TORCH_CHECK(cpu_supports_avx2_fma(), "hdetr msda cpu: this CPU lacks AVX2 or FMA");
    active_table.store(avx2_kernels());
  } else {
    TORCH_CHECK(false, "hdetr msda cpu: unknown instruction set '", isa, "'; expected auto, generic or avx2");
  }
}

at::Tensor ms_deform_attn_cpu_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights) {
  auto in = check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const Problem& pb = in.problem;
  const Problem folded = heads_as_batch(pb);
  const auto value_hm = heads_first(in.value);
  const auto locations_hm = heads_first(in.locations);
  const auto weights_hm = heads_first(in.weights);
  auto out_hm = at::zeros({pb.batch, pb.heads, pb.queries, pb.channels}, in.value.options());
  const int64_t rows = folded.batch * folded.queries;
  const int64_t work_per_row = std::max<int64_t>(1, pb.levels * pb.points * 4 * pb.channels);
  const int64_t min_rows = std::max<int64_t>(1, kSerialWork / work_per_row);
  const int64_t threads = at::get_num_threads();
  const int64_t chunk = std::max(min_rows, (rows + threads * kChunksPerThread - 1) / (threads * kChunksPerThread));
  AT_DISPATCH_FLOATING_TYPES(in.value.scalar_type(), "hdetr_msda_cpu_forward", [&] {
    const scalar_t* v = value_hm.data_ptr<scalar_t>();
    const int64_t* shapes = in.shapes.data_ptr<int64_t>();
    const int64_t* starts = in.starts.data_ptr<int64_t>();
    const scalar_t* loc = locations_hm.data_ptr<scalar_t>();
    const scalar_t* attn = weights_hm.data_ptr<scalar_t>();
    scalar_t* o = out_hm.data_ptr<scalar_t>();
    const ForwardRows<scalar_t> kernel = forward_kernel<scalar_t>(active_kernels());
    parallel_dynamic(rows, chunk, rows <= min_rows, [&](int64_t begin, int64_t end) {
      kernel(folded, v, shapes, starts, loc, attn, o, begin, end);
    });
  });
  return heads_back(out_hm).view({pb.batch, pb.queries, pb.heads * pb.channels});
}

std::vector<at::Tensor> ms_deform_attn_cpu_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                                    const at::Tensor& level_start_index,
                                                    const at::Tensor& sampling_locations,
                                                    const at::Tensor& attention_weights,
                                                    const at::Tensor& grad_output) {
  auto in = check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const Problem& pb = in.problem;
  TORCH_CHECK(grad_output.device().is_cpu() && grad_output.scalar_type() == in.value.scalar_type(),
              "hdetr msda cpu: grad_output must be a CPU tensor of dtype ", in.value.scalar_type());
  TORCH_CHECK(grad_output.numel() == pb.batch * pb.queries * pb.heads * pb.channels,
              "hdetr msda cpu: grad_output must be [N, Lq, M*D] = [", pb.batch, ", ", pb.queries, ", ",
              pb.heads * pb.channels, "], got ", grad_output.sizes());
  const Problem folded = heads_as_batch(pb);
  const auto value_hm = heads_first(in.value);
  const auto locations_hm = heads_first(in.locations);
  const auto weights_hm = heads_first(in.weights);
  const auto grad_out_hm = heads_first(grad_output.reshape({pb.batch, pb.queries, pb.heads, pb.channels}));
  auto grad_value_hm = at::zeros_like(value_hm);
  auto grad_locations_hm = at::zeros_like(locations_hm);
  auto grad_weights_hm = at::zeros_like(weights_hm);

  const int64_t heads_total = folded.batch;
  const int64_t total_work = heads_total * pb.queries * pb.levels * pb.points * 4 * pb.channels;
  const bool serial = total_work < kSerialWork || at::get_num_threads() == 1;
  // Split queries only when there are fewer heads than threads; each extra
  // query-chunk costs one more grad_value-sized buffer.
  int64_t chunks = 1;
  if (!serial && heads_total < at::get_num_threads()) {
    chunks = std::min<int64_t>(std::max<int64_t>(pb.queries, 1),
                               (at::get_num_threads() + heads_total - 1) / heads_total);
  }
  at::Tensor extra_copies;
  if (chunks > 1) {
    extra_copies = at::zeros({chunks - 1, pb.batch, pb.heads, pb.spatial, pb.channels}, in.value.options());
  }
  const int64_t tasks = heads_total * chunks;
  AT_DISPATCH_FLOATING_TYPES(in.value.scalar_type(), "hdetr_msda_cpu_backward", [&] {
    const scalar_t* v = value_hm.data_ptr<scalar_t>();
    const int64_t* shapes = in.shapes.data_ptr<int64_t>();
    const int64_t* starts = in.starts.data_ptr<int64_t>();
    const scalar_t* loc = locations_hm.data_ptr<scalar_t>();
    const scalar_t* attn = weights_hm.data_ptr<scalar_t>();
    const scalar_t* g = grad_out_hm.data_ptr<scalar_t>();
    scalar_t* gv = grad_value_hm.data_ptr<scalar_t>();
    scalar_t* extra = chunks > 1 ? extra_copies.data_ptr<scalar_t>() : nullptr;
    scalar_t* gl = grad_locations_hm.data_ptr<scalar_t>();
    scalar_t* ga = grad_weights_hm.data_ptr<scalar_t>();
    const int64_t copy_numel = in.value.numel();
    const BackwardHead<scalar_t> kernel = backward_kernel<scalar_t>(active_kernels());
    parallel_dynamic(tasks, 1, serial, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t head = t % heads_total;
        const int64_t chunk = t / heads_total;
        const int64_t q_begin = chunk * pb.queries / chunks;
        const int64_t q_end = (chunk + 1) * pb.queries / chunks;
        scalar_t* copy = chunk == 0 ? gv : extra + (chunk - 1) * copy_numel;
        kernel(folded, v, shapes, starts, loc, attn, g, copy, gl, ga, head, 0, q_begin, q_end);
      }
    });
  });
  if (chunks > 1) {
    grad_value_hm.add_(extra_copies.sum(0));
  }
  return {heads_back(grad_value_hm), heads_back(grad_locations_hm), heads_back(grad_weights_hm)};
}

}  // namespace hdetr_msda
