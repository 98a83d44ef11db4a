/**
 * vmm as an installable package, the way a plugin author meets it: `npm pack`, install the
 * tarball into an empty project without the network, compile a TypeScript plugin that imports
 * `vmm` under `tsc --strict` (and type-check the JavaScript example plugin against the installed
 * types), then boot a guest through the installed package's `vmm` bin with both plugins named
 * by package name in a config file.
 *
 * Offline: `npm install --offline ./vmm.tgz` cannot work even with every tarball in the npm
 * cache, because resolving version ranges needs the registry's package documents, which
 * `npm ci` never caches. So the test writes the consumer's package-lock.json from this project's
 * (the same versions, with their integrity), and `npm ci --offline` takes every tarball from the
 * cache that installing this project filled.
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.join(__dirname, '..', '..', '..');
const TSC = path.join(ROOT, 'node_modules', '.bin', 'tsc');
const REGISTRY = 'https://registry.npmjs.org';

interface LockEntry {
  version: string;
  resolved?: string;
  integrity?: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  [key: string]: unknown;
}

/** npm, without the npm_* variables that `npm test` sets for this project. */
function npm(args: string[], cwd: string): string {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));
  return execFileSync('npm', args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
}

/**
 * The consumer's lock: `vmm` from the tarball, and the transitive closure of vmm's runtime
 * dependencies at the paths and versions this project's lock has them.
 */
function consumerLock(tarball: string, integrity: string): object {
  const rootLock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown> & { dependencies: Record<string, string> };
  const packages = rootLock.packages;
  /** Node's lookup from a lock path: its own node_modules, then each parent's. */
  const resolve = (from: string, name: string): string => {
    for (let dir = from; ; dir = dir.slice(0, Math.max(0, dir.lastIndexOf('node_modules/') - 1))) {
      const candidate = `${dir ? `${dir}/` : ''}node_modules/${name}`;
      if (packages[candidate]) return candidate;
      if (!dir) throw new Error(`${name} (needed by ${from || 'vmm'}) is not in package-lock.json`);
    }
  };
  const needed = new Map<string, LockEntry>();
  const todo: [string, string][] = Object.keys(manifest.dependencies).map((name) => ['', name]);
  while (todo.length > 0) {
    const [from, name] = todo.pop()!;
    const at = resolve(from, name);
    if (needed.has(at)) continue;
    const { dev: _dev, devOptional: _devOptional, peer: _peer, ...entry } = packages[at] as LockEntry & { dev?: boolean; devOptional?: boolean; peer?: boolean };
    const bare = at.slice(at.lastIndexOf('node_modules/') + 'node_modules/'.length);
    // This project's lock leaves out `resolved`; without it npm would ask the registry.
    entry.resolved ??= `${REGISTRY}/${bare}/-/${bare.split('/').pop()}-${entry.version}.tgz`;
    needed.set(at, entry);
    for (const dep of [...Object.keys(entry.dependencies ?? {}), ...Object.keys(entry.optionalDependencies ?? {})]) todo.push([at, dep]);
  }
  const spec = `file:${tarball}`;
  return {
    name: 'consumer',
    version: '1.0.0',
    lockfileVersion: 3,
    requires: true,
    packages: {
      '': { name: 'consumer', version: '1.0.0', dependencies: { vmm: spec } },
      'node_modules/vmm': {
        version: manifest.version, resolved: spec, integrity, hasInstallScript: true,
        dependencies: manifest.dependencies, bin: manifest.bin, engines: manifest.engines, os: manifest.os, cpu: manifest.cpu,
      },
      ...Object.fromEntries([...needed].sort(([a], [b]) => a.localeCompare(b))),
    },
  };
}

const COUNTER_PLUGIN = `
import type { Plugin, VmExit } from 'vmm';
import { definePlugin } from 'vmm';

const schema = {
  type: 'object',
  properties: {
    port: { type: 'integer', minimum: 0, maximum: 0xfff8, default: 0x700 },
    magic: { type: 'integer', minimum: 0, maximum: 0xffffffff, default: 0xc0ffee, description: 'a 32-bit number: what offset 0 reads' },
  },
  additionalProperties: false,
} as const;

// definePlugin types options from the schema: port and magic have defaults, so they are numbers.
const plugin: Plugin<typeof schema> = definePlugin({
  name: 'counter',
  schema,
  apply(vmm, options) {
    const port: number = options.port;
    let writes = 0;
    vmm.hooks.createDevices.tap('counter', (v) => {
      v.pio.register({
        name: 'counter', base: port, length: 8,
        read: (offset) => (offset === 0 ? options.magic : writes),
        write: () => { writes++; vmm.emitDeviceEvent('counter', 'write', { writes }); },
      });
    });
    vmm.hooks.shutdown.tap('counter', (exit: VmExit) => { const code: number = exit.exitCode; void code; });
  },
});

export default plugin;
`;

const STRICT = { strict: true, target: 'ES2022', lib: ['ES2022'], noEmitOnError: true };

