// CPU inner kernels compiled for AVX-512 (chosen at run time by csrc/mix_cpu.cpp).
#include "kernels.h"

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma,prefer-vector-width=512")
#define EP_ISA_NS avx512
#define EP_VBYTES 64
#include "mix_kernels.inc"
#pragma GCC pop_options
#else
namespace edgeprune { namespace cpu { namespace avx512 {  // never selected off x86-64
void mix_columns(const MixArgs& a, int64_t n0, int64_t n1, void* s) { generic::mix_columns(a, n0, n1, s); }
void dot_columns(const DotArgs& a, int64_t n0, int64_t n1, void* p, void* s) {
  generic::dot_columns(a, n0, n1, p, s);
}
}}}
#endif
