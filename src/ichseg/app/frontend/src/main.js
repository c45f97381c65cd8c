// The page of `ichseg app`: NiiVue slice views, brush and clicks, rounds, volume, export.
import { Niivue, SLICE_TYPE } from '@niivue/niivue'
import {
  buildVoxelMap,
  canonicalToMM,
  changedVoxels,
  expandCrop,
  mmToCanonical,
  outline,
  parseBBox
} from './geometry.js'

const TOKEN = new URLSearchParams(location.search).get('token')
const $ = (id) => document.getElementById(id)

// ------------------------------------------------------------------------------------ server
class ApiError extends Error {}

async function api(path, { method = 'GET', json, body, raw = false } = {}) {
  const headers = {}
  if (TOKEN) headers['X-Ichseg-Token'] = TOKEN
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(json)
  }
  let resp
  try {
    resp = await fetch(path, { method, headers, body, credentials: 'same-origin' })
  } catch (err) {
    throw new ApiError(`the server cannot be reached (${err.message})`)
  }
  if (!resp.ok) {
    let msg = `${resp.status} ${resp.statusText}`
    try {
      const data = await resp.json()
      if (data && data.error) msg = data.error
    } catch (_) { /* not JSON */ }
    throw new ApiError(msg)
  }
  return raw ? resp : resp.json()
}

function withToken(path) {
  return TOKEN ? `${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(TOKEN)}` : path
}

// ------------------------------------------------------------------------------------ state
const ui = {
  nv: null,
  grid: null, // canonical grid from the server
  map: null, // drawing bitmap <-> canonical voxels
  state: null, // last /api/state payload
  config: null,
  tool: 'paint-pos',
  brushMm: 3,
  window: 'brain',
  view: 'axial',
  overlayMode: 'filled',
  opacity: 0.5,
  maskFull: null, // canonical (z, y, x) uint8 of the current mask
  maskBox: null,
  synced: null, // drawing bitmap as last synchronised with the server's prompts
  busy: 0,
  location: null, // NiiVue's last location report (values under the crosshair)
  strokes: 0, // strokes sent (for tests)
  rounds: 0,
  loads: 0, // studies shown (for tests)
  ready: false
}
window.ichseg = ui // test hook: the e2e tests read geometry and state through it

function banner(text, kind = 'error') {
  const b = $('banner')
  b.className = `banner ${kind}`
  $('banner-text').textContent = text
  if (kind === 'info') setTimeout(() => { if ($('banner-text').textContent === text) b.classList.add('hidden') }, 4000)
}

function clearBanner() {
  $('banner').classList.add('hidden')
}

async function guarded(label, fn) {
  ui.busy++
  setStatus(label)
  try {
    return await fn()
  } catch (err) {
    banner(err instanceof ApiError ? err.message : `${label}: ${err.message}`)
    return undefined
  } finally {
    ui.busy--
    if (!ui.busy) setStatus('')
    refreshButtons()
  }
}

function setStatus(text) {
  const s = $('status')
  s.textContent = text
  s.classList.toggle('busy', Boolean(text))
}

// ------------------------------------------------------------------------------------ viewer
const VIEWS = {
  axial: SLICE_TYPE.AXIAL,
  coronal: SLICE_TYPE.CORONAL,
  sagittal: SLICE_TYPE.SAGITTAL,
  multi: SLICE_TYPE.MULTIPLANAR
}

async function createViewer() {
  const nv = new Niivue({
    backColor: [0, 0, 0, 1],
    isRadiologicalConvention: true,
    show3Dcrosshair: false,
    dragAndDropEnabled: false,
    isColorbar: false,
    logLevel: 'error',
    crosshairColor: [0.25, 0.8, 1.0, 0.55],
    crosshairWidth: 0.5,
    crosshairGap: 6,
    viewModeHotKey: 'KeyNone',
    clipPlaneHotKey: 'KeyNone',
    cycleClipPlaneHotKey: 'KeyNone',
    multiplanarShowRender: 0, // never a 3D render tile
    isNearestInterpolation: true,
    penSize: 1,
    isFilledPen: false,
    drawingEnabled: false,
    textHeight: 0.03
  })
  await nv.attachToCanvas($('gl'))
  nv.addColormap('ichseg-mask', { R: [0, 255], G: [0, 196], B: [0, 0], A: [0, 255], I: [0, 255] })
  nv.onDrawingChanged = (action) => { if (action === 'draw') onStroke() }
  nv.onLocationChange = (d) => { ui.location = d; updateHud(); drawAnnotations() }
  ui.nv = nv
  return nv
}

