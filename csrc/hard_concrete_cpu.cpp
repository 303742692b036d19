// Hard-concrete gates on the CPU: Philox noise generated per element (never stored), forward
// and backward in one fused loop each; see philox.h for the noise layout.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>

#include "philox.h"

namespace edgeprune {
namespace {

void check(const at::Tensor& log_alpha, int64_t seed, int64_t offset) {
  TORCH_CHECK(log_alpha.device().is_cpu(), "edgeprune cpp backend runs on CPU tensors");
  TORCH_CHECK(log_alpha.scalar_type() == at::kFloat || log_alpha.scalar_type() == at::kDouble,
              "log_alpha must be float32 or float64, got ", log_alpha.scalar_type());
  TORCH_CHECK(seed >= 0 && offset >= 0, "seed and offset must be non-negative");
}

// s = sigmoid((ln u - ln(1 - u) + log_alpha) / beta) for element i.
template <typename T>
inline T stretched_sigmoid(T la, uint64_t seed, uint64_t counter, float eps) {
  const T u = T(philox_uniform(seed, counter, eps));
  const T x = (std::log(u) - std::log1p(-u) + la) * T(kInvBeta);
  return T(1) / (T(1) + std::exp(-x));
}

at::Tensor hard_concrete_forward_cpu(const at::Tensor& log_alpha, int64_t seed, int64_t offset, double eps) {
  check(log_alpha, seed, offset);
  const auto la = log_alpha.contiguous();
  auto z = at::empty_like(la);
  AT_DISPATCH_FLOATING_TYPES(la.scalar_type(), "hard_concrete_forward_cpu", [&] {
    const scalar_t* in = la.data_ptr<scalar_t>();
    scalar_t* out = z.data_ptr<scalar_t>();
    at::parallel_for(0, la.numel(), 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const scalar_t s = stretched_sigmoid<scalar_t>(in[i], uint64_t(seed), uint64_t(offset + i), float(eps));
        const scalar_t v = s * scalar_t(kStretch) + scalar_t(kLeft);
        out[i] = v < 0 ? scalar_t(0) : (v > 1 ? scalar_t(1) : v);
      }
    });
  });
  return z;
}

at::Tensor hard_concrete_backward_cpu(const at::Tensor& grad_z, const at::Tensor& log_alpha, int64_t seed,
                                      int64_t offset, double eps) {
  check(log_alpha, seed, offset);
  TORCH_CHECK(grad_z.sizes() == log_alpha.sizes(), "grad_z must be shaped like log_alpha");
  const auto la = log_alpha.contiguous();
  const auto gz = grad_z.to(la.scalar_type()).contiguous();
  auto grad = at::empty_like(la);
  AT_DISPATCH_FLOATING_TYPES(la.scalar_type(), "hard_concrete_backward_cpu", [&] {
    const scalar_t* in = la.data_ptr<scalar_t>();
    const scalar_t* g = gz.data_ptr<scalar_t>();
    scalar_t* out = grad.data_ptr<scalar_t>();
    at::parallel_for(0, la.numel(), 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const scalar_t s = stretched_sigmoid<scalar_t>(in[i], uint64_t(seed), uint64_t(offset + i), float(eps));
        const scalar_t v = s * scalar_t(kStretch) + scalar_t(kLeft);
        const bool inside = v > 0 && v < 1;
        out[i] = inside ? g[i] * scalar_t(kStretch * kInvBeta) * s * (1 - s) : scalar_t(0);
      }
    });
  });
  return grad;
}

}  // namespace

TORCH_LIBRARY_IMPL(edgeprune_C, CPU, m) {
  m.impl("hard_concrete_forward", &hard_concrete_forward_cpu);
  m.impl("hard_concrete_backward", &hard_concrete_backward_cpu);
}

}  // namespace edgeprune
