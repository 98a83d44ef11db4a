/**
 * The virtio-wl device (spec §1, §3): the out queue carries guest commands, answered in order;
 * the in queue carries host events (VFD_NEW, VFD_RECV, VFD_HUP), one per posted buffer.
 *
 * Never blocks the event loop:
 *   - A SEND that the host socket cannot take at once keeps its chain (and every chain behind
 *     it) off the used ring until the socket is writable and the message is fully written.
 *   - Host fds are read one message at a time, only while the guest has in-queue buffers; a
 *     message turns into at most 29 events (VFD_NEW × fds, then RECV). While events wait for
 *     buffers, every host fd stops being watched, so host data stays in the kernel.
 *   - End of file becomes VFD_HUP, queued after the events of the data read before it.
 *   - NEW_CTX on a listener whose backlog is full waits (PENDING, retried on a timer) for at
 *     most limits.connectTimeoutMs; the connect itself never blocks.
 *   - At most OUT_COMMANDS_PER_TURN commands (or OUT_BYTES_PER_TURN bytes) per event-loop
 *     turn; the rest runs on a later turn (setImmediate). A queue's pop() may also return null
 *     because the queue spent its own per-turn budget: it calls queueNotify again later, so
 *     null means "nothing more now", and queueNotify always means "look again".
 *
 * Under VIRTIO_F_RING_EVENT_IDX the driver notifies only when its avail idx passes the
 * avail_event the device publishes (virtio 1.2 §2.7.10), so every drain ends by re-arming
 * (enableNotification) and looking once more; a drain that stops early (waiting, or out of
 * budget) is resumed by the device itself.
 *
 * Guest-sized input is bounded before it is read (chain-bytes.ts): a command reads at most its
 * largest struct, a SEND at most MAX_SEND_CHAIN_BYTES (else RESP_ERR, nothing read). Resources
 * are bounded by the plugin's limits (limits.ts).
 *
 * vmm's per-call flags extension (VIRTIO_WL_F_SEND_DONTWAIT, guest/linux/virtio_wl/EXTENSION.md),
 * when the driver acks it: a SEND marked DONTWAIT that the host fd takes nothing of is answered
 * WOULD_BLOCK (nothing sent), and the VFD gets one VFD_WRITABLE event once the fd is writable.
 * One the host takes part of is accepted (RESP_OK) and its rest held on the VFD (heldSend, at
 * most MAX_HELD_SEND_BYTES over all VFDs) until the fd takes it; meanwhile DONTWAIT sends to
 * that VFD are answered WOULD_BLOCK and a blocking one waits behind it. A DONTWAIT SEND queued
 * behind a blocking SEND that waits still waits with it: chains are answered in order.
 * Without the feature, the flag is ignored and every SEND behaves as crosvm's.
 */
import type { Debugger } from 'debug';
import { native } from '../../native';
import type {
  GuestMemory, GuestShmMapping, VirtioActivation, VirtioChain, VirtioDevice, VirtioQueue,
} from '../../plugin-api';
import { readableBytes } from './chain-bytes';
import {
  IN_BUFFER_LEN, MAX_COMMAND_BYTES, MAX_HELD_SEND_BYTES, MAX_SEND_CHAIN_BYTES, NEXT_VFD_ID_BASE, OUT_BYTES_PER_TURN,
  OUT_COMMANDS_PER_TURN,
  PAGE_SIZE, VFD_ID_HOST_MASK, VIRTIO_ID_WL, VIRTIO_WL_CMD_VFD_CLOSE,
  VIRTIO_WL_CMD_VFD_DMABUF_SYNC, VIRTIO_WL_CMD_VFD_NEW, VIRTIO_WL_CMD_VFD_NEW_CTX, VIRTIO_WL_CMD_VFD_NEW_CTX_NAMED,
  VIRTIO_WL_CMD_VFD_NEW_DMABUF, VIRTIO_WL_CMD_VFD_NEW_PIPE, VIRTIO_WL_CMD_VFD_SEND, VIRTIO_WL_CMD_VFD_SEND_FOREIGN_ID,
  VIRTIO_WL_CTRL_FLAG_DONTWAIT, VIRTIO_WL_F_SEND_DONTWAIT, VIRTIO_WL_F_TRANS_FLAGS, VIRTIO_WL_RESP_ERR,
  VIRTIO_WL_RESP_INVALID_CMD, VIRTIO_WL_RESP_INVALID_FLAGS, VIRTIO_WL_RESP_INVALID_ID, VIRTIO_WL_RESP_INVALID_TYPE,
  VIRTIO_WL_RESP_OK, VIRTIO_WL_RESP_OUT_OF_MEMORY, VIRTIO_WL_RESP_WOULD_BLOCK,
  VIRTIO_WL_VFD_CONTROL, VIRTIO_WL_VFD_MAP, VIRTIO_WL_VFD_READ, VIRTIO_WL_VFD_WRITE, VIRTWL_QUEUE_COUNT,
  VIRTWL_QUEUE_SIZE, VIRTWL_SEND_MAX_ALLOCS, VIRTWL_VQ_IN, VIRTWL_VQ_OUT,
} from './constants';
import type { WlLimits } from './limits';
import {
  decodeCtrlVfd, decodeType, decodeVfdNew, decodeVfdNewNamed, decodeVfdSend, encodeHup, encodeRecv,
  encodeRespVfdNew, encodeSimpleResp, encodeVfdNewEvent, encodeWritable,
} from './protocol';
import { OutgoingSend } from './send';
import { closeQuietly, WlSocketError, type WlSocketRegistry } from './sockets';
import { classifyHostFd, Vfd } from './vfd';

