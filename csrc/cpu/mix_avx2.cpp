// CPU inner kernels compiled for AVX2 + FMA (chosen at run time by csrc/mix_cpu.cpp).
#include "kernels.h"

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define EP_ISA_NS avx2
#define EP_VBYTES 32
#include "mix_kernels.inc"
#pragma GCC pop_options
#else
namespace edgeprune { namespace cpu { namespace avx2 {  // never selected off x86-64
void mix_columns(const MixArgs& a, int64_t n0, int64_t n1, void* s) { generic::mix_columns(a, n0, n1, s); }
void dot_columns(const DotArgs& a, int64_t n0, int64_t n1, void* p, void* s) {
  generic::dot_columns(a, n0, n1, p, s);
}
}}}
#endif
