import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import {
  AudioEncoding,
  Code,
  createVoiceClient,
  type SynthesizeResponse,
  type VoiceClient,
} from '../clients/node/index.js';
import { reasonOf, signalled, spokenCharsOf, stalledSynthesis } from './helpers/drain.js';
import { expectError } from './helpers/errors.js';
import { startServerWithEngines } from './helpers/test-server.js';

/** Float samples at the voice's rate: no resampler, large chunks, so a slow reader soon holds the stream up. */
const CONFIG = { encoding: AudioEncoding.FLOAT32 };
const TEXT = Array.from(
  { length: 10 },
  (_, index) =>
    `This is sentence number ${index + 1}, which goes on for a while so that it takes some seconds.`,
).join(' ');
const SERVER = { security: { rate_limit: { enabled: false } } };
const GRACE_OVER = 'drain grace period over; calls in flight take no more input and finish';

const spanKey = (chunk: SynthesizeResponse) => `${chunk.textSpan?.start}-${chunk.textSpan?.end}`;

/** Samples per text span, in order of first appearance. */
function samplesBySpan(chunks: readonly SynthesizeResponse[]): Map<string, number> {
  const spans = new Map<string, number>();
  for (const chunk of chunks) spans.set(spanKey(chunk), (spans.get(spanKey(chunk)) ?? 0) + chunk.sampleCount);
  return spans;
}

async function collect(stream: AsyncIterable<SynthesizeResponse>): Promise<SynthesizeResponse[]> {
  const chunks: SynthesizeResponse[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
}

/** Reads the rest of a stream: the chunks, then the error it must end with. */
async function restOf(iterator: AsyncIterator<SynthesizeResponse>) {
  const chunks: SynthesizeResponse[] = [];
  const error = await expectError(
    (async () => {
      for (let next = await iterator.next(); !next.done; next = await iterator.next())
        chunks.push(next.value);
    })(),
  );
  return { chunks, error };
}

/** A bidi Synthesize of TEXT that never half-closes; `hold.fire()` lets its request stream end. */
function openSynthesize(client: VoiceClient) {
  const hold = signalled();
  async function* requests() {
    yield { request: { case: 'config' as const, value: CONFIG } };
    yield { request: { case: 'text' as const, value: TEXT } };
    await hold.promise;
  }
  return { iterator: client.synthesis.synthesize(requests())[Symbol.asyncIterator](), hold };
}

describe('drain: synthesis', () => {
  let reference: Map<string, number>;
  before(async () => {
    const t = await startServerWithEngines(SERVER);
    try {
      reference = samplesBySpan(
        await collect(t.client.synthesis.synthesizeText({ text: TEXT, config: CONFIG })),
      );
    } finally {
      await t.stop();
    }
    assert.ok(reference.size >= 10, 'one span per sentence at least');
  });

  /** The chunks of a drained reply are whole sentences from the start, and the status names their end. */
  function assertWholeSentences(
    chunks: readonly SynthesizeResponse[],
    error: Awaited<ReturnType<typeof restOf>>['error'],
  ) {
    assert.equal(error.code, Code.Unavailable, error.rawMessage);
    assert.equal(reasonOf(error), 'DRAINING');
    const received = samplesBySpan(chunks);
    const expected = [...reference.entries()].slice(0, received.size);
    assert.deepEqual([...received.entries()], expected, 'every sentence begun was sent to its end');
    assert.ok(received.size < reference.size, 'the reply was cut: not every sentence was spoken');
    assert.equal(
      spokenCharsOf(error),
      chunks.at(-1)?.textSpan?.end,
      'the text spoken ends with the last span sent',
    );
  }

  for (const method of ['Synthesize', 'SynthesizeText'] as const) {
    it(`${method}: drained mid-reply, ends after the sentence it is speaking with the text spoken`, async () => {
      const t = await startServerWithEngines(SERVER);
      const client = createVoiceClient({ address: t.address });
      const bidi = method === 'Synthesize' ? openSynthesize(client) : undefined;
      try {
        const iterator =
          bidi?.iterator ??
          client.synthesis.synthesizeText({ text: TEXT, config: CONFIG })[Symbol.asyncIterator]();
        const first = await iterator.next();
        assert.ok(!first.done);
        // The reader pauses: the server is held up mid-reply when the grace (none) runs out.
        const stopping = t.stop(0, 10_000);
        await t.logs.until(GRACE_OVER);
        const { chunks, error } = await restOf(iterator);
        assertWholeSentences([first.value, ...chunks], error);
        await stopping;
      } finally {
        bidi?.hold.fire();
        client.close();
        await t.stop();
      }
    });
  }

  it('enforces the flush budget: a reply that cannot be sent to its end in it is cancelled', async () => {
    const t = await startServerWithEngines(SERVER);
    const stalled = await stalledSynthesis(t.address);
    try {
      const startedAt = performance.now();
      await t.stop(0, 800);
      const tookMs = performance.now() - startedAt;
      assert.ok(tookMs >= 800, `the drain waited out the flush budget (${Math.round(tookMs)} ms)`);
      const over = t.logs
        .records()
        .find((record) => record.msg === 'drain flush budget over; cancelling calls in flight');
      assert.equal(over?.calls, 1, 'the stalled reply was still running when the budget ran out');
      assert.equal(over?.flushMs, 800);
    } finally {
      stalled.close();
      await t.stop();
    }
  });

  it('a drain with no calls in flight is immediate, whatever the grace and the flush budget', async () => {
    const t = await startServerWithEngines(SERVER);
    const startedAt = performance.now();
    await t.stop(30_000, 30_000);
    assert.ok(performance.now() - startedAt < 5000);
    assert.equal(
      t.logs.records().some((record) => record.msg === GRACE_OVER),
      false,
    );
  });
});
