// Multi-scale deformable attention, CPU kernels.
//
// Semantics match the official Deformable-DETR op: a sampling location (x, y)
// in [0, 1] is read at pixel coordinates (x * W - 0.5, y * H - 0.5) with
// bilinear interpolation, and corners outside the map contribute zero.
//
// Layout: value is [N, S, M, D], so the D channels of one head at one pixel
// are contiguous and consecutive pixels of a head are M * D apart. Every inner
// loop runs over those D contiguous channels.
//
// Forward parallelises over (n, q, m): each task owns one output row of D.
// Backward must scatter-add into grad_value from every query; tasks are
// (head, query-chunk) pairs, and each query-chunk writes its own copy of
// grad_value, so no two tasks ever write the same memory. Copies beyond the
// first exist only when there are fewer heads than threads.
#include "ms_deform_attn_cpu.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cmath>

namespace hdetr_msda {
namespace {

struct Problem {
  int64_t batch;       // N
  int64_t spatial;     // S
  int64_t heads;       // M
  int64_t channels;    // D
  int64_t queries;     // Lq
  int64_t levels;      // L
  int64_t points;      // P
  int64_t pixel_stride() const { return heads * channels; }
};

// Below this many multiply-adds a task list runs on the calling thread:
// waking the thread pool would cost more than the work.
constexpr int64_t kSerialWork = 1 << 15;

// The four bilinear corners of one sampling point on one level.
template <typename scalar_t>
struct Footprint {
  bool any_inside = false;
  std::array<bool, 4> inside{};
  std::array<int64_t, 4> pixel{};   // row-major pixel index within the level
  std::array<scalar_t, 4> weight{};
  scalar_t frac_y = 0, frac_x = 0;  // distance from the top-left corner
  bool interior() const { return inside[0] && inside[1] && inside[2] && inside[3]; }
};

template <typename scalar_t>
inline Footprint<scalar_t> bilinear_footprint(scalar_t loc_x, scalar_t loc_y, int64_t height, int64_t width) {
  Footprint<scalar_t> f;
  const scalar_t x = loc_x * static_cast<scalar_t>(width) - scalar_t(0.5);
  const scalar_t y = loc_y * static_cast<scalar_t>(height) - scalar_t(0.5);
  // Written so that NaN locations fall outside as well.
  if (!(y > scalar_t(-1) && x > scalar_t(-1) && y < static_cast<scalar_t>(height) &&
        x < static_cast<scalar_t>(width))) {
    return f;
  }
  f.any_inside = true;
  const int64_t y0 = static_cast<int64_t>(std::floor(y));
  const int64_t x0 = static_cast<int64_t>(std::floor(x));
  const int64_t y1 = y0 + 1;
  const int64_t x1 = x0 + 1;
  f.frac_y = y - static_cast<scalar_t>(y0);
  f.frac_x = x - static_cast<scalar_t>(x0);
  const scalar_t rest_y = scalar_t(1) - f.frac_y;
  const scalar_t rest_x = scalar_t(1) - f.frac_x;
  const bool y0_in = y0 >= 0, y1_in = y1 <= height - 1;
  const bool x0_in = x0 >= 0, x1_in = x1 <= width - 1;
  f.inside = {y0_in && x0_in, y0_in && x1_in, y1_in && x0_in, y1_in && x1_in};
  f.pixel = {y0 * width + x0, y0 * width + x1, y1 * width + x0, y1 * width + x1};
  f.weight = {rest_y * rest_x, rest_y * f.frac_x, f.frac_y * rest_x, f.frac_y * f.frac_x};
  return f;
}

template <typename scalar_t>
void forward_rows(const Problem& pb, const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                  const scalar_t* locations, const scalar_t* weights, scalar_t* out, int64_t begin,
                  int64_t end) {
  const int64_t D = pb.channels;
  const int64_t stride = pb.pixel_stride();
  const int64_t samples = pb.levels * pb.points;
  for (int64_t row = begin; row < end; ++row) {
    // row enumerates (n, q, m) with m fastest, matching the output layout.
    const int64_t n = row / (pb.queries * pb.heads);
    const int64_t m = row % pb.heads;
    scalar_t* __restrict__ o = out + row * D;
    const scalar_t* loc = locations + row * samples * 2;
    const scalar_t* attn = weights + row * samples;
    const scalar_t* head = value + n * pb.spatial * stride + m * D;
    for (int64_t l = 0; l < pb.levels; ++l) {
      const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
      const scalar_t* level = head + starts[l] * stride;
      for (int64_t p = 0; p < pb.points; ++p) {
        const int64_t k = l * pb.points + p;
        const auto f = bilinear_footprint<scalar_t>(loc[2 * k], loc[2 * k + 1], H, W);
        if (!f.any_inside) continue;
        const scalar_t a = attn[k];
        if (f.interior()) {
          // Interior point: one pass over D instead of four.
          const scalar_t c0 = a * f.weight[0], c1 = a * f.weight[1];
          const scalar_t c2 = a * f.weight[2], c3 = a * f.weight[3];
          const scalar_t* __restrict__ v0 = level + f.pixel[0] * stride;
          const scalar_t* __restrict__ v1 = level + f.pixel[1] * stride;
          const scalar_t* __restrict__ v2 = level + f.pixel[2] * stride;
          const scalar_t* __restrict__ v3 = level + f.pixel[3] * stride;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) {
            o[d] += c0 * v0[d] + c1 * v1[d] + c2 * v2[d] + c3 * v3[d];
          }
          continue;
        }
        for (int c = 0; c < 4; ++c) {
          if (!f.inside[c]) continue;
          const scalar_t coef = a * f.weight[c];
          const scalar_t* __restrict__ v = level + f.pixel[c] * stride;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) {
            o[d] += coef * v[d];
          }
        }
      }
    }
  }
}

