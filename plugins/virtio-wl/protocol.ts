/**
 * virtio-wl wire structs: plain encode/decode, no device logic (spec §2.3). Every decoder takes
 * the readable bytes of a chain and returns null when they are too short to hold the struct;
 * the device answers that with RESP_ERR, as crosvm does for a request it cannot parse.
 */
import {
  CTRL_VFD_NEW_SIZE, CTRL_VFD_SEND_SIZE, CTRL_VFD_SIZE, NAME_LENGTH, NAME_OFFSET, SIMPLE_RESP_SIZE,
  VIRTIO_WL_CMD_VFD_HUP, VIRTIO_WL_CMD_VFD_NEW, VIRTIO_WL_CMD_VFD_RECV, VIRTIO_WL_CMD_VFD_WRITABLE,
  VIRTIO_WL_RESP_VFD_NEW,
} from './constants';

function dv(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The `type` word of a request, or null when there are fewer than 4 bytes. */
export function decodeType(bytes: Uint8Array): number | null {
  return bytes.length < 4 ? null : dv(bytes).getUint32(0, true);
}

/** ctrl_vfd: CLOSE (and NEW_CTX, which reads nothing else). */
export function decodeCtrlVfd(bytes: Uint8Array): { id: number } | null {
  return bytes.length < CTRL_VFD_SIZE ? null : { id: dv(bytes).getUint32(8, true) };
}

export interface CtrlVfdNew {
  id: number;
  flags: number;
  size: number;
}

/** crosvm's 32-byte CtrlVfdNew (VFD_NEW, VFD_NEW_PIPE requests); pfn is ignored in requests. */
export function decodeVfdNew(bytes: Uint8Array): CtrlVfdNew | null {
  if (bytes.length < CTRL_VFD_NEW_SIZE) return null;
  const v = dv(bytes);
  return { id: v.getUint32(8, true), flags: v.getUint32(12, true), size: v.getUint32(24, true) };
}

/**
 * NEW_CTX_NAMED: id and the raw name bytes (up to the first NUL, or all 32). Needs the whole
 * name field (60 bytes); the 4 bytes of tail padding are not read.
 */
export function decodeVfdNewNamed(bytes: Uint8Array): { id: number; name: Uint8Array } | null {
  if (bytes.length < NAME_OFFSET + NAME_LENGTH) return null;
  const field = bytes.subarray(NAME_OFFSET, NAME_OFFSET + NAME_LENGTH);
  const nul = field.indexOf(0);
  return { id: dv(bytes).getUint32(8, true), name: nul < 0 ? field : field.subarray(0, nul) };
}

export interface CtrlVfdSend {
  /** ctrl_hdr.flags (0, or VIRTIO_WL_CTRL_FLAG_DONTWAIT under the extension). */
  flags: number;
  id: number;
  /** vfd_count as sent (may be above the limit; the caller checks). */
  count: number;
  /** The ids, or null when the buffer cannot hold `count` of them. */
  ids: number[] | null;
  data: Uint8Array;
}

/** ctrl_vfd_send + u32 ids + payload (payload = the rest of the readable bytes, §2.3). */
export function decodeVfdSend(bytes: Uint8Array, maxCount: number): CtrlVfdSend | null {
  if (bytes.length < CTRL_VFD_SEND_SIZE) return null;
  const v = dv(bytes);
  const flags = v.getUint32(4, true);
  const id = v.getUint32(8, true);
  const count = v.getUint32(12, true);
  if (count > maxCount) return { flags, id, count, ids: null, data: new Uint8Array(0) };
  const end = CTRL_VFD_SEND_SIZE + 4 * count;
  if (bytes.length < end) return { flags, id, count, ids: null, data: new Uint8Array(0) };
  const ids: number[] = [];
  for (let i = 0; i < count; i++) ids.push(v.getUint32(CTRL_VFD_SEND_SIZE + 4 * i, true));
  return { flags, id, count, ids, data: bytes.subarray(end) };
}

/** RESP_OK or an error: only the 4-byte type word. */
export function encodeSimpleResp(type: number): Uint8Array {
  const out = new Uint8Array(SIMPLE_RESP_SIZE);
  dv(out).setUint32(0, type, true);
  return out;
}

/** The 32-byte ctrl_vfd_new crosvm writes (RESP_VFD_NEW replies, in-queue VFD_NEW events). */
export function encodeVfdNew(type: number, id: number, flags: number, pfn: bigint, size: number): Uint8Array {
  const out = new Uint8Array(CTRL_VFD_NEW_SIZE);
  const v = dv(out);
  v.setUint32(0, type, true);
  v.setUint32(8, id, true);
  v.setUint32(12, flags, true);
  v.setBigUint64(16, pfn, true);
  v.setUint32(24, size, true);
  return out;
}

export function encodeRespVfdNew(id: number, flags: number, pfn: bigint, size: number): Uint8Array {
  return encodeVfdNew(VIRTIO_WL_RESP_VFD_NEW, id, flags, pfn, size);
}

/** In-queue VFD_NEW: a host VFD announced before the RECV that carries it. */
export function encodeVfdNewEvent(id: number, flags: number, pfn: bigint, size: number): Uint8Array {
  return encodeVfdNew(VIRTIO_WL_CMD_VFD_NEW, id, flags, pfn, size);
}

/** In-queue VFD_RECV: 16 + 4·ids + data bytes (the used length the driver relies on, §3.7). */
export function encodeRecv(id: number, ids: readonly number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(CTRL_VFD_SEND_SIZE + 4 * ids.length + data.length);
  const v = dv(out);
  v.setUint32(0, VIRTIO_WL_CMD_VFD_RECV, true);
  v.setUint32(8, id, true);
  v.setUint32(12, ids.length, true);
  ids.forEach((x, i) => v.setUint32(CTRL_VFD_SEND_SIZE + 4 * i, x, true));
  out.set(data, CTRL_VFD_SEND_SIZE + 4 * ids.length);
  return out;
}

function encodeCtrlVfd(type: number, id: number): Uint8Array {
  const out = new Uint8Array(CTRL_VFD_SIZE);
  const v = dv(out);
  v.setUint32(0, type, true);
  v.setUint32(8, id, true);
  return out;
}

/** In-queue VFD_HUP: ctrl_vfd, 12 bytes. */
export function encodeHup(id: number): Uint8Array {
  return encodeCtrlVfd(VIRTIO_WL_CMD_VFD_HUP, id);
}

/** In-queue VFD_WRITABLE (the DONTWAIT extension): ctrl_vfd, 12 bytes. */
export function encodeWritable(id: number): Uint8Array {
  return encodeCtrlVfd(VIRTIO_WL_CMD_VFD_WRITABLE, id);
}
