/**
 * A real Wayland compositor for tests: Debian's weston on its headless backend, in a fresh
 * 0700 XDG_RUNTIME_DIR. `.ci/run` installs weston, so a missing one is a setup error, not a skip.
 *
 * What a test can check frames with:
 * - `screenshots: true`: weston runs with the pixman renderer and `--debug` (weston 10 lets a
 *   client bind weston_screenshooter only then), and `screenshot()` runs Debian's
 *   weston-screenshooter and decodes the PNG it writes; `findSimpleShmWindow` finds what
 *   weston-simple-shm draws in it.
 * - `protocolLog: true`: weston runs with WAYLAND_DEBUG=server, and `commits()` counts the
 *   `wl_surface@N.commit()` requests it received (from every client: libwayland 1.21's log does
 *   not say which; the desktop shell's own client commits a few times at start, so compare counts
 *   before and after). Note: under the kiosk shell, weston 10 headless sent weston-simple-shm no
 *   frame callbacks after its first frame here (2 commits in 1.5 s), so frame checks use the desktop shell.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { tempDir } from './driver';
import { decodePng, rgbAt, type Image } from '../../helpers/png';
import { sleep, until } from '../../helpers/wait';

export interface WestonOptions {
  /** Pixman renderer and --debug, so that `screenshot()` works (default false: no rendering). */
  screenshots?: boolean;
  /** WAYLAND_DEBUG=server: the protocol log, `commits()` (default false). */
  protocolLog?: boolean;
  /** 'desktop' (weston's default; it spawns weston-desktop-shell) or 'kiosk' (no client of its own). */
  shell?: 'desktop' | 'kiosk';
  /** The headless output's size (default weston's, 1024x640). */
  width?: number;
  height?: number;
}

export interface Weston {
  /** Absolute path of weston's Wayland socket. */
  socket: string;
  /** The environment a host client needs to reach this weston (XDG_RUNTIME_DIR, WAYLAND_DISPLAY). */
  env: NodeJS.ProcessEnv;
  /** weston's pid. */
  pid: number;
  /** Everything weston printed so far (its log, and with `protocolLog` the protocol). */
  log(): string;
  /** wl_surface.commit requests received so far (needs `protocolLog`). */
  commits(): number;
  /** The output as weston-screenshooter saves it (needs `screenshots`). */
  screenshot(): Promise<Image>;
  /** SIGTERM, wait for exit, remove the runtime dir; idempotent. */
  stop(): Promise<void>;
}

/** How long weston-screenshooter may take (it connects, shoots, writes a PNG). */
const SCREENSHOT_TIMEOUT_MS = 20_000;
/** A request line of WAYLAND_DEBUG=server (events are logged with "-> "). */
const COMMIT_REQUEST = /\] +wl_surface@\d+\.commit\(\)/g;

export async function startHeadlessWeston(prefix: string, options: WestonOptions = {}): Promise<Weston> {
  if (spawnSync('sh', ['-c', 'command -v weston'], { encoding: 'utf8' }).status !== 0) {
    throw new Error('weston is not installed (Debian package weston; .ci/run installs it)');
  }
  const dir = tempDir(prefix);
  fs.chmodSync(dir, 0o700);
  const socket = path.join(dir, 'wl-test');
  const args = ['--backend=headless-backend.so', '--socket=wl-test', '--idle-time=0'];
  if (options.shell === 'kiosk') args.push('--shell=kiosk-shell.so');
  if (options.screenshots) args.push('--use-pixman', '--debug');
  if (options.width) args.push(`--width=${options.width}`);
  if (options.height) args.push(`--height=${options.height}`);
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: dir };
  delete env.WAYLAND_DISPLAY;
  delete env.WAYLAND_DEBUG;
  if (options.protocolLog) env.WAYLAND_DEBUG = 'server';
  let log = '';
  const weston = spawn('weston', args, { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
  weston.stdout!.setEncoding('utf8');
  weston.stderr!.setEncoding('utf8');
  weston.stdout!.on('data', (c: string) => { log += c; });
  weston.stderr!.on('data', (c: string) => { log += c; });
  const exited = new Promise<void>((resolve) => weston.once('close', () => resolve()));
  const stop = async (): Promise<void> => {
    if (weston.exitCode === null && weston.signalCode === null) weston.kill('SIGTERM');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until(`weston's socket (log: ${log})`, () => fs.existsSync(socket) || weston.exitCode !== null, 20000);
    if (weston.exitCode !== null) throw new Error(`weston exited with ${weston.exitCode} at start:\n${log}`);
    // weston creates the socket file slightly before it accepts on it.
    await sleep(200);
  } catch (error) {
    await stop();
    throw error;
  }
  const clientEnv: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: dir, WAYLAND_DISPLAY: 'wl-test' };
  delete clientEnv.WAYLAND_DEBUG;

  const commits = (): number => {
    if (!options.protocolLog) throw new Error('commits() needs startHeadlessWeston(…, { protocolLog: true })');
    return log.match(COMMIT_REQUEST)?.length ?? 0;
  };

  let shots = 0;
  const screenshot = async (): Promise<Image> => {
    if (!options.screenshots) throw new Error('screenshot() needs startHeadlessWeston(…, { screenshots: true })');
    // weston-screenshooter writes wayland-screenshot-<time>.png into its working directory.
    const shotDir = path.join(dir, `shot-${shots++}`);
    fs.mkdirSync(shotDir);
    try {
      const result = await new Promise<{ code: number | null; output: string }>((resolve) => {
        const child = spawn('weston-screenshooter', [], { env: clientEnv, cwd: shotDir, stdio: ['ignore', 'pipe', 'pipe'] });
        let output = '';
        child.stdout!.on('data', (c) => { output += c; });
        child.stderr!.on('data', (c) => { output += c; });
        const timer = setTimeout(() => child.kill('SIGKILL'), SCREENSHOT_TIMEOUT_MS);
        child.on('error', (e) => { output += e.message; });
        child.on('close', (code) => { clearTimeout(timer); resolve({ code, output }); });
      });
      const png = fs.readdirSync(shotDir).find((f) => f.endsWith('.png'));
      if (result.code !== 0 || !png) {
        throw new Error(`weston-screenshooter failed (exit ${result.code}, ${png ? 'a PNG' : 'no PNG'}): ${result.output.trim()}`);
      }
      return decodePng(fs.readFileSync(path.join(shotDir, png)));
    } finally {
      fs.rmSync(shotDir, { recursive: true, force: true });
    }
  };

  return { socket, env: clientEnv, pid: weston.pid!, log: () => log, commits, screenshot, stop };
}

