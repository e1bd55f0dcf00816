// Inner loops of the CPU op, compiled once per instruction set.
//
// msda_kernels_impl.h holds the loops; msda_kernels_generic.cpp compiles them
// for the baseline x86-64 / any CPU, msda_kernels_avx2.cpp for AVX2 + FMA.
// ms_deform_attn_cpu.cpp picks a table at run time. These files include no
// torch header: code built for AVX2 must never be shared with, or linked in
// place of, the inline functions of the rest of the extension.
#pragma once

#include <cstdint>

namespace hdetr_msda {

// Sizes of one call: value [N, S, M, D], sampling_locations [N, Lq, M, L, P, 2].
struct Problem {
  int64_t batch;     // N
  int64_t spatial;   // S
  int64_t heads;     // M
  int64_t channels;  // D
  int64_t queries;   // Lq
  int64_t levels;    // L
  int64_t points;    // P
};

// Forward of output rows [begin, end), a row being one (n, q, m) with m fastest.
template <typename scalar_t>
using ForwardRows = void (*)(const Problem& pb, const scalar_t* value, const int64_t* shapes,
                             const int64_t* starts, const scalar_t* locations, const scalar_t* weights,
                             scalar_t* out, int64_t begin, int64_t end);

// Backward of head (n, m) over queries [q_begin, q_end): accumulates into
// grad_value_copy [N, S, M, D] and writes the location / weight gradients.
template <typename scalar_t>
using BackwardHead = void (*)(const Problem& pb, const scalar_t* value, const int64_t* shapes,
                              const int64_t* starts, const scalar_t* locations, const scalar_t* weights,
                              const scalar_t* grad_out, scalar_t* grad_value_copy, scalar_t* grad_locations,
                              scalar_t* grad_weights, int64_t n, int64_t m, int64_t q_begin, int64_t q_end);

struct KernelTable {
  const char* isa;
  ForwardRows<float> forward_f32;
  ForwardRows<double> forward_f64;
  BackwardHead<float> backward_f32;
  BackwardHead<double> backward_f64;
};

const KernelTable& generic_kernels();
// The AVX2 + FMA table where it was compiled (GCC on x86-64), else nullptr.
const KernelTable* avx2_kernels();
// Whether this CPU runs AVX2 and FMA instructions.
bool cpu_supports_avx2_fma();

}  // namespace hdetr_msda
