/**
 * control: drive a running VM from outside over a Unix SOCK_SEQPACKET socket (`vmm ctl`).
 *
 *   vmm run --plugin control='{"socket":"/run/vmm/vm1.sock"}'
 *   vmm ctl --socket /run/vmm/vm1.sock status
 *
 * Options:
 *   socket          (required) path of the socket; created 0600, a stale one is replaced; a
 *                   relative path is relative to the config file (the working directory for --plugin)
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
import type { FromSchema, OptionsSchema, Plugin, Vmm } from '../../plugin-api';
import { checkOptions } from '../../core/plugins/options';
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

// (What each one means is in the module comment; the description is what errors say it must be.)
const integer = (min: number, max: number, fallback: number) => ({
  type: 'integer', minimum: min, maximum: max, default: fallback, description: `a whole number from ${min} to ${max}`,
}) as const;

/** The options, checked by vmm before the plugin is applied (core/plugins/options.ts). */
export const OPTIONS_SCHEMA = {
  type: 'object',
  properties: {
    socket: {
      type: 'string',
      minLength: 1,
      resolvePath: true,
      description: 'the path of the control socket, e.g. {"socket":"/run/vmm.sock"} (relative: to the config file)',
    },
    allowAnyUid: { type: 'boolean', default: DEFAULT_OPTIONS.allowAnyUid, description: 'true or false' },
    maxRequestBytes: integer(256, 1024 * KiB, DEFAULT_OPTIONS.maxRequestBytes),
    maxFds: integer(0, SCM_MAX_FD, DEFAULT_OPTIONS.maxFds),
    stopTimeoutMs: integer(1, 3_600_000, DEFAULT_OPTIONS.stopTimeoutMs),
    maxConnections: integer(1, 4096, DEFAULT_OPTIONS.maxConnections),
  },
  required: ['socket'],
  additionalProperties: false,
} as const satisfies OptionsSchema;

/**
 * Check the user's options (the schema above, then the socket path's length in bytes, which a
 * schema cannot count) and fill in defaults; throws an Error naming the option.
 */
export function parseOptions(input: unknown, baseDir?: string): ControlServerOptions {
  const options: ControlServerOptions = checkOptions<FromSchema<typeof OPTIONS_SCHEMA>>(OPTIONS_SCHEMA, input, baseDir);
  const bytes = Buffer.byteLength(options.socket);
  if (bytes > UNIX_PATH_MAX) {
    throw new Error(`option 'socket' is ${bytes} bytes long; a Unix socket path may have at most ${UNIX_PATH_MAX}`);
  }
  return options;
}

// `satisfies`, not a type annotation: apply takes anything (it checks), so tests can hand it bad options.
const plugin = {
  name: PLUGIN_NAME,
  schema: OPTIONS_SCHEMA,
  apply(vmm: Vmm, input: unknown) {
    // Checked (the socket path resolved) already when vmm applies the plugin; again for callers
    // that apply it directly.
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
} satisfies Plugin<typeof OPTIONS_SCHEMA>;

export default plugin;
