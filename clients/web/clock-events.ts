/**
 * Callbacks due at times on an AudioContext's clock (captions, words, visemes), fired in time order
 * once their time has come. One timer, for the earliest; the clock moves in steps, so a timer that
 * fires a little early is armed again for what is left.
 */
export function createClockEvents(context: BaseAudioContext) {
  const due: { at: number; fire: () => void }[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const run = (now: number) => {
    while (due.length > 0 && (due[0]?.at ?? 0) <= now + 0.002) due.shift()?.fire();
  };
  const arm = () => {
    if (timer !== undefined || due.length === 0) return;
    const wait = ((due[0]?.at ?? 0) - context.currentTime) * 1000;
    timer = setTimeout(
      () => {
        timer = undefined;
        run(context.currentTime);
        arm();
      },
      Math.max(wait, 4),
    );
  };
  return {
    /** Fires `fire` once the clock reaches `at`; events due at the same time keep their order. */
    at(at: number, fire: () => void): void {
      let index = due.length;
      while (index > 0 && (due[index - 1]?.at ?? 0) > at) index -= 1;
      due.splice(index, 0, { at, fire });
      // Earlier than what the timer waits for: wait for this one instead.
      if (index === 0 && timer !== undefined) {
        clearTimeout(timer);
        timer = undefined;
      }
      arm();
    },
    /** Fires everything still due, in order (the audio has all played). */
    flush(): void {
      clearTimeout(timer);
      timer = undefined;
      run(Number.POSITIVE_INFINITY);
    },
    /** Drops everything still due. */
    cancel(): void {
      clearTimeout(timer);
      timer = undefined;
      due.length = 0;
    },
  };
}
