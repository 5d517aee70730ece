// Integer dot kernels for block-quantized weight rows against int8 activations quantized in
// 32-element blocks (scale dx per block). Shared between the fast matmul and its K-quant file.
#pragma once
#include <cstddef>
#include <cstdint>

#include "backends/backend.h"

namespace pagoda::fastq {

// Sum over a row of w (nb * 32 elements, packed as its dtype) times the activations qx * dx;
// xs[b] is the sum of block b's int8 activations (for the min term of affine formats).
using IntDot = float (*)(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb);

// The kernel for weights of type t, or nullptr when t has none in this build (no AVX2, or a type
// without an integer kernel yet): callers then dequantize and dot in float.
IntDot int_dot_for(DType t);

// `rows` weight rows (row r at w + r * stride) against one activation row: out[r], each exactly
// int_dot_for's, in one call (a matvec's row range). nullptr where int_dot_for is.
using IntDotRows = void (*)(const uint8_t* w, size_t stride, int64_t rows, const int8_t* qx, const float* dx,
                            const int32_t* xs, int64_t nb, float* out);
IntDotRows int_dot_rows_for(DType t);

// How int_dot_for's kernel for t reads a row's activations: 0, block by block (block b's 32
// values at 32 * b); 1, blocks paired (in builds without the 512-bit kernels, the 4-bit and 5-bit
// formats): blocks 2j and 2j + 1 of a row as their elements 0..15, the other's 0..15, then the
// elements 16..31 of each, in 64 bytes at 64 * j (a row's odd last block alone). The scales and
// block sums stay one per block in block order. The same for every kernel of this header taking
// 32-element blocks.
int x32_layout(DType t);
// Where element e (< 32) of block j (< nb) of a row of nb blocks lies among the row's activations
// in x32_layout `layout` (elements e and e + 1 .. e + 3 follow it for e % 4 == 0).
inline int64_t x32_slot(int layout, int64_t j, int e, int64_t nb) {
  if (layout != 1 || j >= (nb & ~int64_t(1))) return 32 * j + e;
  return 32 * (j & ~int64_t(1)) + 16 * (j & 1) + (e < 16 ? e : e + 16);
}

// The same dots for `rows` activation rows at once (1 to 4; row t at qx + t * 32 * nb, dx and
// xs + t * nb), written to out[0..rows): the weights are unpacked once for all of them, and each
// row's arithmetic is exactly int_dot_for's, so a result does not depend on how rows were grouped.
using IntDotBatch = void (*)(const uint8_t* w, const int8_t* qx, const float* dx, const int32_t* xs, int64_t nb, float* out);
IntDotBatch int_dot_rows_at_once(DType t, int rows);

// Batches too small for gemm16's panels, in builds without AVX-512 VNNI: a weight row's blocks
// unpacked once (unpack: 32 bytes a block into u), then dotted with activation rows four at a
// time from u (UnpackedDot4: w for the scales, u for the quants, the rest as IntDotBatch), so the
// unpacking is paid once per weight row instead of once per four tokens. Results bit-identical to
// int_dot_for's. nullptr where the build has AVX-512 VNNI or the type gains nothing (Q8_0).
using UnpackRow = void (*)(const uint8_t* w, int64_t nb, uint8_t* u);
using UnpackedDot4 = void (*)(const uint8_t* w, const uint8_t* u, const int8_t* qx, const float* dx, const int32_t* xs,
                              int64_t nb, float* out);
UnpackedDot4 unpacked_dot4_for(DType t, UnpackRow* unpack);

// Prompt-sized batches of a type int_dot_for has a kernel for: out[t * ldo + j] for the kGemmRows
// weight rows j (row j at w + j * stride) and `tokens` activation rows quantized as for
// int_dot_for (token t at qx + t * 32 * nb, dx + t * nb, xs + t * nb). The rows are unpacked once
// into panels where a vector lane is a row, so a token costs 8 vpdpbusd per block for all 16 rows
// with AVX-512 VNNI, and 8 maddubs per block and 8 rows with AVX2, with no reduction. Every result
// is bit-identical to int_dot_for's for the same row and token. False (nothing written) where the
// build or the type has no such kernel.
// With AVX-512 VNNI the panels read the activations re-laid once per matmul (gemm16_x: xi of
// gemm16_x_words words, filled pass by pass, passes [0, gemm16_x_passes) in any order or split);
// elsewhere gemm16 reads qx, dx and xs, and the passes are none.
constexpr int64_t kGemmRows = 16;
bool has_gemm16(DType t);
int64_t gemm16_x_passes(int64_t tokens);
size_t gemm16_x_words(int64_t tokens, int64_t nb);
void gemm16_x(DType t, const int8_t* qx, const float* dx, const int32_t* xs, int64_t tokens, int64_t nb, int64_t p0,
              int64_t p1, int32_t* xi);
// `panels` (1 or 2): rows j < 16 * panels at once (with AVX-512 VNNI two panels share each token's
// broadcasts; elsewhere one after the other).
bool gemm16(DType t, const uint8_t* w, size_t stride, int64_t nb, const int8_t* qx, const float* dx, const int32_t* xs,
            const int32_t* xi, int64_t tokens, float* out, int64_t ldo, int panels = 1);

// The K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) dot against activations quantized per 256-element
// super-block, as ggml's Q8_K: int8 values qx, one float scale dx per super-block and the int16 sum
// xs of each 16-element run (the mins and offsets). `rows` activation rows at once (1 to 4; row t
// at qx + t * 256 * nsb, dx + t * nsb, xs + t * 16 * nsb), results in out[0..rows): the weights are
// unpacked once for all of them and each row's arithmetic is the same whatever `rows` is. The
// kernel is for rows of nsb super-blocks (a width's kernels may round differently from another
// width's). nullptr where the type or the build has no such kernel.
using SuperDot = void (*)(const uint8_t* w, const int8_t* qx, const float* dx, const int16_t* xs, int64_t nsb, float* out);
SuperDot super_dot_for(DType t, int rows, int64_t nsb);

// `rows` weight rows (row r at w + r * stride) against one activation row quantized as for
// super_dot_for: out[r], each bit-identical to super_dot_for(t, 1, nsb)'s for its row (a matvec's
// row range). One call takes them all, so the kernel sets itself up once per range, not once per
// row; for every type but Q6_K it takes two rows a pass, their work interleaved (one row's
// reductions overlap the other's products). nullptr where the build has none (AVX2: callers take
// super_dot_for a row at a time).
using SuperDotRows = void (*)(const uint8_t* w, size_t stride, int64_t rows, const int8_t* qx, const float* dx,
                              const int16_t* xs, int64_t nsb, float* out);
SuperDotRows super_dot_rows_for(DType t, int64_t nsb);

// The same 16-row panels for the K-quants (Q2_K and Q3_K in AVX-512 builds: their kept layout, packed
// per call), at any row width, against activations quantized
// as for super_dot_for (token t at qx + t * 256 * nsb, dx + t * nsb, xs + t * 16 * nsb): every
// result bit-identical to super_dot_for(t, 1, nsb)'s. False (nothing written) where the build or
// the type has none.
bool has_gemm16_k(DType t);
// Tokens from which a matmul of weight type t takes the panels (gemm16, gemm16_k): for the
// 512-bit 16-row panels 5 (the 32-element types), 4 (Q2_K, Q3_K), 6 (Q4_K, Q5_K) or 10 (Q6_K); for AVX2's 8-row ones 4 (Q2_K-Q5_K, and Q4_0, Q4_1, IQ4_NL, whose panels
// keep the nibbles), 8 (Q8_0) or 6 (Q5_0, Q5_1, Q6_K).
int64_t panel_min_tokens(DType t);
// Weights kept in compact panels of kKeptGroupRows rows: in AVX2 builds without the 512-bit kernels
// 8-row groups of the 32-element types and Q2_K-Q5_K, in AVX-512 VNNI builds 16-row groups of Q2_K
// and Q3_K (false elsewhere): the panels gemm16 packs per call for the 4-bit formats (Q5_0, Q5_1:
// those and the rows' fifth-bit words; Q8_0: its panels less the magnitudes), made once; for the
// K-quants the rows' scales, quants (and high bits) and d in a row-per-lane order. Group g of rows
// kKeptGroupRows * g.. (g < rows / kKeptGroupRows) takes the bytes those rows took in the file, the
// rows past the last group stay as they were, so a packed weight is its file's size.
// pack_kept_panels packs groups [g0, g1) of the row-major src (rows of n_in elements) into dst; kept_panel_matmul
// multiplies rows [o0, o1) of such a weight of a 32-element type by `tokens` activation rows
// quantized as for int_dot_for (out[t * ldo + o]), each output the same bits as int_dot_for's for
// that row and token alone, whatever the range and the token count; kept_panel_matmul_k the same
// for Q2_K-Q5_K against activations quantized as for super_dot_for, the bits of super_dot_for(t,
// 1, nsb)'s. o0 and o1 fall on groups (multiples of kKeptGroupRows), or o1 is `rows`: the callers
// cut their ranges there.
#if defined(__AVX2__) && defined(__F16C__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
constexpr int64_t kKeptGroupRows = 16;  // a row per lane of a 512-bit register
#else
constexpr int64_t kKeptGroupRows = 8;
#endif
bool has_kept_panels(DType t);
void pack_kept_panels(DType t, const uint8_t* src, size_t stride, int64_t n_in, int64_t g0, int64_t g1, uint8_t* dst);
void kept_panel_matmul(DType t, const uint8_t* panel, size_t stride, int64_t rows, int64_t nb, int64_t o0, int64_t o1,
                       const int8_t* qx, const float* dx, const int32_t* xs, int64_t tokens, float* out, int64_t ldo);
void kept_panel_matmul_k(DType t, const uint8_t* panel, size_t stride, int64_t rows, int64_t nsb, int64_t o0, int64_t o1,
                         const int8_t* qx, const float* dx, const int16_t* xs, int64_t tokens, float* out, int64_t ldo);
// With AVX-512 VNNI, Q4_K-Q6_K's panels read the activations re-laid once per matmul, as gemm16's
// (gemm16k_x: xi of gemm16k_x_words words, none for other types and builds), two panels (`panels`
// = 2: rows j < 32) sharing each token's broadcasts; the other types and builds take qx, dx and xs
// and the panels one at a time.
int64_t gemm16k_x_passes(DType t, int64_t tokens);
size_t gemm16k_x_words(DType t, int64_t tokens, int64_t nsb);
void gemm16k_x(DType t, const int8_t* qx, const float* dx, const int16_t* xs, int64_t tokens, int64_t nsb, int64_t p0,
               int64_t p1, int32_t* xi);
bool gemm16_k(DType t, const uint8_t* w, size_t stride, int64_t nsb, const int8_t* qx, const float* dx, const int16_t* xs,
              const int32_t* xi, int64_t tokens, float* out, int64_t ldo, int panels = 1);

// Super-blocks [sb0, sb1) of x (256 floats each) for the kernels of weight type t: q (256 per
// super-block, element i of a super-block at x256_slot(t, i)), d = amax / 127 and the sums of each
// 16 values of q (in element order). Only where super_dot_for has kernels.
void quantize_x256(const float* x, int64_t sb0, int64_t sb1, int8_t* q, float* d, int16_t* sums, DType t);
// Where quantize_x256 puts element i (< 256) of a super-block for weights of type t: in element
// order, except in AVX-512 builds for Q4_K and Q5_K, whose kernels take the 32-element sub-blocks
// in the order 0, 2, 1, 3, 4, 6, 5, 7 (one 64-byte load of their packed nibbles holds sub-blocks
// 4m and 4m + 2 in the low nibbles, 4m + 1 and 4m + 3 in the high ones).
int x256_slot(DType t, int i);
// Which of those orders: types with equal values share quantized activations.
int x256_layout(DType t);

}  // namespace pagoda::fastq
