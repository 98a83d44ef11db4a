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
 */
import type { Debugger } from 'debug';
import { native } from '../../native';
import type {
  GuestShmMapping, VirtioActivation, VirtioChain, VirtioDevice, VirtioQueue,
} from '../../plugin-api';
import {
  IN_BUFFER_LEN, NEXT_VFD_ID_BASE, PAGE_SIZE, VFD_ID_HOST_MASK, VIRTIO_ID_WL, VIRTIO_WL_CMD_VFD_CLOSE,
  VIRTIO_WL_CMD_VFD_DMABUF_SYNC, VIRTIO_WL_CMD_VFD_NEW, VIRTIO_WL_CMD_VFD_NEW_CTX, VIRTIO_WL_CMD_VFD_NEW_CTX_NAMED,
  VIRTIO_WL_CMD_VFD_NEW_DMABUF, VIRTIO_WL_CMD_VFD_NEW_PIPE, VIRTIO_WL_CMD_VFD_SEND, VIRTIO_WL_CMD_VFD_SEND_FOREIGN_ID,
  VIRTIO_WL_F_TRANS_FLAGS, VIRTIO_WL_RESP_ERR, VIRTIO_WL_RESP_INVALID_CMD, VIRTIO_WL_RESP_INVALID_FLAGS,
  VIRTIO_WL_RESP_INVALID_ID, VIRTIO_WL_RESP_INVALID_TYPE, VIRTIO_WL_RESP_OK, VIRTIO_WL_RESP_OUT_OF_MEMORY,
  VIRTIO_WL_VFD_CONTROL, VIRTIO_WL_VFD_MAP, VIRTIO_WL_VFD_READ, VIRTIO_WL_VFD_WRITE, VIRTWL_QUEUE_COUNT,
  VIRTWL_QUEUE_SIZE, VIRTWL_SEND_MAX_ALLOCS, VIRTWL_VQ_IN, VIRTWL_VQ_OUT,
} from './constants';
import {
  decodeCtrlVfd, decodeType, decodeVfdNew, decodeVfdNewNamed, decodeVfdSend, encodeHup, encodeRecv,
  encodeRespVfdNew, encodeSimpleResp, encodeVfdNewEvent,
} from './protocol';
import { closeQuietly, WlSocketError, type WlSocketRegistry } from './sockets';
import { classifyHostFd, Vfd } from './vfd';

/** What the device needs from the VMM. */
export interface WlDeviceEnv {
  /** vmm.mapGuestShm */
  mapShm(fd: number, size: number): GuestShmMapping;
  sockets: WlSocketRegistry;
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

/** A SEND the host has not fully taken yet. */
interface PendingSend {
  chain: VirtioChain;
  vfd: Vfd;
  fd: number;
  isSocket: boolean;
  data: Uint8Array;
  offset: number;
  fds: number[];
  fdsSent: boolean;
  /** Listed ids, whose remote pipe ends are dropped once sent. */
  ids: number[];
}

const MAX_HOST_ID = 0x7fffffff;
/** The largest page-rounded size a u32 `size` field can report. */
const MAX_ALLOC = 0xfffff000;

function simple(type: number): Uint8Array {
  return encodeSimpleResp(type);
}

export class WlDevice implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_WL;
  /** TRANS_FLAGS only: no SEND_FENCES (no fences), no USE_SHMEM (pfns are guest-physical). */
  readonly features = 1n << BigInt(VIRTIO_WL_F_TRANS_FLAGS);
  readonly queueMaxSizes: readonly number[] = new Array<number>(VIRTWL_QUEUE_COUNT).fill(VIRTWL_QUEUE_SIZE);
  /** §1.4: no configuration space. */
  readonly config = new Uint8Array(0);

  private inQueue: VirtioQueue | undefined;
  private outQueue: VirtioQueue | undefined;
  private transition = false;
  private readonly vfds = new Map<number, Vfd>();
  private nextHostId = NEXT_VFD_ID_BASE;
  private readonly backlog: InEvent[] = [];
  /** Host fds are not watched for input (events wait, or the guest has no in-queue buffer). */
  private readPaused = false;
  private blocked: PendingSend | undefined;
  private readonly onReady = (vfd: Vfd, events: number, status: number): void => this.ready(vfd, events, status);