/** What the device needs from the VMM. */
export interface WlDeviceEnv {
  /** vmm.mapGuestShm */
  mapShm(fd: number, size: number): GuestShmMapping;
  sockets: WlSocketRegistry;
  limits: WlLimits;
  log: Debugger;
}

/** A command's outcome: reply bytes, or PENDING (the chain completes later). */
const PENDING = Symbol('pending');
type Outcome = Uint8Array | typeof PENDING;

/** One event waiting for an in-queue buffer. */
interface InEvent {
  /** The VFD the event is about (dropped if the guest closes it first). */
  target: number;
  bytes: Uint8Array;
  /** RECV only: the new host VFDs it carries. */
  ids?: number[];
}

/** A NEW_CTX waiting for a listener whose backlog is full. */
interface PendingContext {
  chain: VirtioChain;
  id: number;
  name: string;
  deadline: number;
  /** Next retry delay (ms), doubling up to CONNECT_RETRY_MAX_MS. */
  delay: number;
  timer?: NodeJS.Timeout;
}

const MAX_HOST_ID = 0x7fffffff;
/** The largest page-rounded size a u32 `size` field can report. */
const MAX_ALLOC = 0xfffff000;
/** Retry delays of a connect to a full backlog: 1, 2, 4 … ms, then every 100 ms. */
const CONNECT_RETRY_FIRST_MS = 1;
const CONNECT_RETRY_MAX_MS = 100;

function simple(type: number): Uint8Array {
  return encodeSimpleResp(type);
}

