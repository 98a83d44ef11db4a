/**
 * The issue 10 findings as fuzz counterexamples, replayed through the same harness on every
 * `npm test`: each failed on the code of commit 0126519 with the message noted, and must pass.
 * (Found by hand or by the fuzzer; a new finding's shrunk counterexample belongs here too.)
 */
import { checkTarget, describeFailure, type FuzzTarget } from './harness/target';
import { checkExchange } from './targets/control';
import { runScenario } from './targets/queue';
import { runNetScenario, virtioNetTarget } from './targets/virtio-net';
import { runWlScenario, virtioWlTarget, type WlCommand } from './targets/virtio-wl';

const direct = (head: number, len: number) => ({ kind: 'direct' as const, head, stride: 1, bufs: [{ addr: 0x8000n, len, write: true }] });
const chain = (cmd: WlCommand, reply = 64) => ({ cmd, truncate: null, split: 1, reply, overlap: false });
const net = { rxSize: 8, txSize: 256, eventIdx: false, indirect: false, mergeable: true, tapOffloads: 0, guestOffloads: false };
const wl = { outSize: 16, inSize: 16, eventIdx: false, indirect: false, transition: false, dontwait: false };

describe('issue 10 findings, replayed through the fuzz harness', () => {
  test('item 3: 256 heads sharing one 65536-entry indirect table (was: one notify took seconds)', async () => {
    await runScenario({
      size: 256, eventIdx: false, indirect: true, disableWhileBusy: false,
      rounds: [{ recipes: [{ kind: 'shared-indirect', entries: 65536, write: false }], heads: [{ recipe: 0 }], jump: null }],
      actions: [{ op: 'complete', written: 'all' }],
    });
  });

  test('item 10: undoPop after a skipped malformed chain (was: a head completed twice)', async () => {
    await runScenario({
      size: 8, eventIdx: false, indirect: false, disableWhileBusy: false,
      rounds: [{ recipes: [direct(0, 10), direct(1, 0), direct(2, 10)], heads: [{ recipe: 0 }, { recipe: 1 }, { recipe: 2 }], jump: null }],
      actions: [{ op: 'hold' }, { op: 'undo', count: 2 }],
    });
  });

  test('item 2: a tx chain of 256 overlapping MiB in a 4 MiB guest (was: a 256 MiB allocation)', async () => {
    await runNetScenario({ ...net, actions: [{ a: 'tx-hostile', kind: 'overlap' }] });
  });

  test('item 4: MRG_RXBUF with one 64-byte buffer for a 9000-byte frame (was: a busy spin)', async () => {
    await runNetScenario({
      ...net, txSize: 8,
      actions: [
        { a: 'host-send', frames: [{ len: 9000, seed: 1, header: 'zero' }, { len: 100, seed: 2, header: 'zero' }] },
        { a: 'rx-post', count: 1, bufLen: 64, split: 1, indirect: false },
        { a: 'idle', ms: 40 },
      ],
    });
  });

  test('item 1: a waiting SEND lists a context that hangs up, then decoys reuse its fd number (was: a decoy reached the peer)', async () => {
    const send = (ids: number[], payload: number) => chain({ c: 'send', id: 1, ids, countDelta: 0, payload, seed: 1, flags: 0 });
    await runWlScenario({
      ...wl,
      actions: [
        { a: 'cmds', chains: [chain({ c: 'ctx', id: 1 }), chain({ c: 'ctx', id: 2 })] },
        { a: 'peer-read', peer: 1, on: false },
        { a: 'cmds', chains: [send([], 65536), send([], 65536), send([], 65536), send([], 30000), send([2], 100)] },
        { a: 'peer-close', peer: 2 },
        { a: 'idle', ms: 20 },
        { a: 'decoys', count: 3 },
      ],
    });
  });

  test('virtio-wl under EVENT_IDX: a second command after the first (was: never answered)', async () => {
    await runWlScenario({
      ...wl, eventIdx: true,
      actions: [
        { a: 'cmds', chains: [chain({ c: 'pipe', id: 1, flags: 1 }, 0)] },
        { a: 'cmds', chains: [chain({ c: 'other', type: 0, len: 0, seed: 0 })] },
      ],
    });
  });

  test('item 7: an id nested 4500 deep (was: a stack overflow and a 24 s stall)', () => {
    checkExchange({ kind: 'nested', depth: 4500, open: '[', at: 'id', balanced: true });
  });
});

describe('fuzzer findings after issue 10, replayed by seed and path', () => {
  const replay = async (target: FuzzTarget, seed: number, path: string) => {
    const details = await checkTarget(target, { seed, numRuns: 1, path });
    if (details.failed) throw new Error(describeFailure(target, details));
  };

  test('a tx chain skipped as malformed (a buffer past RAM) is returned with an interrupt (was: the driver never saw it back)', async () => {
    await replay(virtioNetTarget, 1592590338, '24:0:0:0:0:0:0:2:2:2');
  });

  test('a blocking SEND into a full guest-write pipe nobody outside holds is refused (was: the out queue stuck for good)', async () => {
    await replay(virtioWlTarget, 34, '245:0:0:0:0:3:4:5:5:4:6:6:6:6:6');
  });
});
