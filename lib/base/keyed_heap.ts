/**
 * A min-heap of (key, id) pairs: the smallest key first, in O(log n) per change instead of a
 * scan. Entries are never removed out of order; owners check a popped entry against their own
 * current state and skip it when it no longer holds (lazy deletion). Used for back-off ends
 * (the swarm planner) and for queue ranks (the piece scheduler's per-source index).
 *
 * @module
 */

/** Keys with ids, smallest key first (ties in no particular order). */
export class KeyedHeap {
  #key: number[] = [];
  #id: number[] = [];

  /** Entries held (stale ones included). */
  get size(): number {
    return this.#key.length;
  }

  /** The smallest key held, Infinity when empty. */
  get nextKey(): number {
    return this.#key.length > 0 ? this.#key[0] : Infinity;
  }

  /** The id of the entry with the smallest key, undefined when empty. */
  get nextId(): number | undefined {
    return this.#id.length > 0 ? this.#id[0] : undefined;
  }

  /** Adds `id` under `key`. */
  push(key: number, id: number): void {
    const a = this.#key;
    a.push(key);
    this.#id.push(id);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p] <= a[i]) break;
      this.#swap(i, p);
      i = p;
    }
  }

  /** Removes and returns the id of the entry with the smallest key, if its key is ≤ `upTo`. */
  popDue(upTo = Infinity): number | undefined {
    const a = this.#key;
    if (a.length === 0 || a[0] > upTo) return undefined;
    const id = this.#id[0];
    const lastKey = a.pop()!;
    const lastId = this.#id.pop()!;
    if (a.length > 0) {
      a[0] = lastKey;
      this.#id[0] = lastId;
      this.#sift(0);
    }
    return id;
  }

  #sift(i: number): void {
    const a = this.#key;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < a.length && a[l] < a[m]) m = l;
      if (r < a.length && a[r] < a[m]) m = r;
      if (m === i) return;
      this.#swap(i, m);
      i = m;
    }
  }

  #swap(i: number, j: number): void {
    const a = this.#key;
    const d = this.#id;
    [a[i], a[j]] = [a[j], a[i]];
    [d[i], d[j]] = [d[j], d[i]];
  }
}
