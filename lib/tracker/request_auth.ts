/**
 * udpget's authentication extension to BEP 15 (`tracker --secret-file`). BEP 15 has no
 * authentication, so this adds one BEP 41 option, type 0x80 (unassigned in BEP 41), length 16:
 * HMAC-SHA256(key, every byte of the request before the option), truncated to 16 bytes. It must
 * be the last thing in the datagram, after any other option; on a scrape (which has no options
 * in BEP 15) it follows the info-hashes, where its 18 bytes cannot be mistaken for a 20-byte hash.
 *
 * Announces and scrapes need it; connect requests do not (a connection id alone gives access
 * to nothing). The tag covers the connection id, which is bound to the source address and to
 * a 2–3 minute window (`connection_id.ts`), so a captured request cannot be replayed from
 * another address or later than that; no nonce memory is needed.
 *
 * Pure apart from hashing.
 *
 * @module
 */

import { createHmac, timingSafeEqual } from "node:crypto";
import {
  AUTH_OPTION_SIZE,
  AUTH_OPTION_TYPE,
  AUTH_TAG_SIZE,
  type AuthOption,
} from "./bep15_packet.ts";

/** Appends the authentication option to an encoded announce or scrape request. */
export function sealTrackerRequest(packet: Uint8Array, key: Uint8Array): Uint8Array {
  const out = new Uint8Array(packet.length + AUTH_OPTION_SIZE);
  out.set(packet);
  out[packet.length] = AUTH_OPTION_TYPE;
  out[packet.length + 1] = AUTH_TAG_SIZE;
  out.set(tag(key, packet), packet.length + 2);
  return out;
}

/** Why a request failed authentication. */
export type TrackerAuthFailure = "missing" | "bad_tag";

/**
 * Checks the authentication option `auth` found in `packet` (undefined: there was none);
 * undefined when the request is authentic.
 */
export function checkTrackerAuth(
  packet: Uint8Array,
  auth: AuthOption | undefined,
  key: Uint8Array,
): TrackerAuthFailure | undefined {
  if (auth === undefined) return "missing";
  const want = tag(key, packet.subarray(0, auth.offset));
  return timingSafeEqual(want, auth.tag) ? undefined : "bad_tag";
}

/** The message of the error response for `failure`. */
export function trackerAuthMessage(failure: TrackerAuthFailure): string {
  return failure === "missing" ? "authentication required" : "wrong key";
}

function tag(key: Uint8Array, bytes: Uint8Array): Uint8Array {
  const h = createHmac("sha256", key).update(bytes).digest();
  return new Uint8Array(h.buffer, h.byteOffset, AUTH_TAG_SIZE);
}