function currentSlice() {
  const nv = ui.nv
  if (!ui.grid || !nv.volumes.length) return null
  const mm = nv.frac2mm(nv.scene.crosshairPos)
  return mmToCanonical(ui.grid, [mm[0], mm[1], mm[2]]).map(Math.round) // [z, y, x]
}

function goToVoxel(z, y, x) {
  const nv = ui.nv
  const [Z, Y, X] = ui.grid.shape_zyx
  z = Math.max(0, Math.min(Z - 1, Math.round(z)))
  const mm = canonicalToMM(ui.grid, z, Math.max(0, Math.min(Y - 1, y)), Math.max(0, Math.min(X - 1, x)))
  nv.scene.crosshairPos = nv.mm2frac(mm)
  nv.createOnLocationChange()
  nv.drawScene()
  updateHud()
  drawAnnotations()
}

function goToSlice(z) {
  const cur = currentSlice()
  if (!cur) return
  goToVoxel(z, cur[1], cur[2])
}

function moveSlice(step) {
  const cur = currentSlice()
  if (cur) goToSlice(cur[0] + step)
}

// CSS pixel position (client coordinates) of the centre of canonical voxel (z, y, x).
function voxelToClient(z, y, x) {
  const nv = ui.nv
  const pos = nv.frac2canvasPos(nv.mm2frac(canonicalToMM(ui.grid, z, y, x)))
  if (!pos) return null
  const canvas = $('gl')
  const rect = canvas.getBoundingClientRect()
  const sx = rect.width / canvas.width
  const sy = rect.height / canvas.height
  return [rect.left + pos[0] * sx, rect.top + pos[1] * sy]
}
ui.voxelToClient = voxelToClient
// canonical [z, y, x, label] of every voxel shown in the drawing layer (for tests)
ui.drawnCanonical = () => {
  const out = []
  const bm = ui.nv.drawBitmap
  for (let n = 0; n < bm.length; n++) if (bm[n]) out.push([...ui.map.indexToCanonical(n), bm[n]])
  return out
}
ui.goToVoxel = goToVoxel
ui.currentSlice = currentSlice

function clientToVoxel(cx, cy) {
  const nv = ui.nv
  const canvas = $('gl')
  const rect = canvas.getBoundingClientRect()
  const frac = nv.canvasPos2frac([(cx - rect.left) * canvas.width / rect.width, (cy - rect.top) * canvas.height / rect.height])
  if (!frac || frac[0] < 0) return null
  const mm = nv.frac2mm(frac)
  return mmToCanonical(ui.grid, [mm[0], mm[1], mm[2]])
}

function updateHud() {
  const cur = currentSlice()
  if (!cur || !ui.grid) { $('hud').textContent = ''; return }
  const [Z] = ui.grid.shape_zyx
  const sug = ui.state && ui.state.suggested_slice
  const v = ui.location && ui.location.values && ui.location.values[0]
  const hu = v && Number.isFinite(v.value) ? `   ${Math.round(v.value)} HU` : ''
  $('hud').textContent = `slice z ${cur[0]} / ${Z - 1}   y ${cur[1]}  x ${cur[2]}${hu}` +
    `   ${ui.window} window` + (sug !== null && sug !== undefined ? `   suggested z ${sug}` : '')
}

function applyWindow(name) {
  const w = ui.config && ui.config.windows[name]
  const vol = ui.nv.volumes[0]
  if (!w || !vol) return
  ui.window = name
  vol.cal_min = w.level - w.width / 2
  vol.cal_max = w.level + w.width / 2
  ui.nv.updateGLVolume()
  for (const b of document.querySelectorAll('#windows button')) b.classList.toggle('active', b.dataset.window === name)
  updateHud()
}

