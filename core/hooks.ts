/**
 * Every extension point of the VM, declared once. `plugin-api.d.ts` documents each hook; a hook
 * missing there does not exist. The object is frozen so no hook can be added at run time.
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

export function createHooks(): VmmHooks {
  return Object.freeze({
    // configuration
    configure: new SyncWaterfallHook<[VmConfig]>(['config'], 'configure'),

    // devices and boot
    createDevices: new AsyncSeriesHook<[Vmm]>(['vmm'], 'createDevices'),
    kernelCmdline: new SyncWaterfallHook<[string[]]>(['cmdline'], 'kernelCmdline'),
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

/**
 * Tapable names every tap; we use that to say which plugin threw. Interceptors see each tap
 * before it runs, so the last one seen when an exception surfaces is the culprit.
 */
export function trackCurrentTap(hooks: VmmHooks): { current(): string | undefined } {
  let current: string | undefined;
  for (const [hookName, hook] of Object.entries(hooks)) {
    (hook as SyncHook<unknown[]>).intercept({
      tap: (tap) => { current = `${tap.name} (hook ${hookName})`; },
    });
  }
  return { current: () => current };
}
