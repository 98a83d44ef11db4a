// @ts-check
/**
 * vmm-plugin-hwrng: an example third-party vmm plugin, written the way a user would write one,
 * outside vmm's source tree and against nothing but plugin-api.d.ts.
 *
 * It adds a tiny random-number device on a port (default 0x7e0): each 32-bit read returns fresh
 * random bits; writing 0 to offset 4 and reading offset 4 returns how many reads were served.
 *
 *   vmm --plugin ./examples/vmm-plugin-hwrng='{"port": 2016}'
 *   or in vmm.config.json: { "plugins": [{ "name": "./vmm-plugin-hwrng", "options": { "port": 2016 } }] }
 */
const { randomBytes } = require('crypto');

const PLUGIN_NAME = 'hwrng';
const DEFAULT_PORT = 0x7e0;
const PORTS = 8; // data register at +0, read counter at +4

/** @typedef {{ port?: number }} HwrngOptions */

/** @param {unknown} options @returns {{ port: number }} */
function checkOptions(options) {
  const o = /** @type {Record<string, unknown>} */ (options ?? {});
  for (const key of Object.keys(o)) {
    if (key !== 'port') throw new Error(`unknown option '${key}' (known: port)`);
  }
  const port = o.port ?? DEFAULT_PORT;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 0xffff - PORTS + 1) {
    throw new Error(`option 'port' must be an I/O port number from 0 to 0x${(0x10000 - PORTS).toString(16)}; got ${JSON.stringify(port)}`);
  }
  return { port };
}

/** @type {import('../../plugin-api').Plugin<HwrngOptions>} */
module.exports = {
  name: PLUGIN_NAME,
  apply(vmm, options) {
    const { port } = checkOptions(options);
    const log = vmm.logger(PLUGIN_NAME);
    let served = 0;
    vmm.hooks.createDevices.tap(PLUGIN_NAME, () => {
      // A main-thread device: simple, and fast enough for a device read now and then.
      vmm.pio.register({
        name: PLUGIN_NAME,
        base: port,
        length: PORTS,
        read(offset, size) {
          if (offset >= 4) return served;
          served++;
          const bits = randomBytes(4).readUInt32LE(0);
          return size === 4 ? bits : bits & ((1 << (size * 8)) - 1);
        },
        write(offset, _size, value) {
          if (offset >= 4 && Number(value) === 0) served = 0;
        },
      });
      log('random number device at port 0x%s', port.toString(16));
    });
  },
};