let dir: string;
beforeAll(() => { dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-pack-'))); });
afterAll(() => { fs.rmSync(dir, { recursive: true, force: true }); });

test('npm pack → offline install into an empty project → a strict TypeScript plugin and the example, by package name, boot a guest', () => {
  // 1. Pack (the build is already there: the tests run from it).
  const [packed] = JSON.parse(npm(['pack', '--ignore-scripts', '--json', '--pack-destination', dir], ROOT)) as
    { filename: string; integrity: string; files: { path: string }[] }[];
  const files = packed.files.map((f) => f.path);
  for (const file of ['package.json', 'plugin-api.d.ts', 'dist/core/index.js', 'dist/cli/vmm.js', 'dist/plugins/control/index.js',
    'native/build/Release/vmm_native.node', 'guest/build/demo.elf', 'guest/build/probe.elf']) {
    expect(files).toContain(file);
  }
  expect(files.filter((f) => f.startsWith('dist/test/') || f.startsWith('dist/bench/') || f.endsWith('.map') || /(?<!\.d)\.ts$/.test(f))).toEqual([]);

  // 2. Install into an empty project, offline.
  const project = path.join(dir, 'consumer');
  fs.mkdirSync(project);
  const tarball = path.join(dir, packed.filename);
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, dependencies: { vmm: `file:${tarball}` } }));
  fs.writeFileSync(path.join(project, 'package-lock.json'), JSON.stringify(consumerLock(tarball, packed.integrity), null, 1));
  npm(['ci', '--offline', '--no-audit', '--no-fund'], project);
  const modules = path.join(project, 'node_modules');
  expect(fs.existsSync(path.join(modules, 'vmm', 'plugin-api.d.ts'))).toBe(true);
  // Runtime dependencies only: no compiler, no test runner, no addon headers.
  for (const dev of ['typescript', 'jest', 'node-addon-api', '@types/node']) expect(fs.existsSync(path.join(modules, dev))).toBe(false);

  // 3. A TypeScript plugin importing from 'vmm', compiled under --strict with both module
  //    resolutions (package.json "types", and "exports"), into a package of its own.
  fs.mkdirSync(path.join(project, 'src'));
  fs.writeFileSync(path.join(project, 'src', 'index.ts'), COUNTER_PLUGIN);
  const counter = path.join(modules, 'vmm-plugin-counter');
  fs.writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { ...STRICT, module: 'commonjs', moduleResolution: 'node10', rootDir: 'src', outDir: counter }, include: ['src'],
  }));
  fs.writeFileSync(path.join(project, 'tsconfig.node16.json'), JSON.stringify({
    compilerOptions: { ...STRICT, module: 'node16', moduleResolution: 'node16', noEmit: true }, include: ['src'],
  }));
  // 4. The example plugin (JavaScript with JSDoc types from 'vmm'), checked the same way. It
  //    uses Node's fs and crypto, so it needs @types/node as its author would have it: ours.
  const hwrng = path.join(modules, 'vmm-plugin-hwrng');
  fs.cpSync(path.join(ROOT, 'examples', 'vmm-plugin-hwrng'), hwrng, { recursive: true });
  fs.writeFileSync(path.join(project, 'tsconfig.example.json'), JSON.stringify({
    compilerOptions: {
      ...STRICT, module: 'commonjs', moduleResolution: 'node10', allowJs: true, checkJs: true, noEmit: true,
      typeRoots: [path.join(ROOT, 'node_modules', '@types')], types: ['node'],
    },
    files: ['node_modules/vmm-plugin-hwrng/index.js'],
  }));
  for (const config of ['tsconfig.json', 'tsconfig.node16.json', 'tsconfig.example.json']) {
    const tsc = spawnSync(TSC, ['-p', config], { cwd: project, encoding: 'utf8' });
    expect(`${config}: ${tsc.stdout}${tsc.stderr}`).toBe(`${config}: `);
    expect(tsc.status).toBe(0);
  }
  fs.writeFileSync(path.join(counter, 'package.json'), JSON.stringify({ name: 'vmm-plugin-counter', version: '1.0.0', main: 'index.js' }));

  // 5. Boot through the installed bin, plugins named by package in the config file; the
  //    example's `source` resolves against the config file's directory, not the working one.
  fs.writeFileSync(path.join(project, 'seed.bin'), Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]));
  fs.writeFileSync(path.join(project, 'vmm.config.json'), JSON.stringify({
    kernel: 'node_modules/vmm/guest/build/probe.elf',
    memory: '16M',
    cmdline: 'inl:0x700 outb:0x700:1 outb:0x700:1 inl:0x704 inl:0x7e0 inl:0x7e0 inl:0x7e4',
    plugins: ['vmm-plugin-counter', { name: 'vmm-plugin-hwrng', options: { source: 'seed.bin' } }],
  }));
  const cwd = path.join(project, 'sub');
  fs.mkdirSync(cwd);
  const bin = path.join(modules, '.bin', 'vmm');
  const env = { ...process.env, HOME: project, DEBUG: '' };
  const run = spawnSync(bin, [], { cwd, env, encoding: 'utf8', input: '', timeout: 30_000 });
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  expect(run.stdout).toContain('probe: inl 0x700 = 0xc0ffee');
  expect(run.stdout).toContain('probe: inl 0x704 = 0x2');
  expect(run.stdout).toContain('probe: inl 0x7e0 = 0x4030201');
  expect(run.stdout).toContain('probe: inl 0x7e0 = 0x8070605');
  expect(run.stdout).toContain('probe: inl 0x7e4 = 0x2');

  // 6. A bad option for the package plugin: refused before anything starts, exit 2.
  const bad = spawnSync(bin, ['--plugin', 'vmm-plugin-counter={"magic":-1}'], { cwd, env, encoding: 'utf8', input: '', timeout: 30_000 });
  expect(bad.stderr).toMatch(/^vmm: plugin 'counter' \(npm package vmm-plugin-counter \(.*\)\): option 'magic' must be a 32-bit number: what offset 0 reads; got -1\n$/);
  expect(bad.status).toBe(2);
}, 90_000);
