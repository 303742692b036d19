// Hard-concrete gates on CUDA: Philox noise per element (philox.h, shared with the CPU code),
// regenerated in the backward; one thread per gate.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../philox.h"

namespace edgeprune {
namespace {

template <typename T>
__device__ __forceinline__ T stretched_sigmoid(T la, uint64_t seed, uint64_t counter, float eps) {
  const T u = T(philox_uniform(seed, counter, eps));
  const T x = (log(u) - log1p(-u) + la) * T(kInvBeta);
  return T(1) / (T(1) + exp(-x));
}

template <typename T>
__global__ void hard_concrete_forward_kernel(const T* __restrict la, T* __restrict z, int64_t n, uint64_t seed,
                                             uint64_t offset, float eps) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const T s = stretched_sigmoid<T>(la[i], seed, offset + i, eps);
  const T v = s * T(kStretch) + T(kLeft);
  z[i] = v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
}

template <typename T>
__global__ void hard_concrete_backward_kernel(const T* __restrict la, const T* __restrict gz, T* __restrict out,
                                              int64_t n, uint64_t seed, uint64_t offset, float eps) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const T s = stretched_sigmoid<T>(la[i], seed, offset + i, eps);
  const T v = s * T(kStretch) + T(kLeft);
  out[i] = (v > T(0) && v < T(1)) ? gz[i] * T(kStretch * kInvBeta) * s * (T(1) - s) : T(0);
}

void check(const at::Tensor& log_alpha, int64_t seed, int64_t offset) {
  TORCH_CHECK(log_alpha.is_cuda(), "edgeprune cuda backend runs on CUDA tensors");
  TORCH_CHECK(log_alpha.scalar_type() == at::kFloat || log_alpha.scalar_type() == at::kDouble,
              "log_alpha must be float32 or float64");
  TORCH_CHECK(seed >= 0 && offset >= 0, "seed and offset must be non-negative");
}

at::Tensor hard_concrete_forward_cuda(const at::Tensor& log_alpha, int64_t seed, int64_t offset, double eps) {
  check(log_alpha, seed, offset);
  const c10::cuda::CUDAGuard guard(log_alpha.device());
  const auto la = log_alpha.contiguous();
  auto z = at::empty_like(la);
  const int64_t n = la.numel();
  if (n == 0) return z;
  AT_DISPATCH_FLOATING_TYPES(la.scalar_type(), "hard_concrete_forward_cuda", [&] {
    hard_concrete_forward_kernel<scalar_t><<<(n + 255) / 256, 256, 0, c10::cuda::getCurrentCUDAStream()>>>(
        la.data_ptr<scalar_t>(), z.data_ptr<scalar_t>(), n, uint64_t(seed), uint64_t(offset), float(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return z;
}

at::Tensor hard_concrete_backward_cuda(const at::Tensor& grad_z, const at::Tensor& log_alpha, int64_t seed,
                                       int64_t offset, double eps) {
  check(log_alpha, seed, offset);
  const c10::cuda::CUDAGuard guard(log_alpha.device());
  const auto la = log_alpha.contiguous();
  const auto gz = grad_z.to(la.scalar_type()).contiguous();
  auto out = at::empty_like(la);
  const int64_t n = la.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(la.scalar_type(), "hard_concrete_backward_cuda", [&] {
    hard_concrete_backward_kernel<scalar_t><<<(n + 255) / 256, 256, 0, c10::cuda::getCurrentCUDAStream()>>>(
        la.data_ptr<scalar_t>(), gz.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), n, uint64_t(seed),
        uint64_t(offset), float(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(edgeprune_C, CUDA, m) {
  m.impl("hard_concrete_forward", &hard_concrete_forward_cuda);
  m.impl("hard_concrete_backward", &hard_concrete_backward_cuda);
}

}  // namespace edgeprune