function setView(name) {
  ui.view = name
  ui.nv.setSliceType(VIEWS[name])
  for (const b of document.querySelectorAll('#views button')) b.classList.toggle('active', b.dataset.view === name)
  renderMask()
  drawAnnotations()
}

function penSizeVoxels() {
  const sp = ui.grid ? (ui.grid.spacing_zyx[1] + ui.grid.spacing_zyx[2]) / 2 : 1
  // NiiVue's pen paints a square of 2 * floor(size / 2) + 1 voxels
  return Math.max(1, Math.round(ui.brushMm / sp))
}

function updateBrushLabel() {
  const n = penSizeVoxels()
  const eff = 2 * Math.floor(n / 2) + 1
  $('brush-label').textContent = ui.grid ? `${ui.brushMm} mm (${eff} px)` : `${ui.brushMm} mm`
  if (ui.nv) ui.nv.opts.penSize = n
}

function setTool(tool) {
  ui.tool = tool
  for (const r of document.querySelectorAll('input[name=tool]')) r.checked = r.value === tool
  const nv = ui.nv
  if (!nv || !nv.volumes.length) return
  const paint = tool === 'paint-pos' || tool === 'paint-neg'
  nv.setDrawingEnabled(paint)
  if (paint) nv.setPenValue(tool === 'paint-pos' ? 1 : 2, false)
  updateBrushLabel()
}

// ------------------------------------------------------------------------------------ layers
async function loadStudy(state) {
  const nv = ui.nv
  ui.state = state
  ui.grid = state.grid
  const scan = await api('/api/scan.nii', { raw: true })
  const buf = await scan.arrayBuffer()
  while (nv.volumes.length) nv.removeVolume(nv.volumes[nv.volumes.length - 1])
  await nv.loadFromArrayBuffer(buf, 'scan.nii')
  const mask = await (await api('/api/mask.nii', { raw: true })).arrayBuffer()
  await nv.loadFromArrayBuffer(mask, 'mask.nii')
  const ov = nv.volumes[1]
  ov.colormap = 'ichseg-mask'
  ov.cal_min = 0.5
  ov.cal_max = 1
  nv.setOpacity(1, ui.opacity)
  nv.createEmptyDrawing()
  nv.setDrawOpacity(0.8)
  ui.map = buildVoxelMap(nv, ui.grid)
  const [Z, Y, X] = ui.grid.shape_zyx
  ui.maskFull = new Uint8Array(Z * Y * X)
  applyWindow(ui.window)
  setView(ui.view)
  setTool(ui.tool)
  // open on the slice with the most hemorrhage so far, else the middle slice
  const abc = state.volume.abc2
  goToVoxel(abc.slice_z ?? Math.floor(Z / 2), Y / 2, X / 2)
  await Promise.all([syncMask(), syncHints()])
  showState(state)
  ui.loads++
  ui.ready = true
}

async function syncMask() {
  const resp = await api('/api/mask', { raw: true })
  const bytes = new Uint8Array(await resp.arrayBuffer())
  ui.maskBox = parseBBox(resp.headers.get('x-bbox'))
  expandCrop(bytes, ui.maskBox, ui.grid.shape_zyx, ui.maskFull)
  renderMask()
}

function renderMask() {
  const nv = ui.nv
  if (!nv || nv.volumes.length < 2 || !ui.maskFull) return
  const ov = nv.volumes[1]
  if (ui.overlayMode === 'outline') {
    const view = ui.view === 'multi' ? 'axial' : ui.view
    outline(ui.maskFull, ui.grid.shape_zyx, view, ui.maskBox, ov.img)
  } else if (ui.overlayMode === 'hidden') {
    ov.img.fill(0)
  } else {
    ov.img.set(ui.maskFull)
  }
  nv.setOpacity(1, ui.overlayMode === 'outline' ? 1 : ui.opacity)
  nv.updateGLVolume()
  for (const b of document.querySelectorAll('#overlay-modes button')) b.classList.toggle('active', b.dataset.mode === ui.overlayMode)
}

