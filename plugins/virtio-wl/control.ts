/**
 * Control-channel commands (spec §5.3, Spectrum's `crosvm wl add`), through the control plugin's
 * controlCommand hook:
 *
 *   wl add NAME PATH        a listening socket: every context on NAME connects to PATH
 *   wl add NAME [--fd]      a connected stream socket sent with the request (SCM_RIGHTS;
 *                           `vmm ctl --fd N wl add NAME`): used by exactly one context
 *   wl list                 every name with its kind, path and whether it was consumed
 *   wl remove NAME          forget a name (an unused fd is closed; an open context stays)
 *
 * NAME may contain `%d`: the lowest number that makes the name unused replaces it. `wl add`
 * replies with the chosen name, which the caller passes on to the guest (NEW_CTX_NAMED).
 * `add wl …` (crosvm's other spelling) is accepted too.
 */
import type { ControlContext, ControlReply, ControlRequest, Vmm } from '../../plugin-api';
import { takeFd } from '../control/fds';
import { CONTROL_ERRORS, ControlCommandError } from '../control/protocol';
import type { WlSocketRegistry } from './sockets';
import { closeQuietly } from './sockets';

/** Error codes of the wl commands (beside the control channel's own). */
export const WL_ERRORS = Object.freeze({
  /** `wl remove` of a name that does not exist. */
  UNKNOWN_SOCKET: 'ERR_WL_UNKNOWN_SOCKET',
  /** The name is taken, too long, or malformed. */
  BAD_NAME: 'ERR_WL_BAD_NAME',
});

const USAGE = 'usage: wl add NAME PATH | wl add NAME --fd (with a descriptor) | wl list | wl remove NAME';

export function handleWlCommand(vmm: Vmm, device: string, sockets: WlSocketRegistry, request: ControlRequest, context: ControlContext): ControlReply | undefined {
  let args: string[];
  if (request.command === 'wl') args = request.args;
  else if (request.command === 'add' && request.args[0] === 'wl') args = ['add', ...request.args.slice(1)];
  else return undefined;
  const [sub, ...rest] = args;
  switch (sub) {
    case 'add': return add(vmm, device, sockets, rest, context);
    case 'list':
      if (rest.length > 0) throw new ControlCommandError(CONTROL_ERRORS.BAD_ARGS, `'wl list' takes no arguments. ${USAGE}`);
      return { sockets: sockets.list() };
    case 'remove': {
      if (rest.length !== 1) throw new ControlCommandError(CONTROL_ERRORS.BAD_ARGS, `'wl remove' takes one name. ${USAGE}`);
      if (!sockets.remove(rest[0])) throw new ControlCommandError(WL_ERRORS.UNKNOWN_SOCKET, `no wayland socket named '${rest[0]}'.`);
      vmm.hooks.deviceEvent.call({ device, type: 'socket-removed', name: rest[0] });
      return { removed: rest[0] };
    }
    default:
      throw new ControlCommandError(CONTROL_ERRORS.BAD_ARGS, `unknown wl command '${sub ?? ''}'. ${USAGE}`);
  }
}

function add(vmm: Vmm, device: string, sockets: WlSocketRegistry, args: string[], context: ControlContext): ControlReply {
  const [template, ...rest] = args;
  if (template === undefined) throw new ControlCommandError(CONTROL_ERRORS.BAD_ARGS, `'wl add' needs a name. ${USAGE}`);
  const byFd = rest.length === 0 ? context.fds.length > 0 : rest[0] === '--fd';
  let name: string;
  if (byFd) {
    // `--fd` may carry the number the caller used locally; the descriptor itself came with the request.
    if (rest.length > 2) throw new ControlCommandError(CONTROL_ERRORS.BAD_ARGS, `too many arguments. ${USAGE}`);
    const fd = takeFd(context, 'socket', 'the connection socket');
    try {
      name = sockets.add(template, { kind: 'non-listening', fd, consumed: false });
    } catch (error) {
      closeQuietly(fd);
      throw new ControlCommandError(WL_ERRORS.BAD_NAME, (error as Error).message);
    }
    vmm.hooks.deviceEvent.call({ device, type: 'socket-added', name, kind: 'non-listening' });
    return { name, kind: 'non-listening' };
  }
  if (rest.length !== 1 || rest[0] === '') throw new ControlCommandError(CONTROL_ERRORS.BAD_ARGS, `'wl add NAME PATH' needs exactly one path. ${USAGE}`);
  try {
    name = sockets.add(template, { kind: 'listening', path: rest[0] });
  } catch (error) {
    throw new ControlCommandError(WL_ERRORS.BAD_NAME, (error as Error).message);
  }
  vmm.hooks.deviceEvent.call({ device, type: 'socket-added', name, kind: 'listening', path: rest[0] });
  return { name, kind: 'listening', path: rest[0] };
}
