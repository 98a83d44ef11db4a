/**
 * guest/linux/patches/0010-virtio-wl-driver.patch is generated from the driver's plain sources
 * (guest/linux/virtio_wl/make-patch.sh): the fixture kernel must build what the sources say.
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import { ROOT } from '../helpers/linux-guest';

test('the virtio_wl kernel patch is up to date with guest/linux/virtio_wl', () => {
  const r = spawnSync(path.join(ROOT, 'guest', 'linux', 'virtio_wl', 'make-patch.sh'), ['--check'], { encoding: 'utf8' });
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
}, 120_000);
