// The translation unit every fastact kernel is instantiated from.
//
// Compiled by NVRTC for the GPU (fastact/backends/cuda/compile.py) and by g++
// with emulator/cuda_shim.h for the CPU emulator; the host names the template
// instantiations it needs (fastact/backends/kernels/plan.py), so nothing is instantiated here.
#include "common.cuh"
#include "elementwise.cuh"
#include "activations.cuh"
#include "prelu.cuh"
#include "bias_act.cuh"
#include "conv.cuh"
#include "rowwise.cuh"
