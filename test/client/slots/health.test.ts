/**
 * The health check: a command run without a shell under a deadline, or a
 * function; every way of not passing is an unhealthy verdict with a reason.
 */
import assert from 'node:assert/strict';
import {
  runHealthCheck,
  type HealthCheck,
} from '../../../client/slots/health.js';

describe('runHealthCheck', () => {
  const cases: [string, HealthCheck, boolean, RegExp?][] = [
    ['a command exiting 0', { command: ['true'] }, true],
    ['a command exiting 1', { command: ['false'] }, false, /exited with 1/],
    [
      'a command past its deadline, with what it started',
      { command: ['sh', '-c', 'sleep 30; true'], timeoutMs: 200 },
      false,
      /did not finish in time/,
    ],
    [
      'a program that does not exist',
      { command: ['/nonexistent/health'] },
      false,
      /could not be started/,
    ],
    [
      'a function that throws',
      () => Promise.reject(new Error('probe broke')),
      false,
      /probe broke/,
    ],
  ];
  for (const [name, check, healthy, reason] of cases) {
    it(`says ${healthy ? 'healthy' : 'unhealthy'} for ${name}`, async () => {
      const started = Date.now();
      const verdict = await runHealthCheck(check);
      assert.equal(verdict.healthy, healthy);
      if (reason) assert.match(verdict.reason ?? '', reason);
      assert.ok(Date.now() - started < 5000);
    });
  }
});