/** Globals as host `wayland-info` lists them against `socket`: "interface version" lines, sorted. */
export function hostGlobals(socket: string): string[] {
  const r = spawnSync('wayland-info', [], {
    encoding: 'utf8', env: { ...process.env, XDG_RUNTIME_DIR: path.dirname(socket), WAYLAND_DISPLAY: path.basename(socket) },
  });
  if (r.status !== 0) throw new Error(`host wayland-info failed (${r.error?.message ?? r.status}): ${r.stderr}`);
  const globals = parseGlobals(r.stdout);
  if (globals.length === 0) throw new Error(`host wayland-info listed no globals:\n${r.stdout}`);
  return globals;
}

/** The globals in wayland-info's output: "interface version" lines, sorted. */
export function parseGlobals(text: string): string[] {
  return [...text.matchAll(/interface: '([^']+)',\s*version:\s*(\d+)/g)].map((m) => `${m[1]} ${m[2]}`).sort();
}

/** weston-simple-shm's window: 250x250, a 20-pixel white frame around its animated rings. */
export const SIMPLE_SHM_SIZE = 250;
const SIMPLE_SHM_PADDING = 20;
const WHITE = 0xffffff;

export interface SimpleShmWindow {
  /** Top-left corner on the output. */
  x: number;
  y: number;
  /** Distinct colours inside the frame (the rings: many; a blank or stale buffer: few). */
  colours: number;
}

/**
 * Where weston-simple-shm's window is in a screenshot: a 250x250 square whose outer 20 pixels
 * are all white (the padding simple-shm paints) and whose inside is not; undefined if none.
 */
export function findSimpleShmWindow(image: Image): SimpleShmWindow | undefined {
  const size = SIMPLE_SHM_SIZE;
  const pad = SIMPLE_SHM_PADDING;
  const white = (x: number, y: number) => rgbAt(image, x, y) === WHITE;
  const whiteBox = (x0: number, y0: number, w: number, h: number) => {
    for (let y = y0; y < y0 + h; y++) for (let x = x0; x < x0 + w; x++) if (!white(x, y)) return false;
    return true;
  };
  for (let y = 0; y + size <= image.height; y++) {
    let run = 0; // white pixels ending at x
    for (let x = image.width - 1; x >= 0; x--) {
      run = white(x, y) ? run + 1 : 0;
      // A top-left corner: white run of at least `size` to its right, not white above or left.
      if (run < size || x + size > image.width) continue;
      if ((y > 0 && white(x, y - 1)) || (x > 0 && white(x - 1, y))) continue;
      if (!whiteBox(x, y, size, pad) || !whiteBox(x, y + size - pad, size, pad)) continue;
      if (!whiteBox(x, y + pad, pad, size - 2 * pad) || !whiteBox(x + size - pad, y + pad, pad, size - 2 * pad)) continue;
      const colours = new Set<number>();
      for (let yy = y + pad; yy < y + size - pad; yy++) for (let xx = x + pad; xx < x + size - pad; xx++) colours.add(rgbAt(image, xx, yy));
      if (colours.size > 1) return { x, y, colours: colours.size };
    }
  }
  return undefined;
}