async function syncHints() {
  const resp = await api('/api/hints', { raw: true })
  const bytes = new Uint8Array(await resp.arrayBuffer())
  const bb = parseBBox(resp.headers.get('x-bbox'))
  const nv = ui.nv
  const bitmap = nv.drawBitmap
  bitmap.fill(0)
  let n = 0
  for (let z = bb.z0; z < bb.z1; z++) {
    for (let y = bb.y0; y < bb.y1; y++) {
      for (let x = bb.x0; x < bb.x1; x++) {
        const v = bytes[n++]
        if (v) bitmap[ui.map.canonicalToIndex(z, y, x)] = v
      }
    }
  }
  nv.refreshDrawing(true)
  ui.synced = bitmap.slice()
}

// ------------------------------------------------------------------------------------ prompts
async function onStroke() {
  if (!ui.map || !ui.synced) return
  const changed = changedVoxels(ui.map, ui.nv.drawBitmap, ui.synced)
  const jobs = []
  for (const label of [1, 2]) {
    if (changed[label].length) jobs.push({ positive: label === 1, voxels: changed[label] })
  }
  if (!jobs.length) return
  await guarded('Adding stroke…', async () => {
    let state
    for (const job of jobs) state = await api('/api/strokes', { method: 'POST', json: job })
    ui.strokes++
    await syncHints()
    showState(state)
  })
  // whatever happened, show the server's prompts
  if (ui.synced) await guarded('Syncing…', syncHints)
}

async function onCanvasClick(ev) {
  if (!ui.tool.startsWith('click') || !ui.grid) return
  const v = clientToVoxel(ev.clientX, ev.clientY)
  if (!v) return
  const [z, y, x] = v
  const sp = (ui.grid.spacing_zyx[1] + ui.grid.spacing_zyx[2]) / 2
  const prompt = {
    type: 'click',
    z: Math.round(z),
    point: [Math.round(y * 100) / 100, Math.round(x * 100) / 100],
    positive: ui.tool === 'click-pos',
    radius_vox: Math.max(0, ui.brushMm / 2 / sp)
  }
  await guarded('Adding click…', async () => {
    const state = await api('/api/prompts', { method: 'POST', json: { prompts: [prompt] } })
    ui.strokes++
    await syncHints()
    showState(state)
  })
}

// a box drawn on an axial slice: "the hemorrhage on this slice lies inside" (a background ring
// just outside it becomes a prompt; see docs/prompts.md)
function boxCorners(a, b) {
  if (!a || !b || Math.round(a[0]) !== Math.round(b[0])) return null
  const y0 = Math.round(Math.min(a[1], b[1])) - 0.5
  const y1 = Math.round(Math.max(a[1], b[1])) + 0.5
  const x0 = Math.round(Math.min(a[2], b[2])) - 0.5
  const x1 = Math.round(Math.max(a[2], b[2])) + 0.5
  return { z: Math.round(a[0]), corners: [[y0, x0], [y1, x1]] }
}

function drawBoxPreview(downXY, ev) {
  drawAnnotations()
  const annot = $('annot')
  const rect = annot.getBoundingClientRect()
  const sx = annot.width / rect.width
  const sy = annot.height / rect.height
  const ctx = annot.getContext('2d')
  ctx.strokeStyle = '#ffb300'
  ctx.lineWidth = 2 * sx
  ctx.setLineDash([6 * sx, 4 * sx])
  ctx.strokeRect((downXY[0] - rect.left) * sx, (downXY[1] - rect.top) * sy,
    (ev.clientX - downXY[0]) * sx, (ev.clientY - downXY[1]) * sy)
  ctx.setLineDash([])
}

async function onBoxDrag(downXY, ev) {
  drawAnnotations()
  if (ui.tool !== 'box' || !ui.grid) return
  if (ui.view !== 'axial') { banner('draw boxes in the axial view', 'warning'); return }
  const box = boxCorners(clientToVoxel(downXY[0], downXY[1]), clientToVoxel(ev.clientX, ev.clientY))
  if (!box) return
  await guarded('Adding box…', async () => {
    const state = await api('/api/prompts', { method: 'POST', json: { prompts: [{ type: 'box', ...box }] } })
    ui.strokes++
    await syncHints()
    showState(state)
  })
}

