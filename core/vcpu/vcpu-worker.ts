/**
 * One vCPU thread. It loops on KVM_RUN and handles each exit right here: devices with worker
 * handlers are called synchronously on this thread; main-thread devices and unclaimed accesses
 * are forwarded with a blocking call. Commands (pause, stop) arrive in a shared word, because
 * this thread never returns to its event loop while the guest runs.
 */
import { parentPort, workerData } from 'worker_threads';
import createDebug from 'debug';
import { native } from '../../native';
import type { AccessValue, UnhandledExit, WorkerDeviceHandler, WorkerDeviceModule } from '../../plugin-api';
import { allOnes } from '../bus/all-ones';
import { Bus } from '../bus/bus';
import { GuestMemory } from '../memory/guest-memory';
import { formatCrash } from './crash-report';
import {
  KVM_EXIT_FAIL_ENTRY, KVM_EXIT_HLT, KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_IO, KVM_EXIT_IO_OUT, KVM_EXIT_MMIO,
  KVM_EXIT_SHUTDOWN, KVM_EXIT_SYSTEM_EVENT, RUN_EXIT_REASON, RUN_INTERRUPTED, RUN_IO_COUNT, RUN_IO_DATA_OFFSET,
  RUN_IO_DIRECTION, RUN_IO_PORT, RUN_IO_SIZE, RUN_MMIO_DATA, RUN_MMIO_IS_WRITE, RUN_MMIO_LEN, RUN_MMIO_PHYS_ADDR,
} from './kvm-run';
import {
  CALL_FLAG, CALL_RESULT_HI, CALL_RESULT_LO, CMD_PAUSE, CMD_STOP, CTL_COMMAND, describeDevice,
  type VcpuEvent, type VcpuWorkerData, type WorkerDeviceSpec,
} from './protocol';
import { CALL_FAILED } from './vcpu-thread';

const data = workerData as VcpuWorkerData;
if (data.debug) createDebug.enable(data.debug);
const log = createDebug(`vmm:vcpu:${data.vcpu}`);
const port = parentPort!;
const post = (event: VcpuEvent): void => port.postMessage(event);

interface Handler {
  name: string;
  read(offset: number, size: number): AccessValue;
  write(offset: number, size: number, value: AccessValue): void;
}

class GuestStop extends Error {}

/** A worker device handler threw; the message names the device, its plugin and the access. */
class DeviceFailure extends Error {}

const control = new Int32Array(data.control);
const call = new Int32Array(data.call);
const mappings = data.regions.map((r) => native.mmapFd(data.memFd, r.size, r.fileOffset));
const memory = new GuestMemory(data.regions.map((r, i) => ({ guestAddress: r.guestAddress, size: r.size, buffer: mappings[i].buffer })));

/** Blocks this thread until the main thread has answered. */
function callMain(event: VcpuEvent, size: number): AccessValue {
  Atomics.store(call, CALL_FLAG, 0);
  post(event);
  while (Atomics.load(call, CALL_FLAG) === 0) Atomics.wait(call, CALL_FLAG, 0);
  if (Atomics.load(call, CALL_FLAG) === CALL_FAILED) throw new GuestStop();
  const lo = BigInt(call[CALL_RESULT_LO] >>> 0);
  const hi = BigInt(call[CALL_RESULT_HI] >>> 0);
  return size > 4 ? (hi << 32n) | lo : Number(lo);
}

