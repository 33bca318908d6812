/**
 * The sources that may be able to take a request now, first in first out, each at most once.
 * A source enters on events that can change what it can take — it joined, delivered (a slot
 * freed), announced a piece, lifted a back-off, holds a piece wanted again — and leaves when
 * asked and found full, backed off or with nothing wanted. Planning then costs O(requests made
 * plus sources touched by events), not O(sources) per call; and serving the queue in order,
 * one request per turn, spreads a fetcher's requests round robin over its sources.
 *
 * The membership flag lives on the item itself (`queued`), so a push is a field test and an
 * array append — it happens on every "have".
 *
 * @module
 */

/** Something that can wait in a {@link ReadyQueue}. */
export interface Queueable {
  /** True while in the queue (owned by the queue). */
  queued: boolean;
  /** False once removed for good: skipped when met. */
  readonly live?: boolean;
}

/** A FIFO set of items. */
export class ReadyQueue<T extends Queueable> {
  #items: T[] = [];
  #head = 0;

  /** Items waiting (removed ones may still be counted until met). */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Queues `item` at the tail unless it is queued already. */
  push(item: T): void {
    if (item.queued) return;
    item.queued = true;
    this.#items.push(item);
  }

  /** Takes the head, or undefined when empty. */
  shift(): T | undefined {
    const items = this.#items;
    while (this.#head < items.length) {
      const item = items[this.#head++];
      if (this.#head === items.length) {
        items.length = 0;
        this.#head = 0;
      } else if (this.#head > 1024 && this.#head * 2 > items.length) {
        this.#items = items.slice(this.#head);
        this.#head = 0;
      }
      item.queued = false;
      if (item.live !== false) return item;
    }
    return undefined;
  }
}