async function refine() {
  if (ui.busy || !ui.state || !ui.state.pending) return
  await guarded('Refining…', async () => {
    const t0 = performance.now()
    const state = await api('/api/refine', { method: 'POST' })
    await syncMask()
    ui.rounds++
    showState(state)
    const ms = performance.now() - t0
    const r = state.result
    banner(`round ${r.index}: ${r.volume_ml.toFixed(2)} mL (${fmtDelta(r.delta_ml)}), model ${r.seconds.toFixed(2)} s, total ${(ms / 1000).toFixed(2)} s`, 'info')
    if (r.note) banner(r.note, 'warning')
  })
}

async function history(op) {
  await guarded(op === 'undo' ? 'Undoing…' : 'Redoing…', async () => {
    const state = await api(`/api/${op}`, { method: 'POST' })
    await Promise.all([syncMask(), syncHints()])
    showState(state)
  })
}

async function openStudy(label, request) {
  await guarded(label, async () => {
    const state = await request()
    clearBanner()
    await loadStudy(state)
    if (state.warnings && state.warnings.length) banner(state.warnings.join(' · '), 'warning')
  })
}

function download(path) {
  const a = document.createElement('a')
  a.href = withToken(path)
  a.download = ''
  document.body.appendChild(a)
  a.click()
  a.remove()
}

async function exportMask(kind) {
  // ask the API first so that a refusal shows as a banner instead of a broken download
  if (kind === 'seg' && !(ui.state && ui.state.study.dicom)) {
    banner('DICOM-SEG export needs a DICOM study (a zipped DICOM series or a DICOM folder from --data); export NIfTI instead')
    return
  }
  download(kind === 'seg' ? '/api/export/mask.seg.dcm' : '/api/export/mask.nii.gz')
}

// ------------------------------------------------------------------------------------ panels
function fmtDelta(v) {
  return `${v >= 0 ? '+' : ''}${v.toFixed(2)} mL`
}

function showState(state) {
  if (!state) return
  ui.state = state
  $('study-name').textContent = state.study ? state.study.name : 'no study'
  $('method').textContent = state.method ? `engine: ${state.method}` : ''
  const v = state.volume
  $('vol-ml').textContent = `${v.planimetric_ml.toFixed(2)} mL`
  $('vol-delta').textContent = state.round ? fmtDelta(v.delta_ml) : '–'
  const a = v.abc2
  $('abc-ml').textContent = `${a.volume_ml.toFixed(2)} mL`
  $('abc-detail').textContent = a.slice_z === null || a.slice_z === undefined
    ? 'no hemorrhage in the mask'
    : `A ${a.a_mm.toFixed(1)} × B ${a.b_mm.toFixed(1)} × C ${a.c_mm.toFixed(1)} mm / 2 (slice z ${a.slice_z}, ${a.weighting})`
  $('note').textContent = state.note || ''
  $('pending').textContent = `${state.pending} new prompt(s) · round ${state.round}`
  const tb = document.querySelector('#rounds tbody')
  tb.innerHTML = ''
  for (const r of state.rounds) {
    const tr = document.createElement('tr')
    for (const c of [r.index, r.volume_ml.toFixed(2), fmtDelta(r.delta_ml).replace(' mL', ''), r.seconds.toFixed(2)]) {
      const td = document.createElement('td')
      td.textContent = c
      tr.appendChild(td)
    }
    tb.appendChild(tr)
  }
  const sug = state.suggested_slice
  $('suggest').textContent = sug === null || sug === undefined ? 'Suggested slice: –' : `Suggested slice: z ${sug}`
  refreshButtons()
  updateHud()
  drawAnnotations()
}

function refreshButtons() {
  const s = ui.state
  const has = Boolean(s && s.study)
  $('refine').disabled = !has || !s.pending || ui.busy > 0
  $('undo').disabled = !has || !s.can_undo || ui.busy > 0
  $('redo').disabled = !has || !s.can_redo || ui.busy > 0
  $('suggest').disabled = !has || s.suggested_slice === null || s.suggested_slice === undefined
  $('export-nifti').disabled = !has
  $('export-seg').disabled = !has || !s.study.dicom
  $('abc-slice').disabled = !has || s.volume.abc2.slice_z === null || s.volume.abc2.slice_z === undefined
}

