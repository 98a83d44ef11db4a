// Tests are compiled by `tsc` first (npm test runs the build): vCPU worker threads load
// compiled JavaScript, so the tests exercise exactly the code that ships.
//
// test/linux/network.test.js runs only with VMM_TEST_LINUX_NET=1 (`npm run test:linux-net`):
// on our CI hosts the guest kernel's virtio-net receive path stalls (see the README, "Linux
// guests"), so that test is not yet reliable enough to gate every change.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  testPathIgnorePatterns: process.env.VMM_TEST_LINUX_NET ? [] : ['/dist/test/linux/network\\.test\\.js$'],
  testTimeout: 120000,
  maxWorkers: 2,
};
