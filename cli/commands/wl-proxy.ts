/**
 * `vmm wl-proxy --socket CONTROL --listen WAYLAND_SOCKET --notify NOTIFY_SOCKET [--name-prefix P]`:
 * the accept proxy for a Wayland compositor inside a VM (plugins/virtio-wl/proxy.ts).
 *
 *   vmm run --plugin control='{"socket":"/run/vm.sock"}' \
 *           --plugin virtio-wl='{"sockets":{"wl-proxy":"/run/wl-notify.sock"}}' …
 *   vmm wl-proxy --socket /run/vm.sock --listen /run/user/1000/wayland-vm --notify /run/wl-notify.sock
 *   WAYLAND_DISPLAY=/run/user/1000/wayland-vm wayland-info
 *
 * For every client accepted on --listen it sends `wl add PREFIX%d --fd` with the connection and
 * writes the chosen name as one line `NAME\n` to every stream connected to --notify (the guest
 * opens NEW_CTX_NAMED "wl-proxy" to read them, then NEW_CTX_NAMED NAME to serve that client).
 *
 * Exit codes: 0 stopped by SIGINT/SIGTERM (both socket files removed); 1 the VMM went away or a
 * socket failed; 2 usage (bad option, a path in use); 3 cannot reach the control socket.
 */
import { Command } from 'commander';
import type { WlProxy as WlProxyType } from '../../plugins/virtio-wl/proxy';
import { EXIT_ERROR, EXIT_OK, EXIT_USAGE, reportError } from '../exit-codes';

export const WL_PROXY_EXIT_CONNECT = 3;

export interface WlProxyFlags {
  socket: string;
  listen: string;
  notify: string;
  namePrefix?: string;
}

export function addWlProxyCommand(program: Command, verbose: () => boolean): Command {
  return program
    .command('wl-proxy')
    .description('accept Wayland clients on a host socket and hand each to a VM (virtio-wl) as wl-conn-N')
    .requiredOption('--socket <path>', "the VM's control socket (the control plugin's socket option)")
    .requiredOption('--listen <path>', 'the Wayland socket to accept clients on (WAYLAND_DISPLAY may be this absolute path)')
    .requiredOption('--notify <path>', 'the notification socket to serve: one line "NAME\\n" per new connection (give it to virtio-wl as a named socket)')
    .option('--name-prefix <prefix>', "prefix of the socket names ('%d' is appended)", 'wl-conn-')
    .addHelpText('after', [
      '',
      'Notification stream: ASCII lines "NAME\\n", one per accepted client, in accept order; nothing else.',
      '',
      'Exit codes:',
      '  0  stopped by SIGINT or SIGTERM',
      '  1  the VMM went away, or a socket failed',
      '  2  usage error (bad option, a path already in use)',
      '  3  cannot connect to the control socket',
    ].join('\n'))
    .action(async (flags: WlProxyFlags) => {
      process.exitCode = await runWlProxy(flags, verbose());
    });
}

/** Run until a signal or a fatal error; resolves with the exit code. */
export async function runWlProxy(flags: WlProxyFlags, verbose: boolean): Promise<number> {
  // Loaded only now: it pulls in the native addon, which --help and usage errors must not need.
  const { WlProxy, WlProxyError } = await import('../../plugins/virtio-wl/proxy');
  let proxy: WlProxyType;
  try {
    proxy = await WlProxy.start({ control: flags.socket, listen: flags.listen, notify: flags.notify, namePrefix: flags.namePrefix });
  } catch (error) {
    reportError(error, verbose);
    const code = (error as { code?: unknown })?.code;
    if (code === 'ERR_CONNECT') return WL_PROXY_EXIT_CONNECT;
    if (error instanceof WlProxyError && (code === 'ERR_LISTEN' || code === 'ERR_BAD_NAME')) return EXIT_USAGE;
    return EXIT_ERROR;
  }
  proxy.on('connection', ({ name }: { name: string }) => {
    if (verbose) process.stderr.write(`vmm wl-proxy: new client → ${name}\n`);
  });
  proxy.on('rejected', ({ error }: { error: Error }) => {
    process.stderr.write(`vmm wl-proxy: a client was dropped: ${error.message}\n`);
  });
  return new Promise<number>((resolve) => {
    let signalled = false;
    const onSignal = () => { signalled = true; proxy.close(); };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    proxy.once('close', (error?: Error) => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      if (error && !signalled) {
        reportError(error, verbose);
        resolve(EXIT_ERROR);
      } else resolve(EXIT_OK);
    });
    // Only now that the signals are handled: whoever waits for this line may signal at once.
    process.stderr.write(`vmm wl-proxy: accepting on ${flags.listen}; notifications on ${flags.notify}\n`);
  });
}