// Backward for one head (n, m) over queries [q_begin, q_end). grad_value_copy
// is the [N, S, M, D] buffer this query-chunk owns.
template <typename scalar_t>
void backward_head(const Problem& pb, const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                   const scalar_t* locations, const scalar_t* weights, const scalar_t* grad_out,
                   scalar_t* grad_value_copy, scalar_t* grad_locations, scalar_t* grad_weights, int64_t n,
                   int64_t m, int64_t q_begin, int64_t q_end) {
  const int64_t D = pb.channels;
  const int64_t stride = pb.pixel_stride();
  const int64_t samples = pb.levels * pb.points;
  const scalar_t* head = value + n * pb.spatial * stride + m * D;
  scalar_t* grad_head = grad_value_copy + n * pb.spatial * stride + m * D;
  for (int64_t q = q_begin; q < q_end; ++q) {
    const int64_t row = (n * pb.queries + q) * pb.heads + m;
    const scalar_t* __restrict__ g = grad_out + row * D;
    const scalar_t* loc = locations + row * samples * 2;
    const scalar_t* attn = weights + row * samples;
    scalar_t* grad_loc = grad_locations + row * samples * 2;
    scalar_t* grad_attn = grad_weights + row * samples;
    for (int64_t l = 0; l < pb.levels; ++l) {
      const int64_t H = shapes[2 * l], W = shapes[2 * l + 1];
      const scalar_t* level = head + starts[l] * stride;
      scalar_t* grad_level = grad_head + starts[l] * stride;
      for (int64_t p = 0; p < pb.points; ++p) {
        const int64_t k = l * pb.points + p;
        const auto f = bilinear_footprint<scalar_t>(loc[2 * k], loc[2 * k + 1], H, W);
        if (!f.any_inside) continue;  // gradients stay zero
        const scalar_t a = attn[k];
        // corner_dot[c] = <grad_out row, value at corner c>: it gives the
        // attention-weight gradient and, through the bilinear weights, the
        // location gradient, in the same pass that scatters into grad_value.
        std::array<scalar_t, 4> corner_dot{};
        if (f.interior()) {
          // Interior point: the four corners in one pass over D.
          const scalar_t c0 = a * f.weight[0], c1 = a * f.weight[1];
          const scalar_t c2 = a * f.weight[2], c3 = a * f.weight[3];
          const scalar_t* __restrict__ v0 = level + f.pixel[0] * stride;
          const scalar_t* __restrict__ v1 = level + f.pixel[1] * stride;
          const scalar_t* __restrict__ v2 = level + f.pixel[2] * stride;
          const scalar_t* __restrict__ v3 = level + f.pixel[3] * stride;
          scalar_t* __restrict__ gv0 = grad_level + f.pixel[0] * stride;
          scalar_t* __restrict__ gv1 = grad_level + f.pixel[1] * stride;
          scalar_t* __restrict__ gv2 = grad_level + f.pixel[2] * stride;
          scalar_t* __restrict__ gv3 = grad_level + f.pixel[3] * stride;
          scalar_t dot0 = 0, dot1 = 0, dot2 = 0, dot3 = 0;
#pragma omp simd reduction(+ : dot0, dot1, dot2, dot3)
          for (int64_t d = 0; d < D; ++d) {
            const scalar_t gd = g[d];
            dot0 += gd * v0[d];
            dot1 += gd * v1[d];
            dot2 += gd * v2[d];
            dot3 += gd * v3[d];
            gv0[d] += c0 * gd;
            gv1[d] += c1 * gd;
            gv2[d] += c2 * gd;
            gv3[d] += c3 * gd;
          }
          corner_dot = {dot0, dot1, dot2, dot3};
        } else {
          for (int c = 0; c < 4; ++c) {
            if (!f.inside[c]) continue;
            const scalar_t coef = a * f.weight[c];
            const scalar_t* __restrict__ v = level + f.pixel[c] * stride;
            scalar_t* __restrict__ gv = grad_level + f.pixel[c] * stride;
            scalar_t dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int64_t d = 0; d < D; ++d) {
              dot += g[d] * v[d];
              gv[d] += coef * g[d];
            }
            corner_dot[c] = dot;
          }
        }
        const scalar_t rest_y = scalar_t(1) - f.frac_y;
        const scalar_t rest_x = scalar_t(1) - f.frac_x;
        grad_attn[k] = f.weight[0] * corner_dot[0] + f.weight[1] * corner_dot[1] +
                       f.weight[2] * corner_dot[2] + f.weight[3] * corner_dot[3];
        const scalar_t d_sample_dx = rest_y * (corner_dot[1] - corner_dot[0]) +
                                     f.frac_y * (corner_dot[3] - corner_dot[2]);
        const scalar_t d_sample_dy = rest_x * (corner_dot[2] - corner_dot[0]) +
                                     f.frac_x * (corner_dot[3] - corner_dot[1]);
        // Pixel coordinates are loc * size - 0.5, hence the factor size.
        grad_loc[2 * k] = static_cast<scalar_t>(W) * d_sample_dx * a;
        grad_loc[2 * k + 1] = static_cast<scalar_t>(H) * d_sample_dy * a;
      }
    }
  }
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

