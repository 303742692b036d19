// Masked mixing on the CPU: contract checks, gate packing, parallel loops over column blocks.
//
// The heavy loops are in cpu/mix_kernels.inc, compiled for AVX-512, AVX2 and the baseline and
// picked at run time (EDGEPRUNE_CPU_ISA=avx512|avx2|generic forces one, for tests). Compared with
// the PyTorch reference this never gathers or converts the delta rows (writers whose gate column
// is all zero are skipped through an index list, bf16 is widened in registers), adds the base
// while storing the output, and computes both backward products in one pass over grad_out.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/kernels.h"

namespace edgeprune {

namespace {

// Items per thread for at::parallel_for: enough that each thread gets about kMinWork multiply-adds.
// Small problems (the Tracr models, short sequences) then run on one thread: waking a pool costs
// more than their whole loop, and much more when the cores are busy with other work.
constexpr int64_t kMinWork = int64_t(1) << 18;
int64_t grain(int64_t work_per_item, int64_t at_least) {
  return std::max(at_least, kMinWork / std::max<int64_t>(1, work_per_item));
}


using cpu::DotArgs;
using cpu::MixArgs;

struct Isa {
  void (*mix)(const MixArgs&, int64_t, int64_t, void*);
  void (*dot)(const DotArgs&, int64_t, int64_t, void*, void*);
  const char* name;
};

bool supports(const std::string& name) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (name == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
  if (name == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return name == "generic";
}

Isa isa_named(const std::string& name) {
  if (name == "avx512") return {cpu::avx512::mix_columns, cpu::avx512::dot_columns, "avx512"};
  if (name == "avx2") return {cpu::avx2::mix_columns, cpu::avx2::dot_columns, "avx2"};
  return {cpu::generic::mix_columns, cpu::generic::dot_columns, "generic"};
}

// The environment is read on every call so tests can switch instruction sets in one process.
Isa isa() {
  if (const char* forced = std::getenv("EDGEPRUNE_CPU_ISA")) {
    const std::string name(forced);
    if (!name.empty()) {
      TORCH_CHECK(name == "avx512" || name == "avx2" || name == "generic",
                  "EDGEPRUNE_CPU_ISA must be avx512, avx2 or generic, got '", name, "'");
      TORCH_CHECK(supports(name), "EDGEPRUNE_CPU_ISA=", name, " but this CPU does not support it");
      return isa_named(name);
    }
  }
  for (const char* name : {"avx512", "avx2"})
    if (supports(name)) return isa_named(name);
  return isa_named("generic");
}

int storage_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return cpu::kF32;
    case at::kDouble: return cpu::kF64;
    case at::kBFloat16: return cpu::kBF16;
    default: TORCH_CHECK(false, "edgeprune cpp backend: delta must be float32, float64 or bfloat16, got ", t.scalar_type());
  }
  return 0;
}

// A per-thread packing panel for the inner kernels, 64-byte aligned.
struct Panel {
  explicit Panel(int64_t size) : bytes(size) {}
  void* data() {
    const auto p = reinterpret_cast<uintptr_t>(bytes.data());
    return bytes.data() + ((64 - p % 64) % 64);
  }
  std::vector<char> bytes;
};

at::Tensor rows_contiguous(const at::Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); }

void check_mix_inputs(const at::Tensor& gates, const at::Tensor& delta, const std::optional<at::Tensor>& prefix) {
  TORCH_CHECK(gates.dim() == 2, "gates must be (R, P), got ", gates.sizes());
  TORCH_CHECK(delta.dim() == 2, "delta must be (W, N), got ", delta.sizes());
  TORCH_CHECK(delta.size(0) >= gates.size(1), "delta has ", delta.size(0), " rows but gates name ", gates.size(1),
              " writers");
  TORCH_CHECK(gates.device().is_cpu() && delta.device().is_cpu(), "edgeprune cpp backend runs on CPU tensors");
  TORCH_CHECK(gates.is_floating_point(), "gates must be floating point");
  if (prefix) {
    TORCH_CHECK(prefix->dim() == 1 && prefix->size(0) == gates.size(0), "prefix must be (R,) = (", gates.size(0),
                "), got ", prefix->sizes());
    TORCH_CHECK(!prefix->is_floating_point(), "prefix must be an integer tensor");
  }
}

// Gates in the accumulation type, zero past each reader's prefix, plus the active writer list.
template <typename T>
struct MaskedGates {
  int64_t R = 0, P = 0;
  std::vector<T> z;             // (R, P) row-major
  std::vector<int64_t> limit;   // per reader, clamped to [0, P]
  std::vector<int64_t> active;  // writers with a nonzero gate for some reader, ascending
};

