import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Two cores: run test files one or two at a time so worker-pool tests are not starved.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
