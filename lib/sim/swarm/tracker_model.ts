/**
 * The simulated tracker (BEP 15 in spirit): it knows who is in the swarm now and answers an
 * announce with up to `maxPeers` of them at random, never the asker. Joining and leaving are
 * O(1) (a dense array with positions), an announce is O(peers returned).
 *
 * @module
 */

/** Swarm membership and random peer lists. */
export class TrackerModel {
  readonly #members: number[] = [];
  readonly #position = new Map<number, number>();

  /** @param maxPeers most peers in one announce answer (BEP 15 trackers give ~50) */
  constructor(readonly maxPeers = 50) {}

  /** Peers in the swarm now. */
  get size(): number {
    return this.#members.length;
  }

  /** `id` announced itself (started). */
  join(id: number): void {
    if (this.#position.has(id)) return;
    this.#position.set(id, this.#members.length);
    this.#members.push(id);
  }

  /** `id` left (stopped, or timed out). */
  leave(id: number): void {
    const i = this.#position.get(id);
    if (i === undefined) return;
    const last = this.#members.pop()!;
    if (last !== id) {
      this.#members[i] = last;
      this.#position.set(last, i);
    }
    this.#position.delete(id);
  }

  /** Up to `maxPeers` distinct members other than `asker`, drawn with `random`. */
  announce(asker: number, random: () => number): number[] {
    const m = this.#members;
    const others = m.length - (this.#position.has(asker) ? 1 : 0);
    const want = Math.min(this.maxPeers, others);
    if (want <= 0) return [];
    if (2 * want > others) return shuffledPrefix(m.filter((id) => id !== asker), want, random);
    const picked = new Set<number>();
    while (picked.size < want) {
      const id = m[Math.floor(random() * m.length)];
      if (id !== asker) picked.add(id);
    }
    return [...picked];
  }
}

/** The first `k` of `a` after a partial Fisher–Yates shuffle (a is modified). */
function shuffledPrefix(a: number[], k: number, random: () => number): number[] {
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(random() * (a.length - i));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, k);
}