template <typename T>
MaskedGates<T> mask_gates(const at::Tensor& gates, const std::optional<at::Tensor>& prefix) {
  MaskedGates<T> g;
  g.R = gates.size(0);
  g.P = gates.size(1);
  const at::Tensor zt = gates.to(c10::CppTypeToScalarType<T>::value).contiguous();
  const T* src = zt.data_ptr<T>();
  g.limit.assign(g.R, g.P);
  if (prefix) {
    const auto pre = prefix->to(at::kLong).contiguous();
    const int64_t* p = pre.data_ptr<int64_t>();
    for (int64_t r = 0; r < g.R; ++r) g.limit[r] = std::min<int64_t>(std::max<int64_t>(p[r], 0), g.P);
  }
  g.z.assign(g.R * g.P, T(0));
  std::vector<char> used(g.P, 0);
  for (int64_t r = 0; r < g.R; ++r)
    for (int64_t w = 0; w < g.limit[r]; ++w) {
      const T v = src[r * g.P + w];
      g.z[r * g.P + w] = v;
      used[w] |= (v != T(0));
    }
  for (int64_t w = 0; w < g.P; ++w)
    if (used[w]) g.active.push_back(w);
  return g;
}

// Pack an (M, K) matrix given by element(m, k) into row tiles of 8/4/2/1 (see MixArgs).
template <typename T, typename F>
std::vector<T> pack_tiles(int64_t M, int64_t K, F element) {
  std::vector<T> out(M * K);
  int64_t m0 = 0;
  while (m0 < M) {
    const int64_t rem = M - m0;
    const int mr = rem >= 8 ? 8 : rem >= 4 ? 4 : rem >= 2 ? 2 : 1;
    T* tile = out.data() + m0 * K;
    for (int64_t k = 0; k < K; ++k)
      for (int i = 0; i < mr; ++i) tile[k * mr + i] = element(m0 + i, k);
    m0 += mr;
  }
  return out;
}

template <typename T>
at::Tensor mix_forward_impl(const at::Tensor& gates, const at::Tensor& delta, const at::Tensor& base,
                            const std::optional<at::Tensor>& prefix) {
  const auto g = mask_gates<T>(gates, prefix);
  const int64_t R = g.R, A = static_cast<int64_t>(g.active.size()), N = delta.size(1);
  const auto packed = pack_tiles<T>(R, A, [&](int64_t r, int64_t k) { return g.z[r * g.P + g.active[k]]; });
  std::vector<int64_t> b_off(A), c_off(R), add_off(R);
  for (int64_t k = 0; k < A; ++k) b_off[k] = g.active[k] * delta.stride(0);
  for (int64_t r = 0; r < R; ++r) {
    c_off[r] = r * N;
    add_off[r] = base.dim() == 2 ? r * base.stride(0) : 0;
  }
  auto out = at::empty({R, N}, delta.options());
  const MixArgs args{storage_of(delta), R, A, packed.data(), delta.data_ptr(), b_off.data(),
                     out.data_ptr(), c_off.data(), base.data_ptr(), add_off.data()};
  const Isa k = isa();
  const int64_t align = cpu::kColumnAlign, strips = (N + align - 1) / align;
  at::parallel_for(0, strips, grain(R * A * align, 4), [&](int64_t s0, int64_t s1) {
    Panel panel(cpu::mix_scratch_bytes(args.K));
    k.mix(args, s0 * align, std::min(N, s1 * align), panel.data());
  });
  return out;
}

at::Tensor mix_forward_cpu(const at::Tensor& gates, const at::Tensor& delta_in, const at::Tensor& base_in,
                           const std::optional<at::Tensor>& prefix) {
  check_mix_inputs(gates, delta_in, prefix);
  const auto delta = rows_contiguous(delta_in);
  TORCH_CHECK(base_in.scalar_type() == delta.scalar_type(), "base must have delta's dtype ", delta.scalar_type(),
              ", got ", base_in.scalar_type());
  TORCH_CHECK((base_in.dim() == 1 && base_in.size(0) == delta.size(1)) ||
                  (base_in.dim() == 2 && base_in.size(0) == gates.size(0) && base_in.size(1) == delta.size(1)),
              "base must be (N,) or (R, N), got ", base_in.sizes());
  const auto base = rows_contiguous(base_in);
  storage_of(delta);
  if (delta.scalar_type() == at::kDouble) return mix_forward_impl<double>(gates, delta, base, prefix);
  return mix_forward_impl<float>(gates, delta, base, prefix);
}

// Overwrite mode: rows < P that no gate reads get an exact zero gradient (active rows are stored).
void zero_inactive_rows(const at::Tensor& grad_delta, const std::vector<int64_t>& active, int64_t P) {
  std::vector<int64_t> rows;
  size_t next = 0;
  for (int64_t w = 0; w < P; ++w) {
    if (next < active.size() && active[next] == w) ++next;
    else rows.push_back(w);
  }
  char* base = static_cast<char*>(grad_delta.data_ptr());
  const int64_t row_bytes = grad_delta.size(1) * grad_delta.element_size();
  const int64_t stride_bytes = grad_delta.stride(0) * grad_delta.element_size();
  at::parallel_for(0, static_cast<int64_t>(rows.size()), 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) std::memset(base + rows[i] * stride_bytes, 0, row_bytes);
  });
}