at::Tensor ms_deform_attn_cpu_forward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights) {
  auto in = check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  const Problem& pb = in.problem;
  auto out = at::zeros({pb.batch, pb.queries, pb.heads, pb.channels}, in.value.options());
  const int64_t rows = pb.batch * pb.queries * pb.heads;
  const int64_t work_per_row = std::max<int64_t>(1, pb.levels * pb.points * 4 * pb.channels);
  const int64_t grain = std::max<int64_t>(1, kSerialWork / work_per_row);
  AT_DISPATCH_FLOATING_TYPES(in.value.scalar_type(), "hdetr_msda_cpu_forward", [&] {
    const scalar_t* v = in.value.data_ptr<scalar_t>();
    const int64_t* shapes = in.shapes.data_ptr<int64_t>();
    const int64_t* starts = in.starts.data_ptr<int64_t>();
    const scalar_t* loc = in.locations.data_ptr<scalar_t>();
    const scalar_t* attn = in.weights.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      forward_rows<scalar_t>(pb, v, shapes, starts, loc, attn, o, begin, end);
    });
  });
  return out.view({pb.batch, pb.queries, pb.heads * pb.channels});
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
  auto grad_out = grad_output.contiguous();
  auto grad_value = at::zeros_like(in.value);
  auto grad_locations = at::zeros_like(in.locations);
  auto grad_weights = at::zeros_like(in.weights);

  const int64_t heads_total = pb.batch * pb.heads;
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
    extra_copies = at::zeros({chunks - 1, pb.batch, pb.spatial, pb.heads, pb.channels}, in.value.options());
  }
  const int64_t tasks = heads_total * chunks;
  AT_DISPATCH_FLOATING_TYPES(in.value.scalar_type(), "hdetr_msda_cpu_backward", [&] {
    const scalar_t* v = in.value.data_ptr<scalar_t>();
    const int64_t* shapes = in.shapes.data_ptr<int64_t>();
    const int64_t* starts = in.starts.data_ptr<int64_t>();
    const scalar_t* loc = in.locations.data_ptr<scalar_t>();
    const scalar_t* attn = in.weights.data_ptr<scalar_t>();
    const scalar_t* g = grad_out.data_ptr<scalar_t>();
    scalar_t* gv = grad_value.data_ptr<scalar_t>();
    scalar_t* extra = chunks > 1 ? extra_copies.data_ptr<scalar_t>() : nullptr;
    scalar_t* gl = grad_locations.data_ptr<scalar_t>();
    scalar_t* ga = grad_weights.data_ptr<scalar_t>();
    const int64_t copy_numel = in.value.numel();
    at::parallel_for(0, tasks, serial ? tasks : 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t head = t % heads_total;
        const int64_t chunk = t / heads_total;
        const int64_t q_begin = chunk * pb.queries / chunks;
        const int64_t q_end = (chunk + 1) * pb.queries / chunks;
        scalar_t* copy = chunk == 0 ? gv : extra + (chunk - 1) * copy_numel;
        backward_head<scalar_t>(pb, v, shapes, starts, loc, attn, g, copy, gl, ga, head / pb.heads,
                                head % pb.heads, q_begin, q_end);
      }
    });
  });
  if (chunks > 1) {
    grad_value.add_(extra_copies.sum(0));
  }
  return {grad_value, grad_locations, grad_weights};
}

}  // namespace hdetr_msda
