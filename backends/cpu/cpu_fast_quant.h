// Integer dot kernels for block-quantized weight rows against int8 activations quantized in
// 32-element blocks (scale dx per block). Shared between the fast matmul and its K-quant file.
#pragma once
#include <cstdint>

#include "backends/backend.h"

namespace pagoda::fastq {

// Sum over a row of w (nb * 32 elements, packed as its dtype) times the activations qx * dx;
// xs[b] is the sum of block b's int8 activations (for the min term of affine formats).
using IntDot = float (*)(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb);

// The kernel for weights of type t, or nullptr when t has none in this build (no AVX2, or a type
// without an integer kernel yet): callers then dequantize and dot in float.
IntDot int_dot_for(DType t);

// The same dots for four activation rows at once (row t at qx + t * 32 * nb, dx and xs + t * nb),
// written to out[0..4): the weights are unpacked once for all four, and each row's arithmetic is
// exactly int_dot_for's, so a result does not depend on how rows were grouped.
using IntDot4 = void (*)(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb, float* out);
IntDot4 int_dot4_for(DType t);

}  // namespace pagoda::fastq
