// An HTTP listener that can be drained without losing a request (issue 9): it tracks every
// connection and every unanswered response so that the drain can close exactly what is safe to close.
//
// Drain: stop listening; a response not yet started gets `Connection: close` (Node then ends the
// socket after it is written), and so does every request that still arrives on an open keep-alive
// connection. Idle connections stay open while any request of this listener is still in flight (the
// drain waits for those anyway, and a client reusing its idle connection meanwhile gets a clean
// answer); once nothing is in flight, a connection idle for `idleCloseMs` is closed (a FIN).
// Closing an idle keep-alive connection always races a client that is just reusing it (its request
// and the server's FIN cross on the wire; HTTP/1.1 has no way out of that). Waiting until a
// connection has been idle for a while means a client that keeps sending is never caught in that
// race: its next request is answered with `Connection: close` instead. http.Server.close() (which
// closes every idle connection at once, Node >= 19) is what lost requests before.
// Forced close (shutdown_timeout): every response not yet started is answered 503 with
// `Connection: close`; sockets are destroyed only after their responses are written (or `flushMs`).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Server as NetServer, type Socket } from 'node:net';
import { ServiceUnavailableError } from '../errors.js';
import type { Drainable } from '../lifecycle.js';

export interface DrainableHttpOptions {
  /** For logs, e.g. "inference". */
  name: string;
  /** During a drain, a connection with no request in flight is closed after this long idle (ms). */
  idleCloseMs?: number;
  /** On forced close, how long written 503s (and responses already streaming) get to flush (ms). */
  flushMs?: number;
  /** The classes node:http builds each request and response with (http.createServer's options of the same names). */
  IncomingMessage?: typeof IncomingMessage;
  ServerResponse?: typeof ServerResponse;
}

export interface DrainableHttpServer extends Drainable {
  readonly server: Server;
  /** Open connections now (for tests and logs). */
  readonly connections: number;
  /** Requests accepted and not yet answered. */
  readonly inFlight: number;
}

type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

interface Connection {
  /** Requests received on this connection whose response has not closed (pipelining can make it > 1). */
  active: number;
  /** When the connection last became idle (Date.now()). */
  idleSince: number;
}

const DEFAULT_IDLE_CLOSE_MS = 500;
const DEFAULT_FLUSH_MS = 2000;

/** Creates the http.Server for `app` with the connection tracking that the drain needs. */
export function createDrainableHttpServer(app: RequestListener, options: DrainableHttpOptions): DrainableHttpServer {
  const idleCloseMs = options.idleCloseMs ?? DEFAULT_IDLE_CLOSE_MS;
  const flushMs = options.flushMs ?? DEFAULT_FLUSH_MS;
  const server = createServer({ IncomingMessage: options.IncomingMessage, ServerResponse: options.ServerResponse });
  const connections = new Map<Socket, Connection>();
  const unanswered = new Set<ServerResponse>();
  let draining = false;
  let sweep: NodeJS.Timeout | undefined;
  let listenerClosed = false;
  let drainedResolve: (() => void) | undefined;
  const drained = new Promise<void>((resolve) => (drainedResolve = resolve));

  const checkDrained = () => {
    if (!draining || !listenerClosed || connections.size > 0) return;
    clearInterval(sweep);
    drainedResolve?.();
  };

  server.on('connection', (socket: Socket) => {
    connections.set(socket, { active: 0, idleSince: Date.now() });
    socket.once('close', () => {
      connections.delete(socket);
      checkDrained();
    });
  });
  // Registered before the app's listener so that a response the app ends synchronously (e.g. /ping)
  // still gets `Connection: close` while draining.
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const conn = connections.get(req.socket);
    if (conn) conn.active++;
    unanswered.add(res);
    if (draining) res.setHeader('Connection', 'close');
    res.once('close', () => {
      unanswered.delete(res);
      if (conn) {
        conn.active--;
        conn.idleSince = Date.now();
      }
    });
  });
  server.on('request', app);

  const closeIdle = (olderThanMs: number) => {
    const now = Date.now();
    for (const [socket, conn] of connections) {
      if (conn.active === 0 && now - conn.idleSince >= olderThanMs) socket.destroy();
    }
  };

  return {
    server,
    name: options.name,
    get connections() {
      return connections.size;
    },
    get inFlight() {
      return unanswered.size;
    },

    drain() {
      if (draining) return drained;
      draining = true;
      // Responses already in progress but not started tell their client not to reuse the connection.
      for (const res of unanswered) if (!res.headersSent) res.setHeader('Connection', 'close');
      // http.Server.close() would also close every idle keep-alive connection at once (Node ≥ 19);
      // the net.Server close only stops listening and leaves the connections to the sweep below.
      if (server.listening) {
        NetServer.prototype.close.call(server, () => {
          listenerClosed = true;
          checkDrained();
        });
      } else listenerClosed = true;
      const closeIdleWhenQuiet = () => {
        if (unanswered.size === 0) closeIdle(idleCloseMs);
      };
      sweep = setInterval(closeIdleWhenQuiet, Math.max(10, Math.min(100, idleCloseMs / 2)));
      closeIdleWhenQuiet();
      checkDrained();
      return drained;
    },

    async forceClose(reason = 'the shutdown timeout passed') {
      if (!draining) void this.drain();
      const error = new ServiceUnavailableError(`torchd is shutting down: ${reason} before this request was answered`);
      const body = JSON.stringify(error.toJSON());
      for (const res of unanswered) {
        if (res.headersSent || res.destroyed) continue;
        res.statusCode = error.status;
        for (const [k, v] of Object.entries(error.headers)) res.setHeader(k, v);
        res.setHeader('Content-Type', 'application/json; charset=utf-8');
        res.setHeader('Connection', 'close');
        res.end(body);
      }
      closeIdle(0);
      // Give the 503s (and responses that were already streaming) time to reach their clients.
      const until = Date.now() + flushMs;
      while (unanswered.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      for (const socket of connections.keys()) socket.destroy();
      await drained;
    },
  };
}
