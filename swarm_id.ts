/**
 * `udpget swarm-id <file>`: prints the info-hash under which the swarm of a local file meets
 * (PROTOCOL.md §10.1), computed as a server would describe the file: its SHA-256, the SHA-256 of
 * every piece and their root. What a tracker's whitelist (`--whitelist`, opentracker's `-w`)
 * needs.
 *
 * @module
 */

import { parseSwarmIdArgs } from "./lib/cli/cli_args.ts";
import { ExitCode, ioMessage, UdpgetError } from "./lib/base/exit.ts";
import { autoPieceSize, digestFile } from "./lib/io/file_digest.ts";
import { infoHashHex, swarmId } from "./lib/swarm/swarm_id.ts";

/** Runs `udpget swarm-id` and resolves with the exit status. */
export async function runSwarmId(args: string[]): Promise<number> {
  const a = parseSwarmIdArgs(args);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(a.file);
  } catch (e) {
    throw new UdpgetError(ExitCode.LocalIo, `swarm-id: cannot open ${a.file}: ${ioMessage(e)}`);
  }
  try {
    const info = await file.stat();
    if (!info.isFile) {
      throw new UdpgetError(ExitCode.LocalIo, `swarm-id: ${a.file} is not a regular file`);
    }
    const d = await digestFile(file, info.size, a.pieceSize ?? autoPieceSize(info.size));
    console.log(`${infoHashHex(swarmId(d))}  ${a.file}`);
    return ExitCode.Ok;
  } catch (e) {
    if (e instanceof UdpgetError) throw e;
    throw new UdpgetError(ExitCode.LocalIo, `swarm-id: cannot read ${a.file}: ${ioMessage(e)}`);
  } finally {
    file.close();
  }
}
