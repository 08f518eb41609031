// Builds the wasm kernels (assembly/index.ts) in two variants, wasm/kernels-simd128.wasm
// and wasm/kernels-relaxed-simd.wasm, each also as a '-shared' build that imports a shared memory
// (the threaded dense kernels' own memory, src/dense-threads.ts), and checks that each only imports the host's memory and has no
// data segments or globals: the kernels run inside the tfjs wasm module's memory, so they must
// never write anywhere but the output buffers they are given. Skips work when up to date.
import asc from 'assemblyscript/asc';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'assembly', 'index.ts');
const sources = ['index.ts', 'dense.ts', 'batch-norm.ts'].map((f) => join(root, 'assembly', f));
const plain = [
  { name: 'simd128', features: ['simd'] },
  { name: 'relaxed-simd', features: ['simd', 'relaxed-simd'] },
];
// A shared memory import must declare a maximum; 65536 pages (4 GiB) lets the host pick any size.
const variants = [
  ...plain.map((v) => ({ ...v, shared: false })),
  ...plain.map((v) => ({ name: `${v.name}-shared`, features: [...v.features, 'threads'], shared: true })),
];

const mtime = (path) => { try { return statSync(path).mtimeMs; } catch { return -1; } };
const inputsTime = Math.max(...sources.map(mtime), mtime(fileURLToPath(import.meta.url)));

/** Section ids and imports of a wasm binary (just enough of the format to check the contract). */
function describeModule(bytes) {
  const sections = [];
  const imports = [];
  let pos = 8;
  const uleb = () => { let result = 0, shift = 0, byte; do { byte = bytes[pos++]; result |= (byte & 0x7f) << shift; shift += 7; } while (byte & 0x80); return result >>> 0; };
  const name = () => { const len = uleb(); const s = Buffer.from(bytes.subarray(pos, pos + len)).toString('utf8'); pos += len; return s; };
  while (pos < bytes.length) {
    const id = bytes[pos++];
    const size = uleb();
    const end = pos + size;
    sections.push(id);
    if (id === 2) {
      const count = uleb();
      for (let i = 0; i < count; i++) {
        const module = name(); const field = name(); const kind = bytes[pos++];
        imports.push(`${module}.${field}:${kind}`);
        if (kind !== 2) break; // only memory imports are expected; stop parsing anything else
        const flags = uleb(); uleb(); if (flags & 1) uleb();
        if (flags & 2) imports[imports.length - 1] += ':shared';
      }
    }
    pos = end;
  }
  return { sections, imports };
}

mkdirSync(join(root, 'wasm'), { recursive: true });
for (const variant of variants) {
  const outFile = join(root, 'wasm', `kernels-${variant.name}.wasm`);
  if (mtime(outFile) > inputsTime) continue;
  const args = [source, '-O3', '--runtime', 'stub', '--importMemory', '--noAssert', '--noExportMemory',
    ...(variant.shared ? ['--sharedMemory', '--maximumMemory', '65536'] : []),
    ...variant.features.flatMap((f) => ['--enable', f]), '-o', outFile];
  const { error, stderr } = await asc.main(args);
  if (error) {
    console.error(stderr.toString());
    throw new Error(`asc failed for ${variant.name}: ${error.message}`);
  }
  const { sections, imports } = describeModule(readFileSync(outFile));
  const forbidden = sections.filter((id) => id === 6 || id === 11);
  const expectedImport = variant.shared ? 'env.memory:2:shared' : 'env.memory:2';
  if (imports.join() !== expectedImport || forbidden.length > 0)
    throw new Error(`${outFile}: expected only the import ${expectedImport} and no globals or data segments; imports [${imports}], sections [${sections}]`);
  console.error(`build-wasm: ${outFile} (${statSync(outFile).size} bytes)`);
}