export class WlDevice implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_WL;
  /**
   * TRANS_FLAGS and vmm's SEND_DONTWAIT; no SEND_FENCES (no fences), no USE_SHMEM (pfns are
   * guest-physical).
   */
  readonly features = (1n << BigInt(VIRTIO_WL_F_TRANS_FLAGS)) | (1n << BigInt(VIRTIO_WL_F_SEND_DONTWAIT));
  readonly queueMaxSizes: readonly number[] = new Array<number>(VIRTWL_QUEUE_COUNT).fill(VIRTWL_QUEUE_SIZE);
  /** §1.4: no configuration space. */
  readonly config = new Uint8Array(0);

  private memory: GuestMemory | undefined;
  private inQueue: VirtioQueue | undefined;
  private outQueue: VirtioQueue | undefined;
  private transition = false;
  /** The driver acked VIRTIO_WL_F_SEND_DONTWAIT. */
  private dontwait = false;
  private readonly vfds = new Map<number, Vfd>();
  private nextHostId = NEXT_VFD_ID_BASE;
  private readonly backlog: InEvent[] = [];
  /** Host fds are not watched for input (events wait, or the guest has no in-queue buffer). */
  private readPaused = false;
  /** The SEND the out queue waits for (the host did not take it all). */
  private blocked: OutgoingSend | undefined;
  /** The NEW_CTX the out queue waits for (the listener's backlog is full). */
  private connecting: PendingContext | undefined;
  /** A later turn of processOut, once this one used its budget. */
  private outTurn: NodeJS.Immediate | undefined;
  private readonly onReady = (vfd: Vfd, events: number, status: number): void => this.ready(vfd, events, status);

  constructor(private readonly env: WlDeviceEnv) {}

  // --- VirtioDevice --------------------------------------------------------------------------

  activate(activation: VirtioActivation): void {
    this.clear();
    this.transition = (activation.features & (1n << BigInt(VIRTIO_WL_F_TRANS_FLAGS))) !== 0n;
    this.dontwait = (activation.features & (1n << BigInt(VIRTIO_WL_F_SEND_DONTWAIT))) !== 0n;
    this.memory = activation.memory;
    this.inQueue = activation.queues[VIRTWL_VQ_IN];
    this.outQueue = activation.queues[VIRTWL_VQ_OUT];
    this.env.log('activated (transition flags %s, send dontwait %s)', this.transition, this.dontwait);
  }

  queueNotify(index: number): void {
    if (index === VIRTWL_VQ_OUT) this.processOut();
    else if (index === VIRTWL_VQ_IN) this.pumpIn();
  }

  reset(): void {
    this.clear();
  }

  shutdown(): void {
    this.clear();
  }

  /** VFDs the device holds (tests, `wl list`). */
  get vfdCount(): number {
    return this.vfds.size;
  }

  // --- out queue -----------------------------------------------------------------------------

  /** The out queue waits for a SEND or a connect: later commands keep their order behind it. */
  private get waiting(): boolean {
    return this.blocked !== undefined || this.connecting !== undefined;
  }

  private processOut(): void {
    const queue = this.outQueue;
    if (!queue || this.outTurn) return;
    let done = 0;
    let commands = 0;
    let bytes = 0;
    for (;;) {
      while (!this.waiting) {
        if (commands >= OUT_COMMANDS_PER_TURN || bytes >= OUT_BYTES_PER_TURN) {
          // Yield: the control channel, other devices and this device's host fds get their turn.
          this.resumeOutLater();
          break;
        }
        const chain = queue.pop();
        if (!chain) break;
        commands++;
        bytes += Math.min(chain.readableLength, MAX_SEND_CHAIN_BYTES);
        const outcome = this.execute(chain);
        if (outcome === PENDING) break;
        queue.pushUsed(chain, chain.writeBytes(outcome));
        done++;
      }
      // Waiting (resumeSend / retryConnect drain again), or a later turn is due: re-arm then.
      if (this.waiting || this.outTurn) break;
      // §2.7.10: publish avail_event (EVENT_IDX) / clear NO_NOTIFY, then look once more for
      // chains that came in between. False also while the queue spends its own budget.
      if (!queue.enableNotification()) break;
    }
    if (done > 0) queue.notify();
  }

  /** Complete a chain that waited, then go on with the commands behind it. */
  private completeWaiting(chain: VirtioChain, reply: Uint8Array): void {
    const queue = this.outQueue;
    if (!queue) return;
    queue.pushUsed(chain, chain.writeBytes(reply));
    queue.notify();
    this.processOut();
  }

  private execute(chain: VirtioChain): Outcome {
    let type: number | null = null;
    try {
      const head = readableBytes(this.memory!, chain, MAX_COMMAND_BYTES).bytes;
      type = decodeType(head);
      if (type === null) return simple(VIRTIO_WL_RESP_ERR);
      switch (type) {
        case VIRTIO_WL_CMD_VFD_NEW: return this.newAlloc(head);
        case VIRTIO_WL_CMD_VFD_CLOSE: return this.close(head);
        case VIRTIO_WL_CMD_VFD_SEND: return this.send(chain);
        case VIRTIO_WL_CMD_VFD_NEW_CTX: {
          const req = decodeCtrlVfd(head);
          return req ? this.newContext(chain, req.id, '') : simple(VIRTIO_WL_RESP_ERR);
        }
        case VIRTIO_WL_CMD_VFD_NEW_CTX_NAMED: return this.newContextNamed(chain, head);
        case VIRTIO_WL_CMD_VFD_NEW_PIPE: return this.newPipe(head);
        // §3.9/§3.10: no dmabuf (no GBM) and no GPU: answered as crosvm built without them.
        case VIRTIO_WL_CMD_VFD_NEW_DMABUF:
        case VIRTIO_WL_CMD_VFD_DMABUF_SYNC:
        case VIRTIO_WL_CMD_VFD_SEND_FOREIGN_ID:
        default:
          return simple(VIRTIO_WL_RESP_INVALID_CMD);
      }
    } catch (error) {
      this.env.log('command 0x%s failed: %s', (type ?? 0).toString(16), (error as Error)?.stack ?? error);
      return simple(VIRTIO_WL_RESP_ERR);
    }
  }

  /** Why a guest-chosen id cannot name a new VFD (§3.2 step 1), or null. */
  private badNewId(id: number): Uint8Array | null {
    if ((id & VFD_ID_HOST_MASK) !== 0 || this.vfds.has(id)) return simple(VIRTIO_WL_RESP_INVALID_ID);
    return null;
  }

  /** VFDs held, counting the one a waiting connect will add. */
  private get vfdsHeld(): number {
    return this.vfds.size + (this.connecting ? 1 : 0);
  }

  /** RESP_OUT_OF_MEMORY (ENOMEM in the guest) when one more VFD would pass maxVfds, else null. */
  private overVfdLimit(what: string): Uint8Array | null {
    if (this.vfdsHeld < this.env.limits.maxVfds) return null;
    this.env.log('%s refused: the guest holds %d VFDs (maxVfds)', what, this.vfdsHeld);
    return simple(VIRTIO_WL_RESP_OUT_OF_MEMORY);
  }

  /** VFD_NEW (§3.3): a memfd mapped into the guest. */
  private newAlloc(bytes: Uint8Array): Outcome {
    const req = decodeVfdNew(bytes);
    if (!req) return simple(VIRTIO_WL_RESP_ERR);
    const bad = this.badNewId(req.id);
    if (bad) return bad;
    if (this.transition) {
      if (req.flags !== 0) return simple(VIRTIO_WL_RESP_INVALID_FLAGS);
    } else if ((req.flags & ~(VIRTIO_WL_VFD_WRITE | VIRTIO_WL_VFD_MAP)) !== 0) {
      return simple(VIRTIO_WL_RESP_ERR);
    }
    const size = Math.ceil(req.size / PAGE_SIZE) * PAGE_SIZE;
    if (size === 0 || size > MAX_ALLOC) return simple(VIRTIO_WL_RESP_ERR);
    const overVfds = this.overVfdLimit('VFD_NEW');
    if (overVfds) return overVfds;
    let held = 0;
    for (const vfd of this.vfds.values()) held += vfd.guestShmBytes;
    if (held + size > this.env.limits.maxShmBytes) {
      this.env.log('VFD_NEW of %d bytes refused: %d of %d bytes (maxShmBytes) in use', size, held, this.env.limits.maxShmBytes);
      return simple(VIRTIO_WL_RESP_OUT_OF_MEMORY);
    }
    const fd = native.memfdCreate('virtwl_alloc', size);
    let mapping: GuestShmMapping;
    try {
      mapping = this.env.mapShm(fd, size);
    } catch (error) {
      closeQuietly(fd);
      this.env.log('VFD_NEW of %d bytes: %s', size, (error as Error).message);
      return simple((error as { code?: string }).code === 'ERR_SHM_WINDOW_FULL' ? VIRTIO_WL_RESP_OUT_OF_MEMORY : VIRTIO_WL_RESP_ERR);
    }
    const vfd = new Vfd(req.id);
    vfd.shm = { fd, size, mapping };
    vfd.guestShmBytes = size;
    this.vfds.set(req.id, vfd);
    return encodeRespVfdNew(req.id, req.flags, vfd.pfn, size);
  }

  /** NEW_CTX_NAMED (§3.2): the name up to its first NUL; not UTF-8 → RESP_ERR. */
  private newContextNamed(chain: VirtioChain, bytes: Uint8Array): Outcome {
    const req = decodeVfdNewNamed(bytes);
    if (!req) return simple(VIRTIO_WL_RESP_ERR);
    let name: string;
    try {
      name = new TextDecoder('utf-8', { fatal: true }).decode(req.name);
    } catch {
      const bad = this.badNewId(req.id);
      return bad ?? simple(VIRTIO_WL_RESP_ERR);
    }
    return this.newContext(chain, req.id, name);
  }

  private newContext(chain: VirtioChain, id: number, name: string): Outcome {
    const bad = this.badNewId(id);
    if (bad) return bad;
    const overVfds = this.overVfdLimit('NEW_CTX');
    if (overVfds) return overVfds;
    let contexts = 0;
    for (const vfd of this.vfds.values()) if (vfd.isContext) contexts++;
    if (contexts >= this.env.limits.maxContexts) {
      // As crosvm answers any context it cannot open (ENODEV in the guest).
      this.env.log('NEW_CTX %d refused: %d contexts open (maxContexts)', id, contexts);
      return simple(VIRTIO_WL_RESP_ERR);
    }
    return this.connect({ chain, id, name, deadline: Date.now() + this.env.limits.connectTimeoutMs, delay: CONNECT_RETRY_FIRST_MS });
  }

  /** One connect attempt: the reply, or PENDING with a retry timer while the backlog is full. */
  private connect(p: PendingContext): Outcome {
    let opened: { fd: number; release?: () => void } | null;
    try {
      opened = this.env.sockets.open(p.name);
    } catch (error) {
      if (!(error instanceof WlSocketError)) throw error;
      this.env.log('context %d on %o: %s', p.id, p.name, error.message);
      return simple(VIRTIO_WL_RESP_ERR);
    }
    if (opened === null) {
      const left = p.deadline - Date.now();
      if (left <= 0) {
        this.env.log('context %d on %o: the listener kept its backlog full for %d ms', p.id, p.name, this.env.limits.connectTimeoutMs);
        return simple(VIRTIO_WL_RESP_ERR);
      }
      this.connecting = p;
      p.timer = setTimeout(() => this.retryConnect(p), Math.min(p.delay, left));
      p.delay = Math.min(p.delay * 2, CONNECT_RETRY_MAX_MS);
      return PENDING;
    }
    return this.openContext(p.id, opened);
  }

  private retryConnect(p: PendingContext): void {
    if (this.connecting !== p) return;
    this.connecting = undefined;
    p.timer = undefined;
    let outcome: Outcome;
    try {
      outcome = this.connect(p);
    } catch (error) {
      this.env.log('context %d: %s', p.id, (error as Error)?.stack ?? error);
      outcome = simple(VIRTIO_WL_RESP_ERR);
    }
    if (outcome !== PENDING) this.completeWaiting(p.chain, outcome);
  }

  private openContext(id: number, opened: { fd: number; release?: () => void }): Uint8Array {
    const vfd = new Vfd(id);
    vfd.socket = opened.fd;
    vfd.releaseName = opened.release;
    vfd.isContext = true;
    try {
      native.setNonBlocking(opened.fd, true);
    } catch (error) {
      vfd.close();
      throw error;
    }
    this.vfds.set(id, vfd);
    this.updateWatch(vfd);
    const flags = this.transition ? VIRTIO_WL_VFD_WRITE | VIRTIO_WL_VFD_READ : VIRTIO_WL_VFD_CONTROL;
    return encodeRespVfdNew(id, flags, 0n, 0);
  }

  /** NEW_PIPE (§3.4): flags exactly WRITE (guest writes) or READ (guest reads); reply flags 0. */
  private newPipe(bytes: Uint8Array): Outcome {
    const req = decodeVfdNew(bytes);
    if (!req) return simple(VIRTIO_WL_RESP_ERR);
    const bad = this.badNewId(req.id);
    if (bad) return bad;
    if (req.flags !== VIRTIO_WL_VFD_WRITE && req.flags !== VIRTIO_WL_VFD_READ) return simple(VIRTIO_WL_RESP_INVALID_FLAGS);
    const overVfds = this.overVfdLimit('NEW_PIPE');
    if (overVfds) return overVfds;
    const [readFd, writeFd] = native.pipe();
    const guestWrites = req.flags === VIRTIO_WL_VFD_WRITE;
    const vfd = new Vfd(req.id);
    vfd.localPipe = guestWrites ? { fd: writeFd, readable: false, writable: true } : { fd: readFd, readable: true, writable: false };
    vfd.remotePipe = guestWrites ? readFd : writeFd;
    // The remote end goes to a host peer that may expect an ordinary (blocking) pipe.
    try {
      native.setNonBlocking(vfd.remotePipe, false);
    } catch (error) {
      vfd.close();
      throw error;
    }
    this.vfds.set(req.id, vfd);
    this.updateWatch(vfd);
    return encodeRespVfdNew(req.id, 0, 0n, 0);
  }

  /** CLOSE (§3.6). */
  private close(bytes: Uint8Array): Outcome {
    const req = decodeCtrlVfd(bytes);
    if (!req) return simple(VIRTIO_WL_RESP_ERR);
    if (!this.vfds.has(req.id)) return simple(VIRTIO_WL_RESP_INVALID_ID);
    this.closeVfd(req.id);
    return simple(VIRTIO_WL_RESP_OK);
  }

  private closeVfd(id: number): void {
    // Events for this VFD can never be delivered; host VFDs travelling in them go too.
    for (let i = this.backlog.length - 1; i >= 0; i--) {
      const event = this.backlog[i];
      if (event.target !== id) continue;
      this.backlog.splice(i, 1);
      for (const carried of event.ids ?? []) {
        this.vfds.get(carried)?.close();
        this.vfds.delete(carried);
      }
    }
    const vfd = this.vfds.get(id);
    vfd?.close();
    this.vfds.delete(id);
    if (this.backlog.length === 0) this.pumpIn();
  }

  /** SEND (§3.5): read only once its size is known to be within what the device accepts. */
  private send(chain: VirtioChain): Outcome {
    if (chain.readableLength > MAX_SEND_CHAIN_BYTES) {
      this.env.log('SEND of %d bytes refused: more than %d', chain.readableLength, MAX_SEND_CHAIN_BYTES);
      return simple(VIRTIO_WL_RESP_ERR);
    }
    const { bytes, isView } = readableBytes(this.memory!, chain, MAX_SEND_CHAIN_BYTES);
    const req = decodeVfdSend(bytes, VIRTWL_SEND_MAX_ALLOCS);
    if (!req) return simple(VIRTIO_WL_RESP_ERR);
    if (req.count > VIRTWL_SEND_MAX_ALLOCS) return simple(VIRTIO_WL_RESP_INVALID_CMD);
    if (!req.ids) return simple(VIRTIO_WL_RESP_ERR);
    const fds: number[] = [];
    const listed: Vfd[] = [];
    for (const id of req.ids) {
      const vfd = this.vfds.get(id);
      if (!vfd) return simple(VIRTIO_WL_RESP_INVALID_ID);
      const fd = vfd.sendFd;
      if (fd === undefined) return simple(VIRTIO_WL_RESP_INVALID_TYPE);
      fds.push(fd);
      listed.push(vfd);
    }
    const target = this.vfds.get(req.id);
    if (!target) return simple(VIRTIO_WL_RESP_INVALID_ID);
    let isSocket: boolean;
    if (target.socket !== undefined) {
      isSocket = true;
    } else if (target.localPipe?.writable) {
      if (fds.length > 0) return simple(VIRTIO_WL_RESP_INVALID_TYPE);
      isSocket = false;
    } else {
      return simple(VIRTIO_WL_RESP_INVALID_TYPE);
    }
    // The payload is written from guest memory; only a send that must wait copies it.
    const send = new OutgoingSend(chain, target, target.writeFd!, isSocket, req.data, isView, fds, listed);
    if (this.dontwait && (req.flags & VIRTIO_WL_CTRL_FLAG_DONTWAIT) !== 0) return this.sendWithoutWaiting(send);
    return this.pushSend(send);
  }

  /** A DONTWAIT SEND: accepted (RESP_OK, perhaps with a held rest) or WOULD_BLOCK, never PENDING. */
  private sendWithoutWaiting(send: OutgoingSend): Uint8Array {
    const target = send.target;
    // Behind a held rest nothing may go first; past the bound nothing more is held.
    if (target.heldSend) return this.wouldBlock(target, false);
    if (this.heldBytes + send.remaining > MAX_HELD_SEND_BYTES) return this.wouldBlock(target, true);
    let state: 'sent' | 'wait' | 'refused';
    try {
      state = send.push(true);
    } catch (error) {
      send.release();
      this.env.log('send on vfd %d: %s', target.id, (error as Error).message);
      return simple(VIRTIO_WL_RESP_ERR);
    }
    if (state === 'refused') return this.wouldBlock(target, false);
    if (state === 'wait') {
      target.heldSend = send;
      this.updateWatch(target);
    } else {
      send.release();
    }
    this.dropSentRemotePipes(send);
    return simple(VIRTIO_WL_RESP_OK);
  }

  /**
   * WOULD_BLOCK, and a VFD_WRITABLE owed to the VFD: once its host fd can take data, or, when
   * the bound on held bytes refused it (`forRoom`), once the held sends left room.
   */
  private wouldBlock(target: Vfd, forRoom: boolean): Uint8Array {
    // A refusal for room while one for the fd is owed keeps the fd's (its end decides first).
    target.waitsForRoom = forRoom && !(target.owesWritable && !target.waitsForRoom);
    target.owesWritable = true;
    this.updateWatch(target);
    return simple(VIRTIO_WL_RESP_WOULD_BLOCK);
  }

  /** Bytes the VFDs' held sends still have to write. */
  private get heldBytes(): number {
    let held = 0;
    for (const vfd of this.vfds.values()) held += vfd.heldSend?.remaining ?? 0;
    return held;
  }

  /** §3.5 step 4: the host peer holds the remote pipe ends of the VFDs a send listed. */
  private dropSentRemotePipes(send: OutgoingSend): void {
    for (const vfd of send.listed) {
      if (this.vfds.get(vfd.id) !== vfd || vfd.remotePipe === undefined) continue;
      vfd.dropRemotePipe();
      this.updateWatch(vfd);
    }
  }

  /** Write as much as the host takes; RESP_OK when all is out, PENDING when it must wait. */
  private pushSend(send: OutgoingSend): Outcome {
    if (send.target.heldSend) {
      // The rest of an accepted DONTWAIT send goes first (ready() resumes this one after it).
      try {
        send.hold();
      } catch (error) {
        send.release();
        this.env.log('send on vfd %d: %s', send.target.id, (error as Error).message);
        return simple(VIRTIO_WL_RESP_ERR);
      }
      this.blocked = send;
      this.updateWatch(send.target);
      return PENDING;
    }
    let state: 'sent' | 'wait' | 'refused';
    try {
      state = send.push();
    } catch (error) {
      send.release();
      this.env.log('send on vfd %d: %s', send.target.id, (error as Error).message);
      return simple(VIRTIO_WL_RESP_ERR);
    }
    if (state === 'wait') {
      if (send.target.remotePipe !== undefined) {
        // A guest-write pipe whose read end the device still holds: nobody can drain it, and
        // waiting would stall every later command (the CLOSE that ends it included).
        send.release();
        this.env.log('send on vfd %d: its pipe is full and no host peer holds the read end', send.target.id);
        return simple(VIRTIO_WL_RESP_ERR);
      }
      this.blocked = send;
      this.updateWatch(send.target);
      return PENDING;
    }
    send.release();
    this.dropSentRemotePipes(send);
    return simple(VIRTIO_WL_RESP_OK);
  }

  /** The blocked SEND's fd became writable (or failed). */
  private resumeSend(): void {
    const send = this.blocked;
    if (!send || !this.outQueue) return;
    this.blocked = undefined;
    const outcome = this.pushSend(send);
    if (outcome === PENDING) return;
    this.updateWatch(send.target);
    this.completeWaiting(send.chain, outcome);
  }

  /** The blocked SEND's target is going away: RESP_ERR (as for EPIPE) before its fd closes. */
  private failBlockedSend(why: string): void {
    const send = this.blocked;
    if (!send) return;
    this.blocked = undefined;
    send.release();
    this.env.log('send on vfd %d failed with %d bytes unsent: %s', send.target.id, send.remaining, why);
    // Later commands run on a later turn, not inside the host-fd callback that got us here.
    const queue = this.outQueue;
    if (!queue) return;
    queue.pushUsed(send.chain, send.chain.writeBytes(simple(VIRTIO_WL_RESP_ERR)));
    queue.notify();
    this.resumeOutLater();
  }

  /** processOut on a later event-loop turn. */
  private resumeOutLater(): void {
    if (this.outTurn) return;
    this.outTurn = setImmediate(() => {
      this.outTurn = undefined;
      this.processOut();
    });
  }

  // --- in queue ------------------------------------------------------------------------------

  /** Deliver waiting events into posted buffers; pause or resume host reading accordingly. */
  private pumpIn(): void {
    const queue = this.inQueue;
    if (!queue) return;
    let used = 0;
    while (this.backlog.length > 0) {
      // null: no buffer now, or the queue spent its per-turn budget (it notifies us again).
      const chain = queue.pop();
      if (!chain) break;
      const event = this.backlog[0];
      if (chain.writableLength < event.bytes.length) {
        // A buffer too small for the event (the driver posts pages): give it back unused.
        this.env.log('in-queue buffer of %d bytes is too small for a %d-byte event', chain.writableLength, event.bytes.length);
        queue.pushUsed(chain, 0);
        used++;
        continue;
      }
      queue.pushUsed(chain, chain.writeBytes(event.bytes));
      this.backlog.shift();
      used++;
    }
    if (used > 0) queue.notify();
    let starved = this.backlog.length > 0 || !this.hasInBuffer();
    // Ask for a notification when the guest posts buffers; some may have come meanwhile.
    if (starved && queue.enableNotification()) {
      if (this.backlog.length > 0) {
        this.pumpIn();
        return;
      }
      starved = false;
    }
    this.setReadPaused(starved);
  }

  private hasInBuffer(): boolean {
    const queue = this.inQueue;
    if (!queue) return false;
    const chain = queue.pop();
    if (!chain) return false;
    queue.undoPop(1);
    return true;
  }

  private setReadPaused(paused: boolean): void {
    if (paused === this.readPaused) return;
    this.readPaused = paused;
    for (const vfd of this.vfds.values()) this.updateWatch(vfd);
  }

  /** Watch exactly what can make progress: input while reading is on, output while a SEND waits. */
  private updateWatch(vfd: Vfd): void {
    const fd = vfd.socket ?? vfd.localPipe?.fd;
    if (fd === undefined || vfd.hungUp) {
      vfd.stopWatching();
      return;
    }
    let events = 0;
    if (!this.readPaused && this.inQueue) {
      if (vfd.readFd !== undefined) events |= native.POLL_READABLE | native.POLL_DISCONNECT;
      // A guest-write pipe: only its hangup (the reader went away) is news.
      else if (vfd.remotePipe === undefined) events |= native.POLL_DISCONNECT;
    }
    if (this.blocked?.target === vfd || vfd.heldSend || this.writableOwedNow(vfd)) events |= native.POLL_WRITABLE;
    vfd.watch(fd, events, this.onReady);
  }

  /**
   * Watch the fd for an owed VFD_WRITABLE: not while a held rest is in the way (its end
   * decides), nor when the refusal was for room (the fd, writable already, would wake the guest
   * only to be refused again: the end of a held send looks again, see writable()).
   */
  private writableOwedNow(vfd: Vfd): boolean {
    return vfd.owesWritable && !vfd.heldSend && !vfd.waitsForRoom;
  }

  private sendWritable(vfd: Vfd): void {
    vfd.owesWritable = false;
    vfd.waitsForRoom = false;
    this.backlog.push({ target: vfd.id, bytes: encodeWritable(vfd.id) });
  }

  /**
   * The fd of a VFD with a held rest or an owed VFD_WRITABLE became writable (or failed). When
   * the peer went away (`disconnected`), no VFD_WRITABLE: the read side's end of file brings
   * VFD_HUP, which answers the WOULD_BLOCK (EXTENSION.md §1.4).
   */
  private writable(vfd: Vfd, disconnected: boolean): void {
    const held = vfd.heldSend;
    if (held) {
      let state: 'sent' | 'wait' | 'refused' = 'sent';
      try {
        state = held.push();
      } catch (error) {
        // The guest was told it went: as a socket's peer that died after send() returned.
        this.env.log('held send on vfd %d failed with %d bytes unsent: %s', vfd.id, held.remaining, (error as Error).message);
      }
      if (state !== 'sent') return;
      held.release();
      vfd.heldSend = undefined;
      // Half the bound free again: the VFDs refused for room are told (a little hysteresis, so
      // a guest is not woken for every held send that ends near the bound).
      if (this.heldBytes < MAX_HELD_SEND_BYTES / 2) {
        for (const other of this.vfds.values()) if (other.owesWritable && other.waitsForRoom) this.sendWritable(other);
      }
    }
    if (this.writableOwedNow(vfd) && !disconnected) this.sendWritable(vfd);
    this.pumpIn();
    this.updateWatch(vfd);
  }

  private ready(vfd: Vfd, events: number, status: number): void {
    try {
      if (this.vfds.get(vfd.id) !== vfd) return;
      const canWrite = (events & native.POLL_WRITABLE) !== 0 || status < 0;
      if (canWrite && (vfd.heldSend || vfd.owesWritable)) this.writable(vfd, (events & native.POLL_DISCONNECT) !== 0 || status < 0);
      if (this.blocked?.target === vfd && canWrite) this.resumeSend();
      if (this.vfds.get(vfd.id) !== vfd || vfd.hungUp) return;
      const input = status < 0 || (events & (native.POLL_READABLE | native.POLL_DISCONNECT)) !== 0;
      if (!input) return;
      if (this.readPaused || this.backlog.length > 0 || !this.hasInBuffer()) {
        // Not now. pumpIn delivers what waits and, when the guest is out of buffers, re-arms
        // the in queue before it pauses reading: under EVENT_IDX a driver posting buffers kicks
        // only past avail_event, so pausing without re-arming would pause for good.
        this.pumpIn();
        return;
      }
      if (vfd.readFd !== undefined) this.readOnce(vfd);
      else this.hangUp(vfd);
      this.pumpIn();
    } catch (error) {
      this.env.log('vfd %d: %s', vfd.id, (error as Error)?.stack ?? error);
    }
  }

  /** One host read → VFD_NEW per fd, then one RECV; end of file → HUP. */
  private readOnce(vfd: Vfd): void {
    const fd = vfd.readFd!;
    if (vfd.socket !== undefined) {
      let r;
      try {
        r = native.recvmsg(fd, IN_BUFFER_LEN, VIRTWL_SEND_MAX_ALLOCS);
      } catch (error) {
        this.env.log('recv on vfd %d: %s', vfd.id, (error as Error).message);
        this.hangUp(vfd);
        return;
      }
      if (r === null) return;
      if (r.data.length === 0 && r.fds.length === 0) {
        this.hangUp(vfd);
        return;
      }
      // CMSG_SPACE rounding can let a few more than asked for through: never announce more than 28.
      for (const extra of r.fds.splice(VIRTWL_SEND_MAX_ALLOCS)) closeQuietly(extra);
      const ids: number[] = [];
      let dropped = 0;
      for (const hostFd of r.fds) {
        // Host fds count against maxVfds too: over it, they are closed (the data still goes).
        if (this.vfdsHeld >= this.env.limits.maxVfds) {
          closeQuietly(hostFd);
          dropped++;
          continue;
        }
        const id = this.addHostVfd(hostFd, vfd.id);
        if (id !== undefined) ids.push(id);
      }
      if (dropped > 0) this.env.log('vfd %d: closed %d fds from the host: the guest holds %d VFDs (maxVfds)', vfd.id, dropped, this.vfdsHeld);
      this.backlog.push({ target: vfd.id, bytes: encodeRecv(vfd.id, ids, r.data), ids });
      return;
    }
    let data: Buffer | null;
    try {
      data = native.read(fd, IN_BUFFER_LEN);
    } catch (error) {
      this.env.log('read on vfd %d: %s', vfd.id, (error as Error).message);
      this.hangUp(vfd);
      return;
    }
    if (data === null) return;
    if (data.length === 0) {
      this.hangUp(vfd);
      return;
    }
    this.backlog.push({ target: vfd.id, bytes: encodeRecv(vfd.id, [], data) });
  }

  private hangUp(vfd: Vfd): void {
    // A SEND waiting on this fd can never finish: fail it before the fd closes under it.
    if (this.blocked?.target === vfd) this.failBlockedSend('the host side hung up');
    vfd.closeHostSide();
    vfd.hungUp = true;
    this.backlog.push({ target: vfd.id, bytes: encodeHup(vfd.id) });
  }

  /** §3.8: a host fd that arrived on `target` becomes a new host VFD, announced by VFD_NEW. */
  private addHostVfd(fd: number, target: number): number | undefined {
    let kind: ReturnType<typeof classifyHostFd>;
    try {
      kind = classifyHostFd(fd);
    } catch (error) {
      this.env.log('dropping a host fd: %s', (error as Error).message);
      closeQuietly(fd);
      return undefined;
    }
    const id = this.allocHostId();
    const vfd = new Vfd(id);
    if (kind.kind === 'shm') {
      const size = Math.min(Math.ceil(kind.size / PAGE_SIZE) * PAGE_SIZE, MAX_ALLOC);
      let mapping: GuestShmMapping | undefined;
      if (size > 0) {
        try {
          mapping = this.env.mapShm(fd, size);
        } catch (error) {
          // A read-only or sealed fd: announced without a mapping (pfn 0), still passable on.
          this.env.log('host shm fd of %d bytes not mappable: %s', size, (error as Error).message);
        }
      }
      vfd.shm = { fd, size, mapping };
    } else {
      vfd.localPipe = { fd, readable: kind.readable, writable: kind.writable };
      try {
        native.setNonBlocking(fd, true);
      } catch {
        // not fatal: reads happen only after readiness
      }
    }
    this.vfds.set(id, vfd);
    this.updateWatch(vfd);
    this.backlog.push({ target, bytes: encodeVfdNewEvent(id, vfd.hostFlags(this.transition), vfd.pfn, vfd.size) });
    return id;
  }

  /** Sequential from 0x40000000, skipping ids in use, never setting bit 31 (§2.7). */
  private allocHostId(): number {
    for (;;) {
      const id = this.nextHostId;
      this.nextHostId = id >= MAX_HOST_ID ? NEXT_VFD_ID_BASE : id + 1;
      if (!this.vfds.has(id)) return id;
    }
  }

  /** Forget the guest's state (activation, reset, shutdown): every VFD is closed. */
  private clear(): void {
    // What waits is dropped with its chain (the rings are being reset): close what it owns.
    this.blocked?.release();
    this.blocked = undefined;
    if (this.connecting?.timer) clearTimeout(this.connecting.timer);
    this.connecting = undefined;
    if (this.outTurn) clearImmediate(this.outTurn);
    this.outTurn = undefined;
    for (const vfd of this.vfds.values()) vfd.close();
    this.vfds.clear();
    this.backlog.length = 0;
    this.memory = undefined;
    this.inQueue = undefined;
    this.outQueue = undefined;
    this.readPaused = false;
    this.dontwait = false;
    this.nextHostId = NEXT_VFD_ID_BASE;
  }
}
