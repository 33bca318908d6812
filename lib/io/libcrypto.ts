/**
 * SHA-256 from OpenSSL's libcrypto, bound with `Deno.dlopen` as a nonblocking call: the hash
 * runs on one of Deno's blocking threads, straight from the caller's buffer, while the main
 * thread goes on receiving. (`crypto.subtle.digest` also hashes off the main thread, but copies
 * its input into a fresh buffer per call: with 1 MiB pieces that doubled the fetch's CPU time.)
 *
 * Loading fails soft, as `libc.ts` does: `loadSha256()` says why it is unavailable and the
 * caller hashes on a worker instead.
 *
 * @module
 */

/** Hashes `data[0, length)` into `out` (32 bytes) on a blocking thread. */
export type Sha256 = (data: Uint8Array, length: number, out: Uint8Array) => Promise<void>;

const SYMBOLS = {
  // unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md)
  SHA256: { parameters: ["buffer", "usize", "buffer"], result: "pointer", nonblocking: true },
} as const;

/** Library names tried in order (OpenSSL 3, then 1.1). */
const NAMES = ["libcrypto.so.3", "libcrypto.so.1.1"];

let loaded: Sha256 | string | undefined;

/** libcrypto's SHA-256, or why it cannot be had (no `--allow-ffi`, no libcrypto). */
export function loadSha256(): Sha256 | string {
  if (loaded === undefined) loaded = open();
  return loaded;
}

function open(): Sha256 | string {
  if (Deno.build.os !== "linux") return `not verified on ${Deno.build.os}`;
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return "no --allow-ffi";
  const why: string[] = [];
  for (const name of NAMES) {
    try {
      const lib = Deno.dlopen(name, SYMBOLS);
      return async (data, length, out) => {
        if (length > data.length || out.length < 32) throw new RangeError("sha256: bad lengths");
        await lib.symbols.SHA256(data, BigInt(length), out);
      };
    } catch (e) {
      why.push(`${name}: ${e instanceof Error ? e.message.split("\n")[0] : e}`);
    }
  }
  return `cannot load libcrypto (${why.join("; ")})`;
}