function makeHandler(bus: 'pio' | 'mmio', spec: WorkerDeviceSpec): Handler {
  if (!spec.module) {
    return {
      name: spec.name,
      read: (offset, size) => callMain({ type: 'call', bus, index: spec.index, offset, size, isWrite: false, value: 0 }, size),
      write: (offset, size, value) => { callMain({ type: 'call', bus, index: spec.index, offset, size, isWrite: true, value }, size); },
    };
  }
  const label = describeDevice(spec.name, spec.owner);
  let handler: WorkerDeviceHandler;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const mod = require(spec.module) as WorkerDeviceModule;
    handler = mod.createDevice({
      vcpu: data.vcpu,
      options: spec.options,
      shared: spec.shared,
      memory,
      irq: {
        set: (gsi, level) => native.irqLine(data.vmFd, gsi, level ? 1 : 0),
        pulse: (gsi) => { native.irqLine(data.vmFd, gsi, 1); native.irqLine(data.vmFd, gsi, 0); },
      },
      log: createDebug(`vmm:device:${spec.name}`),
      postToMain: (message) => post({ type: 'device-message', bus, index: spec.index, message }),
    });
  } catch (error) {
    throw new Error(`${label}: its worker module ${spec.module} failed to create the device: ${(error as Error)?.message ?? String(error)}`);
  }
  const failure = (error: unknown, what: string, offset: number, size: number): Error => {
    if (error instanceof GuestStop) return error;
    return new DeviceFailure(`${label} failed on a guest ${size}-byte ${what} at offset 0x${offset.toString(16)}: ${(error as Error)?.message ?? String(error)}`);
  };
  const read = handler.read?.bind(handler);
  const write = handler.write?.bind(handler);
  return {
    name: spec.name,
    read: read
      ? (offset, size) => { try { return read(offset, size); } catch (error) { throw failure(error, 'read', offset, size); } }
      : (_o, size) => allOnes(size),
    write: write
      ? (offset, size, value) => { try { write(offset, size, value); } catch (error) { throw failure(error, 'write', offset, size); } }
      : () => undefined,
  };
}

function buildBus(kind: 'pio' | 'mmio', specs: WorkerDeviceSpec[]): Bus<Handler> {
  const bus = new Bus<Handler>(kind);
  for (const spec of specs) bus.insert(spec.base, spec.length, makeHandler(kind, spec));
  return bus;
}


/** `size` bytes little-endian: a number up to 4 bytes, a bigint above (an odd size reads only its own bytes). */
function readValue(view: DataView, offset: number, size: number): AccessValue {
  switch (size) {
    case 1: return view.getUint8(offset);
    case 2: return view.getUint16(offset, true);
    case 4: return view.getUint32(offset, true);
    case 8: return view.getBigUint64(offset, true);
    default: {
      let v = 0n;
      for (let i = Math.min(size, 8) - 1; i >= 0; i--) v = (v << 8n) | BigInt(view.getUint8(offset + i));
      return size <= 4 ? Number(v) : v;
    }
  }
}

/** Stores exactly `size` bytes of `value`, so an odd-sized read never leaves stale bytes beyond. */
function writeValue(view: DataView, offset: number, size: number, value: AccessValue): void {
  switch (size) {
    case 1: view.setUint8(offset, Number(value) & 0xff); return;
    case 2: view.setUint16(offset, Number(value) & 0xffff, true); return;
    case 4: view.setUint32(offset, Number(BigInt.asUintN(32, BigInt(value))), true); return;
    case 8: view.setBigUint64(offset, BigInt.asUintN(64, BigInt(value)), true); return;
    default: {
      let v = BigInt.asUintN(64, BigInt(value));
      for (let i = 0; i < Math.min(size, 8); i++) { view.setUint8(offset + i, Number(v & 0xffn)); v >>= 8n; }
    }
  }
}

function unclaimed(exit: UnhandledExit): AccessValue {
  const policy = callMain({ type: 'unhandled', exit }, 4);
  if (policy !== 0) throw new GuestStop();
  return allOnes(exit.size);
}