  constructor(private readonly env: WlDeviceEnv) {}

  // --- VirtioDevice --------------------------------------------------------------------------

  activate(activation: VirtioActivation): void {
    this.clear();
    this.transition = (activation.features & (1n << BigInt(VIRTIO_WL_F_TRANS_FLAGS))) !== 0n;
    this.inQueue = activation.queues[VIRTWL_VQ_IN];
    this.outQueue = activation.queues[VIRTWL_VQ_OUT];
    this.env.log('activated (transition flags %s)', this.transition);
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

  private processOut(): void {
    const queue = this.outQueue;
    if (!queue) return;
    let done = 0;
    while (!this.blocked) {
      const chain = queue.pop();
      if (!chain) break;
      const outcome = this.execute(chain);
      if (outcome === PENDING) break;
      queue.pushUsed(chain, chain.writeBytes(outcome));
      done++;
    }
    if (done > 0) queue.notify();
  }

  private execute(chain: VirtioChain): Outcome {
    const bytes = chain.readBytes();
    const type = decodeType(bytes);
    if (type === null) return simple(VIRTIO_WL_RESP_ERR);
    try {
      switch (type) {
        case VIRTIO_WL_CMD_VFD_NEW: return this.newAlloc(bytes);
        case VIRTIO_WL_CMD_VFD_CLOSE: return this.close(bytes);
        case VIRTIO_WL_CMD_VFD_SEND: return this.send(chain, bytes);
        case VIRTIO_WL_CMD_VFD_NEW_CTX: {
          const req = decodeCtrlVfd(bytes);
          return req ? this.newContext(req.id, '') : simple(VIRTIO_WL_RESP_ERR);
        }
        case VIRTIO_WL_CMD_VFD_NEW_CTX_NAMED: return this.newContextNamed(bytes);
        case VIRTIO_WL_CMD_VFD_NEW_PIPE: return this.newPipe(bytes);
        // §3.9/§3.10: no dmabuf (no GBM) and no GPU: answered as crosvm built without them.
        case VIRTIO_WL_CMD_VFD_NEW_DMABUF:
        case VIRTIO_WL_CMD_VFD_DMABUF_SYNC:
        case VIRTIO_WL_CMD_VFD_SEND_FOREIGN_ID:
        default:
          return simple(VIRTIO_WL_RESP_INVALID_CMD);
      }
    } catch (error) {
      this.env.log('command 0x%s failed: %s', type.toString(16), (error as Error)?.stack ?? error);
      return simple(VIRTIO_WL_RESP_ERR);
    }
  }

  /** Why a guest-chosen id cannot name a new VFD (§3.2 step 1), or null. */
  private badNewId(id: number): Uint8Array | null {
    if ((id & VFD_ID_HOST_MASK) !== 0 || this.vfds.has(id)) return simple(VIRTIO_WL_RESP_INVALID_ID);
    return null;
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
    this.vfds.set(req.id, vfd);
    return encodeRespVfdNew(req.id, req.flags, vfd.pfn, size);
  }

  /** NEW_CTX_NAMED (§3.2): the name up to its first NUL; not UTF-8 → RESP_ERR. */
  private newContextNamed(bytes: Uint8Array): Outcome {
    const req = decodeVfdNewNamed(bytes);
    if (!req) return simple(VIRTIO_WL_RESP_ERR);
    let name: string;
    try {
      name = new TextDecoder('utf-8', { fatal: true }).decode(req.name);
    } catch {
      const bad = this.badNewId(req.id);
      return bad ?? simple(VIRTIO_WL_RESP_ERR);
    }
    return this.newContext(req.id, name);
  }

  private newContext(id: number, name: string): Outcome {
    const bad = this.badNewId(id);
    if (bad) return bad;
    let opened: { fd: number; release?: () => void };
    try {
      opened = this.env.sockets.open(name);
    } catch (error) {
      if (!(error instanceof WlSocketError)) throw error;
      this.env.log('context %d on %o: %s', id, name, error.message);
      return simple(VIRTIO_WL_RESP_ERR);
    }
    const vfd = new Vfd(id);
    vfd.socket = opened.fd;
    vfd.releaseName = opened.release;
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

  /** SEND (§3.5). */
  private send(chain: VirtioChain, bytes: Uint8Array): Outcome {
    const req = decodeVfdSend(bytes, VIRTWL_SEND_MAX_ALLOCS);
    if (!req) return simple(VIRTIO_WL_RESP_ERR);
    if (req.count > VIRTWL_SEND_MAX_ALLOCS) return simple(VIRTIO_WL_RESP_INVALID_CMD);
    if (!req.ids) return simple(VIRTIO_WL_RESP_ERR);
    const fds: number[] = [];
    for (const id of req.ids) {
      const listed = this.vfds.get(id);
      if (!listed) return simple(VIRTIO_WL_RESP_INVALID_ID);
      const fd = listed.sendFd;
      if (fd === undefined) return simple(VIRTIO_WL_RESP_INVALID_TYPE);
      fds.push(fd);
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
    const pending: PendingSend = {
      chain, vfd: target, fd: target.writeFd!, isSocket, data: req.data.slice(), offset: 0, fds, fdsSent: fds.length === 0, ids: req.ids,
    };
    return this.pushSend(pending);
  }

  /** Write as much as the host takes; RESP_OK when all is out, PENDING when it must wait. */
  private pushSend(p: PendingSend): Outcome {
    try {
      while (p.offset < p.data.length || !p.fdsSent) {
        const chunk = p.data.subarray(p.offset);
        const n = p.isSocket ? native.sendmsg(p.fd, chunk, p.fdsSent ? [] : p.fds) : native.write(p.fd, chunk);
        if (n < 0) {
          this.blocked = p;
          this.updateWatch(p.vfd);
          return PENDING;
        }
        p.fdsSent = true;
        p.offset += n;
        if (n === 0 && chunk.length === 0) break;
      }
    } catch (error) {
      this.env.log('send on vfd %d: %s', p.vfd.id, (error as Error).message);
      return simple(VIRTIO_WL_RESP_ERR);
    }
    // §3.5 step 4: the host peer holds the remote pipe ends now.
    for (const id of p.ids) {
      const sent = this.vfds.get(id);
      if (sent?.remotePipe === undefined) continue;
      sent.dropRemotePipe();
      this.updateWatch(sent);
    }
    return simple(VIRTIO_WL_RESP_OK);
  }

  /** The blocked SEND's socket became writable (or failed). */
  private resumeSend(): void {
    const p = this.blocked;
    const queue = this.outQueue;
    if (!p || !queue) return;
    this.blocked = undefined;
    const outcome = this.pushSend(p);
    if (outcome === PENDING) return;
    this.updateWatch(p.vfd);
    queue.pushUsed(p.chain, p.chain.writeBytes(outcome));
    queue.notify();
    this.processOut();
  }

  // --- in queue ------------------------------------------------------------------------------

  /** Deliver waiting events into posted buffers; pause or resume host reading accordingly. */
  private pumpIn(): void {
    const queue = this.inQueue;
    if (!queue) return;
    let used = 0;
    while (this.backlog.length > 0) {
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
    if (this.blocked?.vfd === vfd) events |= native.POLL_WRITABLE;
    vfd.watch(fd, events, this.onReady);
  }

  private ready(vfd: Vfd, events: number, status: number): void {
    try {
      if (this.vfds.get(vfd.id) !== vfd) return;
      if (this.blocked?.vfd === vfd && ((events & native.POLL_WRITABLE) || status < 0)) this.resumeSend();
      if (this.vfds.get(vfd.id) !== vfd || vfd.hungUp) return;
      const input = status < 0 || (events & (native.POLL_READABLE | native.POLL_DISCONNECT)) !== 0;
      if (!input) return;
      if (this.readPaused || this.backlog.length > 0 || !this.hasInBuffer()) {
        this.setReadPaused(true);
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
      for (const hostFd of r.fds) {
        const id = this.addHostVfd(hostFd, vfd.id);
        if (id !== undefined) ids.push(id);
      }
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
    for (const vfd of this.vfds.values()) vfd.close();
    this.vfds.clear();
    this.backlog.length = 0;
    this.blocked = undefined;
    this.inQueue = undefined;
    this.outQueue = undefined;
    this.readPaused = false;
    this.nextHostId = NEXT_VFD_ID_BASE;
  }
}
