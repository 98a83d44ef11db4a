/** core/config.ts: defaults, sizes, and the field checks with their messages. */
import * as os from 'os';
import {
  DEFAULT_CONFIG, DEFAULT_CPUID_HIDE, checkConfigFields, formatSize, maxMemory, parseSize, validateConfig,
} from '../../core/config';
import { ConfigError } from '../../core/errors';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

describe('defaults', () => {
  test('DEFAULT_CONFIG boots the demo guest with 64 MiB and one vCPU', () => {
    expect(DEFAULT_CONFIG).toEqual({
      kernel: null,
      initrd: null,
      cmdline: '',
      memory: 64 * MiB,
      cpus: 1,
      cpuidHide: [...DEFAULT_CPUID_HIDE],
      unclaimedAccess: 'stop',
      plugins: [],
    });
  });

  test('DEFAULT_CPUID_HIDE holds what the emulated host cannot run', () => {
    expect([...DEFAULT_CPUID_HIDE].sort()).toEqual(
      ['cx16', 'fsgsbase', 'invpcid', 'movbe', 'pcid', 'popcnt', 'rdrand', 'rdseed', 'smap', 'smep', 'tsc_deadline_timer', 'xsave'],
    );
  });

  test('validateConfig({}) is the default config, as a fresh copy', () => {
    const config = validateConfig({}, 'test');
    expect(config).toEqual(DEFAULT_CONFIG);
    expect(config.cpuidHide).not.toBe(DEFAULT_CONFIG.cpuidHide);
    config.cpuidHide.push('avx');
    expect(DEFAULT_CONFIG.cpuidHide).not.toContain('avx');
  });

  test('a complete VmConfig passes through unchanged', () => {
    const config = {
      ...DEFAULT_CONFIG,
      kernel: '/k',
      memory: 128 * MiB,
      cpus: 2,
      cpuidHide: [],
      plugins: [{ name: 'virtio-net', options: { tap: 'tap0' } }],
    };
    expect(validateConfig(config, 'test')).toEqual(config);
  });
});

describe('parseSize', () => {
  test.each([
    ['512', 512 * MiB],
    ['64MiB', 64 * MiB],
    ['512M', 512 * MiB],
    ['512m', 512 * MiB],
    ['512MB', 512 * MiB],
    ['1G', GiB],
    ['1GiB', GiB],
    ['1.5G', 1.5 * GiB],
    ['4096K', 4 * MiB],
    ['2T', 2048 * GiB],
    ['4194304B', 4 * MiB],
    [' 8 M ', 8 * MiB],
    ['0', 0],
  ])('%p is %d bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  test.each([['abc'], [''], ['-1'], ['1X'], ['M'], ['1.5.2G'], ['0.1B']])('%p is not a size', (text) => {
    expect(() => parseSize(text)).toThrow(RangeError);
  });
});

describe('formatSize', () => {
  test.each([
    [0, '0 B'],
    [100, '100 B'],
    [KiB, '1 KiB'],
    [64 * MiB, '64 MiB'],
    [1.5 * MiB, '1.5 MiB'],
    [GiB + 1, '1.0 GiB'],
    [24683656 * KiB, '23.5 GiB'],
    [100 * 1024 * GiB, '100 TiB'],
  ])('%d is %p', (bytes, text) => {
    expect(formatSize(bytes)).toBe(text);
  });
});

describe('field checks', () => {
  const check = (input: unknown) => () => validateConfig(input, 'vmm.config.json');

  test('errors are ConfigErrors with code ERR_CONFIG', () => {
    expect(check({ cpus: 0 })).toThrow(ConfigError);
    try {
      check({ cpus: 0 })();
    } catch (err) {
      expect((err as ConfigError).code).toBe('ERR_CONFIG');
    }
  });

  test.each<[unknown, string]>([
    [{ memory: 1024 }, 'vmm.config.json: memory must be between 4 MiB and'],
    [{ memory: '1K' }, 'got 1 KiB'],
    [{ memory: '100T' }, 'got 100 TiB'],
    [{ memory: 'lots' }, 'memory must be a size such as 512M or 2G (a plain number is MiB); got "lots"'],
    [{ memory: 4 * MiB + 1 }, 'memory must be a whole number of 4 KiB pages; got 4194305 bytes'],
    [{ memory: true }, 'memory must be a size such as "512M" or a number of bytes; got true'],
    [{ cpus: 0 }, 'cpus must be a whole number from 1 to 64; got 0'],
    [{ cpus: 65 }, 'cpus must be a whole number from 1 to 64; got 65'],
    [{ cpus: '2' }, 'cpus must be a whole number from 1 to 64; got "2"'],
    [{ kernel: 5 }, 'kernel must be a file path or null; got 5'],
    [{ initrd: '' }, 'initrd must be a file path or null; got ""'],
    [{ cmdline: ['a'] }, 'cmdline must be a string; got a list'],
    [{ cpuidHide: 'xsave' }, 'cpuidHide must be a list of CPUID feature names'],
    [{ cpuidHide: ['x save'] }, 'cpuidHide must be a list of CPUID feature names'],
    [{ unclaimedAccess: 'panic' }, "unclaimedAccess must be 'stop' or 'ignore'; got \"panic\""],
    [{ plugins: 'virtio-net' }, 'plugins must be a list of plugin specs; got "virtio-net"'],
    [{ plugins: [{ name: '' }] }, 'plugins [0] must be { name, options? } with a non-empty name'],
    [{ plugins: [{ name: 'a', options: [] }] }, 'plugins [0] (a): options must be an object; got a list'],
    [{ plugins: [{ name: 'a', opts: {} }] }, "plugins [0] (a) has unknown key 'opts'"],
    [{ plugins: [{ name: 'a' }, { name: 'a' }] }, "plugins lists 'a' twice; give each plugin once"],
    [{ memroy: 5, cpu: 1 }, "vmm.config.json: unknown keys 'memroy', 'cpu'; the known keys are kernel, initrd, cmdline, memory, cpus, cpuidHide, unclaimedAccess, plugins"],
    [[], 'vmm.config.json: the configuration must be an object; got a list'],
  ])('%j → %s', (input, message) => {
    expect(check(input)).toThrow(message);
  });

  test('a small number in a file hints that numbers are bytes', () => {
    expect(check({ memory: 512 })).toThrow('got 512 B (a number is bytes; write "512M" for MiB)');
  });

  test('the upper memory limit is the host RAM, capped at 64 GiB', () => {
    expect(maxMemory()).toBe(Math.min(os.totalmem(), 64 * GiB));
    const tooBig = Math.ceil((maxMemory() + 1) / (4 * KiB)) * 4 * KiB;
    expect(check({ memory: tooBig })).toThrow('memory must be between 4 MiB and');
    expect(validateConfig({ memory: 4 * MiB }, 'x').memory).toBe(4 * MiB);
  });

  test('memory size strings become bytes; cpuid names are lower-cased', () => {
    expect(validateConfig({ memory: '128M', cpuidHide: ['XSAVE'] }, 'x')).toMatchObject({
      memory: 128 * MiB,
      cpuidHide: ['xsave'],
    });
  });

  test('checkConfigFields returns only the fields given, and labels them as asked', () => {
    expect(checkConfigFields({ cpus: 2 }, 'x')).toEqual({ cpus: 2 });
    expect(() => checkConfigFields({ cpus: 0 }, '', { fieldLabel: (f) => `--${f}` })).toThrow(
      /^--cpus must be a whole number/,
    );
  });
});
