/* clean_deploy_cuda.h: C API of the CUDA kernels of the clean_deploy custom ops (docs/custom_ops.md):
 * clean_deploy::SparseConvolution (GPU rulebook + gather-GEMM) and
 * clean_deploy::IoUAwareRedundancyElimination (decode + rescoring + sort + bitmask rotated NMS).
 *
 * One header for every caller: the TensorRT plugins (plugins/), the test binary
 * (csrc/cuda/tests/test_cuda_kernels.cpp), a PyTorch extension, or Python through ctypes
 * (benchmarks/sparse_conv_gpu.py loads libclean_deploy_cuda.so).
 *
 * Conventions
 *  - Every `d_` pointer is device memory; every other pointer is host memory.
 *  - The launch functions are asynchronous on `stream` and never synchronise: counts that only the
 *    GPU knows (number of output sites, of detections) are written to device scalars. A caller that
 *    needs them on the host copies them back after its own synchronisation.
 *  - Host-side argument checks return CD_CUDA_ERR_INVALID_ARGUMENT and leave a message readable
 *    with cdCudaLastError() (thread-local). Data-dependent problems that only the GPU sees (a site
 *    outside the grid, duplicate sites, an output count above the caller's capacity) set bits in an
 *    optional device int32 `d_error` (CD_CUDA_DATA_* flags, OR-ed; the caller zeroes it) and the
 *    kernels stay memory-safe: such sites are skipped, outputs are truncated at the capacity.
 *  - Scratch memory is caller-provided ("workspace", any 256-byte aligned device buffer of at least
 *    the size the matching *WorkspaceSize function returns), so the TensorRT plugins can use the
 *    engine's workspace and nothing allocates during enqueue.
 *  - Results are deterministic: the same inputs give bitwise identical outputs on every run (no
 *    atomics on floating-point data; hash-table and sort results do not depend on scheduling).
 */
#ifndef CLEAN_DEPLOY_CUDA_H_
#define CLEAN_DEPLOY_CUDA_H_

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#if defined(_WIN32)
#define CD_CUDA_API __declspec(dllexport)
#else
#define CD_CUDA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status --------------------------------------------------------------------------------- */

typedef enum cdCudaStatus {
  CD_CUDA_OK = 0,
  CD_CUDA_ERR_INVALID_ARGUMENT = 1, /* bad geometry / shapes / pointers (message in cdCudaLastError) */
  CD_CUDA_ERR_WORKSPACE = 2,        /* workspace smaller than the *WorkspaceSize function asked for */
  CD_CUDA_ERR_CUDA = 3,             /* a CUDA runtime error (kernel launch, CUB) */
  CD_CUDA_ERR_NO_DEVICE = 4         /* no CUDA device (cdCudaDeviceCount) */
} cdCudaStatus;

/* Flags written (OR-ed) into the optional device int32 `d_error` by the kernels. */
#define CD_CUDA_DATA_SITE_OUT_OF_RANGE 1 /* a site outside [0, spatial_shape) or batch outside [0, max_batch) */
#define CD_CUDA_DATA_DUPLICATE_SITE 2    /* two input rows at the same (batch, z, y, x) */
#define CD_CUDA_DATA_CAPACITY 4          /* more output sites than max_outputs (outputs truncated) */

/* Message of the last error returned on this host thread ("" when none). */
CD_CUDA_API const char* cdCudaLastError(void);
/* Short name of a status ("CD_CUDA_OK", ...). */
CD_CUDA_API const char* cdCudaStatusName(cdCudaStatus status);
/* Number of CUDA devices; 0 (and a message in cdCudaLastError) when there is no usable device or
 * driver. Never fails. */
CD_CUDA_API int cdCudaDeviceCount(void);
/* Version of this API (major * 1000 + minor). */
CD_CUDA_API int cdCudaApiVersion(void);
#define CD_CUDA_API_VERSION 1000

/* ---- sparse convolution ---------------------------------------------------------------------- */

