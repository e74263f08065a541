// host_device.h: CLEAN_DEPLOY_HD marks inline functions shared by the CPU kernels (plain C++) and the
// CUDA kernels: `__host__ __device__` under nvcc (__CUDACC__), nothing otherwise. No CUDA header is
// needed on the CPU side; the CPU emulation of the CUDA kernels (csrc/cuda/tests/emu) compiles the
// .cu files as C++ without __CUDACC__, so it gets the host versions too.
#pragma once

#if defined(__CUDACC__)
#define CLEAN_DEPLOY_HD __host__ __device__
#else
#define CLEAN_DEPLOY_HD
#endif
