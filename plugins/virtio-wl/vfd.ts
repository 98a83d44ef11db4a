/**
 * A VFD: one object the guest driver and the device both name by id. Which parts it has says
 * what it is (crosvm's WlVfd):
 *
 *   socket       a context: a connected host stream socket (sendmsg/recvmsg with fds)
 *   shm          shared memory: a memfd mapped into the guest (pfn ≠ 0)
 *   localPipe    the end of a pipe the device uses: read (→ RECV events) or write (← SEND)
 *   remotePipe   the other end, held until the guest SENDs this VFD to a host peer
 *
 * A host fd that is neither shm nor a fence becomes a `localPipe` with the fd's access mode.
 */
import * as fs from 'fs';
import { native, type FdWatcher } from '../../native';
import type { GuestShmMapping } from '../../plugin-api';
import {
  VIRTIO_WL_VFD_CONTROL, VIRTIO_WL_VFD_MAP, VIRTIO_WL_VFD_READ, VIRTIO_WL_VFD_WRITE, VIRTWL_PFN_SHIFT,
} from './constants';
import type { OutgoingSend } from './send';
import { closeQuietly } from './sockets';

export interface LocalPipe {
  fd: number;
  /** The device reads it (guest-read pipe, or a readable host fd). */
  readable: boolean;
  /** The device writes it (guest-write pipe, or a writable host fd). */
  writable: boolean;
}

export interface Shm {
  fd: number;
  size: number;
  /** Where the guest sees it; undefined when it could not be mapped (pfn 0). */
  mapping: GuestShmMapping | undefined;
}

export type WatchCallback = (vfd: Vfd, events: number, status: number) => void;

export class Vfd {
  socket: number | undefined;
  shm: Shm | undefined;
  localPipe: LocalPipe | undefined;
  remotePipe: number | undefined;
  /** The host side ended (EOF or error); a HUP was queued. */
  hungUp = false;
  /** Drops a consumed non-listening socket name when the context closes. */
  releaseName: (() => void) | undefined;
  /** Opened by the guest's NEW_CTX / NEW_CTX_NAMED: counts against maxContexts until CLOSE. */
  isContext = false;
  /** Bytes of guest-allocated shared memory (VFD_NEW): count against maxShmBytes until CLOSE. */
  guestShmBytes = 0;
  /**
   * DONTWAIT extension: an accepted send the host took only part of; its rest goes out as the
   * host fd becomes writable, before anything else sent to this VFD.
   */
  heldSend: OutgoingSend | undefined;
  /** DONTWAIT extension: WOULD_BLOCK was answered, a VFD_WRITABLE is owed. */
  owesWritable = false;
  /** …and the reason was the bound on held bytes, not this VFD's fd: room decides, not the fd. */
  waitsForRoom = false;
  private watcher: FdWatcher | undefined;
  private watching = 0;
  private closed = false;

  constructor(readonly id: number) {}

  /** The fd the device polls and reads: the socket or the readable local pipe end. */
  get readFd(): number | undefined {
    if (this.socket !== undefined) return this.socket;
    return this.localPipe?.readable ? this.localPipe.fd : undefined;
  }

  /** The fd a SEND targeting this VFD writes to. */
  get writeFd(): number | undefined {
    if (this.socket !== undefined) return this.socket;
    return this.localPipe?.writable ? this.localPipe.fd : undefined;
  }

  /** What a SEND that lists this VFD passes to the host (crosvm send_descriptor). */
  get sendFd(): number | undefined {
    return this.shm?.fd ?? this.socket ?? this.remotePipe;
  }

  get pfn(): bigint {
    return this.shm?.mapping ? BigInt(this.shm.mapping.gpa) >> BigInt(VIRTWL_PFN_SHIFT) : 0n;
  }

  get size(): number {
    return this.shm?.size ?? 0;
  }

  /** §2.5: the flags announced for a host-created VFD. */
  hostFlags(transition: boolean): number {
    if (this.shm) return transition ? 0 : VIRTIO_WL_VFD_WRITE | VIRTIO_WL_VFD_MAP;
    if (this.socket !== undefined) return transition ? VIRTIO_WL_VFD_WRITE | VIRTIO_WL_VFD_READ : VIRTIO_WL_VFD_CONTROL;
    if (this.localPipe && transition) {
      return (this.localPipe.writable ? VIRTIO_WL_VFD_WRITE : 0) | (this.localPipe.readable ? VIRTIO_WL_VFD_READ : 0);
    }
    return 0;
  }

  /** Poll `fd` for `events` (0 stops); the callback gets this VFD. */
  watch(fd: number, events: number, callback: WatchCallback): void {
    if (this.closed) return;
    if (!this.watcher) {
      if (events === 0) return;
      this.watcher = new native.FdWatcher(fd, (ev, status) => callback(this, ev, status));
    }
    if (events === this.watching) return;
    this.watching = events;
    if (events === 0) this.watcher.stop();
    else this.watcher.start(events);
  }

  stopWatching(): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.watching = 0;
  }

  /** The host side is gone: close the socket / local pipe end (the id stays valid). */
  closeHostSide(): void {
    // A held rest would go to the fd being closed (and, later, to whatever reuses its number).
    this.heldSend?.release();
    this.heldSend = undefined;
    this.owesWritable = false;
    this.waitsForRoom = false;
    this.stopWatching();
    if (this.socket !== undefined) closeQuietly(this.socket);
    this.socket = undefined;
    if (this.localPipe) closeQuietly(this.localPipe.fd);
    this.localPipe = undefined;
  }

  dropRemotePipe(): void {
    if (this.remotePipe !== undefined) closeQuietly(this.remotePipe);
    this.remotePipe = undefined;
  }

  /** Release everything (guest CLOSE, reset, shutdown); idempotent. */
  close(): void {
    if (this.closed) return;
    this.closeHostSide();
    this.closed = true;
    this.dropRemotePipe();
    if (this.shm) {
      this.shm.mapping?.unmap();
      closeQuietly(this.shm.fd);
      this.shm = undefined;
    }
    this.releaseName?.();
    this.releaseName = undefined;
  }
}

const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const O_ACCMODE = 3;
const O_WRONLY = 1;
const O_RDWR = 2;

/** §3.8: what an fd received from the host is. ('fence' is not detected: no sync_file ioctl here.) */
export function classifyHostFd(fd: number): { kind: 'shm'; size: number } | { kind: 'pipe'; readable: boolean; writable: boolean } {
  const stat = fs.fstatSync(fd);
  // lseek(SEEK_END) succeeds on regular files (memfds): crosvm's "shared memory" test.
  if ((stat.mode & S_IFMT) === S_IFREG) return { kind: 'shm', size: stat.size };
  const mode = accessMode(fd);
  return { kind: 'pipe', readable: mode !== O_WRONLY, writable: mode === O_WRONLY || mode === O_RDWR };
}

/** O_ACCMODE bits of an open fd (fcntl F_GETFL, read from /proc/self/fdinfo). */
function accessMode(fd: number): number {
  try {
    const text = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    const m = /^flags:\s*([0-7]+)/m.exec(text);
    return m ? parseInt(m[1], 8) & O_ACCMODE : O_RDWR;
  } catch {
    return O_RDWR;
  }
}