/* Geometry of one clean_deploy::SparseConvolution node; arrays in (z, y, x) order. */
typedef struct cdSparseConvGeometry {
  int32_t kernel[3];
  int32_t stride[3];
  int32_t padding[3];
  int32_t dilation[3];
  int32_t in_shape[3]; /* spatial_shape D, H, W of the input grid */
  int32_t subm;        /* 1 submanifold, 0 regular */
  /* Exclusive bound on the batch index (sites with batch >= max_batch are out of range); also
   * bounds the keys sorted by regular convs (fewer radix passes). 0 = no bound below 2^31. */
  int32_t max_batch;
} cdSparseConvGeometry;

/* Checks the geometry exactly as the CPU kernel's ConvGeometry::validate(). */
CD_CUDA_API cdCudaStatus cdSparseConvCheckGeometry(const cdSparseConvGeometry* g);
/* Output spatial shape (in_shape for submanifold convs). */
CD_CUDA_API cdCudaStatus cdSparseConvOutShape(const cdSparseConvGeometry* g, int64_t out_shape[3]);
/* kernel[0] * kernel[1] * kernel[2]. */
CD_CUDA_API int64_t cdSparseConvKernelVolume(const cdSparseConvGeometry* g);
/* Upper bound on the outputs an input site feeds: 1 for submanifold convs; for regular convs
 * prod_a min(k_a, (k_a - 1) * d_a / s_a + 1). max_outputs = num_inputs * this never truncates. */
CD_CUDA_API int64_t cdSparseConvMaxOutputsPerInput(const cdSparseConvGeometry* g);

/* Workspace bytes of cdSparseConvRulebook for up to max_inputs sites (queries CUB, so it needs a
 * CUDA device; returns 0 and sets cdCudaLastError on failure). */
CD_CUDA_API size_t cdSparseConvRulebookWorkspaceSize(const cdSparseConvGeometry* g, int64_t max_inputs);

/* Index-pair ("rulebook") building, the GPU analogue of clean_deploy::build_rulebook:
 *  d_indices     [n, 4] int32 (batch, z, y, x), rows unique, any order
 *  d_out_indices [max_outputs, 4] int32: regular convs write the output sites sorted by
 *                (batch, z, y, x) (exactly the CPU kernel's set and order); may be NULL for
 *                submanifold convs (whose outputs are the inputs, in input order)
 *  d_neighbors   [max_outputs, K] int32, output-major: neighbors[o * K + k] = input row feeding
 *                output o through kernel offset k = (kz * kH + ky) * kW + kx, or -1
 *  d_num_out     device int32 scalar: number of valid output rows (n for submanifold convs,
 *                min(#sites, max_outputs) for regular ones); may be NULL
 *  d_error       optional device int32, CD_CUDA_DATA_* flags are OR-ed into it
 * Submanifold convs need max_outputs >= n. Rows of d_out_indices / d_neighbors at or beyond
 * *d_num_out are left untouched. */
CD_CUDA_API cdCudaStatus cdSparseConvRulebook(const cdSparseConvGeometry* g, const int32_t* d_indices, int64_t n,
                                              int64_t max_outputs, int32_t* d_out_indices, int32_t* d_neighbors,
                                              int32_t* d_num_out, int32_t* d_error, void* d_workspace,
                                              size_t workspace_size, cudaStream_t stream);

typedef enum cdDataType { CD_FLOAT32 = 0, CD_FLOAT16 = 1 } cdDataType;

/* Output-stationary gather-GEMM (implicit GEMM over the neighbour table):
 *   out[o, :] = act(bias + sum_k W[:, k, :] . features[neighbors[o, k], :])  for o < num_out,
 * each output element accumulated in float32 as bias, then the offsets in order k = 0..K-1, each
 * over the input channels in order with fused multiply-adds (the order of the CPU kernel's AVX2 /
 * AVX-512 path), then ReLU. No atomics: every output element has one owner thread.
 *  d_features   [n_in, cin] in `dtype` (float32, or float16 storage with float32 accumulation)
 *  d_neighbors  [max_outputs, K] from cdSparseConvRulebook (entries must be -1 or < n_in)
 *  d_weight     [cout, K, cin] float32 (spconv 2.x layout [Cout, kD, kH, kW, Cin])
 *  d_bias       [cout] float32 or NULL
 *  d_num_out    device int32 count of valid rows, or NULL: then all max_outputs rows are computed
 *  d_out        [max_outputs, cout] in `dtype`; rows at or beyond *d_num_out are left untouched
 * The launch covers max_outputs rows (blocks past *d_num_out return at once). */
