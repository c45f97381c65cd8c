// Builds the page of `ichseg app` into ../static/dist (git-ignored): one bundled script (our
// code + NiiVue from node_modules), the style sheet and the HTML template the server fills in.
import { build } from 'esbuild'
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const out = join(here, '..', 'static', 'dist')
rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })

const result = await build({
  entryPoints: [join(here, 'src', 'main.js')],
  bundle: true,
  format: 'esm',
  target: ['es2020'],
  minify: true,
  sourcemap: false,
  legalComments: 'linked',
  outfile: join(out, 'app.js'),
  metafile: true,
  logLevel: 'warning'
})
for (const name of ['index.html', 'style.css']) {
  copyFileSync(join(here, 'src', name), join(out, name))
}
// name, version, licence and licence text of every npm package inside the bundle
const packages = new Map()
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/node_modules\/((?:@[^/]+\/)?[^/]+)\//)
  if (m) packages.set(m[1], join(here, 'node_modules', m[1]))
}
const notices = [...packages].sort().map(([name, dir]) => {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
  const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)/i.test(f))
  const repo = pkg.repository && (pkg.repository.url || pkg.repository)
  const text = file && existsSync(join(dir, file))
    ? readFileSync(join(dir, file), 'utf8').trim()
    : `(the npm package ships no licence file; licence ${pkg.license} per its package.json${repo ? `, source ${repo}` : ''})`
  return `${name} ${pkg.version} (${pkg.license})\n\n${text}\n`
})
writeFileSync(join(out, 'THIRD_PARTY_LICENSES.txt'), `Packages bundled into app.js\n\n${notices.join('\n' + '-'.repeat(72) + '\n\n')}`)
console.log(`built ${out} (${packages.size} bundled packages)`)
