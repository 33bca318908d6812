/**
 * A flood from many source ports of one client: the server's state stays within its limits,
 * it refuses what is beyond them with TOO_MANY, and it keeps serving.
 */

import assert from "node:assert/strict";
import {
  encode,
  ErrorCode,
  fileIdOf,
  NO_TOKEN,
  type Packet,
  TOKEN_PROBE_NAME,
} from "../lib/wire/packet.ts";
import { MAX_TRANSFERS_PER_CLIENT } from "../lib/serving/transfer_log.ts";
import { PacketInbox, seededBytes, serveInProcess, tempDir } from "./harness.ts";

const PORTS = 300;
const FILES = 40;

Deno.test("flood: 300 source ports asking for 40 files: bounded state, TOO_MANY, still serving", async () => {
  const dir = await tempDir();
  for (let i = 0; i < FILES; i++) {
    await Deno.writeFile(`${dir.path}/f${i}.bin`, seededBytes(4096, i));
  }
  const server = await serveInProcess(dir.path);
  const client = new PacketInbox();
  const to = { transport: "udp" as const, hostname: "127.0.0.1", port: server.port };
  const flood = Array.from(
    { length: PORTS },
    () => Deno.listenDatagram({ hostname: "127.0.0.1", port: 0, transport: "udp" }),
  );
  let id = 1;
  let token = NO_TOKEN;
  /** One request from the inbox socket, following RETRY; resolves with the answer. */
  const ask = async (build: (id: number, token: Uint8Array) => Packet): Promise<Packet> => {
    for (let attempt = 0; attempt < 20; attempt++) {
      const requestId = id++;
      client.packets.length = 0;
      await client.sock.send(encode(build(requestId, token)), to);
      for (let waits = 0; waits < 20; waits++) {
        const got = client.packets.find((p) => p.requestId === requestId);
        if (got?.type === "retry") {
          token = got.token.slice();
          break;
        }
        if (got) return got;
        await client.next(50);
      }
    }
    throw new Error("no answer");
  };
  try {
    // a valid token for 127.0.0.1 (a token probe), and the metadata of every file (the server
    // hashes them)
    const probe = await ask((requestId, token) => ({
      type: "meta_request",
      requestId,
      token,
      name: TOKEN_PROBE_NAME,
    }));
    assert.ok(probe.type === "error" && token !== NO_TOKEN, "the probe brought a token");
    const ids: bigint[] = [];
    for (let i = 0; i < FILES; i++) {
      const m = await ask((requestId, token) => ({
        type: "meta_request",
        requestId,
        token,
        name: `f${i}.bin`,
      }));
      assert.equal(m.type, "meta_reply");
      if (m.type === "meta_reply") ids.push(fileIdOf(m.digest));
    }
    // the flood: every port asks for a file (round robin), under its name, `./` + its name
    // (one more transfer: transfers are counted per name asked), or a `..` form (refused)
    for (let k = 0; k < PORTS; k++) {
      const f = k % FILES;
      const name = k % 3 === 0 ? `f${f}.bin` : k % 3 === 1 ? `./f${f}.bin` : `x/../f${f}.bin`;
      const packet = encode({
        type: "chunk_request",
        requestId: 1_000_000 + k,
        token,
        fileId: ids[f],
        offset: 0,
        length: 1024,
        blockSize: 1024,
        name,
      });
      await flood[k].send(packet, to);
    }
    // an admitted transfer (the first file asked for) goes on being served
    const chunk = await ask((requestId, token) => ({
      type: "chunk_request",
      requestId,
      token,
      fileId: ids[0],
      offset: 0,
      length: 100,
      blockSize: 100,
      name: "f0.bin",
    }));
    assert.equal(chunk.type, "chunk_reply");
    // a new file beyond the client's limit is refused, with a reason
    const refused = await ask((requestId, token) => ({
      type: "chunk_request",
      requestId,
      token,
      fileId: ids[FILES - 1],
      offset: 0,
      length: 100,
      blockSize: 100,
      name: `f${FILES - 1}.bin`,
    }));
    assert.equal(refused.type, "error");
    if (refused.type === "error") assert.equal(refused.code, ErrorCode.TooMany);
    const stats = await server.stop();
    assert.equal(stats.peakTransfers, MAX_TRANSFERS_PER_CLIENT);
    assert.ok(stats.refused >= 100, `refused ${stats.refused}`);
  } finally {
    for (const s of flood) s.close();
    await server.stop();
    await client.close();
    await dir.cleanup();
  }
});
