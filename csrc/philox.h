// Philox-4x32-10 and the hard-concrete formulas, shared by the C++ (CPU) and CUDA kernels.
// The noise layout matches python/edgeprune/ops/reference.py: key = (seed lo, seed hi),
// counter = (c lo, c hi, 0, 0) with c = offset + i, U01 = (first word >> 8) * 2^-24,
// u = eps + (1 - 2 eps) U01, all in float32.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define EP_HD __host__ __device__ __forceinline__
#else
#define EP_HD inline
#endif

namespace edgeprune {

EP_HD uint32_t philox_first_word(uint64_t seed, uint64_t counter) {
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t pa = uint64_t(0xD2511F53u) * c0;
    const uint64_t pb = uint64_t(0xCD9E8D57u) * c2;
    const uint32_t n0 = uint32_t(pb >> 32) ^ c1 ^ k0;
    const uint32_t n2 = uint32_t(pa >> 32) ^ c3 ^ k1;
    c1 = uint32_t(pb);
    c3 = uint32_t(pa);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c0;
}

EP_HD float philox_uniform(uint64_t seed, uint64_t counter, float eps) {
  const float u01 = float(philox_first_word(seed, counter) >> 8) * (1.0f / 16777216.0f);
  return eps + (1.0f - 2.0f * eps) * u01;
}

// Hard-concrete constants (method.md 3.1): l = -0.1, r = 1.1, beta = 2/3.
constexpr double kStretch = 1.2, kLeft = -0.1, kInvBeta = 1.5;

}  // namespace edgeprune
