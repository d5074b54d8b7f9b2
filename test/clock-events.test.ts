import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createClockEvents } from '../clients/web/clock-events.js';

/** The browser SDK's timed callbacks, on a clock that runs with real time (as an AudioContext's does). */
describe('clock events (browser SDK)', () => {
  const clock = () => {
    const origin = performance.now();
    return {
      get currentTime() {
        return (performance.now() - origin) / 1000;
      },
    } as unknown as BaseAudioContext;
  };

  it('fires in time order, an event added earlier than the armed one at its own time', async () => {
    const context = clock();
    const events = createClockEvents(context);
    const fired: { name: string; at: number }[] = [];
    const done = new Promise<void>((resolve) => {
      events.at(0.4, () => {
        fired.push({ name: 'late', at: context.currentTime });
        resolve();
      });
      events.at(0.05, () => fired.push({ name: 'early', at: context.currentTime }));
      events.at(0.05, () => fired.push({ name: 'early, second', at: context.currentTime }));
    });
    await done;
    assert.deepEqual(
      fired.map((f) => f.name),
      ['early', 'early, second', 'late'],
    );
    assert.ok(
      (fired[0]?.at ?? 1) < 0.2,
      `the early event fired at ${fired[0]?.at.toFixed(3)} s, not with the late one`,
    );
  });

  it('flush fires what is left at once, cancel drops it', () => {
    const events = createClockEvents(clock());
    const fired: string[] = [];
    events.at(10, () => fired.push('a'));
    events.at(5, () => fired.push('b'));
    events.flush();
    assert.deepEqual(fired, ['b', 'a']);
    events.at(10, () => fired.push('c'));
    events.cancel();
    events.flush();
    assert.deepEqual(fired, ['b', 'a']);
  });
});
