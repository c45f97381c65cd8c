// Voxel bookkeeping between NiiVue and the session's canonical grid.
//
// The server sends the scan on its canonical LPS grid: served voxel (i, j, k) = canonical
// (x, y, z). NiiVue reorients every volume to the nearest RAS layout for display and keeps its
// drawing bitmap in that layout (dims = back.dimsRAS, voxel -> mm = back.matRAS). We never
// assume what that reorientation is: the RAS-voxel -> canonical-voxel map is measured through
// world coordinates (NiiVue's own vox2mm, then the inverse of the served affine) and must come
// out as an exact signed permutation, otherwise the viewer refuses to draw.

function apply(m, v) {
  return [0, 1, 2].map((r) => m[r][0] * v[0] + m[r][1] * v[1] + m[r][2] * v[2] + m[r][3])
}

export function canonicalToMM(grid, z, y, x) {
  return apply(grid.affine, [x, y, z])
}

export function mmToCanonical(grid, mm) {
  const ijk = apply(grid.affine_inv, mm)
  return [ijk[2], ijk[1], ijk[0]] // (z, y, x), continuous
}

// Build the map between drawing-bitmap indices and canonical (z, y, x).
export function buildVoxelMap(nv, grid) {
  const back = nv.volumes[0]
  const dims = back.dimsRAS // [3, nx, ny, nz]
  const [nz, ny, nx] = grid.shape_zyx
  const toCanon = (v) => apply(grid.affine_inv, Array.from(nv.vox2mm(v, back.matRAS)))
  const o = toCanon([0, 0, 0])
  const cols = [[1, 0, 0], [0, 1, 0], [0, 0, 1]].map((e) => toCanon(e).map((c, n) => c - o[n]))
  // P[r][c]: canonical axis r (i, j, k) per RAS-bitmap axis c
  const P = [0, 1, 2].map((r) => [0, 1, 2].map((c) => cols[c][r]))
  const t = o
  const close = (a) => Math.abs(a - Math.round(a)) < 1e-3
  for (const row of P) {
    if (!row.every(close) || row.filter((v) => Math.round(v) !== 0).length !== 1) {
      throw new Error('the viewer grid is not a permutation of the scan grid')
    }
  }
  if (!t.every(close)) throw new Error('the viewer grid is shifted against the scan grid')
  const Pi = P.map((row) => row.map(Math.round))
  const ti = t.map(Math.round)
  const rasDims = [dims[1], dims[2], dims[3]]
  const canonDims = [nx, ny, nz] // (i, j, k)
  for (let r = 0; r < 3; r++) {
    const c = Pi[r].findIndex((v) => v !== 0)
    if (rasDims[c] !== canonDims[r]) throw new Error('the viewer grid size differs from the scan')
  }
  // inverse of a signed permutation: transpose; inverse offset: -P^T t
  const PT = [0, 1, 2].map((r) => [0, 1, 2].map((c) => Pi[c][r]))
  const tInv = [0, 1, 2].map((r) => -(PT[r][0] * ti[0] + PT[r][1] * ti[1] + PT[r][2] * ti[2]))
  const rx = rasDims[0]
  const rxy = rasDims[0] * rasDims[1]
  return {
    nx,
    ny,
    nz,
    rasDims,
    P: Pi,
    t: ti,
    // drawing-bitmap index -> canonical [z, y, x]
    indexToCanonical(idx) {
      const a = idx % rx
      const b = Math.floor(idx / rx) % rasDims[1]
      const c = Math.floor(idx / rxy)
      const i = Pi[0][0] * a + Pi[0][1] * b + Pi[0][2] * c + ti[0]
      const j = Pi[1][0] * a + Pi[1][1] * b + Pi[1][2] * c + ti[1]
      const k = Pi[2][0] * a + Pi[2][1] * b + Pi[2][2] * c + ti[2]
      return [k, j, i]
    },
    // canonical (z, y, x) -> drawing-bitmap index
    canonicalToIndex(z, y, x) {
      const a = PT[0][0] * x + PT[0][1] * y + PT[0][2] * z + tInv[0]
      const b = PT[1][0] * x + PT[1][1] * y + PT[1][2] * z + tInv[1]
      const c = PT[2][0] * x + PT[2][1] * y + PT[2][2] * z + tInv[2]
      return a + b * rx + c * rxy
    }
  }
}

// Voxels whose drawing value changed to 1 (hemorrhage) or 2 (background) since `before`.
export function changedVoxels(map, now, before) {
  const out = { 1: [], 2: [] }
  for (let n = 0; n < now.length; n++) {
    const v = now[n]
    if (v !== before[n] && (v === 1 || v === 2)) {
      const [z, y, x] = map.indexToCanonical(n)
      out[v].push(z, y, x)
    }
  }
  return out
}

// Parse an "x-bbox" header "z0,y0,x0,z1,y1,x1" (ends exclusive).
export function parseBBox(text) {
  const v = (text || '0,0,0,0,0,0').split(',').map(Number)
  return { z0: v[0], y0: v[1], x0: v[2], z1: v[3], y1: v[4], x1: v[5] }
}

// Expand a cropped (z, y, x) block into a full canonical array (C order of (z, y, x), which is
// the NIfTI file order of the served canonical volume).
export function expandCrop(bytes, bb, shapeZYX, out) {
  const [, Y, X] = shapeZYX
  out.fill(0)
  const w = bb.x1 - bb.x0
  let src = 0
  for (let z = bb.z0; z < bb.z1; z++) {
    for (let y = bb.y0; y < bb.y1; y++) {
      out.set(bytes.subarray(src, src + w), (z * Y + y) * X + bb.x0)
      src += w
    }
  }
  return out
}

// Voxels of `full` (canonical (z, y, x) C order) on the border of the mask within the plane of
// the given view: axial = (y, x), coronal = (z, x), sagittal = (z, y).
export function outline(full, shapeZYX, view, bb, out) {
  const [Z, Y, X] = shapeZYX
  out.fill(0)
  const at = (z, y, x) => (z < 0 || y < 0 || x < 0 || z >= Z || y >= Y || x >= X ? 0 : full[(z * Y + y) * X + x])
  for (let z = bb.z0; z < bb.z1; z++) {
    for (let y = bb.y0; y < bb.y1; y++) {
      for (let x = bb.x0; x < bb.x1; x++) {
        const n = (z * Y + y) * X + x
        if (!full[n]) continue
        let edge
        if (view === 'coronal') edge = !at(z + 1, y, x) || !at(z - 1, y, x) || !at(z, y, x + 1) || !at(z, y, x - 1)
        else if (view === 'sagittal') edge = !at(z + 1, y, x) || !at(z - 1, y, x) || !at(z, y + 1, x) || !at(z, y - 1, x)
        else edge = !at(z, y + 1, x) || !at(z, y - 1, x) || !at(z, y, x + 1) || !at(z, y, x - 1)
        if (edge) out[n] = 1
      }
    }
  }
  return out
}
