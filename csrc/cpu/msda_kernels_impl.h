// The loops of the CPU op (included by msda_kernels_<isa>.cpp, never on its own).
//
// Before including, define HDETR_MSDA_ISA (the namespace of this copy) and
// HDETR_MSDA_ISA_NAME (its name as a string); the copy's table is
// hdetr_msda::HDETR_MSDA_ISA::table().
//
// Semantics match the official Deformable-DETR op: a sampling location (x, y)
// in [0, 1] is read at pixel coordinates (x * W - 0.5, y * H - 0.5) with
// bilinear interpolation, and corners outside the map contribute zero.
// value is [N, S, M, D]: the D channels of one head at one pixel are
// contiguous, consecutive pixels of a head are M * D apart, and every inner
// loop runs over those D channels.
#include <cmath>
#include <cstdint>

#include "msda_kernels.h"

namespace hdetr_msda {
namespace HDETR_MSDA_ISA {

// The four bilinear corners of one sampling point on one level.
template <typename scalar_t>
struct Footprint {
  bool any_inside = false;
  bool inside[4] = {false, false, false, false};
  int64_t pixel[4] = {0, 0, 0, 0};  // row-major pixel index within the level
  scalar_t weight[4] = {0, 0, 0, 0};
  scalar_t frac_y = 0, frac_x = 0;  // distance from the top-left corner
  bool interior() const { return inside[0] && inside[1] && inside[2] && inside[3]; }
};

template <typename scalar_t>
static inline Footprint<scalar_t> bilinear_footprint(scalar_t loc_x, scalar_t loc_y, int64_t height, int64_t width) {
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
  f.inside[0] = y0_in && x0_in;
  f.inside[1] = y0_in && x1_in;
  f.inside[2] = y1_in && x0_in;
  f.inside[3] = y1_in && x1_in;
  f.pixel[0] = y0 * width + x0;
  f.pixel[1] = y0 * width + x1;
  f.pixel[2] = y1 * width + x0;
  f.pixel[3] = y1 * width + x1;
  f.weight[0] = rest_y * rest_x;
  f.weight[1] = rest_y * f.frac_x;
  f.weight[2] = f.frac_y * rest_x;
  f.weight[3] = f.frac_y * f.frac_x;
  return f;
}

template <typename scalar_t>
static void forward_rows(const Problem& pb, const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                         const scalar_t* locations, const scalar_t* weights, scalar_t* out, int64_t begin,
                         int64_t end) {
  const int64_t D = pb.channels;
  const int64_t stride = pb.heads * pb.channels;
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
static void backward_head(const Problem& pb, const scalar_t* value, const int64_t* shapes, const int64_t* starts,
                          const scalar_t* locations, const scalar_t* weights, const scalar_t* grad_out,
                          scalar_t* grad_value_copy, scalar_t* grad_locations, scalar_t* grad_weights, int64_t n,
                          int64_t m, int64_t q_begin, int64_t q_end) {
  const int64_t D = pb.channels;
  const int64_t stride = pb.heads * pb.channels;
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
        scalar_t corner_dot[4] = {0, 0, 0, 0};
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
          corner_dot[0] = dot0;
          corner_dot[1] = dot1;
          corner_dot[2] = dot2;
          corner_dot[3] = dot3;
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

const KernelTable& table() {
  static const KernelTable kernels{HDETR_MSDA_ISA_NAME, &forward_rows<float>, &forward_rows<double>,
                                   &backward_head<float>, &backward_head<double>};
  return kernels;
}

}  // namespace HDETR_MSDA_ISA
}  // namespace hdetr_msda
