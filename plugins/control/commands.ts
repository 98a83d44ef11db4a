/**
 * The built-in commands: status, pause, resume, stop, events. Everything else goes to the
 * plugins through the `controlCommand` hook (see server.ts).
 */
import type { Vmm } from '../../plugin-api';
import {
  CONTROL_ERRORS, ControlCommandError, type EventsResult, type StateResult, type StatusResult,
} from './protocol';

export interface CommandRequest {
  command: string;
  args: string[];
}

/** What a built-in command may do besides answering. */
export interface CommandScope {
  vmm: Vmm;
  /** This connection receives events from the moment the reply has been queued. */
  subscribe(): void;
  /** Stop the VM (once); call only after the reply has been queued. */
  stopVm(): void;
  /** Connections the control server serves now (this one included). */
  connections: number;
}

export interface CommandOutcome {
  result: Record<string, unknown>;
  /** Runs right after the reply is queued, before the next request of the connection. */
  after?: () => void;
}

type Builtin = (scope: CommandScope, request: CommandRequest) => CommandOutcome | Promise<CommandOutcome>;

export const BUILTIN_COMMANDS: Readonly<Record<string, Builtin>> = Object.freeze({
  status: (scope, request) => {
    noArgs(request);
    const { vmm } = scope;
    const result: StatusResult = {
      state: vmm.state,
      vcpus: vmm.config.cpus,
      memory: vmm.config.memory,
      devices: vmm.devices.map(({ name, bus, base, length }) => ({ name, bus, base, length })),
      plugins: vmm.plugins.map(({ name, source }) => ({ name, source })),
      pid: process.pid,
      connections: scope.connections,
    };
    return { result: { ...result } };
  },

  pause: async (scope, request) => {
    noArgs(request);
    await scope.vmm.pause();
    return { result: { ...stateOf(scope.vmm) } };
  },

  resume: async (scope, request) => {
    noArgs(request);
    await scope.vmm.resume();
    return { result: { ...stateOf(scope.vmm) } };
  },

  // Replies first, then stops: the reply could not be sent once the VM (and this server) is gone.
  stop: (scope, request) => {
    noArgs(request);
    const { state } = scope.vmm;
    if (state === 'configured' || state === 'booting') {
      throw new ControlCommandError(CONTROL_ERRORS.VM_STATE, `cannot stop a VM that is ${state}; try again once it runs.`);
    }
    const stopping = state === 'running' || state === 'paused' ? 'stopping' : state;
    return { result: { state: stopping } satisfies StateResult, after: () => scope.stopVm() };
  },

  events: (scope, request) => {
    noArgs(request);
    return { result: { subscribed: true } satisfies EventsResult, after: () => scope.subscribe() };
  },
});

export const BUILTIN_COMMAND_NAMES: readonly string[] = Object.freeze(Object.keys(BUILTIN_COMMANDS));

export function builtinCommand(name: string): Builtin | undefined {
  return Object.prototype.hasOwnProperty.call(BUILTIN_COMMANDS, name) ? BUILTIN_COMMANDS[name] : undefined;
}

function noArgs(request: CommandRequest): void {
  if (request.args.length > 0) {
    throw new ControlCommandError(CONTROL_ERRORS.BAD_ARGS, `'${request.command}' takes no arguments; got ${request.args.length}.`);
  }
}

function stateOf(vmm: Vmm): StateResult {
  return { state: vmm.state };
}
