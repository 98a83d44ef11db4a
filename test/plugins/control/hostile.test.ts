/**
 * Hostile and broken clients of the control channel, and load: each gets a clear error or is
 * dropped, the VM keeps running, and the VMM's open fd count is the same before and after.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { native } from '../../../native';
import { CLIENT_EVENT_BACKLOG, ControlClient } from '../../../plugins/control/client';
import { CONTROL_DROP_GRACE_MS, CONTROL_EVENT_BACKLOG_BYTES, CONTROL_INBOX_MAX } from '../../../plugins/control/connection';
import {
  CONTROL_MAX_COMMAND_LENGTH, CONTROL_MAX_ID_BYTES, CONTROL_MAX_JSON_DEPTH, CONTROL_MAX_RESPONSE_BYTES,
} from '../../../plugins/control/protocol';
import {
  CLI, RawClient, expectFdCount, openFdCount, settledFdCount, startControlVm, testPlugin, type ControlVm,
} from './control-fixture';
import { sleep, until } from '../../helpers/wait';

const plugin = testPlugin();

describe('control plugin: hostile and broken clients', () => {
  let run: ControlVm;
  let baseline: number;

  beforeAll(async () => {
    run = await startControlVm({ maxFds: 4 }, [plugin]);
  });

  beforeEach(async () => {
    baseline = await settledFdCount();
  });

  afterEach(async () => {
    expect(run.vm.state).toBe('running');
    await expectFdCount(baseline);
  });

  afterAll(async () => {
    for (const fd of plugin.state.kept.splice(0)) fs.closeSync(fd);
    await run?.cleanup();
  });

  /** One request on a fresh connection; checks the connection still serves afterwards. */
  async function exchange(data: Buffer | string | object, fds: number[] = []): Promise<Record<string, any>> {
    const raw = RawClient.connect(run.socket);
    try {
      const response = await raw.request(data, fds);
      expect(await raw.request({ command: 'status' })).toMatchObject({ result: { state: 'running' } });
      return response;
    } finally {
      raw.close();
    }
  }

  test('malformed JSON, invalid UTF-8 and non-requests get ERR_BAD_JSON / ERR_BAD_REQUEST', async () => {
    expect(await exchange('{"command": "status"')).toMatchObject({ version: 1, error: { code: 'ERR_BAD_JSON', message: expect.stringContaining('not valid JSON') } });
    expect(await exchange(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))).toMatchObject({ error: { code: 'ERR_BAD_JSON', message: 'the request is not valid UTF-8.' } });
    expect(await exchange('[1,2]')).toMatchObject({ error: { code: 'ERR_BAD_REQUEST', message: expect.stringContaining('JSON object') } });
    expect(await exchange({ command: 42, id: 'x' })).toEqual({ version: 1, id: 'x', error: { code: 'ERR_BAD_REQUEST', message: "'command' must be a non-empty string; got number 42." } });
    expect(await exchange({ command: 'status', args: [1] })).toMatchObject({ error: { code: 'ERR_BAD_REQUEST' } });
    expect(await exchange({ command: 'status', extra: true })).toMatchObject({ error: { code: 'ERR_BAD_REQUEST', message: expect.stringContaining("unknown request key 'extra'") } });
    expect(await exchange({ command: 'wl add' })).toMatchObject({ error: { code: 'ERR_BAD_REQUEST', message: expect.stringContaining("subcommands in 'args'") } });
  });

  test('an unknown command gets ERR_UNKNOWN_COMMAND naming it', async () => {
    expect(await exchange({ command: 'frobnicate', id: 1 })).toEqual({
      version: 1, id: 1,
      error: { code: 'ERR_UNKNOWN_COMMAND', message: "unknown command 'frobnicate'; the built-in commands are status, pause, resume, stop, events, and no plugin answers 'frobnicate'." },
    });
  });

  test('a datagram larger than maxRequestBytes is discarded with ERR_REQUEST_TOO_LARGE; exactly the limit is served', async () => {
    const LIMIT = 64 * 1024; // the default maxRequestBytes
    const sized = (bytes: number) => {
      const empty = JSON.stringify({ command: 'echo', args: [''] });
      return JSON.stringify({ command: 'echo', args: ['x'.repeat(bytes - empty.length)] });
    };
    expect(Buffer.byteLength(sized(LIMIT))).toBe(LIMIT);
    expect(await exchange(sized(LIMIT))).toMatchObject({ result: { args: ['x'.repeat(LIMIT - 27 - 3)] } });
    expect(await exchange(sized(LIMIT + 1))).toMatchObject({ error: { code: 'ERR_REQUEST_TOO_LARGE', message: expect.stringContaining('65536 bytes') } });
  });

  // Issue 10, item 7: a 4500-deep id made the reply's JSON.stringify overflow the stack, and the
  // error reply re-encoded the same id: the VMM hung for good.
  test('nesting deeper than CONTROL_MAX_JSON_DEPTH is refused unparsed; the VM answers at once', async () => {
    const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
    const deepId = `{"command":"status","id":${nested(4500)}}`;
    const started = Date.now();
    const depthError = { version: 1, error: { code: 'ERR_BAD_REQUEST', message: `the request nests lists or objects more than ${CONTROL_MAX_JSON_DEPTH} deep; a request needs 2.` } };
    expect(await exchange(deepId)).toEqual(depthError);
    expect(Date.now() - started).toBeLessThan(1000);
    // The request object is level 1: an id of 31 lists is 32 deep, at the limit, and refused
    // only for not being an id; 32 lists is one level too many.
    expect(await exchange(`{"command":"status","id":${nested(CONTROL_MAX_JSON_DEPTH - 1)}}`)).toEqual({
      version: 1, id: null, error: { code: 'ERR_BAD_REQUEST', message: `'id' must be a string of at most ${CONTROL_MAX_ID_BYTES} bytes, a finite number or null; got a list.` },
    });
    expect(await exchange(`{"command":"status","id":${nested(CONTROL_MAX_JSON_DEPTH)}}`)).toEqual(depthError);
    expect(await exchange(`{"command":"status","args":[${'{"a":'.repeat(40)}1${'}'.repeat(40)}]}`)).toEqual(depthError);
    // Brackets inside strings, escaped quotes included, are not nesting.
    const tricky = `\\"${'['.repeat(100)}{`;
    expect(await exchange({ command: 'echo', args: [tricky, '['.repeat(100)] })).toMatchObject({ result: { args: [tricky, '['.repeat(100)] } });
  });

  test('an id that is not a string (at most CONTROL_MAX_ID_BYTES), a finite number or null is refused with id null', async () => {
    const atLimit = 'é'.repeat(CONTROL_MAX_ID_BYTES / 2); // 2 bytes each in UTF-8
    expect(await exchange({ command: 'status', id: atLimit })).toMatchObject({ id: atLimit, result: { state: 'running' } });
    const badId = (got: string) => ({ version: 1, id: null, error: { code: 'ERR_BAD_REQUEST', message: `'id' must be a string of at most ${CONTROL_MAX_ID_BYTES} bytes, a finite number or null; got ${got}.` } });
    expect(await exchange({ command: 'status', id: `${atLimit}a` })).toEqual(badId(`a string of ${CONTROL_MAX_ID_BYTES + 1} bytes`));
    expect(await exchange({ command: 'status', id: { any: ['json'] } })).toEqual(badId('an object'));
    expect(await exchange({ command: 'status', id: true })).toEqual(badId('boolean true'));
    expect(await exchange('{"command":"status","id":1e999}')).toEqual(badId('number Infinity'));
  });

  test('a command name of CONTROL_MAX_COMMAND_LENGTH is looked up; one character more is refused', async () => {
    const name = 'a'.repeat(CONTROL_MAX_COMMAND_LENGTH);
    expect(await exchange({ command: name })).toMatchObject({ error: { code: 'ERR_UNKNOWN_COMMAND' } });
    expect(await exchange({ command: `${name}a` })).toMatchObject({ error: { code: 'ERR_BAD_REQUEST', message: expect.stringContaining(`at most ${CONTROL_MAX_COMMAND_LENGTH}`) } });
  });

  test('a reply of CONTROL_MAX_RESPONSE_BYTES goes out; one byte more, or one JSON cannot nest, becomes a flat error', async () => {
    const overhead = JSON.stringify({ version: 1, id: 7, result: { data: '' } }).length;
    const exact = await exchange({ command: 'big', args: [String(CONTROL_MAX_RESPONSE_BYTES - overhead)], id: 7 });
    expect(exact).toMatchObject({ id: 7, result: { data: expect.any(String) } });
    expect(JSON.stringify(exact).length).toBe(CONTROL_MAX_RESPONSE_BYTES);
    expect(await exchange({ command: 'big', args: [String(CONTROL_MAX_RESPONSE_BYTES - overhead + 1)], id: 7 })).toEqual({
      version: 1, id: 7, error: { code: 'ERR_RESPONSE_TOO_LARGE', message: `the reply is ${CONTROL_MAX_RESPONSE_BYTES + 1} bytes; a reply may have at most ${CONTROL_MAX_RESPONSE_BYTES}.` },
    });
    // A plugin's result too deep for JSON.stringify's stack: one error, sent once.
    expect(await exchange({ command: 'deep', args: ['200000'], id: 'd' })).toMatchObject({
      version: 1, id: 'd', error: { code: 'ERR_COMMAND_FAILED', message: expect.stringContaining('cannot be encoded as JSON') },
    });
  });

  test('a client that pipelines without pause is read at most CONTROL_INBOX_MAX requests ahead; every one is answered in order', async () => {
    const raw = RawClient.connect(run.socket);
    try {
      raw.send({ command: 'slow', args: ['400'], id: 'slow' });
      const count = 2000;
      for (let i = 0; i < count; i++) raw.send({ command: 'status', id: i });
      await until('the slow command to be running', () => plugin.state.running === 1);
      await sleep(150);
      // Had the server gone on reading, the kernel would have taken all of them by now.
      expect(plugin.state.running).toBe(1);
      expect(raw.socket.bufferedMessages).toBeGreaterThan(count - 1000);
      expect(CONTROL_INBOX_MAX).toBeLessThan(1000);
      expect((await raw.next()).id).toBe('slow');
      const ids: number[] = [];
      for (let i = 0; i < count; i++) ids.push((await raw.next()).id as number);
      expect(ids).toEqual(Array.from({ length: count }, (_, i) => i));
    } finally {
      raw.close();
    }
  });

  test('a zero-length datagram is consumed and answered; the next request still works', async () => {
    const raw = RawClient.connect(run.socket);
    try {
      raw.send(Buffer.alloc(0));
      raw.send(Buffer.alloc(0));
      raw.send({ command: 'echo', args: ['after'] });
      expect(await raw.next()).toMatchObject({ error: { code: 'ERR_EMPTY_REQUEST' } });
      expect(await raw.next()).toMatchObject({ error: { code: 'ERR_EMPTY_REQUEST' } });
      expect(await raw.next()).toMatchObject({ result: { args: ['after'] } });
    } finally {
      raw.close();
    }
  });

  test('more fds than maxFds: ERR_TOO_MANY_FDS, and every fd that arrived is closed', async () => {
    // maxFds is 4 here: 5 is one too many.
    const files = Array.from({ length: 5 }, () => fs.openSync('/dev/null', 'r'));
    try {
      expect(await exchange({ command: 'status', fds: [0] }, files)).toMatchObject({ error: { code: 'ERR_TOO_MANY_FDS', message: expect.stringContaining('more than 4') } });
      // Exactly the limit is fine (and unused fds are closed).
      expect(await exchange({ command: 'status', fds: [0, 3] }, files.slice(0, 4))).toMatchObject({ result: { state: 'running' } });
    } finally {
      for (const fd of files) fs.closeSync(fd);
    }
  });

  test('fd indexes that name nothing, or name one fd twice, get ERR_BAD_FD_INDEX', async () => {
    const file = fs.openSync('/dev/null', 'r');
    try {
      expect(await exchange({ command: 'take-socket', fds: [1] }, [file])).toMatchObject({ error: { code: 'ERR_BAD_FD_INDEX', message: "'fds' names descriptor 1, but the request carried 1." } });
      expect(await exchange({ command: 'take-socket', fds: [0, 0] }, [file])).toMatchObject({ error: { code: 'ERR_BAD_FD_INDEX' } });
      expect(await exchange({ command: 'take-socket', fds: [-1] }, [file])).toMatchObject({ error: { code: 'ERR_BAD_REQUEST' } });
    } finally {
      fs.closeSync(file);
    }
  });

  test('an fd of the wrong type gets ERR_BAD_FD_TYPE and is closed; the right type is taken', async () => {
    const file = fs.openSync('/dev/null', 'r');
    const [a, b] = native.unixPair(native.SOCK_STREAM);
    try {
      expect(await exchange({ command: 'take-socket', fds: [0] }, [file])).toMatchObject({ error: { code: 'ERR_BAD_FD_TYPE', message: 'the socket must be a socket; got a character-device.' } });
      const before = openFdCount();
      expect(await exchange({ command: 'take-socket', fds: [0] }, [a])).toMatchObject({ result: { taken: true } });
      // The plugin kept its copy: one more fd, which it owns now.
      expect(plugin.state.kept).toHaveLength(1);
      expect(fs.fstatSync(plugin.state.kept[0]).isSocket()).toBe(true);
      await expectFdCount(before + 1);
    } finally {
      fs.closeSync(file);
      native.close(a);
      native.close(b);
      for (const fd of plugin.state.kept.splice(0)) fs.closeSync(fd);
    }
  });

  test('a client that disconnects mid-request: the handler finishes, its fds are closed, nothing leaks', async () => {
    const files = [fs.openSync('/dev/null', 'r'), fs.openSync('/dev/null', 'r')];
    const raw = RawClient.connect(run.socket);
    raw.send({ command: 'slow', args: ['200'], fds: [0] }, files);
    raw.send({ command: 'status' });
    for (const fd of files) fs.closeSync(fd);
    await until('the slow command to be running', () => plugin.state.running === 1);
    raw.close();
    await until('no running control command', () => plugin.state.running === 0);
    // Another client is served normally meanwhile and after.
    expect(await exchange({ command: 'status' })).toMatchObject({ result: { state: 'running' } });
  });

  test('a peer with another uid is refused with a clear error (SO_PEERCRED); the VM keeps running', async () => {
    // The socket is 0600 and root's: open the way so the kernel lets uid 65534 connect, and
    // it is the VMM's own check that refuses.
    fs.chmodSync(run.dir, 0o755);
    fs.chmodSync(run.socket, 0o666);
    try {
      const result = await runAs(65534, [CLI, 'ctl', '--socket', run.socket, 'status']);
      expect(result.stderr).toContain('uid 65534 may not use this control socket');
      expect(result.stderr).toContain('ERR_PERMISSION_DENIED');
      expect(result.code).toBe(1);
      const json = await runAs(65534, [CLI, 'ctl', '--socket', run.socket, '--json', 'pause']);
      expect(JSON.parse(json.stdout)).toMatchObject({ version: 1, error: { code: 'ERR_PERMISSION_DENIED' } });
      expect(run.vm.state).toBe('running');
    } finally {
      fs.chmodSync(run.socket, 0o600);
      fs.chmodSync(run.dir, 0o700);
    }
  });

  test('an events subscriber that stops reading is dropped with a reason; the others get every event', async () => {
    const good = await ControlClient.connect(run.socket);
    const seen: number[] = [];
    const iterating = (async () => {
      for await (const e of good.events()) if (e.type === 'device') seen.push(e.details.n as number);
    })();
    const slow = RawClient.connect(run.socket);
    expect(await slow.request({ command: 'events' })).toMatchObject({ result: { subscribed: true } });
    slow.socket.pauseReading();
    expect(await good.request('status')).toHaveProperty('result');

    const count = 2000;
    const payload = 1024;
    const commander = await ControlClient.connect(run.socket);
    expect(await commander.request('emit', [String(count), String(payload)])).toMatchObject({ result: { emitted: count } });
    await until('every event at the good subscriber', () => seen.length === count, 10000);
    expect(seen).toEqual(Array.from({ length: count }, (_, i) => i));

    // The slow one was dropped once it was CONTROL_EVENT_BACKLOG_BYTES behind: it finds the
    // events the kernel held, then the reason, then the end.
    slow.socket.resumeReading();
    await slow.closed;
    const last = JSON.parse(slow.messages[slow.messages.length - 1].data.toString());
    expect(last).toMatchObject({ version: 1, error: { code: 'ERR_EVENTS_OVERFLOW', message: expect.stringContaining(`limit is ${CONTROL_EVENT_BACKLOG_BYTES}`) } });
    expect(slow.messages.length).toBeLessThan(count);
    for (const m of slow.messages) for (const fd of m.fds) fs.closeSync(fd);

    good.close();
    commander.close();
    await iterating;
  });

  test('a dropped subscriber that never reads is closed anyway after CONTROL_DROP_GRACE_MS', async () => {
    const commander = await ControlClient.connect(run.socket);
    const slow = RawClient.connect(run.socket);
    try {
      expect(await slow.request({ command: 'events' })).toMatchObject({ result: { subscribed: true } });
      slow.socket.pauseReading();
      const connections = async () => ((await commander.request('status')) as unknown as { result: { connections: number } }).result.connections;
      expect(await connections()).toBe(2);
      // Enough to pass CONTROL_EVENT_BACKLOG_BYTES: the server drops it, with the reason queued.
      const events = Math.ceil((2 * CONTROL_EVENT_BACKLOG_BYTES) / 1024);
      expect(await commander.request('emit', [String(events), '1024'])).toMatchObject({ result: { emitted: events } });
      const dropped = Date.now();
      expect(await connections()).toBe(2);
      for (;;) {
        if ((await connections()) === 1) break;
        if (Date.now() - dropped > CONTROL_DROP_GRACE_MS + 2000) throw new Error('the dropped connection was never closed');
        await sleep(100);
      }
      expect(Date.now() - dropped).toBeGreaterThan(CONTROL_DROP_GRACE_MS - 500);
    } finally {
      slow.socket.resumeReading();
      await slow.closed;
      for (const m of slow.messages) for (const fd of m.fds) fs.closeSync(fd);
      commander.close();
    }
  });

  test('client: a subscriber that does not iterate holds at most CLIENT_EVENT_BACKLOG events, then closes with ERR_EVENTS_OVERFLOW', async () => {
    const idle = await ControlClient.connect(run.socket);
    const commander = await ControlClient.connect(run.socket);
    try {
      expect(await idle.request('events')).toMatchObject({ result: { subscribed: true } });
      expect(await commander.request('emit', [String(CLIENT_EVENT_BACKLOG)])).toMatchObject({ result: { emitted: CLIENT_EVENT_BACKLOG } });
      // Its answer comes after every event sent before it: all are held now, and that is allowed.
      expect(await idle.request('status')).toHaveProperty('result');
      expect(idle.closed).toBe(false);
      expect(await commander.request('emit', ['1'])).toMatchObject({ result: { emitted: 1 } });
      await until('the idle subscriber to close', () => idle.closed);
      await expect(idle.request('status')).rejects.toMatchObject({ code: 'ERR_EVENTS_OVERFLOW', message: `more than ${CLIENT_EVENT_BACKLOG} events are waiting to be read; the connection was closed.` });
    } finally {
      idle.close();
      commander.close();
    }
  });

  test('load: 100 concurrent clients × 100 requests each, every one answered exactly once, in order', async () => {
    const clients = await Promise.all(Array.from({ length: 100 }, () => ControlClient.connect(run.socket)));
    const raws = clients.map(async (client, c) => {
      // Pipelined: all 100 requests are sent before the first answer is read.
      const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => client.request('echo', [`${c}:${i}`])));
      return answers.map((a) => ('result' in a ? (a.result.args as string[])[0] : `error ${a.error.code}`));
    });
    const results = await Promise.all(raws);
    results.forEach((answers, c) => expect(answers).toEqual(Array.from({ length: 100 }, (_, i) => `${c}:${i}`)));
    for (const client of clients) client.close();
  });

  test('the raw client sees exactly one answer per request (no duplicates after the last)', async () => {
    const raw = RawClient.connect(run.socket);
    for (let i = 0; i < 50; i++) raw.send({ command: 'status', id: i });
    const ids: number[] = [];
    for (let i = 0; i < 50; i++) ids.push((await raw.next()).id as number);
    expect(ids).toEqual(Array.from({ length: 50 }, (_, i) => i));
    await sleep(100);
    expect(raw.messages).toHaveLength(0);
    raw.close();
  });
});

function runAs(uid: number, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, ...args], {
      cwd: path.dirname(CLI), stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