// ABC/2 calipers on the axial slice they were measured on (2D canvas over NiiVue's).
function drawAnnotations() {
  const annot = $('annot')
  const gl = $('gl')
  if (annot.width !== gl.width || annot.height !== gl.height) {
    annot.width = gl.width
    annot.height = gl.height
  }
  const ctx = annot.getContext('2d')
  ctx.clearRect(0, 0, annot.width, annot.height)
  const s = ui.state
  const nv = ui.nv
  if (!s || !s.study || !nv || !nv.volumes.length || ui.view !== 'axial') return
  const a = s.volume.abc2
  const cur = currentSlice()
  if (!cur || a.slice_z === null || a.slice_z === undefined || cur[0] !== a.slice_z) return
  const scale = gl.width / gl.getBoundingClientRect().width || 1
  ctx.lineWidth = 2 * scale
  ctx.font = `${12 * scale}px system-ui, sans-serif`
  for (const c of a.calipers) {
    const p = c.ras.map((mm) => nv.frac2canvasPos(nv.mm2frac(mm)))
    if (!p[0] || !p[1]) continue
    ctx.strokeStyle = c.name === 'A' ? '#4fc3f7' : '#aed581'
    ctx.fillStyle = ctx.strokeStyle
    ctx.beginPath()
    ctx.moveTo(p[0][0], p[0][1])
    ctx.lineTo(p[1][0], p[1][1])
    ctx.stroke()
    for (const q of p) ctx.fillRect(q[0] - 3 * scale, q[1] - 3 * scale, 6 * scale, 6 * scale)
    ctx.fillText(`${c.name} ${c.length_mm.toFixed(1)} mm`, p[1][0] + 6 * scale, p[1][1])
  }
}

// ------------------------------------------------------------------------------------ input
function onKey(ev) {
  if (ev.target instanceof HTMLInputElement && ev.target.type !== 'radio' && ev.target.type !== 'range') return
  if (ev.target instanceof HTMLSelectElement) return
  const ctrl = ev.ctrlKey || ev.metaKey
  const k = ev.key
  let handled = true
  if (ctrl && (k === 'z' || k === 'Z') && !ev.shiftKey) history('undo')
  else if (ctrl && (k === 'y' || k === 'Y' || ((k === 'z' || k === 'Z') && ev.shiftKey))) history('redo')
  else if (ctrl || ev.altKey) handled = false
  else if (k === 'ArrowUp' || k === 'PageUp') moveSlice(+1)
  else if (k === 'ArrowDown' || k === 'PageDown') moveSlice(-1)
  else if (k >= '1' && k <= '4') applyWindow(['brain', 'subdural', 'stroke', 'bone'][Number(k) - 1])
  else if (k === 'r' || k === 'R') refine()
  else if (k === 'h' || k === 'H') setTool('paint-pos')
  else if (k === 'b' || k === 'B') setTool('paint-neg')
  else if (k === 'c' || k === 'C') setTool('click-pos')
  else if (k === 'x' || k === 'X') setTool('click-neg')
  else if (k === 'o' || k === 'O') setTool('box')
  else if (k === 'n' || k === 'N') setTool('navigate')
  else if (k === 's' || k === 'S') suggested()
  else if (k === 'o' || k === 'O') { ui.overlayMode = ui.overlayMode === 'outline' ? 'filled' : 'outline'; renderMask() }
  else if (k === 'v' || k === 'V') { const order = ['axial', 'coronal', 'sagittal', 'multi']; setView(order[(order.indexOf(ui.view) + 1) % order.length]) }
  else if (k === '[' || k === ']') { const b = $('brush'); b.value = String(Number(b.value) + (k === ']' ? 0.5 : -0.5)); b.dispatchEvent(new Event('input')) }
  else handled = false
  if (handled) {
    ev.preventDefault()
    ev.stopPropagation()
  }
}

function suggested() {
  const z = ui.state && ui.state.suggested_slice
  if (z !== null && z !== undefined) goToSlice(z)
}

