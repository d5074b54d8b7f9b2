import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { createChannel } from '../server/pipeline/channel.js';

const live = (): AbortSignal => new AbortController().signal;

/** Whether the promise settled within a few turns of the event loop. */
async function settled(promise: Promise<unknown>): Promise<'resolved' | 'rejected' | 'pending'> {
  let state: 'resolved' | 'rejected' | 'pending' = 'pending';
  promise.then(
    () => {
      state = 'resolved';
    },
    () => {
      state = 'rejected';
    },
  );
  for (let i = 0; i < 5; i++) await tick();
  return state;
}

describe('channel', () => {
  test('waitForSpace resolves once the consumer has taken enough items', async () => {
    const channel = createChannel<number>();
    for (let i = 0; i < 3; i++) channel.push(i);
    assert.equal(await settled(channel.waitForSpace(4, live())), 'resolved', 'room for a fourth');
    const waiting = channel.waitForSpace(2, live());
    assert.equal(await settled(waiting), 'pending');
    const iterator = channel[Symbol.asyncIterator]();
    assert.deepEqual(await iterator.next(), { value: 0, done: false });
    assert.equal(await settled(waiting), 'pending', 'two items still queued');
    assert.deepEqual(await iterator.next(), { value: 1, done: false });
    assert.equal(await settled(waiting), 'resolved');
  });

  test('close, fail, an abort and a consumer that stops all release waiters', async () => {
    const closing = createChannel<number>();
    closing.push(1);
    const onClose = closing.waitForSpace(1, live());
    closing.close();
    assert.equal(await settled(onClose), 'resolved');
    assert.equal(await settled(closing.waitForSpace(1, live())), 'resolved', 'closed: no waiting at all');

    const failing = createChannel<number>();
    failing.push(1);
    const onFail = failing.waitForSpace(1, live());
    failing.fail(new Error('boom'));
    assert.equal(await settled(onFail), 'resolved');

    const aborting = createChannel<number>();
    aborting.push(1);
    const controller = new AbortController();
    const onAbort = aborting.waitForSpace(1, controller.signal);
    const reason = new Error('cancelled');
    controller.abort(reason);
    await assert.rejects(onAbort, (error) => error === reason);
    await assert.rejects(aborting.waitForSpace(1, controller.signal), (error) => error === reason);

    const abandoned = createChannel<number>();
    abandoned.push(1);
    abandoned.push(2);
    const onStop = abandoned.waitForSpace(1, live());
    for await (const item of abandoned) {
      assert.equal(item, 1);
      break;
    }
    assert.equal(await settled(onStop), 'resolved');
    assert.equal(abandoned.closed, true, 'a channel nobody reads counts as closed');
  });

  test('items pushed before fail are delivered, then the error is thrown', async () => {
    const channel = createChannel<number>();
    channel.push(1);
    channel.push(2);
    channel.fail(new Error('boom'));
    const seen: number[] = [];
    await assert.rejects(async () => {
      for await (const item of channel) seen.push(item);
    }, /boom/);
    assert.deepEqual(seen, [1, 2]);
  });

  test('waitForSpace rejects a limit below one', () => {
    assert.throws(() => createChannel<number>().waitForSpace(0, live()), /limit/);
  });
});
