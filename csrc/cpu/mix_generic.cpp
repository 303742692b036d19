// CPU inner kernels for the build's baseline instruction set (SSE2 on x86-64, NEON on arm64).
#include "kernels.h"

#define EP_ISA_NS generic
#define EP_VBYTES 16
#include "mix_kernels.inc"
