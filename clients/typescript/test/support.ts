// The real service, started as `webhooks serve` in a folder of its own, and a real HTTP receiver.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** clients/typescript, whichever folder the compiled tests run from. */
export const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const WEBHOOKS = process.env.WEBHOOKS_BIN ?? join(PACKAGE, "..", "..", ".venv", "bin", "webhooks");
const START_TIMEOUT_MS = 60_000;

export interface RunningService {
  /** `http://127.0.0.1:PORT`, for createClients. */
  url: string;
  /** The admin token the first start wrote to data/admin-token. */
  token: string;
  /** The folder it runs in: data/ is there. */
  folder: string;
  stop(): Promise<void>;
}

/** `webhooks serve` on a free port, with authentication, SQLite and loopback receivers allowed. */
export async function startService(...flags: string[]): Promise<RunningService> {
  const folder = await mkdtemp(join(tmpdir(), "webhooks-ts-"));
  const child = spawn(
    WEBHOOKS,
    ["serve", "--listen", "127.0.0.1:0", "--http-listen", "off", "--allow-network", "127.0.0.0/8", ...flags],
    { cwd: folder, stdio: ["ignore", "pipe", "pipe"] },
  );
  const port = await listeningPort(child);
  const token = (await readFile(join(folder, "data", "admin-token"), "utf8")).trim();
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    folder,
    async stop() {
      if (child.exitCode === null) {
        const exited = once(child, "exit");
        child.kill("SIGTERM");
        await exited;
      }
      await rm(folder, { recursive: true, force: true });
    },
  };
}

function listeningPort(child: ChildProcess): Promise<number> {
  return new Promise((resolvePort, reject) => {
    let log = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`webhooks serve did not start in time:\n${log}`));
    }, START_TIMEOUT_MS);
    const read = (chunk: Buffer) => {
      log += chunk.toString();
      const found = /listening on 127\.0\.0\.1:(\d+)/.exec(log);
      if (found) {
        clearTimeout(timer);
        resolvePort(Number(found[1]));
      }
    };
    child.stdout?.on("data", read);
    child.stderr?.on("data", read);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`webhooks serve exited with ${code}:\n${log}`));
    });
  });
}

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** An HTTP server that answers 200 to everything and keeps what it got. */
export class Receiver {
  readonly received: Received[] = [];
  private readonly server: Server;
  private waiters: Array<() => void> = [];

  private constructor(server: Server) {
    this.server = server;
  }

  static async start(): Promise<Receiver> {
    const server = createServer();
    const receiver = new Receiver(server);
    server.on("request", (request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        receiver.received.push({ path: request.url ?? "", headers: request.headers, body: Buffer.concat(chunks) });
        response.end("ok");
        for (const wake of receiver.waiters.splice(0)) wake();
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return receiver;
  }

  url(path: string): string {
    const address = this.server.address();
    if (address === null || typeof address === "string") throw new Error("not listening");
    return `http://127.0.0.1:${address.port}${path}`;
  }

  /** The requests to `path` once there are `count` of them; fails after `timeoutMs`. */
  async waitFor(path: string, count: number, timeoutMs = 15_000): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = this.received.filter((request) => request.path === path);
      if (got.length >= count) return got;
      if (Date.now() > deadline) throw new Error(`${path} received ${got.length} requests, not ${count}`);
      await new Promise<void>((wake) => {
        const timer = setTimeout(wake, 200);
        this.waiters.push(() => {
          clearTimeout(timer);
          wake();
        });
      });
    }
  }

  async close(): Promise<void> {
    const closed = once(this.server, "close");
    this.server.close();
    this.server.closeAllConnections();
    await closed;
  }
}

/** Retries `probe` until it returns something, for states the service reaches a moment after it answers. */
export async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("the condition did not come true in time");
    await new Promise((wake) => setTimeout(wake, 100));
  }
}