function main(): void {
  const runner = new native.VcpuRunner(data.vcpuFd, data.mmapSize);
  const run = new DataView(runner.kvmRun);
  let pio: Bus<Handler>;
  let mmio: Bus<Handler>;
  try {
    pio = buildBus('pio', data.pio);
    mmio = buildBus('mmio', data.mmio);
  } catch (error) {
    // The thread dies with this error (the main thread's start() reports it); leave no mapping.
    runner.close();
    for (const m of mappings) m.close();
    throw error;
  }
  post({ type: 'ready', threadId: runner.threadId });
  log('running');

  function handleIo(): void {
    const out = run.getUint8(RUN_IO_DIRECTION) === KVM_EXIT_IO_OUT;
    const size = run.getUint8(RUN_IO_SIZE);
    const port = run.getUint16(RUN_IO_PORT, true);
    const count = run.getUint32(RUN_IO_COUNT, true);
    const dataOffset = Number(run.getBigUint64(RUN_IO_DATA_OFFSET, true));
    // findIndex allocates nothing: this runs on every exit.
    const i = pio.findIndex(port);
    const device = i >= 0 ? pio.deviceAt(i) : undefined;
    const offset = i >= 0 ? port - pio.baseAt(i) : 0;
    // `rep ins/outs` arrive as one exit with `count` items side by side.
    for (let n = 0; n < count; n++) {
      const at = dataOffset + n * size;
      if (out) {
        const value = readValue(run, at, size);
        if (device) device.write(offset, size, value);
        else unclaimed({ vcpu: data.vcpu, kind: 'pio', address: port, size, isWrite: true, value });
      } else {
        const value = device ? device.read(offset, size)
          : unclaimed({ vcpu: data.vcpu, kind: 'pio', address: port, size, isWrite: false });
        writeValue(run, at, size, value);
      }
    }
  }

  function handleMmio(): void {
    const address = Number(run.getBigUint64(RUN_MMIO_PHYS_ADDR, true));
    const size = run.getUint32(RUN_MMIO_LEN, true);
    const isWrite = run.getUint8(RUN_MMIO_IS_WRITE) !== 0;
    const i = mmio.findIndex(address);
    const device = i >= 0 ? mmio.deviceAt(i) : undefined;
    const offset = i >= 0 ? address - mmio.baseAt(i) : 0;
    if (isWrite) {
      const value = readValue(run, RUN_MMIO_DATA, size);
      if (device) device.write(offset, size, value);
      else unclaimed({ vcpu: data.vcpu, kind: 'mmio', address, size, isWrite, value });
    } else {
      const value = device ? device.read(offset, size)
        : unclaimed({ vcpu: data.vcpu, kind: 'mmio', address, size, isWrite });
      writeValue(run, RUN_MMIO_DATA, size, value);
    }
  }

  try {
    for (;;) {
      const cmd = Atomics.load(control, CTL_COMMAND);
      if (cmd === CMD_STOP) break;
      if (cmd === CMD_PAUSE) {
        post({ type: 'paused' });
        while (Atomics.load(control, CTL_COMMAND) === CMD_PAUSE) Atomics.wait(control, CTL_COMMAND, CMD_PAUSE);
        post({ type: 'resumed' });
        continue;
      }
      const reason = runner.run();
      switch (reason) {
        case RUN_INTERRUPTED: continue;
        case KVM_EXIT_IO: handleIo(); continue;
        case KVM_EXIT_MMIO: handleMmio(); continue;
        case KVM_EXIT_HLT:
          // Only without an in-kernel irqchip; nothing can wake this vCPU again.
          post({ type: 'crash', message: formatCrash(data.vcpuFd, data.vcpu, 'halted with no way to be woken', run) });
          return;
        case KVM_EXIT_SHUTDOWN:
          post({ type: 'crash', message: formatCrash(data.vcpuFd, data.vcpu, 'triple fault (KVM_EXIT_SHUTDOWN)', run) });
          return;
        case KVM_EXIT_INTERNAL_ERROR:
        case KVM_EXIT_FAIL_ENTRY:
        case KVM_EXIT_SYSTEM_EVENT:
        default:
          post({ type: 'crash', message: formatCrash(data.vcpuFd, data.vcpu, describeExit(reason, run), run) });
          return;
      }
    }
  } catch (error) {
    if (!(error instanceof GuestStop)) post({ type: 'error', message: `vCPU ${data.vcpu}: ${(error as Error).message}` });
  } finally {
    runner.close();
    for (const m of mappings) m.close();
    log('stopped');
    post({ type: 'stopped' });
  }
}

function describeExit(reason: number, run: DataView): string {
  if (reason === KVM_EXIT_INTERNAL_ERROR) return `KVM internal error (suberror ${run.getUint32(32, true)}; 1 means an instruction KVM could not emulate)`;
  if (reason === KVM_EXIT_FAIL_ENTRY) return `VM entry failed (hardware reason 0x${run.getBigUint64(32, true).toString(16)})`;
  if (reason === KVM_EXIT_SYSTEM_EVENT) return `system event ${run.getUint32(32, true)}`;
  return `unexpected exit reason ${reason} (${run.getUint32(RUN_EXIT_REASON, true)})`;
}

main();
