/**
 * Every extension point of the VM, declared once. `plugin-api.d.ts` documents each hook; a hook
 * missing there does not exist. The object is frozen so no hook can be added at run time.
 *
 * `instrumentHooks` wraps every tap as it is registered (tapable's `register` interceptor), so
 * that each tap knows the plugin that owns it and an exception can name that plugin and the hook:
 *   - start-up hooks rethrow it as a PluginError naming both (start-up then fails);
 *   - guarded hooks (those that run while the VM runs or ends) hand it to `onFailure` and go on
 *     with the next tap, so one plugin's bug never skips another plugin's tap or reaches the
 *     code that called the hook (a device emitting an event, the teardown);
 *   - controlCommand errors pass through untouched: the control server answers with them.
 */
import {
  AsyncSeriesBailHook,
  AsyncSeriesHook,
  SyncBailHook,
  SyncHook,
  SyncWaterfallHook,
} from 'tapable';
import type {
  ControlContext,
  ControlReply,
  DeviceEvent,
  ControlRequest,
  UnclaimedPolicy,
  UnhandledExit,
  VmConfig,
  VmExit,
  Vmm,
  VmmHooks,
  VmState,
} from '../plugin-api';
import { messageOf, PluginError } from './errors';

export type HookName = keyof VmmHooks;

export function createHooks(): VmmHooks {
  return Object.freeze({
    // configuration
    configure: new SyncWaterfallHook<[VmConfig], VmConfig | undefined>(['config'], 'configure'),

    // devices and boot
    createDevices: new AsyncSeriesHook<[Vmm]>(['vmm'], 'createDevices'),
    kernelCmdline: new SyncWaterfallHook<[string[]], string[] | undefined>(['cmdline'], 'kernelCmdline'),
    beforeBoot: new AsyncSeriesHook<[Vmm]>(['vmm'], 'beforeBoot'),
    afterBoot: new SyncHook<[Vmm]>(['vmm'], 'afterBoot'),

    // running
    stateChange: new SyncHook<[VmState, VmState]>(['from', 'to'], 'stateChange'),
    pause: new SyncHook<[]>([], 'pause'),
    resume: new SyncHook<[]>([], 'resume'),
    unhandledExit: new SyncBailHook<[UnhandledExit], UnclaimedPolicy | undefined>(['exit'], 'unhandledExit'),
    deviceEvent: new SyncHook<[DeviceEvent]>(['event'], 'deviceEvent'),
    controlCommand: new AsyncSeriesBailHook<[ControlRequest, ControlContext], ControlReply | undefined>(
      ['request', 'context'], 'controlCommand'),

    // end
    shutdown: new AsyncSeriesHook<[VmExit]>(['exit'], 'shutdown'),
    afterShutdown: new SyncHook<[VmExit]>(['exit'], 'afterShutdown'),
    failed: new SyncHook<[Error]>(['error'], 'failed'),
  });
}

/** A tap, and the plugin it belongs to (undefined: vmm's own, or nobody we know). */
export interface TapOwner {
  hook: HookName;
  tap: string;
  plugin: string | undefined;
}

/**
 * Guarded hooks, and what a failed tap counts as returning (unhandledExit: 'stop', so the access
 * is refused at once).
 */
const GUARDED: Partial<Record<HookName, { fallback: unknown }>> = {
  stateChange: { fallback: undefined },
  pause: { fallback: undefined },
  resume: { fallback: undefined },
  unhandledExit: { fallback: 'stop' },
  deviceEvent: { fallback: undefined },
  shutdown: { fallback: undefined },
  afterShutdown: { fallback: undefined },
  failed: { fallback: undefined },
};

/** Hooks whose errors are not ours to rename. */
const PASS_THROUGH: ReadonlySet<HookName> = new Set(['controlCommand']);

export interface HookInstrumentation {
  /** The plugin whose apply() runs now: taps registered meanwhile are its own. */
  applying: string | undefined;
  /** The tap running now (the innermost synchronous one, else the async one started last). */
  current(): TapOwner | undefined;
}

/** "plugin 'x'" or, for a tap no plugin owns, "tap 'y'". */
export function ownerName(owner: TapOwner): string {
  return owner.plugin !== undefined ? `plugin '${owner.plugin}'` : `tap '${owner.tap}'`;
}

/** The error a failed tap becomes: a PluginError naming the plugin and the hook. */
export function tapError(owner: TapOwner, error: unknown): PluginError {
  if (error instanceof PluginError) return error;
  return new PluginError(`${ownerName(owner)} failed in its ${owner.hook} hook: ${messageOf(error)}`, { cause: error });
}

type TapFn = (...args: unknown[]) => unknown;
interface TapInfo { type: 'sync' | 'async' | 'promise'; name: string; fn: TapFn }

export function instrumentHooks(
  hooks: VmmHooks,
  onFailure: (owner: TapOwner, error: PluginError) => void,
): HookInstrumentation {
  const syncStack: TapOwner[] = [];
  let asyncCurrent: TapOwner | undefined;
  const state: HookInstrumentation = {
    applying: undefined,
    current: () => syncStack[syncStack.length - 1] ?? asyncCurrent,
  };

  for (const [name, hook] of Object.entries(hooks) as [HookName, SyncHook<unknown[]>][]) {
    const guard = GUARDED[name];
    const passThrough = PASS_THROUGH.has(name);
    hook.intercept({
      register: (tap) => {
        const info = tap as unknown as TapInfo;
        const owner: TapOwner = { hook: name, tap: info.name, plugin: state.applying ?? state.current()?.plugin };
        /** What an exception becomes: rethrown (start-up hooks) or reported and replaced by the fallback. */
        const failed = (error: unknown): { rethrow: unknown } | { value: unknown } => {
          if (passThrough) return { rethrow: error };
          const named = tapError(owner, error);
          if (!guard) return { rethrow: named };
          onFailure(owner, named);
          return { value: guard.fallback };
        };
        const fn = info.fn;
        // An async tap is "current" from its start until it settles.
        const settle = (): void => { if (asyncCurrent === owner) asyncCurrent = undefined; };
        let wrapped: TapFn;
        if (info.type === 'sync') {
          wrapped = (...args) => {
            syncStack.push(owner);
            try {
              return fn(...args);
            } catch (error) {
              const out = failed(error);
              if ('rethrow' in out) throw out.rethrow;
              return out.value;
            } finally {
              syncStack.pop();
            }
          };
        } else if (info.type === 'promise') {
          wrapped = (...args) => {
            asyncCurrent = owner;
            syncStack.push(owner);
            let result: unknown;
            try {
              result = fn(...args);
            } catch (error) {
              result = Promise.reject(error);
            } finally {
              syncStack.pop();
            }
            return Promise.resolve(result).then((value) => {
              settle();
              return value;
            }, (error: unknown) => {
              settle();
              const out = failed(error);
              if ('rethrow' in out) throw out.rethrow;
              return out.value;
            });
          };
        } else {
          wrapped = (...args) => {
            const callback = args.pop() as (error?: unknown, result?: unknown) => void;
            const done = (error?: unknown, result?: unknown): void => {
              settle();
              if (!error) { callback(null, result); return; }
              const out = failed(error);
              if ('rethrow' in out) callback(out.rethrow);
              else callback(null, out.value);
            };
            asyncCurrent = owner;
            syncStack.push(owner);
            try {
              fn(...args, done);
            } catch (error) {
              done(error);
            } finally {
              syncStack.pop();
            }
          };
        }
        return { ...tap, fn: wrapped } as typeof tap;
      },
    });
  }
  return state;
}
