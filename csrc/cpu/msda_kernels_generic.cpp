// The CPU op's loops for any CPU (the compiler's default instruction set).
#define HDETR_MSDA_ISA generic
#define HDETR_MSDA_ISA_NAME "generic"
#include "msda_kernels_impl.h"

namespace hdetr_msda {

const KernelTable& generic_kernels() { return generic::table(); }

}  // namespace hdetr_msda
