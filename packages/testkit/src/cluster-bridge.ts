/**
 * A byte pipe between a network namespace and the root one, run as its own process (never in the
 * test process, whose event loop a synchronous call could stall): each argument
 * `<name>=<listen>=><connect>` makes it listen on `<listen>` and connect every accepted
 * connection to `<connect>`, where each side is `unix:<path>` or `tcp:<host>:<port>` (port 0:
 * any free one). Unix sockets belong to no network namespace, so one copy runs inside the
 * cluster's namespace (unix socket → a TCP port there) and one in the root namespace (127.0.0.1 →
 * that unix socket), and no address of the cluster ever exists outside its namespace.
 *
 * Prints `listening <name> <address>` for each, then `ready`. Imports only Node's own modules:
 * it runs as a plain script (`node cluster-bridge.ts …`).
 */
import { rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';

type End = { readonly path: string } | { readonly host: string; readonly port: number };

function parseEnd(text: string): End {
  if (text.startsWith('unix:')) return { path: text.slice('unix:'.length) };
  const m = /^tcp:(.+):(\d+)$/.exec(text);
  if (m === null) throw new Error(`not unix:<path> or tcp:<host>:<port>: ${text}`);
  return { host: m[1]!, port: Number(m[2]) };
}

function pipeTo(target: End, client: Socket): void {
  const upstream = 'path' in target ? connect(target.path) : connect(target.port, target.host);
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', end);
  upstream.on('error', end);
  client.on('close', end);
  upstream.on('close', end);
  client.pipe(upstream);
  upstream.pipe(client);
}

async function listen(name: string, at: End, target: End): Promise<Server> {
  const server = createServer({ allowHalfOpen: false }, (client) => pipeTo(target, client));
  if ('path' in at) rmSync(at.path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    if ('path' in at) server.listen(at.path, resolve);
    else server.listen(at.port, at.host, resolve);
  });
  const address = server.address();
  const shown = typeof address === 'string' ? `unix:${address}` : `tcp:${address?.address}:${address?.port}`;
  console.log(`listening ${name} ${shown}`);
  return server;
}

const servers: Server[] = [];
for (const arg of process.argv.slice(2)) {
  const m = /^([A-Za-z0-9_.-]+)=(.+?)=>(.+)$/.exec(arg);
  if (m === null) {
    console.error(`cluster-bridge: expected <name>=<listen>=><connect>, got ${arg}`);
    process.exit(2);
  }
  try {
    servers.push(await listen(m[1]!, parseEnd(m[2]!), parseEnd(m[3]!)));
  } catch (err) {
    console.error(`cluster-bridge: ${m[1]}: ${(err as Error).message}`);
    process.exit(1);
  }
}
console.log('ready');
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    for (const s of servers) s.close();
    process.exit(0);
  });
}
