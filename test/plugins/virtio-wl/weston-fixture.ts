/**
 * A real Wayland compositor for tests: Debian's weston on its headless backend, in a fresh
 * 0700 XDG_RUNTIME_DIR. `.ci/run` installs weston, so a missing one is a setup error, not a skip.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { tempDir } from './driver';
import { sleep, until } from '../../helpers/wait';

export interface Weston {
  /** Absolute path of weston's Wayland socket. */
  socket: string;
  /** SIGTERM, wait for exit, remove the runtime dir; idempotent. */
  stop(): Promise<void>;
}

export async function startHeadlessWeston(prefix: string): Promise<Weston> {
  if (spawnSync('sh', ['-c', 'command -v weston'], { encoding: 'utf8' }).status !== 0) {
    throw new Error('weston is not installed (Debian package weston; .ci/run installs it)');
  }
  const dir = tempDir(prefix);
  fs.chmodSync(dir, 0o700);
  const socket = path.join(dir, 'wl-test');
  let log = '';
  const weston = spawn('weston', ['--backend=headless-backend.so', '--socket=wl-test', '--idle-time=0'], {
    env: { ...process.env, XDG_RUNTIME_DIR: dir }, stdio: ['ignore', 'pipe', 'pipe'], cwd: dir,
  });
  weston.stdout!.on('data', (c) => { log += c; });
  weston.stderr!.on('data', (c) => { log += c; });
  const stop = async (): Promise<void> => {
    if (weston.exitCode === null && weston.signalCode === null) {
      weston.kill('SIGTERM');
      await new Promise((r) => weston.once('exit', r));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until(`weston's socket (log: ${log})`, () => fs.existsSync(socket), 20000);
    // weston creates the socket file slightly before it accepts on it.
    await sleep(200);
  } catch (error) {
    await stop();
    throw error;
  }
  return { socket, stop };
}
