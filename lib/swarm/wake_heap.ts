/**
 * A min-heap of (time, id): which back-off ends next, in O(log n) per change instead of a scan
 * of every backed-off source on each planning call. Entries are not removed when a back-off
 * changes; the owner checks a popped entry against the source's current back-off (lazy).
 *
 * @module
 */

/** Times with ids, earliest first. */
export class WakeHeap {
  #at: number[] = [];
  #id: number[] = [];

  /** Entries held (stale ones included). */
  get size(): number {
    return this.#at.length;
  }

  /** The earliest time held, Infinity when empty. */
  get nextAt(): number {
    return this.#at.length > 0 ? this.#at[0] : Infinity;
  }

  /** Adds `id` to wake at `at`. */
  push(at: number, id: number): void {
    const a = this.#at;
    a.push(at);
    this.#id.push(id);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p] <= a[i]) break;
      this.#swap(i, p);
      i = p;
    }
  }

  /** Removes and returns the id of the earliest entry if it is due by `now`, else undefined. */
  popDue(now: number): number | undefined {
    const a = this.#at;
    if (a.length === 0 || a[0] > now) return undefined;
    const id = this.#id[0];
    const lastAt = a.pop()!;
    const lastId = this.#id.pop()!;
    if (a.length > 0) {
      a[0] = lastAt;
      this.#id[0] = lastId;
      this.#sift(0);
    }
    return id;
  }

  #sift(i: number): void {
    const a = this.#at;
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
    const a = this.#at;
    const d = this.#id;
    [a[i], a[j]] = [a[j], a[i]];
    [d[i], d[j]] = [d[j], d[i]];
  }
}
