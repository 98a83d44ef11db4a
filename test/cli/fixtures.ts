/**
 * Shared fixtures for the CLI tests: throw-away directory trees written per test, the path of
 * the compiled `vmm`, and a way to run it.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** dist/test/cli → dist/cli/vmm.js */
export const VMM = path.join(__dirname, '..', '..', 'cli', 'vmm.js');
export const PACKAGE_JSON = path.join(__dirname, '..', '..', '..', 'package.json');

/**
 * A temporary directory used as $HOME, so the config search (which stops at the home directory)
 * never sees files outside it. Remove with `cleanup()`.
 */
export function makeHome(): string {
  return fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vmm-cli-')));
}

export function cleanup(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Write `files` (relative path → contents; objects become JSON) under `root`. */
export function writeTree(root: string, files: Record<string, string | object>): void {
  for (const [rel, contents] of Object.entries(files)) {
    const file = path.join(root, rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, typeof contents === 'string' ? contents : JSON.stringify(contents, null, 2));
  }
}

/** A plugin module: `name` and an `apply` that records nothing (the tests don't boot VMs). */
export function pluginSource(name: string, extra = ''): string {
  return `${extra}\nmodule.exports = { name: ${JSON.stringify(name)}, apply() {} };\n`;
}

/**
 * A plugin that says on stderr that it was loaded, and whose apply() throws so that no VM can
 * start even where KVM and the native addon are present.
 */
export function markerPluginSource(name: string, marker: string): string {
  return (
    `process.stderr.write(${JSON.stringify(marker)} + '\\n');\n` +
    `module.exports = { name: ${JSON.stringify(name)}, apply() { throw new Error('test plugin: stop here'); } };\n`
  );
}

export interface VmmResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Run the compiled CLI with `args` in `cwd`, with HOME = `home` and stdin closed. */
export function runVmm(args: string[], cwd: string, home: string): VmmResult {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home };
  delete env.DEBUG;
  const result = spawnSync(process.execPath, [VMM, ...args], {
    cwd,
    env,
    input: '',
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}
