/**
 * Test helpers for `udpget tracker` as a process: start it on an ephemeral port and learn the
 * port from its first line (as `tests/harness.ts` does for `serve`), and a minimal BEP 15
 * client over a real socket. Every process started here is killed by `stop()`.
 *
 * @module
 */

import { type ListeningProcess, startListening } from "../harness.ts";
import { withTimeout } from "../../lib/io/timer.ts";
import {
  type AnnounceFields,
  encodeAnnounceRequest,
  encodeConnectRequest,
  encodeScrapeRequest,
  parseResponse,
  type TrackerResponse,
} from "../../lib/tracker/bep15_packet.ts";

/** A running `udpget tracker`. */
export type TrackerProcess = ListeningProcess;

/** Starts `udpget tracker 0 --host 127.0.0.1 <extra>` and waits for its listening line. */
export function startTracker(extra: string[] = []): Promise<TrackerProcess> {
  return startListening(
    ["tracker", "0", "--host", "127.0.0.1", ...extra],
    /listening on udp [^\s]+:(\d+) /,
    "tracker",
  );
}

/** An announce (`started`, 1 byte left, port 6881, the default number of peers) with `f` set. */
export function announceRequest(
  f: Partial<AnnounceFields> & Pick<AnnounceFields, "connectionId" | "transactionId" | "infoHash">,
): Uint8Array {
  return encodeAnnounceRequest({
    peerId: new Uint8Array(20),
    downloaded: 0n,
    left: 1n,
    uploaded: 0n,
    event: "started",
    ip: 0,
    key: 0,
    numWant: -1,
    port: 6881,
    ...f,
  });
}

/** A BEP 15 client on its own loopback socket (one source port, like one BitTorrent client). */
export class TrackerClient {
  readonly sock: Deno.DatagramConn = Deno.listenDatagram({
    hostname: "127.0.0.1",
    port: 0,
    transport: "udp",
  });
  #to: Deno.NetAddr;
  #tid = 1;

  /** A client of the tracker on loopback `port`. */
  constructor(port: number) {
    this.#to = { transport: "udp", hostname: "127.0.0.1", port };
  }

  /** Sends `bytes` and resolves with the reply (IPv4), or undefined after `ms`. */
  async request(bytes: Uint8Array, ms = 2000): Promise<TrackerResponse | undefined> {
    await this.sock.send(bytes, this.#to);
    const got = await withTimeout(this.sock.receive(), ms);
    return got === undefined ? undefined : parseResponse(got[0], "ipv4");
  }

  /** Connects and resolves with the connection id. */
  async connect(): Promise<Uint8Array> {
    const r = await this.request(encodeConnectRequest(this.#tid++));
    if (r?.action !== "connect") throw new Error(`connect: ${JSON.stringify(r)}`);
    return r.connectionId;
  }

  /** Announces with `fields` over a fresh connection id. */
  async announce(fields: Partial<AnnounceFields> & { infoHash: Uint8Array }) {
    const connectionId = await this.connect();
    const transactionId = this.#tid++;
    const peerId = new Uint8Array(20).fill(this.#tid);
    return await this.request(announceRequest({ connectionId, transactionId, peerId, ...fields }));
  }

  /** Scrapes `infoHashes` over a fresh connection id. */
  async scrape(infoHashes: Uint8Array[]) {
    const connectionId = await this.connect();
    return await this.request(encodeScrapeRequest(connectionId, this.#tid++, infoHashes));
  }

  /** Closes the socket. */
  close(): void {
    this.sock.close();
  }
}
