import {
  BusOverlapError, BusRangeError, ConfigError, GuestMemoryError, KernelLoadError, KvmError, PluginError, VmmError,
} from '../../core/errors';

describe('VmmError hierarchy', () => {
  test.each([
    [BusOverlapError, 'BusOverlapError', 'ERR_BUS_OVERLAP'],
    [BusRangeError, 'BusRangeError', 'ERR_BUS_RANGE'],
    [ConfigError, 'ConfigError', 'ERR_CONFIG'],
    [GuestMemoryError, 'GuestMemoryError', 'ERR_GUEST_MEMORY_RANGE'],
    [KernelLoadError, 'KernelLoadError', 'ERR_KERNEL_LOAD'],
    [KvmError, 'KvmError', 'ERR_KVM'],
    [PluginError, 'PluginError', 'ERR_PLUGIN'],
  ])('%p has name %s and code %s', (ErrorClass, name, code) => {
    const cause = new Error('underlying');
    const error = new ErrorClass('something went wrong', { cause });
    expect(error).toBeInstanceOf(VmmError);
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe(name);
    expect(error.code).toBe(code);
    expect(error.message).toBe('something went wrong');
    expect(error.cause).toBe(cause);
    expect(String(error)).toBe(`${name}: something went wrong`);
  });

  test('VmmError takes any code', () => {
    const error = new VmmError('ERR_X', 'x');
    expect(error.name).toBe('VmmError');
    expect(error.code).toBe('ERR_X');
    expect(error.cause).toBeUndefined();
  });
});
