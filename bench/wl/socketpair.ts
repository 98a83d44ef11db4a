/** bench/wl's limit: ping-pong of `size`-byte messages between the two ends of a host socketpair. */
import { native } from '../../native';

export function socketPairRoundTrips(sizes: number[], n: number): { size: number; seconds: number }[] {
  return sizes.map((size) => {
    const [a, b] = native.unixPair(native.SOCK_STREAM);
    const msg = Buffer.alloc(size, 7);
    const pump = (from: number, to: number): void => {
      for (let off = 0; off < size;) { const s = native.sendmsg(to, msg.subarray(off), []); if (s > 0) off += s; }
      for (let got = 0; got < size;) { const r = native.recvmsg(from, 65536, 0); if (r) got += r.data.length; }
    };
    for (let i = 0; i < Math.min(n, 100); i++) { pump(b, a); pump(a, b); } // warm-up
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) { pump(b, a); pump(a, b); }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    native.close(a);
    native.close(b);
    return { size, seconds };
  });
}
