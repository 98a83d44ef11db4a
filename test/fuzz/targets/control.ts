/**
 * Fuzz target: the control protocol (plugins/control/protocol.ts) as the server uses it: a
 * datagram → decodeRequest → a response (the result, or the error with the id it carried) →
 * encodeResponse → what the client's decodeServerMessage reads. Inputs: random bytes, random
 * JSON, request-shaped objects with odd types, nesting from 1 to 30 000 deep (balanced or
 * not, at every field), huge and odd numbers, long and broken strings, and byte-level
 * mutations of valid requests; all within the server's 64 KiB datagram limit.
 *
 * Checked: nothing throws; each call within the time and allocation bounds; a decoded request
 * has the documented shape and an error a documented code; the response always encodes, fits
 * a datagram, is version 1 and parses as a server message; an accepted id is echoed exactly;
 * a valid request survives encodeRequest → decodeRequest unchanged.
 */
import fc from 'fast-check';
import {
  CONTROL_ERRORS, CONTROL_MAX_COMMAND_LENGTH, CONTROL_MAX_RESPONSE_BYTES, decodeRequest, decodeServerMessage, encodeRequest,
  encodeResponse, errorResponse, resultResponse, type ControlRequestMessage,
} from '../../../plugins/control/protocol';
import { Meter, invariant } from '../harness/meter';
import type { FuzzTarget } from '../harness/target';

/** plugins/control/index.ts: the default maxRequestBytes (a longer datagram is refused unread). */
const MAX_REQUEST_BYTES = 64 * 1024;
const CODES = new Set<string>(Object.values(CONTROL_ERRORS));
const COMMAND_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

type Input =
  | { kind: 'bytes'; bytes: Uint8Array }
  | { kind: 'json'; value: unknown }
  | { kind: 'request'; request: Record<string, unknown> }
  | { kind: 'nested'; depth: number; open: '[' | '{"a":' | '{"id":'; at: 'top' | 'id' | 'args' | 'command' | 'fds'; balanced: boolean }
  | { kind: 'text'; text: string }
  | { kind: 'mutated'; request: Record<string, unknown>; edits: { at: number; op: 'flip' | 'insert' | 'delete'; byte: number }[] };

const oddNumber = fc.constantFrom(0, -0, 1e308, -1e308, 2 ** 53, 2 ** 53 + 1, 1e-324, 0.1, -1, 4294967296, Number.MAX_SAFE_INTEGER);
const oddText = fc.constantFrom('1e309', '-1e400', '123456789012345678901234567890123456789', '0x10', 'NaN', 'Infinity', '-', '01', '1.', '.5', '1e', '"\\ud800"', '"\\u0000"', '"\\uDFFF\\uD800"', '\ufeff{"command":"status"}', '{"command":"status"}\u0000', '{"command":"status"} {"command":"stop"}', '{"command":"status",}', '{"__proto__":{"command":"stop"},"command":"status"}', '{"command":"status","command":"stop"}');
const anyJson = fc.jsonValue({ maxDepth: 4 });
const commandArb = fc.oneof(
  fc.constantFrom('status', 'pause', 'resume', 'stop', 'events', 'wl', 'net.x', 'a-b_c', 'x'.repeat(CONTROL_MAX_COMMAND_LENGTH), 'x'.repeat(CONTROL_MAX_COMMAND_LENGTH + 1), '', ' status', 'wl add', '-x', 'ståtus', 'status\n'),
  fc.string({ maxLength: 80 }),
  anyJson,
);
const idArb = fc.oneof(
  fc.constantFrom(null, 0, -1, 1.5, 'x', '', 'x'.repeat(256), 'x'.repeat(257), 'é'.repeat(128), 'é'.repeat(129), true, [], {}, [1], { a: 1 }),
  oddNumber,
  fc.string({ maxLength: 300 }),
  anyJson,
);
const requestArb: fc.Arbitrary<Record<string, unknown>> = fc.record({
  command: commandArb,
  args: fc.oneof(fc.array(fc.string({ maxLength: 20 }), { maxLength: 4 }), anyJson),
  fds: fc.oneof(fc.array(fc.oneof(fc.nat({ max: 8 }), oddNumber), { maxLength: 4 }), anyJson),
  id: idArb,
  extra: anyJson,
}, { requiredKeys: [] });

const inputArb: fc.Arbitrary<Input> = fc.oneof(
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 512 }).map((bytes): Input => ({ kind: 'bytes', bytes })) },
  { weight: 2, arbitrary: anyJson.map((value): Input => ({ kind: 'json', value })) },
  { weight: 5, arbitrary: requestArb.map((request): Input => ({ kind: 'request', request })) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('nested' as const),
      depth: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constantFrom(31, 32, 33, 100, 1000, 4500, 10000, 21000, 30000)),
      open: fc.constantFrom('[' as const, '{"a":' as const, '{"id":' as const),
      at: fc.constantFrom('top' as const, 'id' as const, 'args' as const, 'command' as const, 'fds' as const),
      balanced: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.oneof(oddText, fc.string({ maxLength: 200 }), fc.constantFrom('"' + 'x'.repeat(60000) + '"', '[' + '1,'.repeat(20000) + '1]')).map((text): Input => ({ kind: 'text', text })) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('mutated' as const),
      request: requestArb,
      edits: fc.array(fc.record({ at: fc.nat(), op: fc.constantFrom('flip' as const, 'insert' as const, 'delete' as const), byte: fc.nat({ max: 255 }) }), { minLength: 1, maxLength: 4 }),
    }),
  },
);

