/**
 * Worker thread that checks pieces of the `.part` file against their SHA-256 and hashes the
 * whole file in order as its verified prefix grows, so that hashing (the client's biggest CPU
 * cost) runs on another core while the main thread receives.
 *
 * Protocol (postMessage): see `VerifyRequest` / `VerifyReply` in `piece_verifier.ts`.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { createHash, type Hash } from "node:crypto";
import { sameBytes, type VerifyReply, type VerifyRequest } from "./piece_verifier.ts";
import { partOffset } from "./piece_ring.ts";

let file: Deno.FsFile | undefined;
let pieceSize = 0;
let size = 0;
let hashes: Uint8Array | undefined;
let whole: Hash = createHash("sha256");
let verified: Uint8Array = new Uint8Array(0);
let prefix = 0; // pieces [0, prefix) have been fed to `whole`
let buf = new Uint8Array(0);
let wantWhole = true;
let ring = 0; // pieces the .part holds (0: all of them, each at its own offset)

function readPiece(piece: number): Uint8Array {
  const start = piece * pieceSize;
  const len = Math.min(pieceSize, size - start);
  file!.seekSync(partOffset(start, pieceSize, ring), Deno.SeekMode.Start);
  let got = 0;
  while (got < len) {
    const n = file!.readSync(buf.subarray(got, len));
    if (n === null || n === 0) break;
    got += n;
  }
  return buf.subarray(0, got);
}

/** Checks a piece; when it is the next one of the in-order prefix, the same read also feeds
 * the whole-file hash, so most pieces are read once, not twice. */
function check(piece: number): boolean {
  if (!hashes && (piece !== prefix || !wantWhole)) return true; // the file digest will judge
  const bytes = readPiece(piece);
  const ok = !hashes ||
    sameBytes(
      new Uint8Array(createHash("sha256").update(bytes).digest()),
      hashes.subarray(piece * 32, piece * 32 + 32),
    );
  if (ok && piece === prefix && wantWhole) {
    whole.update(bytes);
    verified[prefix++] = 1;
  }
  return ok;
}

function advancePrefix(): void {
  if (!wantWhole) return;
  while (prefix < verified.length && verified[prefix]) whole.update(readPiece(prefix++));
}

self.onmessage = (e: MessageEvent<VerifyRequest>) => {
  const m = e.data;
  let reply: VerifyReply;
  if (m.kind === "open") {
    file = Deno.openSync(m.path, { read: true });
    pieceSize = m.pieceSize;
    size = m.size;
    hashes = m.hashes;
    wantWhole = m.whole;
    ring = m.ring ?? 0;
    whole = createHash("sha256");
    verified = new Uint8Array(Math.ceil(size / pieceSize));
    prefix = 0;
    buf = new Uint8Array(Math.min(pieceSize, Math.max(size, 1)));
    reply = { kind: "opened" };
  } else if (m.kind === "piece") {
    const ok = check(m.piece);
    if (ok) {
      verified[m.piece] = 1;
      advancePrefix();
    }
    reply = { kind: "piece", piece: m.piece, ok };
  } else {
    advancePrefix();
    const complete = wantWhole && prefix === verified.length;
    reply = { kind: "digest", digest: complete ? new Uint8Array(whole.digest()) : undefined };
    file?.close();
    file = undefined;
  }
  self.postMessage(reply);
};
