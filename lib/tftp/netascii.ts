/**
 * Netascii (RFC 1350 mode "netascii", after RFC 764): line ends travel as CR LF and a bare CR
 * as CR NUL. A server reading a Unix file turns every LF into CR LF and every CR into CR NUL;
 * a client turns them back. Pure.
 *
 * @module
 */

const CR = 0x0d;
const LF = 0x0a;

/**
 * Encodes `src` into `dst` (which must hold `2 * src.length` bytes) and returns the number of
 * bytes written. Each input byte is encoded on its own, so a file can be encoded in chunks.
 */
export function netasciiEncode(src: Uint8Array, dst: Uint8Array): number {
  let o = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === LF) {
      dst[o++] = CR;
      dst[o++] = LF;
    } else if (c === CR) {
      dst[o++] = CR;
      dst[o++] = 0;
    } else {
      dst[o++] = c;
    }
  }
  return o;
}

/**
 * Decodes a whole netascii byte stream (what a client does): CR LF → LF, CR NUL → CR; any other
 * CR is kept as is.
 */
export function netasciiDecode(src: Uint8Array): Uint8Array {
  const out = new Uint8Array(src.length);
  let o = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === CR && i + 1 < src.length && (src[i + 1] === LF || src[i + 1] === 0)) {
      out[o++] = src[i + 1] === LF ? LF : CR;
      i++;
    } else {
      out[o++] = c;
    }
  }
  return out.slice(0, o);
}
