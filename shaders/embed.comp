// embed: out[i, c] = dequantize(table[ids[i], c])  for i < n_ids, c < dim.
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
  const uint idx = group_index() * gl_WorkGroupSize.x + gl_LocalInvocationID.x;
  if (idx >= p.n_ids * p.dim) return;
  const uint i = idx / p.dim;
  const uint c = idx - i * p.dim;
  const int id = ids[p.ids_off + i];
  if (id < p.row_lo || id >= p.row_hi) return;
  O[p.out_off + idx] = w_elem(p.table_off + uint(id - p.row_lo) * p.row_bytes, c);
}
