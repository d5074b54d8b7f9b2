import assert from 'node:assert/strict';
import { ConnectError } from '../../clients/node/index.js';

/** The error a call ended with; fails the test if the call succeeded. */
export async function expectError(call: Promise<unknown> | (() => Promise<unknown>)): Promise<ConnectError> {
  try {
    await (typeof call === 'function' ? call() : call);
  } catch (error) {
    return ConnectError.from(error);
  }
  assert.fail('the call succeeded');
}
