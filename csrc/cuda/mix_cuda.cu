// Masked mixing on CUDA: the second GPU backend, measured against Triton in benchmarks/kernels.py.
//
// The host glue masks the gates to each reader's prefix and flags the active writers with a few
// small ATen ops on the device (R x P values, no host sync). Kernels:
//   mix_forward_kernel:  one thread per column holds every reader of the group in registers and
//                        walks the writers in shared-memory chunks, skipping inactive ones; each
//                        delta element is read once, coalesced across the warp.
//   mix_grad_delta_kernel: same shape with roles swapped: grad_out column in registers, one
//                        dot over readers per active writer, stored or accumulated in place.
//   mix_grad_gates_kernel: a tiled shared-memory GEMM over one N split per block, written to a
//                        (splits, R, P) partial that the host sums in a fixed order (no atomics).
// Reader groups larger than one block's registers (128 readers, 64 for float64) are launched in
// turn. Accumulation is float32 (float64 for float64 data); the work is FMA-bound for large R.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <torch/library.h>

namespace edgeprune {
namespace {

constexpr int kThreads = 256;  // one column per thread
constexpr int kChunk = 32;     // writers per shared-memory chunk

template <typename S> struct Acc { using type = float; };
template <> struct Acc<double> { using type = double; };

__device__ __forceinline__ float load_acc(const float* p) { return *p; }
__device__ __forceinline__ double load_acc(const double* p) { return *p; }
__device__ __forceinline__ float load_acc(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ float load_acc(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void store_acc(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_acc(double* p, double v) { *p = v; }
__device__ __forceinline__ void store_acc(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ void store_acc(__half* p, float v) { *p = __float2half_rn(v); }

// Loads gates [w0, w0 + kChunk) of the group's RB readers into zs[j][r] and the active flags.
template <typename T, int RB>
__device__ __forceinline__ void load_chunk(const T* __restrict z, int64_t P, int64_t R, int64_t w0,
                                           const bool* __restrict active, T (*zs)[RB], bool* act) {
  for (int i = threadIdx.x; i < kChunk * RB; i += blockDim.x) {
    const int j = i / RB, r = i % RB;
    const int64_t w = w0 + j;
    zs[j][r] = (r < R && w < P) ? z[r * P + w] : T(0);
  }
  for (int j = threadIdx.x; j < kChunk; j += blockDim.x) act[j] = (w0 + j < P) && active[w0 + j];
}

template <typename S, int RB>
__global__ void __launch_bounds__(kThreads) mix_forward_kernel(
    const typename Acc<S>::type* __restrict z, const bool* __restrict active, int64_t R, int64_t P,
    const S* __restrict delta, int64_t ld_delta, const S* __restrict base, int64_t ld_base,
    S* __restrict out, int64_t ld_out, int64_t N) {
  using T = typename Acc<S>::type;
  __shared__ __align__(16) T zs[kChunk][RB];
  __shared__ bool act[kChunk];
  const int64_t n = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const bool in = n < N;
  T acc[RB];
#pragma unroll
  for (int r = 0; r < RB; ++r) acc[r] = T(0);
  for (int64_t w0 = 0; w0 < P; w0 += kChunk) {
    __syncthreads();
    load_chunk<T, RB>(z, P, R, w0, active, zs, act);
    __syncthreads();
    for (int j = 0; j < kChunk; ++j) {
      if (!act[j]) continue;  // uniform across the block: unread writers cost nothing
      const T d = in ? T(load_acc(delta + (w0 + j) * ld_delta + n)) : T(0);
#pragma unroll
      for (int r = 0; r < RB; ++r) acc[r] += zs[j][r] * d;
    }
  }
  if (!in) return;
#pragma unroll
  for (int r = 0; r < RB; ++r)
    if (r < R) store_acc(out + r * ld_out + n, acc[r] + T(load_acc(base + r * ld_base + n)));
}

template <typename S, int RB>
__global__ void __launch_bounds__(kThreads) mix_grad_delta_kernel(
    const typename Acc<S>::type* __restrict z, const bool* __restrict active, int64_t R, int64_t P,
    const S* __restrict grad_out, int64_t ld_g, S* grad_delta, int64_t ld_gd, int64_t N, bool accumulate) {
  using T = typename Acc<S>::type;
  __shared__ __align__(16) T zs[kChunk][RB];
  __shared__ bool act[kChunk];
  const int64_t n = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  const bool in = n < N;
  T g[RB];
#pragma unroll
  for (int r = 0; r < RB; ++r) g[r] = (in && r < R) ? T(load_acc(grad_out + r * ld_g + n)) : T(0);
  for (int64_t w0 = 0; w0 < P; w0 += kChunk) {
    __syncthreads();
    load_chunk<T, RB>(z, P, R, w0, active, zs, act);
    __syncthreads();
    if (!in) continue;
    for (int j = 0; j < kChunk && w0 + j < P; ++j) {
      S* dst = grad_delta + (w0 + j) * ld_gd + n;
      if (!act[j]) {
        if (!accumulate) store_acc(dst, T(0));
        continue;
      }
      T v = T(0);
#pragma unroll
      for (int r = 0; r < RB; ++r) v += zs[j][r] * g[r];
      store_acc(dst, accumulate ? T(load_acc(dst)) + v : v);
    }
  }
}

// partial[s, r, w] = sum over split s of grad_out[r, n] * delta[w, n], for active writers.
constexpr int kTile = 32, kTileN = 32;

template <typename S>
__global__ void __launch_bounds__(kThreads) mix_grad_gates_kernel(
    const S* __restrict grad_out, int64_t ld_g, const S* __restrict delta, int64_t ld_delta,
    const bool* __restrict active, int64_t R, int64_t P, int64_t N, int64_t cols_per_split,
    typename Acc<S>::type* __restrict partial) {
  using T = typename Acc<S>::type;
  __shared__ T gs[kTile][kTileN + 1];
  __shared__ T ds[kTile][kTileN + 1];
  const int64_t w_base = int64_t(blockIdx.x) * kTile, r_base = int64_t(blockIdx.y) * kTile;
  const int64_t n_begin = int64_t(blockIdx.z) * cols_per_split;
  const int64_t n_end = min(N, n_begin + cols_per_split);
  const int tr = threadIdx.x / 16, tw = threadIdx.x % 16;  // each thread: readers tr, tr+16; writers tw, tw+16
  T acc[2][2] = {{T(0), T(0)}, {T(0), T(0)}};
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kTileN) {
    for (int i = threadIdx.x; i < kTile * kTileN; i += blockDim.x) {
      const int row = i / kTileN, col = i % kTileN;
      const int64_t n = n0 + col, r = r_base + row, w = w_base + row;
      const bool n_ok = n < n_end;
      gs[row][col] = (n_ok && r < R) ? T(load_acc(grad_out + r * ld_g + n)) : T(0);
      ds[row][col] = (n_ok && w < P && active[w]) ? T(load_acc(delta + w * ld_delta + n)) : T(0);
    }
    __syncthreads();
#pragma unroll 8
    for (int c = 0; c < kTileN; ++c) {
      const T g0 = gs[tr][c], g1 = gs[tr + 16][c], d0 = ds[tw][c], d1 = ds[tw + 16][c];
      acc[0][0] += g0 * d0;
      acc[0][1] += g0 * d1;
      acc[1][0] += g1 * d0;
      acc[1][1] += g1 * d1;
    }
    __syncthreads();
  }
  T* dst = partial + int64_t(blockIdx.z) * R * P;
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
      const int64_t r = r_base + tr + 16 * a, w = w_base + tw + 16 * b;
      if (r < R && w < P) dst[r * P + w] = acc[a][b];
    }
}

// ------------------------------------------------------------------------------ host glue

struct Masked {
  at::Tensor z;       // (R, P) accumulation dtype, zero past each reader's prefix
  at::Tensor mask;    // (R, P) bool: w < prefix[r]
  at::Tensor active;  // (P,) bool: some reader has a nonzero gate
};

Masked mask_gates(const at::Tensor& gates, const std::optional<at::Tensor>& prefix, at::ScalarType acc) {
  const int64_t P = gates.size(1);
  at::Tensor mask;
  if (prefix) {
    const auto cols = at::arange(P, gates.options().dtype(at::kLong));
    mask = cols.unsqueeze(0) < prefix->to(gates.device(), at::kLong).unsqueeze(1);
  } else {
    mask = at::ones_like(gates, gates.options().dtype(at::kBool));
  }
  auto z = at::where(mask, gates.to(acc), at::zeros({}, gates.options().dtype(acc))).contiguous();
  auto active = (z != 0).any(0).contiguous();
  return {z, mask, active};
}

at::Tensor rows(const at::Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); }

int64_t group_size(at::ScalarType dtype) { return dtype == at::kDouble ? 64 : 128; }

// The smallest compiled reader block that holds R readers (R <= group_size of the dtype).
template <typename S, typename F>
void with_rb(int64_t R, F&& f) {
  if (R <= 16) f(std::integral_constant<int, 16>{});
  else if (R <= 32) f(std::integral_constant<int, 32>{});
  else if constexpr (std::is_same_v<S, double>) f(std::integral_constant<int, 64>{});
  else if (R <= 64) f(std::integral_constant<int, 64>{});
  else f(std::integral_constant<int, 128>{});
}

#define EP_DISPATCH_STORAGE(dtype, ...)                                                              \
  AT_DISPATCH_SWITCH(dtype, "edgeprune_cuda",                                                        \
                     AT_DISPATCH_CASE(at::kFloat, [&] { using S = float; __VA_ARGS__(); })           \
                     AT_DISPATCH_CASE(at::kDouble, [&] { using S = double; __VA_ARGS__(); })         \
                     AT_DISPATCH_CASE(at::kBFloat16, [&] { using S = __nv_bfloat16; __VA_ARGS__(); }) \
                     AT_DISPATCH_CASE(at::kHalf, [&] { using S = __half; __VA_ARGS__(); }))

void check_inputs(const at::Tensor& gates, const at::Tensor& delta, const std::optional<at::Tensor>& prefix) {
  TORCH_CHECK(gates.dim() == 2 && delta.dim() == 2, "gates must be (R, P) and delta (W, N)");
  TORCH_CHECK(delta.size(0) >= gates.size(1), "delta has fewer rows than gates name writers");
  TORCH_CHECK(gates.is_cuda() && delta.is_cuda() && gates.device() == delta.device(),
              "edgeprune cuda backend: gates and delta must be on the same CUDA device");
  if (prefix) TORCH_CHECK(prefix->dim() == 1 && prefix->size(0) == gates.size(0), "prefix must be (R,)");
}

at::Tensor mix_forward_cuda(const at::Tensor& gates, const at::Tensor& delta_in, const at::Tensor& base_in,
                            const std::optional<at::Tensor>& prefix) {
  check_inputs(gates, delta_in, prefix);
  const c10::cuda::CUDAGuard guard(delta_in.device());
  const auto delta = rows(delta_in);
  const auto base = rows(base_in.to(delta.scalar_type()));
  const int64_t R = gates.size(0), P = gates.size(1), N = delta.size(1);
  TORCH_CHECK((base.dim() == 1 && base.size(0) == N) || (base.dim() == 2 && base.size(0) == R && base.size(1) == N),
              "base must be (N,) or (R, N), got ", base.sizes());
  TORCH_CHECK(base.device() == delta.device(), "base must be on delta's device");
  const auto acc = delta.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto m = mask_gates(gates, prefix, acc);
  auto out = at::empty({R, N}, delta.options());
  if (R == 0 || N == 0) return out;
  const bool base_rows = base.dim() == 2;
  auto stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid((N + kThreads - 1) / kThreads);
  const int64_t step = group_size(delta.scalar_type());
  for (int64_t r0 = 0; r0 < R; r0 += step) {
    const int64_t rg = std::min(step, R - r0);
    EP_DISPATCH_STORAGE(delta.scalar_type(), [&] {
      using T = typename Acc<S>::type;
      with_rb<S>(rg, [&](auto rb) {
        mix_forward_kernel<S, decltype(rb)::value><<<grid, kThreads, 0, stream>>>(
            m.z.data_ptr<T>() + r0 * P, m.active.data_ptr<bool>(), rg, P,
            reinterpret_cast<const S*>(delta.data_ptr()), delta.stride(0),
            reinterpret_cast<const S*>(base.data_ptr()) + (base_rows ? r0 * base.stride(0) : 0),
            base_rows ? base.stride(0) : 0, reinterpret_cast<S*>(out.data_ptr()) + r0 * N, N, N);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
  return out;
}

at::Tensor mix_backward_cuda(const at::Tensor& grad_out_in, const at::Tensor& gates, const at::Tensor& delta_in,
                             const std::optional<at::Tensor>& prefix, const std::optional<at::Tensor>& grad_delta,
                             bool accumulate) {
  check_inputs(gates, delta_in, prefix);
  const c10::cuda::CUDAGuard guard(delta_in.device());
  const auto delta = rows(delta_in);
  const auto grad_out = rows(grad_out_in.to(delta.scalar_type()));
  const int64_t R = gates.size(0), P = gates.size(1), N = delta.size(1);
  TORCH_CHECK(grad_out.size(0) == R && grad_out.size(1) == N, "grad_out must be (R, N)");
  if (grad_delta) {
    TORCH_CHECK(grad_delta->sizes() == delta.sizes() && grad_delta->scalar_type() == delta.scalar_type() &&
                    grad_delta->stride(1) == 1,
                "grad_delta must have delta's shape and dtype, with contiguous rows");
  }
  const auto acc = delta.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto m = mask_gates(gates, prefix, acc);
  if (R == 0 || P == 0 || N == 0) {
    if (grad_delta && !accumulate && P > 0) grad_delta->narrow(0, 0, P).zero_();
    return at::zeros({R, P}, gates.options().dtype(acc));
  }
  auto stream = c10::cuda::getCurrentCUDAStream();

  // Gate gradient: enough N splits to fill the device, summed in order on the host side.
  const int64_t w_tiles = (P + kTile - 1) / kTile, r_tiles = (R + kTile - 1) / kTile;
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, delta.get_device()));
  int64_t splits = std::max<int64_t>(1, (4 * sms + w_tiles * r_tiles - 1) / (w_tiles * r_tiles));
  const int64_t cols = ((N + splits - 1) / splits + kTileN - 1) / kTileN * kTileN;
  splits = (N + cols - 1) / cols;
  auto partial = at::empty({splits, R, P}, gates.options().dtype(acc));
  EP_DISPATCH_STORAGE(delta.scalar_type(), [&] {
    using T = typename Acc<S>::type;
    mix_grad_gates_kernel<S><<<dim3(w_tiles, r_tiles, splits), kThreads, 0, stream>>>(
        reinterpret_cast<const S*>(grad_out.data_ptr()), grad_out.stride(0),
        reinterpret_cast<const S*>(delta.data_ptr()), delta.stride(0), m.active.data_ptr<bool>(), R, P, N, cols,
        partial.data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  auto grad_gates = at::where(m.mask & m.active.unsqueeze(0), partial.sum(0), at::zeros({}, partial.options()));

  if (grad_delta) {
    const dim3 grid((N + kThreads - 1) / kThreads);
    const int64_t step = group_size(delta.scalar_type());
    for (int64_t r0 = 0; r0 < R; r0 += step) {
      const int64_t rg = std::min(step, R - r0);
      EP_DISPATCH_STORAGE(delta.scalar_type(), [&] {
        using T = typename Acc<S>::type;
        with_rb<S>(rg, [&](auto rb) {
          mix_grad_delta_kernel<S, decltype(rb)::value><<<grid, kThreads, 0, stream>>>(
              m.z.data_ptr<T>() + r0 * P, m.active.data_ptr<bool>(), rg, P,
              reinterpret_cast<const S*>(grad_out.data_ptr()) + r0 * grad_out.stride(0), grad_out.stride(0),
              reinterpret_cast<S*>(grad_delta->data_ptr()), grad_delta->stride(0), N, accumulate || r0 > 0);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
    }
  }
  return grad_gates;
}

}  // namespace

TORCH_LIBRARY_IMPL(edgeprune_C, CUDA, m) {
  m.impl("mix_forward", &mix_forward_cuda);
  m.impl("mix_backward", &mix_backward_cuda);
}

}  // namespace edgeprune
