// Tests are compiled by `tsc` first (npm test runs the build): vCPU worker threads load
// compiled JavaScript, so the tests exercise exactly the code that ships.

module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  testTimeout: 120000,
  maxWorkers: 2,
};