CD_CUDA_API cdCudaStatus cdSparseConvGemm(cdDataType dtype, const void* d_features, int64_t n_in, int32_t cin,
                                          const int32_t* d_neighbors, int64_t max_outputs,
                                          const int32_t* d_num_out, int32_t kernel_volume, const float* d_weight,
                                          const float* d_bias, int32_t cout, int32_t relu, void* d_out,
                                          cudaStream_t stream);

/* ---- IoU-aware redundancy elimination ------------------------------------------------------- */

#define CD_RE_MAX_CLASSES 64

typedef enum cdHeadType { CD_HEAD_ANCHOR = 0, CD_HEAD_CENTER = 1 } cdHeadType;

/* The node's attributes (docs/custom_ops.md); per-class arrays hold num_classes values. */
typedef struct cdRedundancyParams {
  int32_t head_type; /* cdHeadType */
  int32_t num_classes;
  /* anchor decode */
  int32_t code_size; /* 7, or 8 with code_sincos */
  int32_t code_sincos;
  int32_t use_dir;
  int32_t num_dir_bins;
  float dir_offset;
  float dir_limit_offset;
  /* center decode */
  int32_t top_k;
  float pc_range[6];
  float cell_size[2];
  /* elimination */
  float beta[CD_RE_MAX_CLASSES];
  float min_iou[CD_RE_MAX_CLASSES];
  float nms_thresh[CD_RE_MAX_CLASSES];
  float score_thresh;
  float cross_class_thresh;
  int32_t pre_max;
  int32_t max_output;
} cdRedundancyParams;

/* Candidates per frame: num_anchors for anchor heads, min(top_k, C*H*W) for center heads. */
CD_CUDA_API int64_t cdRedundancyNumCandidates(const cdRedundancyParams* p, int64_t num_anchors, int64_t height,
                                              int64_t width);
/* Workspace bytes of cdRedundancyForward (per call, frames run one after the other); queries CUB,
 * so it needs a CUDA device (0 and cdCudaLastError on failure). */
CD_CUDA_API size_t cdRedundancyWorkspaceSize(const cdRedundancyParams* p, int64_t num_anchors, int64_t height,
                                             int64_t width);

/* Decode + rescoring + quality sort + greedy elimination for `batch` frames, as the CPU kernel
 * (csrc/cpu/redundancy.cpp) computes them:
 *  anchor head: d_cls [B, K, C], d_box [B, K, code_size], d_dir [B, K, bins] or NULL,
 *               d_iou [B, K] or NULL, d_anchors [K, 7]; height/width unused
 *  center head: d_cls = hm [B, C, H, W], d_box = reg [B, 8, H, W], d_iou [B, H, W] or NULL;
 *               num_anchors, d_dir, d_anchors unused
 * Outputs (all written, rows past the valid count zeroed, labels -1): d_boxes [B, M, 7],
 * d_scores [B, M], d_labels [B, M] int32, d_valid_count [B] int32, M = max_output.
 * Float32 decode with the CPU kernel's operation order (no FMA contraction; transcendental
 * functions evaluated in double and rounded), exact double-precision rotated BEV IoU with the same
 * Sutherland-Hodgman clipping, greedy elimination through 64-bit suppression masks and a
 * sequential scan: the kept set and its order are the CPU kernel's. */
CD_CUDA_API cdCudaStatus cdRedundancyForward(const cdRedundancyParams* p, int32_t batch, int64_t num_anchors,
                                             int64_t height, int64_t width, const float* d_cls, const float* d_box,
                                             const float* d_dir, const float* d_iou, const float* d_anchors,
                                             float* d_boxes, float* d_scores, int32_t* d_labels,
                                             int32_t* d_valid_count, void* d_workspace, size_t workspace_size,
                                             cudaStream_t stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* CLEAN_DEPLOY_CUDA_H_ */
