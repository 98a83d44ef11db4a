/**
 * control: drive a running VM from outside over a Unix SOCK_SEQPACKET socket (`vmm ctl`).
 *
 *   vmm run --plugin control='{"socket":"/run/vmm/vm1.sock"}'
 *   vmm ctl --socket /run/vmm/vm1.sock status
 *
 * Options:
 *   socket          (required) path of the socket; created 0600, a stale one is replaced
 *   allowAnyUid     accept peers whose uid (SO_PEERCRED) is not the VMM's; default false
 *   maxRequestBytes longest request datagram; default 64 KiB
 *   maxFds          most descriptors with one request; default 8
 *   stopTimeoutMs   how long `stop` may take before it is logged as stuck; default 10000
 *   maxConnections  connections served at once; default 256
 *
 * The wire format is in protocol.ts (and the README); the server in server.ts; a client library
 * in client.ts. The socket exists from `beforeBoot` on: a live socket at the path fails the
 * start, before any vCPU runs. It stops accepting in `shutdown` and closes the last connections
 * (which still get the final state events) in `afterShutdown`. A process that exits without
 * shutting the VM down (`vmm run` on a second SIGTERM) still removes the socket file, from a
 * process 'exit' listener, so no stale socket is left behind.
 */
import type { Plugin, Vmm } from '../../plugin-api';
import { ControlServer, type ControlServerOptions } from './server';

export const PLUGIN_NAME = 'control';

const KiB = 1024;
/** Longest sun_path a Unix socket address holds, less the terminating NUL. */
const UNIX_PATH_MAX = 107;
/** SCM_MAX_FD: the kernel passes at most this many descriptors in one message. */
const SCM_MAX_FD = 253;

export const DEFAULT_OPTIONS: Readonly<Omit<ControlServerOptions, 'socket'>> = Object.freeze({
  allowAnyUid: false,
  maxRequestBytes: 64 * KiB,
  maxFds: 8,
  stopTimeoutMs: 10_000,
  maxConnections: 256,
});

/** Integer options and their allowed ranges. */
const INTEGER_RANGES: Readonly<Record<'maxRequestBytes' | 'maxFds' | 'stopTimeoutMs' | 'maxConnections', [number, number]>> = {
  maxRequestBytes: [256, 1024 * KiB],
  maxFds: [0, SCM_MAX_FD],
  stopTimeoutMs: [1, 3_600_000],
  maxConnections: [1, 4096],
};

const OPTION_NAMES = ['socket', ...Object.keys(DEFAULT_OPTIONS)];

/** Check the user's options and fill in defaults; throws an Error naming the option. */
export function parseOptions(input: unknown): ControlServerOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new Error(`options must be an object like {"socket":"/run/vmm.sock"}`);
  }
  const given = input as Record<string, unknown>;
  const unknown = Object.keys(given).filter((key) => !OPTION_NAMES.includes(key));
  if (unknown.length > 0) throw new Error(`unknown option '${unknown[0]}'; the options are ${OPTION_NAMES.join(', ')}`);

  const { socket } = given;
  if (typeof socket !== 'string' || socket === '') {
    throw new Error(`option 'socket' is required: the path of the control socket, e.g. {"socket":"/run/vmm.sock"}`);
  }
  if (Buffer.byteLength(socket) > UNIX_PATH_MAX) {
    throw new Error(`option 'socket' is ${Buffer.byteLength(socket)} bytes long; a Unix socket path may have at most ${UNIX_PATH_MAX}`);
  }
  const options: ControlServerOptions = { ...DEFAULT_OPTIONS, socket };
  if (given.allowAnyUid !== undefined) {
    if (typeof given.allowAnyUid !== 'boolean') throw new Error(`option 'allowAnyUid' must be true or false; got ${JSON.stringify(given.allowAnyUid)}`);
    options.allowAnyUid = given.allowAnyUid;
  }
  for (const [name, [min, max]] of Object.entries(INTEGER_RANGES) as [keyof typeof INTEGER_RANGES, [number, number]][]) {
    const value = given[name];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new Error(`option '${name}' must be a whole number from ${min} to ${max}; got ${JSON.stringify(value)}`);
    }
    options[name] = value;
  }
  return options;
}

const plugin: Plugin = {
  name: PLUGIN_NAME,
  apply(vmm: Vmm, input: unknown) {
    const options = parseOptions(input);
    const server = new ControlServer(vmm, options, vmm.logger(PLUGIN_NAME));
    // Synchronous, as 'exit' listeners must be: closes the fds and unlinks our socket file.
    const onProcessExit = () => server.close();
    vmm.hooks.beforeBoot.tapPromise(PLUGIN_NAME, async () => {
      server.start();
      process.on('exit', onProcessExit);
    });
    vmm.hooks.stateChange.tap(PLUGIN_NAME, (from, to) => server.publishState(from, to));
    vmm.hooks.deviceEvent.tap(PLUGIN_NAME, (event) => server.publishDevice(event));
    vmm.hooks.shutdown.tapPromise(PLUGIN_NAME, async () => server.stopListening());
    vmm.hooks.afterShutdown.tap(PLUGIN_NAME, () => {
      process.removeListener('exit', onProcessExit);
      server.close();
    });
  },
};

export default plugin;
