/**
 * `vmm ctl --socket PATH [--json] [--fd N]… [--timeout MS] COMMAND [ARGS…]`: send one command to
 * a running VM's control socket (plugin `control`) and print the answer.
 *
 *   vmm ctl --socket /run/vm.sock status
 *   vmm ctl --socket /run/vm.sock events            one line per event until Ctrl-C or the VM stops
 *   vmm ctl --socket /run/vm.sock wl add wl-conn-%d --fd 3 3<>/run/user/1000/wayland-0
 *
 * Exit codes (CTL_EXIT_CODES):
 *   0  the command succeeded (events: the stream ended because the VM stopped, or Ctrl-C)
 *   1  the server answered with an error (unknown command, wrong state, refused peer, …)
 *   2  usage: a missing or bad option, an --fd that is not open in this process
 *   3  cannot connect, the connection was lost, or no answer within --timeout
 */
import * as fs from 'fs';
import { Command } from 'commander';
import type { ControlClient as ControlClientType } from '../../plugins/control/client';
import type { ControlEvent, ControlResponse, StatusResult } from '../../plugins/control/protocol';
import { formatSize } from '../../core/config';
import { EXIT_USAGE, reportError } from '../exit-codes';

export const CTL_EXIT_OK = 0;
export const CTL_EXIT_SERVER_ERROR = 1;
export const CTL_EXIT_USAGE = EXIT_USAGE;
export const CTL_EXIT_CONNECTION = 3;

/** Default --timeout: long enough for a pause or stop of a busy VM. */
export const CTL_DEFAULT_TIMEOUT_MS = 10_000;
/** Client-side failures: the transport, not the server's answer (exit 3). */
const CONNECTION_CODES = new Set(['ERR_CONNECT', 'ERR_CONNECTION_LOST', 'ERR_TIMEOUT', 'ERR_PROTOCOL', 'ERR_EVENTS_OVERFLOW']);

export interface CtlFlags {
  socket: string;
  json?: boolean;
  fd?: string[];
  timeout?: string;
}

