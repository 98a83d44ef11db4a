/**
 * A hostile client against `vmm run --plugin control=…` in its own process (the real entry
 * point): whatever it sends, vmm keeps answering and still stops cleanly on SIGTERM.
 */
import * as fs from 'fs';
import { CONTROL_MAX_JSON_DEPTH } from '../../../plugins/control/protocol';
import { RawClient, startVmmRun, type VmmRun } from './control-fixture';

describe('control plugin: hostile client against vmm run', () => {
  let run: VmmRun;

  beforeAll(async () => {
    run = await startVmmRun();
  });

  afterAll(async () => {
    await run?.cleanup();
  });

  // Issue 10, item 7: this id (about 9 KB) overflowed JSON.stringify's stack when echoed, the
  // error reply re-encoded it, the main thread spun for 24 s and vmm then ignored SIGTERM.
  test('a 4500-deep id gets a clear error at once; status still works; SIGTERM exits 143 and removes the socket', async () => {
    const raw = RawClient.connect(run.socket);
    try {
      const deep = `{"command":"status","id":${'['.repeat(4500)}${']'.repeat(4500)}}`;
      const sent = Date.now();
      expect(await raw.request(deep)).toEqual({
        version: 1,
        error: { code: 'ERR_BAD_REQUEST', message: `the request nests lists or objects more than ${CONTROL_MAX_JSON_DEPTH} deep; a request needs 2.` },
      });
      expect(Date.now() - sent).toBeLessThan(1000);
      expect(await raw.request({ command: 'status', id: 2 })).toMatchObject({ id: 2, result: { state: 'running' } });
      // A deep value anywhere else fares the same, and the connection still serves.
      expect(await raw.request(`{"command":"status","args":[${'{"a":'.repeat(5000)}1${'}'.repeat(5000)}]}`)).toMatchObject({ error: { code: 'ERR_BAD_REQUEST' } });
      expect(await raw.request({ command: 'status' })).toMatchObject({ result: { state: 'running' } });
    } finally {
      raw.close();
    }
    run.child.kill('SIGTERM');
    const r = await run.exit;
    expect(r).toEqual({ code: 143, signal: null, stderr: 'vmm: stopped by SIGTERM.\n' });
    expect(fs.existsSync(run.socket)).toBe(false);
  });
});
