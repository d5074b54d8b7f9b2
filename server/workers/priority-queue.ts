/**
 * The worker pool's queue of jobs waiting for a worker: lower priority number first, FIFO within a
 * priority. It is bounded: once it holds `capacity` items it is `full`, and the owner makes room only
 * for an item that outranks a queued one (`outranked` names the one to refuse: the newest of the worst
 * queued priority), so a flood of low-priority work never refuses high-priority work. Every change of
 * its size is reported to `depth` (the queue-depth gauge).
 */

/** What the queue reports its size changes to. */
export interface DepthGauge {
  inc(): void;
  dec(): void;
}

export interface PriorityQueue<T extends { readonly priority: number }> {
  /** Items waiting. */
  readonly size: number;
  /** Whether it holds `capacity` items or more. */
  readonly full: boolean;
  /** Adds an item behind those of its priority; the owner checks `full` first. */
  enqueue(item: T): void;
  /** Takes the oldest item of the best priority. */
  dequeue(): T | undefined;
  /** The newest item of the worst queued priority, if that priority is worse than `priority`. */
  outranked(priority: number): T | undefined;
  /** Takes `item` out wherever it waits; false when it is not queued. */
  remove(item: T): boolean;
}

export function createPriorityQueue<T extends { readonly priority: number }>(
  capacity: number,
  depth?: DepthGauge,
): PriorityQueue<T> {
  /** Waiting items by priority, each FIFO. */
  const queues = new Map<number, T[]>();
  let size = 0;

  return {
    get size() {
      return size;
    },

    get full() {
      return size >= capacity;
    },

    enqueue(item) {
      let queue = queues.get(item.priority);
      if (queue === undefined) {
        queue = [];
        queues.set(item.priority, queue);
      }
      queue.push(item);
      size += 1;
      depth?.inc();
    },

    dequeue() {
      let best: number | undefined;
      for (const [priority, queue] of queues) {
        if (queue.length > 0 && (best === undefined || priority < best)) best = priority;
      }
      if (best === undefined) return undefined;
      const item = queues.get(best)?.shift();
      if (item !== undefined) {
        size -= 1;
        depth?.dec();
      }
      return item;
    },

    outranked(priority) {
      let worst: number | undefined;
      for (const [queuedPriority, queue] of queues) {
        if (queue.length > 0 && (worst === undefined || queuedPriority > worst)) worst = queuedPriority;
      }
      if (worst === undefined || worst <= priority) return undefined;
      return queues.get(worst)?.at(-1);
    },

    remove(item) {
      const queue = queues.get(item.priority);
      const index = queue?.indexOf(item) ?? -1;
      if (queue === undefined || index < 0) return false;
      queue.splice(index, 1);
      size -= 1;
      depth?.dec();
      return true;
    },
  };
}
