// embed: out[i, c] = dequantize(table[ids[i], c])  for i < n_ids, c < dim.
// One invocation per element for float tables, per unit (dequant.glsl: 16 or 32 elements decoded
// from one run of bytes) for block-quantized ones; the host dispatches n_ids * dim / unit of them.
// Bindings: 0 table (uint words, any DType; row r starts at byte table_off + (r - row_lo) * row_bytes),
//           1 ids (int, ids_off + i), 2 out (float, out_off + i * dim + c).
// Ids outside [row_lo, row_hi) are skipped: a table larger than one storage-buffer binding is
// split into row chunks by the host, one dispatch per chunk.
// Specialization: 0 = workgroup size, 1 = table DType.
#version 450
#extension GL_GOOGLE_include_directive : require

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint WTYPE = 0u;

layout(binding = 0) readonly buffer Table { uint W[]; };
layout(binding = 1) readonly buffer Ids { int ids[]; };
layout(binding = 2) writeonly buffer Out { float O[]; };

layout(push_constant) uniform Params {
  uint table_off;
  uint ids_off;
  uint out_off;
  uint n_ids;
  uint dim;
  uint row_bytes;
  int row_lo;
  int row_hi;
} p;

#include "common.glsl"
#include "dequant.glsl"

void main() {
  const bool quant = WTYPE != DT_F32 && WTYPE != DT_F16 && WTYPE != DT_BF16;
  const uint unit = quant ? w_unit_elems() : 1u;
  const uint idx = group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  const uint per_row = p.dim / unit;
  if (idx >= p.n_ids * per_row) return;
  const uint i = idx / per_row;
  const uint c = idx - i * per_row;  // element (float) or unit (quantized) within the row
  const int id = ids[p.ids_off + i];
  if (id < p.row_lo || id >= p.row_hi) return;
  const uint row = p.table_off + uint(id - p.row_lo) * p.row_bytes;
  const uint out_row = p.out_off + i * p.dim;
  if (!quant) {
    O[out_row + c] = w_elem(row, c);
    return;
  }
  const uint per_block = w_units_per_block();
  const uint b = c / per_block, t = c - b * per_block;
  float v[32];
  vec4 scale, offset;
  w_unit(row + b * w_block_bytes(), t, v, scale, offset);
  for (uint r = 0u; r < unit / 8u; ++r) {
    const uint e0 = out_row + b * w_block_elems() + w_run_start(t, r);
    for (uint k = 0u; k < 8u; ++k) O[e0 + k] = scale[r] * v[8u * r + k] + offset[r];
  }
}
