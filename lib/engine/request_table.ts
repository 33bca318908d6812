/**
 * Requests by id: an open-addressed table indexed by the id's low bits, for the lookups the
 * engine makes on every datagram. Request ids are random, and the engine picks only ids whose
 * slot is free, so a slot holds at most one request and a lookup is one array access.
 *
 * Why not a `Map`: one insertion and one deletion per request is churn that V8's `Map` turns
 * into garbage promoted to the old generation (each rehash keeps the previous table alive),
 * which grew the fetch's peak memory with the file size (+60 MB at 4 GiB). Slots are reused.
 *
 * @module
 */

/** Slots a table starts with; it doubles when half full. */
const INITIAL_SLOTS = 1024;

/** Most slots `put` grows a table to rather than lose an entry (1 MiB of ids and values). */
export const MAX_PUT_SLOTS = 1 << 16;

/** Values by 32-bit id. */
export class RequestTable<T> {
  #ids = new Uint32Array(INITIAL_SLOTS);
  #values: (T | undefined)[] = new Array(INITIAL_SLOTS).fill(undefined);
  #mask = INITIAL_SLOTS - 1;
  #size = 0;

  /** Entries held. */
  get size(): number {
    return this.#size;
  }

  /** The value stored under `id`, if any. */
  get(id: number): T | undefined {
    const slot = id & this.#mask;
    return this.#ids[slot] === id ? this.#values[slot] : undefined;
  }

  /** Whether `id` could be stored now (its slot is free). */
  free(id: number): boolean {
    return this.#values[id & this.#mask] === undefined;
  }

  /** Stores `value` under `id`, whose slot must be free (see `free`). */
  set(id: number, value: T): void {
    if (2 * (this.#size + 1) > this.#values.length) this.#grow();
    const slot = id & this.#mask;
    if (this.#values[slot] !== undefined) throw new Error(`request table: slot of ${id} taken`);
    this.#ids[slot] = id;
    this.#values[slot] = value;
    this.#size++;
  }

  /**
   * Stores `value` under `id` whatever holds its slot now: for tables that only remember. A
   * table smaller than {@link MAX_PUT_SLOTS} doubles until the two ids part (found in the
   * simulator: a request answered 1.2 s late, after 70 others were remembered, had lost its
   * entry to one of them in a 1024-slot table, so its whole piece was thrown away); beyond
   * that, the old entry is lost, which costs a little, never correctness.
   */
  put(id: number, value: T): void {
    while (!this.free(id) && this.#ids[id & this.#mask] !== id) {
      if (this.#values.length >= MAX_PUT_SLOTS) {
        this.delete(this.#ids[id & this.#mask]);
        break;
      }
      this.#grow();
    }
    if (this.#ids[id & this.#mask] === id) this.delete(id);
    this.set(id, value);
  }

  /** Removes `id`; false if it was not there. */
  delete(id: number): boolean {
    const slot = id & this.#mask;
    if (this.#values[slot] === undefined || this.#ids[slot] !== id) return false;
    this.#values[slot] = undefined;
    this.#size--;
    return true;
  }

  /** Twice the slots: ids apart in fewer low bits stay apart in more, so nothing collides. */
  #grow(): void {
    const ids = this.#ids;
    const values = this.#values;
    const n = values.length * 2;
    this.#ids = new Uint32Array(n);
    this.#values = new Array(n).fill(undefined);
    this.#mask = n - 1;
    for (let i = 0; i < values.length; i++) {
      if (values[i] === undefined) continue;
      const slot = ids[i] & this.#mask;
      this.#ids[slot] = ids[i];
      this.#values[slot] = values[i];
    }
  }
}