template <typename T>
at::Tensor mix_backward_impl(const at::Tensor& grad_out, const at::Tensor& gates, const at::Tensor& delta,
                             const std::optional<at::Tensor>& prefix, const std::optional<at::Tensor>& grad_delta,
                             bool accumulate) {
  const auto g = mask_gates<T>(gates, prefix);
  const int64_t R = g.R, P = g.P, A = static_cast<int64_t>(g.active.size()), N = delta.size(1);
  const auto acc = c10::CppTypeToScalarType<T>::value;
  auto grad_gates = at::zeros({R, P}, gates.options().dtype(acc));
  const bool need_gd = grad_delta.has_value();
  if (need_gd && !accumulate) zero_inactive_rows(*grad_delta, g.active, P);
  if (A == 0 || N == 0 || R == 0) return grad_gates;

  const int storage = storage_of(delta);
  // Gate gradient: one partial (A, R) per fixed chunk of columns, summed in order afterwards,
  // so the result does not depend on the thread count.
  std::vector<int64_t> g_off(R), d_off(A), gd_off(A);
  for (int64_t r = 0; r < R; ++r) g_off[r] = r * grad_out.stride(0);
  for (int64_t k = 0; k < A; ++k) d_off[k] = g.active[k] * delta.stride(0);
  const DotArgs dot_args{storage, R, A, grad_out.data_ptr(), g_off.data(), delta.data_ptr(), d_off.data()};

  // Delta gradient: C[active writer m] (+)= sum_r z[r, m] grad_out[r]; A packed as z^T.
  std::vector<T> packed_t;
  MixArgs gd_args{};
  if (need_gd) {
    packed_t = pack_tiles<T>(A, R, [&](int64_t m, int64_t r) { return g.z[r * P + g.active[m]]; });
    for (int64_t k = 0; k < A; ++k) gd_off[k] = g.active[k] * grad_delta->stride(0);
    gd_args = MixArgs{storage, A, R, packed_t.data(), grad_out.data_ptr(), g_off.data(), grad_delta->data_ptr(),
                      gd_off.data(), accumulate ? grad_delta->data_ptr() : nullptr, gd_off.data()};
  }

  const int64_t block = storage == cpu::kF64 ? 512 : 1024;  // columns per pass: grad_out block stays in L2
  const int64_t blocks = (N + block - 1) / block;
  const int64_t per_chunk = (blocks + 63) / 64;
  const int64_t chunks = (blocks + per_chunk - 1) / per_chunk;
  std::vector<T> partial(chunks * R * A, T(0));
  const Isa k = isa();
  at::parallel_for(0, chunks, grain(R * A * block * per_chunk * (need_gd ? 2 : 1), 1), [&](int64_t c0, int64_t c1) {
    Panel panel(need_gd ? cpu::mix_scratch_bytes(gd_args.K) : 0);
    Panel dot_panel(cpu::dot_scratch_bytes(R));
    for (int64_t c = c0; c < c1; ++c) {
      for (int64_t b = c * per_chunk; b < std::min(blocks, (c + 1) * per_chunk); ++b) {
        const int64_t n0 = b * block, n1 = std::min(N, n0 + block);
        k.dot(dot_args, n0, n1, partial.data() + c * R * A, dot_panel.data());
        if (need_gd) k.mix(gd_args, n0, n1, panel.data());
      }
    }
  });

  T* gg = static_cast<T*>(grad_gates.data_ptr());
  for (int64_t c = 0; c < chunks; ++c) {
    const T* part = partial.data() + c * R * A;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t k2 = 0; k2 < A; ++k2)
        if (g.active[k2] < g.limit[r]) gg[r * P + g.active[k2]] += part[k2 * R + r];
  }
  return grad_gates;
}

at::Tensor mix_backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& gates, const at::Tensor& delta_in,
                            const std::optional<at::Tensor>& prefix, const std::optional<at::Tensor>& grad_delta,
                            bool accumulate) {
  check_mix_inputs(gates, delta_in, prefix);
  const auto delta = rows_contiguous(delta_in);
  TORCH_CHECK(grad_out_in.dim() == 2 && grad_out_in.size(0) == gates.size(0) && grad_out_in.size(1) == delta.size(1),
              "grad_out must be (R, N), got ", grad_out_in.sizes());
  const auto grad_out = rows_contiguous(grad_out_in.to(delta.scalar_type()));
  if (grad_delta) {
    TORCH_CHECK(grad_delta->sizes() == delta.sizes(), "grad_delta must have delta's shape ", delta.sizes(), ", got ",
                grad_delta->sizes());
    TORCH_CHECK(grad_delta->scalar_type() == delta.scalar_type(), "grad_delta must have delta's dtype");
    TORCH_CHECK(grad_delta->stride(1) == 1, "grad_delta rows must be contiguous (it is updated in place)");
  }
  storage_of(delta);
  if (delta.scalar_type() == at::kDouble)
    return mix_backward_impl<double>(grad_out, gates, delta, prefix, grad_delta, accumulate);
  return mix_backward_impl<float>(grad_out, gates, delta, prefix, grad_delta, accumulate);
}

}  // namespace

std::string cpu_isa() { return isa().name; }

TORCH_LIBRARY_IMPL(edgeprune_C, CPU, m) {
  m.impl("mix_forward", &mix_forward_cpu);
  m.impl("mix_backward", &mix_backward_cpu);
}

}  // namespace edgeprune
