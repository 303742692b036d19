// Plain-data interface between the CPU host code (csrc/mix_cpu.cpp) and the inner kernels that are
// compiled once per instruction set (csrc/cpu/mix_*.cpp). Nothing from torch or the standard
// library crosses it, so the ISA-specific translation units stay free of shared inline code.
#pragma once
#include <cstdint>

namespace edgeprune {
namespace cpu {

enum Storage : int { kF32 = 0, kF64 = 1, kBF16 = 2 };

// C[m, n] = add[m, n] + sum_k A[m, k] * B[k, n] for columns [n0, n1) (add optional).
// Used for the forward (m = readers, k = active writers, B = delta rows) and for the delta
// gradient (m = active writers, k = readers, B = grad_out rows, add = C itself).
// A is packed in the accumulation type (double for kF64, float otherwise) as consecutive row
// tiles of 8, 4, 2 or 1 rows, tile starting at row m0 stored at A + m0 * K, k-major within.
struct MixArgs {
  int storage;
  int64_t M, K;
  const void* A;
  const void* B;
  const int64_t* b_off;  // B row k starts at B + b_off[k] elements
  void* C;
  const int64_t* c_off;  // C row m starts at C + c_off[m]
  const void* add;       // nullptr: C = product; else add row m at add + add_off[m]
  const int64_t* add_off;
};

// partial[k * R + r] += sum_{n in [n0, n1)} G[r, n] * D[k, n]  (the gate gradient, one N range).
struct DotArgs {
  int storage;
  int64_t R, K;
  const void* G;
  const int64_t* g_off;
  const void* D;
  const int64_t* d_off;
};

// Column granularity the kernels prefer: a multiple of every ISA's strip width.
constexpr int64_t kColumnAlign = 64;
// mix_columns packs the active rows of a block of columns into a per-thread panel of at most
// this many bytes (more only when one strip of every row needs more), so the microkernel
// streams contiguous memory; this is a cache block, never a copy of delta.
constexpr int64_t kPackBytes = 512 * 1024;
constexpr int64_t kStripBytes = 128;  // one strip: two 64-byte vectors per row, widest ISA
inline int64_t mix_scratch_bytes(int64_t K) {
  return (K * kStripBytes > kPackBytes ? K * kStripBytes : kPackBytes) + 64;
}
// dot_columns packs blocks of at least kDotMinColumns columns of G, transposed (readers padded
// to a whole strip), plus up to 8 widened rows of D.
constexpr int64_t kDotMinColumns = 16;
inline int64_t dot_scratch_bytes(int64_t R) {
  const int64_t need = (R + kStripBytes + 8) * kDotMinColumns * 8;
  return (need > kPackBytes ? need : kPackBytes) + 64;
}

#define EP_DECLARE_ISA(ns)                                                             \
  namespace ns {                                                                       \
  void mix_columns(const MixArgs& a, int64_t n0, int64_t n1, void* scratch);                       \
  void dot_columns(const DotArgs& a, int64_t n0, int64_t n1, void* partial, void* scratch);\
  }

EP_DECLARE_ISA(avx512)
EP_DECLARE_ISA(avx2)
EP_DECLARE_ISA(generic)
#undef EP_DECLARE_ISA

}  // namespace cpu
}  // namespace edgeprune
