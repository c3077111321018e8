// A network link between one browser context and the server: a TCP proxy
// on its own port that can be cut (every connection reset, new ones
// refused) and restored, and whose target can move (a restarted server).
// Browsers do not let tests cut an open WebSocket any other way.
import net from 'node:net';

/** @param {() => number} targetPort the server's current port */
export async function openLink(targetPort) {
  const pairs = new Set();
  let up = true;
  // Faults besides a cut: every chunk held back `delayMs`; a black hole
  // swallows every chunk (connections stay open, nothing arrives). TCP
  // never loses bytes inside a stream it keeps: a connection that lost
  // some to the black hole is reset when the black hole ends, as a real
  // one ends in timeouts, rather than going on with a hole in its stream.
  let delayMs = 0;
  let blackHole = false;
  // Held-back chunks of every direction, for `held()`.
  let held = 0;
  // Each direction holds its chunks in one queue (due times on the
  // monotonic clock), each due `delayMs` after
  // it came but never before the one ahead of it: a chunk written after the
  // delay dropped waits for those held back longer, as bytes of one TCP
  // stream always arrive in the order they were sent.
  const forward = (from, to, pair) => {
    const queue = [];
    let timer = null;
    const drain = () => {
      timer = null;
      while (queue.length > 0 && queue[0].at <= performance.now()) {
        held--;
        to.write(queue.shift().chunk);
      }
      if (queue.length > 0) timer = setTimeout(drain, queue[0].at - performance.now());
    };
    from.on('data', (chunk) => {
      if (blackHole) {
        pair.lost = true;
        return;
      }
      if (delayMs === 0 && queue.length === 0) {
        to.write(chunk);
        return;
      }
      const at = Math.max(performance.now() + delayMs, queue.length > 0 ? queue[queue.length - 1].at : 0);
      held++;
      queue.push({ chunk, at });
      if (timer === null) timer = setTimeout(drain, at - performance.now());
    });
    // A closed connection's held chunks go nowhere.
    from.once('close', () => {
      if (timer !== null) clearTimeout(timer);
      held -= queue.length;
      queue.length = 0;
    });
  };
  const server = net.createServer((client) => {
    if (!up) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targetPort(), '127.0.0.1');
    const pair = { client, upstream, webSocket: false, lost: false };
    pairs.add(pair);
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close).on('end', close);
    upstream.on('error', close).on('close', close).on('end', close);
    // A WebSocket is an HTTP request asking to upgrade: counted as one.
    client.once('data', (chunk) => {
      pair.webSocket = /^upgrade:\s*websocket/im.test(chunk.toString('latin1'));
    });
    forward(client, upstream, pair);
    forward(upstream, client, pair);
  });
  await new Promise((res, rej) => server.listen(0, '127.0.0.1', res).once('error', rej));
  const port = server.address().port;
  const resetAll = () => {
    for (const { client, upstream } of pairs) {
      client.resetAndDestroy();
      upstream.destroy();
    }
    pairs.clear();
  };
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    /** Resets every open connection and refuses new ones. */
    cut() {
      up = false;
      resetAll();
    },
    restore() {
      up = true;
    },
    /** Resets open connections but keeps accepting new ones (e.g. after a server restart). */
    resetConnections: resetAll,
    /** Holds every chunk back `ms` (0: none). */
    delay(ms) {
      delayMs = ms;
    },
    /** Swallows every chunk in both directions while `on`; off again, resets the connections that lost bytes. */
    blackHole(on) {
      blackHole = on;
      if (!on) {
        for (const p of pairs) {
          if (p.lost) {
            pairs.delete(p);
            p.client.resetAndDestroy();
            p.upstream.destroy();
          }
        }
      }
    },
    /** How many chunks are held back now. */
    held() {
      return held;
    },
    /** How many WebSocket connections are open through this link now. */
    webSockets() {
      let n = 0;
      for (const p of pairs) if (p.webSocket) n++;
      return n;
    },
    close() {
      up = false;
      resetAll();
      return new Promise((res) => server.close(() => res()));
    },
  };
}
