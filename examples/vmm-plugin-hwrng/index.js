// @ts-check
/**
 * vmm-plugin-hwrng: an example third-party vmm plugin, written the way a user would write one,
 * outside vmm's source tree and against nothing but the `vmm` package's types (plugin-api.d.ts).
 * It needs nothing from vmm at run time, so it also works copied anywhere.
 *
 * A tiny random-number device on a port (default 0x7e0): each read of offset 0 returns fresh
 * random bits; offset 4 reads how many were served, and writing 0 there resets the count (a
 * `counter-reset` device event, which `vmm ctl events` shows).
 *
 *   vmm --plugin ./examples/vmm-plugin-hwrng='{"port": 2016}'
 *   or in vmm.config.json: { "plugins": [{ "name": "vmm-plugin-hwrng", "options": { "source": "seed.bin" } }] }
 */
const fs = require('fs');
const { randomBytes } = require('crypto');

const PLUGIN_NAME = 'hwrng';
const PORTS = 8; // data register at +0, read counter at +4

// The options, checked by vmm before `apply` runs (a bad one exits 2 with a sentence naming it).
// `/** @type {const} */` keeps the literal types, so `apply` gets `{ port: number; source?: string }`.
const schema = /** @type {const} */ ({
  type: 'object',
  properties: {
    port: {
      type: 'integer',
      minimum: 0,
      maximum: 0x10000 - PORTS,
      default: 0x7e0,
      description: `an I/O port number from 0 to 0x${(0x10000 - PORTS).toString(16)}: the first of the device's ${PORTS} ports`,
    },
    source: {
      type: 'string',
      minLength: 1,
      // Relative to the config file that names it (or the working directory for --plugin).
      resolvePath: true,
      description: 'a file whose bytes are served in order instead of random ones (for reproducible guests), read again from its start at its end',
    },
  },
  additionalProperties: false,
});

/** @type {import('vmm').Plugin<typeof schema>} */
module.exports = {
  name: PLUGIN_NAME,
  schema,
  apply(vmm, { port, source }) {
    const log = vmm.logger(PLUGIN_NAME);
    let served = 0;
    /** @type {number | undefined} */
    let fd;
    let position = 0;

    /** @param {number} size */
    function nextBits(size) {
      const bytes = Buffer.alloc(4);
      if (fd === undefined) randomBytes(size).copy(bytes);
      else {
        for (let got = 0; got < size;) {
          const n = fs.readSync(fd, bytes, got, size - got, position);
          if (n === 0 && position === 0) throw new Error(`${source} is empty`);
          position = n === 0 ? 0 : position + n;
          got += n;
        }
      }
      return bytes.readUInt32LE(0);
    }

    vmm.hooks.createDevices.tap(PLUGIN_NAME, () => {
      if (source !== undefined) fd = fs.openSync(source, 'r');
      // A main-thread device: simple, and fast enough for a device read now and then.
      vmm.pio.register({
        name: PLUGIN_NAME,
        base: port,
        length: PORTS,
        read(offset, size) {
          if (offset >= 4) return served;
          served++;
          return nextBits(size);
        },
        write(offset, _size, value) {
          if (offset >= 4 && Number(value) === 0) {
            vmm.emitDeviceEvent(PLUGIN_NAME, 'counter-reset', { served });
            served = 0;
          }
        },
      });
      log('random number device at port 0x%s%s', port.toString(16), source ? ` serving ${source}` : '');
    });
    vmm.hooks.shutdown.tap(PLUGIN_NAME, () => {
      if (fd !== undefined) fs.closeSync(fd);
      fd = undefined;
    });
  },
};
