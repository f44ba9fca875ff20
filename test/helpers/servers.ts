/** Small HTTP servers the tests start on loopback (stand-ins, webhook receivers), and free ports. */
import { createServer as createHttpServer, Server } from 'http';
import { AddressInfo, createServer } from 'net';

/** A port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

/** Starts `server` on a free loopback port: its URL, and a stop that also ends kept-alive connections. */
export async function listenOnLoopback(server: Server): Promise<{ url: string; stop(): Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: 'http://127.0.0.1:' + (server.address() as AddressInfo).port,
    stop: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A webhook receiver: every delivery's JSON body in `received`, in order; `url` is its `/hook`. */
export async function startHookReceiver(): Promise<{ url: string; received: any[]; stop(): Promise<void> }> {
  const received: any[] = [];
  const server = createHttpServer((req, res) => {
    let raw = '';
    req.on('data', (chunk) => (raw += chunk));
    req.on('end', () => {
      received.push(JSON.parse(raw));
      res.end('ok');
    });
  });
  const { url, stop } = await listenOnLoopback(server);
  return { url: url + '/hook', received, stop };
}