function nested(input: Extract<Input, { kind: 'nested' }>): string {
  const close = input.open === '[' ? ']' : '}';
  const inner = input.open.repeat(input.depth) + '1' + (input.balanced ? close.repeat(input.depth) : '');
  switch (input.at) {
    case 'top': return inner;
    case 'id': return `{"command":"status","id":${inner}}`;
    case 'args': return `{"command":"status","args":${inner}}`;
    case 'fds': return `{"command":"status","fds":${inner}}`;
    case 'command': return `{"command":${inner}}`;
  }
}

function datagram(input: Input): Uint8Array {
  switch (input.kind) {
    case 'bytes': return input.bytes;
    case 'json': return Buffer.from(JSON.stringify(input.value) ?? 'null');
    case 'request': return Buffer.from(JSON.stringify(input.request));
    case 'nested': return Buffer.from(nested(input));
    case 'text': return Buffer.from(input.text);
    case 'mutated': {
      const bytes = [...Buffer.from(JSON.stringify(input.request))];
      for (const e of input.edits) {
        const at = e.at % (bytes.length + 1);
        if (e.op === 'insert') bytes.splice(at, 0, e.byte);
        else if (at < bytes.length) {
          if (e.op === 'flip') bytes[at] ^= e.byte || 1;
          else bytes.splice(at, 1);
        }
      }
      return Uint8Array.from(bytes);
    }
  }
}

export function checkExchange(input: Input): void {
  const meter = new Meter();
  const data = datagram(input);
  // The server refuses longer datagrams before decoding them (MSG_TRUNC).
  if (data.length > MAX_REQUEST_BYTES || data.length === 0) return;
  const decoded = meter.call('decodeRequest', () => decodeRequest(data));
  meter.check();
  invariant(decoded !== undefined, 'decodeRequest returned nothing');
  if (decoded.ok) {
    const { command, args, fds } = decoded.value;
    invariant(typeof command === 'string' && command.length <= CONTROL_MAX_COMMAND_LENGTH && COMMAND_PATTERN.test(command), () => `accepted command ${JSON.stringify(command)}`);
    invariant(Array.isArray(args) && args.every((a) => typeof a === 'string'), 'accepted args that are not strings');
    invariant(Array.isArray(fds) && fds.every((i) => Number.isInteger(i) && i >= 0), 'accepted fds that are not indexes');
  } else {
    invariant(CODES.has(decoded.error.code), () => `error code ${decoded.error.code} is not a documented one`);
    invariant(typeof decoded.error.message === 'string' && decoded.error.message.length > 0, 'an error without a message');
  }
  // What the server sends back: the result, or the error with whatever id decoding found.
  const response = decoded.ok
    ? resultResponse({ state: 'running' }, decoded.value.id)
    : errorResponse(decoded.error.code, decoded.error.message, decoded.id);
  const encoded = meter.call('encodeResponse', () => encodeResponse(response));
  meter.check();
  invariant(encoded !== undefined, 'encodeResponse returned nothing');
  invariant(encoded.length <= CONTROL_MAX_RESPONSE_BYTES, () => `a ${encoded.length}-byte response`);
  const read = meter.call('decodeServerMessage', () => decodeServerMessage(encoded));
  meter.check();
  invariant(read?.ok, () => `the client cannot read the response: ${read && !read.ok ? read.error.message : ''}`);
  const parsed = JSON.parse(Buffer.from(encoded).toString()) as Record<string, unknown>;
  invariant(parsed.version === 1, 'a response without version 1');
  const id = decoded.ok ? decoded.value.id : decoded.id;
  if (id !== undefined && 'result' in parsed) {
    invariant(JSON.stringify(parsed.id) === JSON.stringify(id), () => `id ${JSON.stringify(id)} echoed as ${JSON.stringify(parsed.id)}`);
  }
  if (decoded.ok && input.kind === 'request') {
    // A request the server accepts survives the client library's encoding unchanged.
    const again = decodeRequest(encodeRequest(decoded.value as ControlRequestMessage));
    invariant(again.ok && JSON.stringify(again.value) === JSON.stringify(decoded.value), 'encodeRequest → decodeRequest changed an accepted request');
  }
  // A client fed random bytes by a broken server never throws either.
  meter.call('decodeServerMessage (random)', () => decodeServerMessage(data));
  meter.check();
}

export const controlTarget: FuzzTarget = {
  name: 'control',
  summary: 'control protocol: datagram → decodeRequest → response → encodeResponse → decodeServerMessage',
  quickRuns: 2000,
  property: () => fc.property(inputArb, checkExchange),
};
