// Schemas of edgeprune._C's low-level ops (namespace edgeprune_C) and the Python module entry.
// The public, differentiable ops (edgeprune::mix, ...) are defined in python/edgeprune/ops and
// call these as one of their backends. CPU kernels live in mix_cpu.cpp / hard_concrete_cpu.cpp,
// CUDA kernels in cuda/ (registered only when the extension is built with CUDA).
#include <Python.h>
#include <torch/library.h>

extern "C" {
// `import edgeprune._C` only needs to load the library: the ops register themselves below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
}

namespace edgeprune {
bool built_with_cuda() {
#ifdef EDGEPRUNE_WITH_CUDA
  return true;
#else
  return false;
#endif
}
std::string cpu_isa();
}  // namespace edgeprune

TORCH_LIBRARY(edgeprune_C, m) {
  // out (R, N) = base + gates (zero past each prefix) @ delta[:P]; see ops/reference.py.
  m.def("mix_forward(Tensor gates, Tensor delta, Tensor base, Tensor? prefix) -> Tensor");
  // Returns the gate gradient (R, P) in float32/float64; writes (accumulate=False) or adds
  // (accumulate=True) the delta gradient into grad_delta[:P] when it is given.
  m.def("mix_backward(Tensor grad_out, Tensor gates, Tensor delta, Tensor? prefix, Tensor(a!)? grad_delta, "
        "bool accumulate) -> Tensor");
  m.def("hard_concrete_forward(Tensor log_alpha, int seed, int offset, float eps) -> Tensor");
  m.def("hard_concrete_backward(Tensor grad_z, Tensor log_alpha, int seed, int offset, float eps) -> Tensor");
  m.def("built_with_cuda() -> bool", &edgeprune::built_with_cuda);
  m.def("cpu_isa() -> str", &edgeprune::cpu_isa);
}