function wire() {
  window.addEventListener('keydown', onKey, true)
  $('banner-close').onclick = clearBanner
  $('open-default').onclick = () => openStudy('Opening the default scan…', () => api('/api/study/default', { method: 'POST' }))
  $('open-data').onclick = () => {
    const name = $('data-list').value
    openStudy(`Opening ${name}…`, () => api('/api/study/data', { method: 'POST', json: { name } }))
  }
  $('initial-mask').onchange = (ev) => {
    const file = ev.target.files[0]
    ev.target.value = ''
    if (!file || !ui.state || !ui.state.study) { if (file) banner('open a study first'); return }
    const form = new FormData()
    form.append('file', file)
    guarded(`Loading ${file.name} as round 0…`, async () => {
      const state = await api('/api/initial-mask', { method: 'POST', body: form })
      await syncMask()
      showState(state)
      banner(`${file.name}: round 0, ${state.volume.planimetric_ml.toFixed(2)} mL; correct it with strokes and Refine`, 'info')
    })
  }
  $('upload').onchange = (ev) => {
    const file = ev.target.files[0]
    ev.target.value = ''
    if (!file) return
    if (ui.config && file.size > ui.config.max_upload_bytes) {
      banner(`${file.name}: larger than the upload limit of ${Math.round(ui.config.max_upload_bytes / 2 ** 20)} MiB`)
      return
    }
    const form = new FormData()
    form.append('file', file, file.name)
    openStudy(`Uploading ${file.name}…`, () => api('/api/study/upload', { method: 'POST', body: form }))
  }
  for (const r of document.querySelectorAll('input[name=tool]')) r.onchange = () => setTool(r.value)
  $('brush').oninput = () => { ui.brushMm = Number($('brush').value); updateBrushLabel() }
  for (const b of document.querySelectorAll('#windows button')) b.onclick = () => applyWindow(b.dataset.window)
  for (const b of document.querySelectorAll('#views button')) b.onclick = () => setView(b.dataset.view)
  for (const b of document.querySelectorAll('#overlay-modes button')) b.onclick = () => { ui.overlayMode = b.dataset.mode; renderMask() }
  $('opacity').oninput = () => { ui.opacity = Number($('opacity').value); renderMask() }
  $('refine').onclick = refine
  $('undo').onclick = () => history('undo')
  $('redo').onclick = () => history('redo')
  $('suggest').onclick = suggested
  $('abc-slice').onclick = () => { const z = ui.state.volume.abc2.slice_z; setView('axial'); goToSlice(z) }
  $('export-nifti').onclick = () => exportMask('nifti')
  $('export-seg').onclick = () => exportMask('seg')
  const gl = $('gl')
  let down = null
  gl.addEventListener('pointerdown', (ev) => { down = [ev.clientX, ev.clientY] })
  gl.addEventListener('pointermove', (ev) => { if (down && ui.tool === 'box') drawBoxPreview(down, ev) })
  gl.addEventListener('pointerup', (ev) => {
    if (down && Math.hypot(ev.clientX - down[0], ev.clientY - down[1]) < 4) onCanvasClick(ev)
    else if (down && ui.tool === 'box') onBoxDrag(down, ev)
    down = null
  })
  new ResizeObserver(() => drawAnnotations()).observe($('viewer'))
}

async function main() {
  wire()
  updateBrushLabel()
  try {
    await createViewer()
  } catch (err) {
    banner(`the slice viewer cannot start (WebGL2 is needed): ${err.message}`)
    return
  }
  await guarded('Connecting…', async () => {
    ui.config = await api('/api/config')
    const items = (await api('/api/data')).items
    if (items.length) {
      $('data-box').classList.remove('hidden')
      const sel = $('data-list')
      for (const it of items) {
        const o = document.createElement('option')
        o.value = it.name
        o.textContent = `${it.name} (${it.kind})`
        sel.appendChild(o)
      }
    }
  })
  if (!ui.config) return
  let state
  try {
    state = await api('/api/state')
  } catch (err) {
    banner(`your previous session could not be reopened: ${err.message}`)
    state = { study: null }
  }
  if (state.study) await guarded('Reopening your session…', () => loadStudy(state))
  else await openStudy('Opening the default scan…', () => api('/api/study/default', { method: 'POST' }))
}

main()
