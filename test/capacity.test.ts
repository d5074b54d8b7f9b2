import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type CapacityOptions, createCapacityEstimator } from '../server/service/capacity.js';
import { erlangC, meanWait, waitQuantile } from '../server/service/queueing.js';

/** A clock the test moves by hand, in milliseconds. */
function manualClock() {
  let now = 0;
  return {
    now: () => now,
    advance(ms: number) {
      now += ms;
    },
  };
}

function estimator(options: Partial<CapacityOptions> = {}) {
  const clock = manualClock();
  const capacity = createCapacityEstimator({ workers: 1, maxFinalDelayMs: 500, now: clock.now, ...options });
  return { capacity, clock };
}

const close = (actual: number, expected: number, tolerance: number, what: string) =>
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what}: ${actual}, expected ${expected} ± ${tolerance}`,
  );

describe('the queueing approximation', () => {
  it('gives the Erlang C probability of waiting', () => {
    close(erlangC(1, 0.5), 0.5, 1e-12, 'one server: the utilisation');
    close(erlangC(2, 1), 1 / 3, 1e-12, 'two servers: A²/(2 + A)');
    assert.equal(erlangC(2, 0), 0);
    assert.equal(erlangC(2, 2), 1);
  });

  it('gives the exact M/M/1 wait quantile, zero when few arrivals wait, infinite past capacity', () => {
    // M/M/1, ρ = 0.8, E[S] = 1: P(W > t) = 0.8 e^{−0.2 t}, so the p95 is 5 ln 16.
    close(waitQuantile(1, 0.8, 1, 1, 0.95), 5 * Math.log(16), 1e-9, 'p95');
    assert.equal(waitQuantile(1, 0.04, 1, 1, 0.95), 0, 'only 4 % wait at all');
    assert.equal(waitQuantile(2, 2, 1, 1, 0.95), Number.POSITIVE_INFINITY);
    assert.ok(
      waitQuantile(1, 0.8, 1, 0, 0.95) < waitQuantile(1, 0.8, 1, 1, 0.95),
      'deterministic service waits less',
    );
  });

  it('is exact for M/M/1 and for M/D/1 (Pollaczek–Khinchine)', () => {
    close(meanWait(1, 0.5, 1, 1), 1, 1e-12, 'M/M/1: ρ/(1 − ρ)·S');
    close(meanWait(1, 0.5, 1, 0), 0.5, 1e-12, 'M/D/1: ρS/(2(1 − ρ))');
    assert.equal(meanWait(2, 2.5, 1, 0), Number.POSITIVE_INFINITY);
  });

  it('waits longer the more load is offered, and less with more servers', () => {
    let previous = 0;
    for (let offered = 0.1; offered < 2; offered += 0.1) {
      const wait = meanWait(2, offered, 0.3, 0.2);
      assert.ok(wait > previous, `wait at A = ${offered.toFixed(1)}`);
      previous = wait;
    }
    assert.ok(meanWait(4, 1.5, 0.3, 0.2) < meanWait(2, 1.5, 0.3, 0.2));
  });
});

describe('the capacity estimator', () => {
  it('learns a cost model from finished recognitions of several lengths', () => {
    const { capacity } = estimator();
    for (let i = 0; i < 40; i++) {
      const seconds = 1 + (i % 5);
      capacity.observeRecognition('m', seconds, 0.1 + 0.05 * seconds);
    }
    const cost = capacity.cost('m');
    assert.ok(cost);
    close(cost.fixedSeconds, 0.1, 1e-9, 'fixed');
    close(cost.perAudioSecond, 0.05, 1e-9, 'per audio second');
    assert.equal(capacity.snapshot().models[0]?.observedRecognitions, 40);
  });

  it('starts from the calibration and follows the measured jobs, keeping a slope when lengths are alike', () => {
    const { capacity } = estimator();
    capacity.calibrate('m', { fixedSeconds: 0.1, perAudioSecond: 0.05 });
    assert.deepEqual(capacity.cost('m'), { fixedSeconds: 0.1, perAudioSecond: 0.05 });
    // Real speech costs more than the calibration's silence: every utterance 3 s, 0.5 s of compute.
    for (let i = 0; i < 200; i++) capacity.observeRecognition('m', 3, 0.5);
    const cost = capacity.cost('m');
    assert.ok(cost);
    close(cost.fixedSeconds + 3 * cost.perAudioSecond, 0.5, 0.005, 'a 3 s utterance');
    assert.ok(cost.perAudioSecond > 0 && cost.fixedSeconds > 0, 'both terms kept, none collapses');
    capacity.calibrate('m', { fixedSeconds: 9, perAudioSecond: 9 });
    assert.notEqual(
      capacity.cost('m')?.fixedSeconds,
      9,
      'a later calibration does not undo what jobs taught',
    );
  });

  it('admits a stream of a model it knows nothing about', () => {
    const { capacity } = estimator({ maxFinalDelayMs: 1 });
    capacity.calibrate('slow', { fixedSeconds: 10, perAudioSecond: 0 });
    capacity.openStream('slow');
    assert.equal(capacity.assess('slow').admit, false);
    const unknown = capacity.assess('unknown');
    assert.equal(unknown.admit, true);
    assert.equal(unknown.known, false);
    assert.ok(capacity.cost('unknown') === undefined);
  });

  it('admits the first stream whatever the estimate, and refuses the second', () => {
    const { capacity } = estimator({ maxFinalDelayMs: 1 });
    capacity.calibrate('slow', { fixedSeconds: 10, perAudioSecond: 1 });
    assert.equal(capacity.assess('slow').admit, true, 'an idle server holds one stream');
    capacity.openStream('slow');
    assert.equal(capacity.assess('slow').admit, false);
  });

  it('refuses the first stream that would push the expected final delay past the bound', () => {
    // One worker, a fixed 100 ms per utterance (M/D/1), prior speech ratio 1 and 2 s utterances:
    // λ = 0.5 per stream, A = 0.05 n; a final waits with probability A, then for a mean of
    // 0.05 / (1 − A), so its p95 delay is 0.05 / (1 − A) · ln(20 A) + 0.1 ≤ 0.5 ⇔ A ≤ 0.674 ⇔ n ≤ 13.
    const { capacity } = estimator();
    capacity.calibrate('m', { fixedSeconds: 0.1, perAudioSecond: 0 });
    const first = capacity.snapshot().models[0];
    assert.equal(first?.capacityStreams, 13);
    assert.equal(first?.availableStreams, 13);
    let admitted = 0;
    let previousDelay = 0;
    let previousLoad = 0;
    while (capacity.assess('m').admit) {
      const assessment = capacity.assess('m');
      assert.ok(assessment.expectedDelayMs >= previousDelay, 'the expected delay grows with the streams');
      previousDelay = assessment.expectedDelayMs;
      capacity.openStream('m');
      admitted += 1;
      assert.ok(capacity.loadRatio() > previousLoad);
      previousLoad = capacity.loadRatio();
      assert.ok(admitted < 100, 'never refused');
    }
    assert.equal(admitted, 13);
    const refused = capacity.assess('m');
    assert.ok(refused.expectedDelayMs > 500);
    assert.equal(refused.allowedDelayMs, 500);
    assert.equal(refused.model, 'm');
    const snapshot = capacity.snapshot();
    assert.equal(snapshot.admittedStreams, 13);
    assert.equal(snapshot.models[0]?.availableStreams, 0);
    close(snapshot.loadRatio, 0.65, 1e-9, 'load ratio');
  });

  it('admits again when a stream ends, and hints a retry after the mean time until one does', () => {
    const { capacity, clock } = estimator();
    capacity.calibrate('m', { fixedSeconds: 0.1, perAudioSecond: 0 });
    const streams = Array.from({ length: 15 }, () => capacity.openStream('m'));
    assert.equal(capacity.assess('m').admit, false);
    assert.equal(capacity.assess('m').retryAfterMs, 4000, 'a 60 s prior duration over 15 streams');
    clock.advance(30_000);
    streams[0]?.close();
    streams[0]?.close();
    streams[1]?.close();
    assert.equal(capacity.snapshot().admittedStreams, 13, 'closing is idempotent');
    assert.equal(capacity.assess('m').admit, false, 'still at capacity');
    streams[2]?.close();
    assert.equal(capacity.assess('m').admit, true);
  });

  it('holds a model that cannot meet the bound even when idle to its own time plus the bound', () => {
    const { capacity } = estimator({ workers: 2 });
    capacity.calibrate('whisper-base', { fixedSeconds: 1.6, perAudioSecond: 0 });
    const first = capacity.assess('whisper-base');
    assert.equal(first.admit, true);
    close(first.allowedDelayMs, 2100, 1e-6, 'allowed delay');
    capacity.openStream('whisper-base');
    let admitted = 1;
    while (capacity.assess('whisper-base').admit && admitted < 100) {
      capacity.openStream('whisper-base');
      admitted += 1;
    }
    assert.ok(admitted >= 1 && admitted < 3, `admitted ${admitted}`);
  });

  it('refuses a stream of a fast model when it would push an admitted slow model past the bound', () => {
    const { capacity } = estimator();
    capacity.calibrate('fast', { fixedSeconds: 0.01, perAudioSecond: 0 });
    capacity.calibrate('slow', { fixedSeconds: 0.3, perAudioSecond: 0 });
    while (capacity.assess('slow').admit) capacity.openStream('slow');
    let fast = 0;
    while (capacity.assess('fast').admit && fast < 1000) {
      capacity.openStream('fast');
      fast += 1;
    }
    const refused = capacity.assess('fast');
    assert.equal(refused.admit, false);
    assert.equal(refused.model, 'slow', 'the model whose finals would be late');
    for (const model of capacity.snapshot().models) {
      assert.ok(model.expectedFinalDelayMs <= model.allowedFinalDelayMs, `${model.model} stays within`);
    }
  });

  it('admits everything when the bound is off, and still estimates', () => {
    const { capacity } = estimator({ maxFinalDelayMs: 0 });
    capacity.calibrate('m', { fixedSeconds: 1, perAudioSecond: 0 });
    for (let i = 0; i < 10; i++) capacity.openStream('m');
    assert.equal(capacity.assess('m').admit, true);
    assert.ok(capacity.loadRatio() >= 5);
    assert.equal(capacity.snapshot().models[0]?.capacityStreams, 1, 'streams at a load ratio below 1');
  });

  it('learns the speech ratio and utterance length from streams, with a floor, and forgets them', () => {
    const { capacity, clock } = estimator();
    assert.equal(capacity.snapshot().speechRatio, 1, 'starts conservatively at 1');
    const stream = capacity.openStream('m');
    stream.audio(100);
    for (let i = 0; i < 10; i++) stream.utterance(3);
    close(capacity.snapshot().speechRatio, (30 + 60) / (100 + 60), 1e-9, 'pulled toward 0.3 by the data');
    stream.audio(10_000);
    assert.equal(capacity.snapshot().speechRatio, 0.2, 'never below the floor');
    for (let i = 0; i < 200; i++) stream.utterance(4);
    close(capacity.snapshot().meanUtteranceSeconds, 4, 0.01, 'mean utterance length');
    clock.advance(24 * 3600_000);
    close(capacity.snapshot().speechRatio, 1, 1e-6, 'a day later, back to the prior');
  });

  it('fewer utterances mean more streams fit', () => {
    const { capacity } = estimator();
    capacity.calibrate('m', { fixedSeconds: 0.1, perAudioSecond: 0 });
    const before = capacity.snapshot().models[0]?.capacityStreams ?? 0;
    const stream = capacity.openStream('m');
    stream.audio(600);
    for (let i = 0; i < 100; i++) stream.utterance(3);
    stream.close();
    const after = capacity.snapshot().models[0]?.capacityStreams ?? 0;
    assert.ok(after > 2 * before, `${before} → ${after}`);
  });

  it('counts synthesis on the same workers as load, and forgets it', () => {
    const { capacity, clock } = estimator();
    capacity.calibrate('m', { fixedSeconds: 0.1, perAudioSecond: 0 });
    const before = capacity.snapshot().models[0]?.capacityStreams ?? 0;
    for (let i = 0; i < 30; i++) {
      capacity.observeBackground(0.5);
      clock.advance(1000);
    }
    assert.ok(capacity.loadRatio() > 0.2, `load ${capacity.loadRatio()}`);
    assert.ok((capacity.snapshot().models[0]?.capacityStreams ?? 0) < before);
    clock.advance(600_000);
    assert.ok(capacity.loadRatio() < 0.001);
  });

  it('lets interims run only on spare capacity', () => {
    let pool = { queued: 0, idle: 2 };
    const { capacity } = estimator({ workers: 2, poolState: () => pool });
    capacity.calibrate('m', { fixedSeconds: 0.1, perAudioSecond: 0 });
    const stream = capacity.openStream('m');
    assert.equal(stream.hasSpareCapacity(), true, 'idle workers, light load');
    pool = { queued: 1, idle: 0 };
    assert.equal(stream.hasSpareCapacity(), false, 'a job waits for a worker');
    pool = { queued: 0, idle: 0 };
    assert.equal(stream.hasSpareCapacity(), true, 'busy but nothing waits: it queues behind finals');
    pool = { queued: 0, idle: 2 };
    for (let i = 0; i < 30; i++) capacity.openStream('m');
    assert.ok(capacity.loadRatio() > 0.6);
    assert.equal(stream.hasSpareCapacity(), false, 'the load is past the interim limit');
  });
});
