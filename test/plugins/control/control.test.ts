/**
 * The control channel against a real VM: status, pause, resume, stop, and an event stream that
 * sees every change in order.
 */
import * as fs from 'fs';
import { ControlClient } from '../../../plugins/control/client';
import { PROTOCOL_VERSION, type ControlEvent, type StatusResult } from '../../../plugins/control/protocol';
import { MiB, RawClient, settledFdCount, expectFdCount, startControlVm, testPlugin, type ControlVm } from './control-fixture';
import { until } from '../../helpers/wait';

const plugin = testPlugin();

describe('control plugin: driving a running VM', () => {
  let run: ControlVm;
  let client: ControlClient;

  beforeAll(async () => {
    run = await startControlVm({ maxConnections: 4 }, [plugin]);
    client = await ControlClient.connect(run.socket);
  });

  afterAll(async () => {
    client?.close();
    await run?.cleanup();
  });

  test('the socket exists once the VM runs, is a socket, mode 0600, owned by the VMM user', () => {
    expect(run.vm.state).toBe('running');
    const stat = fs.lstatSync(run.socket);
    expect(stat.isSocket()).toBe(true);
    expect(stat.mode & 0o777).toBe(0o600);
    expect(stat.uid).toBe(process.geteuid!());
  });

  test('status reports state, vCPUs, memory, devices and loaded plugins', async () => {
    const response = await client.request('status');
    expect(response).toMatchObject({ version: PROTOCOL_VERSION, result: { state: 'running', vcpus: 1, memory: 64 * MiB, pid: process.pid } });
    const result = (response as unknown as { result: StatusResult }).result;
    expect(result.devices.map((d) => d.name)).toEqual(expect.arrayContaining(['serial (COM1)', 'exit port']));
    expect(result.plugins).toEqual([
      { name: 'control', source: 'first-party control' },
      { name: 'control-test', source: 'test' },
    ]);
  });

  test('the request id is echoed; a plugin command answers through the controlCommand hook', async () => {
    const raw = RawClient.connect(run.socket);
    try {
      expect(await raw.request({ command: 'echo', args: ['a', 'b'], id: 'req-1' }))
        .toEqual({ version: 1, id: 'req-1', result: { args: ['a', 'b'] } });
      expect(await raw.request({ command: 'echo', id: -2.5 })).toEqual({ version: 1, id: -2.5, result: { args: [] } });
      expect(await raw.request({ command: 'echo', id: null })).toEqual({ version: 1, id: null, result: { args: [] } });
      expect(await raw.request({ command: 'bigint', id: 3 }))
        .toMatchObject({ version: 1, id: 3, error: { code: 'ERR_COMMAND_FAILED', message: expect.stringContaining('JSON') } });
      expect(await raw.request({ command: 'status', args: ['extra'] }))
        .toMatchObject({ error: { code: 'ERR_BAD_ARGS', message: "'status' takes no arguments; got 1." } });
    } finally {
      raw.close();
    }
  });

  test('client: no answer within the timeout rejects with ERR_TIMEOUT and closes that connection', async () => {
    const impatient = await ControlClient.connect(run.socket);
    await expect(impatient.request('slow', ['300'], [], { timeoutMs: 50 })).rejects.toMatchObject({ code: 'ERR_TIMEOUT', message: "no response to 'slow' within 50 ms." });
    expect(impatient.closed).toBe(true);
    await expect(impatient.request('status')).rejects.toMatchObject({ code: 'ERR_TIMEOUT' });
    expect(await client.request('status')).toMatchObject({ result: { state: 'running' } });
    // The server finishes the command for nobody, then lets the connection go.
    await until('no running control command', () => plugin.state.running === 0);
  });

  test('a peer beyond maxConnections is refused with a clear error; the others keep working', async () => {
    const before = await settledFdCount();
    const extra = await Promise.all([1, 2, 3].map(() => ControlClient.connect(run.socket)));
    // client + 3 = 4 = maxConnections; make sure the server has accepted them all.
    for (const c of extra) expect(await c.request('status')).toHaveProperty('result');
    const refused = await ControlClient.connect(run.socket);
    const response = await refused.request('status');
    expect(response).toMatchObject({ version: 1, error: { code: 'ERR_TOO_MANY_CONNECTIONS', message: expect.stringContaining('limit is 4') } });
    refused.close();
    for (const c of extra) c.close();
    expect(await client.request('status')).toMatchObject({ result: { state: 'running' } });
    await expectFdCount(before);
  });

  test('pause, resume and stop change the state; an event stream sees each change in order', async () => {
    const events: ControlEvent[] = [];
    const watcher = await ControlClient.connect(run.socket);
    const iterating = (async () => { for await (const e of watcher.events()) events.push(e); })();
    // Pipelined after `events`: once this is answered, the subscription is in place.
    expect(await watcher.request('status')).toHaveProperty('result');

    expect(await client.request('pause')).toEqual({ version: 1, id: expect.any(Number), result: { state: 'paused' } });
    expect(run.vm.state).toBe('paused');
    expect(await client.request('status')).toMatchObject({ result: { state: 'paused' } });
    expect(await client.request('pause')).toMatchObject({ error: { code: 'ERR_VM_STATE', message: 'cannot pause a VM that is paused.' } });
    expect(await client.request('resume')).toMatchObject({ result: { state: 'running' } });
    expect(run.vm.state).toBe('running');
    expect(await client.request('emit', ['2'])).toMatchObject({ result: { emitted: 2 } });

    expect(await client.request('stop')).toMatchObject({ result: { state: 'stopping' } });
    const exit = await run.exit;
    expect(exit).toMatchObject({ reason: 'stopped', exitCode: 0 });
    await iterating;

    expect(events).toEqual([
      { type: 'state', from: 'running', to: 'paused' },
      { type: 'state', from: 'paused', to: 'running' },
      { type: 'device', device: 'test-device', event: 'ping', details: { n: 0, payload: '' } },
      { type: 'device', device: 'test-device', event: 'ping', details: { n: 1, payload: '' } },
      { type: 'state', from: 'running', to: 'stopping' },
      { type: 'state', from: 'stopping', to: 'stopped' },
    ]);
    // The socket file goes with the VM, and every connection is closed.
    expect(fs.existsSync(run.socket)).toBe(false);
    await until('the client to see the end', () => client.closed, 5000);
    await expect(client.request('status')).rejects.toMatchObject({ code: 'ERR_CONNECTION_LOST' });
  });
});
