// The CPU op's loops compiled for AVX2 + FMA (GCC on x86-64), chosen at run
// time only on CPUs that have both. The D-channel loops then run on 256-bit
// vectors with fused multiply-adds.
#include <cmath>
#include <cstdint>

#include "msda_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)

namespace hdetr_msda {

// Defined before the target pragma: it must run on any CPU.
bool cpu_supports_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

}  // namespace hdetr_msda

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define HDETR_MSDA_ISA avx2
#define HDETR_MSDA_ISA_NAME "avx2"
#include "msda_kernels_impl.h"

namespace hdetr_msda {

const KernelTable* avx2_kernels() { return &avx2::table(); }

}  // namespace hdetr_msda
#pragma GCC pop_options

#else

namespace hdetr_msda {

bool cpu_supports_avx2_fma() { return false; }
const KernelTable* avx2_kernels() { return nullptr; }

}  // namespace hdetr_msda

#endif