export function addCtlCommand(program: Command, verbose: () => boolean): Command {
  return program
    .command('ctl')
    .description("drive a running VM through its control socket (plugin 'control')")
    .requiredOption('--socket <path>', "the VM's control socket (the control plugin's socket option)")
    .option('--json', 'print the response as JSON (events: one JSON object per line)')
    .option(
      '--fd <n>',
      "send this process's open file descriptor N with the request (e.g. --fd 3 3<>FILE); repeatable",
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .option('--timeout <ms>', `give up when no answer comes within MS milliseconds (default: ${CTL_DEFAULT_TIMEOUT_MS})`)
    .argument('<command>', 'status, pause, resume, stop, events, or a command a plugin adds (e.g. wl)')
    .argument('[args...]', "the command's arguments (put -- before ones that start with -)")
    .addHelpText('after', [
      '',
      'Exit codes:',
      '  0  the command succeeded',
      '  1  the server answered with an error',
      '  2  usage error (bad option, --fd not open)',
      '  3  cannot connect, connection lost, or no answer in time',
    ].join('\n'))
    .action(async (command: string, args: string[], flags: CtlFlags, self: Command) => {
      const timeoutMs = parseTimeout(flags.timeout, self);
      const fds = (flags.fd ?? []).map((text) => parseFd(text, self));
      process.exitCode = await runCtl({ socket: flags.socket, json: Boolean(flags.json), fds, timeoutMs, command, args }, verbose());
    });
}

export interface CtlRequest {
  socket: string;
  json: boolean;
  fds: number[];
  timeoutMs: number;
  command: string;
  args: string[];
}

/** Connect, send, print; returns the exit code. */
export async function runCtl(request: CtlRequest, verbose: boolean): Promise<number> {
  // Loaded only now: it pulls in the native addon, which --help and usage errors must not need.
  const { ControlClient } = await import('../../plugins/control/client');
  let client: ControlClientType;
  try {
    client = await ControlClient.connect(request.socket);
  } catch (error) {
    return fail(error, verbose);
  }
  try {
    if (request.command === 'events' && request.args.length === 0) return await streamEvents(client, request);
    const response = await client.request(request.command, request.args, request.fds, { timeoutMs: request.timeoutMs });
    return printResponse(request, response);
  } catch (error) {
    return fail(error, verbose);
  } finally {
    client.close();
  }
}

async function streamEvents(client: ControlClientType, request: CtlRequest): Promise<number> {
  // Ctrl-C ends the stream normally: closing the client ends the iteration below.
  const onSigint = () => client.close();
  process.on('SIGINT', onSigint);
  try {
    for await (const event of client.events({ timeoutMs: request.timeoutMs })) {
      process.stdout.write(request.json ? `${JSON.stringify({ version: 1, event })}\n` : `${formatEvent(event)}\n`);
    }
    return CTL_EXIT_OK;
  } finally {
    process.removeListener('SIGINT', onSigint);
  }
}

function printResponse(request: CtlRequest, response: ControlResponse): number {
  if (request.json) process.stdout.write(`${JSON.stringify(response)}\n`);
  if ('error' in response) {
    process.stderr.write(`vmm ctl: ${response.error.message} (${response.error.code})\n`);
    return CTL_EXIT_SERVER_ERROR;
  }
  if (!request.json) process.stdout.write(formatResult(request.command, response.result));
  return CTL_EXIT_OK;
}

function fail(error: unknown, verbose: boolean): number {
  const code = (error as { code?: unknown } | null)?.code;
  reportError(error, verbose);
  return typeof code === 'string' && !CONNECTION_CODES.has(code) ? CTL_EXIT_SERVER_ERROR : CTL_EXIT_CONNECTION;
}

// --- human output ------------------------------------------------------------------------------

export function formatResult(command: string, result: Record<string, unknown>): string {
  if (command === 'status' && isStatus(result)) return formatStatus(result);
  const entries = Object.entries(result);
  if (entries.length === 0) return 'ok\n';
  return table(entries.map(([key, value]) => [key, typeof value === 'string' ? value : JSON.stringify(value)]));
}

export function formatStatus(status: StatusResult): string {
  const hex = (n: number) => `0x${n.toString(16)}`;
  const lines = table([
    ['state', status.state],
    ['vCPUs', String(status.vcpus)],
    ['memory', formatSize(status.memory)],
    ['pid', String(status.pid)],
    ['connections', String(status.connections)],
    ['plugins', status.plugins.map((p) => `${p.name} (${p.source})`).join(', ') || 'none'],
  ]);
  const devices = table([
    ['DEVICE', 'BUS', 'BASE', 'LENGTH'],
    ...status.devices.map((d) => [d.name, d.bus, hex(d.base), hex(d.length)]),
  ]);
  return `${lines}\n${devices}`;
}

export function formatEvent(event: ControlEvent): string {
  if (event.type === 'state') return `state ${event.from} -> ${event.to}`;
  const details = Object.entries(event.details).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return [`device ${event.device} ${event.event}`, ...details].join(' ');
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ')).join('\n') + '\n';
}

function isStatus(result: Record<string, unknown>): result is StatusResult & Record<string, unknown> {
  return typeof result.state === 'string' && typeof result.memory === 'number' && Array.isArray(result.devices) && Array.isArray(result.plugins);
}

// --- flags ---------------------------------------------------------------------------------------

function parseTimeout(text: string | undefined, self: Command): number {
  if (text === undefined) return CTL_DEFAULT_TIMEOUT_MS;
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    self.error(`--timeout must be a whole number of milliseconds (at least 1); got '${text}'`, { exitCode: CTL_EXIT_USAGE, code: 'vmm.badTimeout' });
  }
  return Number(text);
}

/** An --fd must be open here: the caller opens it (a shell redirection such as 3<>FILE). */
function parseFd(text: string, self: Command): number {
  const usage = (problem: string): never => self.error(`--fd ${text}: ${problem}`, { exitCode: CTL_EXIT_USAGE, code: 'vmm.badFd' });
  if (!/^\d+$/.test(text)) usage('must be a file descriptor number');
  const fd = Number(text);
  if (fd <= 2) usage('stdin, stdout and stderr cannot be passed; redirect the file to another number (e.g. --fd 3 3<>FILE)');
  try {
    fs.fstatSync(fd);
  } catch {
    usage(`file descriptor ${fd} is not open in this process; open it in the shell, e.g. --fd ${fd} ${fd}<>FILE`);
  }
  return fd;
}
