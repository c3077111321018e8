// The chaos tests' network link (lib/link.mjs) must fault like a network:
// it may hold bytes back, but a TCP stream never reorders them. A link that
// let a chunk overtake one held back longer reordered the WebSocket frames
// a browser received, which no real connection does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { openLink } from './lib/link.mjs';
import { waitFor } from './lib/browser.mjs';

/** A TCP server that keeps what each connection sends. */
async function sink() {
  const received = [];
  const server = net.createServer((socket) => {
    const got = { text: '' };
    received.push(got);
    socket.on('data', (chunk) => {
      got.text += chunk.toString('latin1');
    });
    socket.on('error', () => {});
  });
  await new Promise((res, rej) => server.listen(0, '127.0.0.1', res).once('error', rej));
  return { port: server.address().port, received, close: () => new Promise((res) => server.close(res)) };
}

test('a link whose delay drops keeps the order of the bytes it holds back', async (t) => {
  const target = await sink();
  const link = await openLink(() => target.port);
  t.after(async () => {
    await link.close();
    await target.close();
  });
  const client = net.connect(link.port, '127.0.0.1');
  client.on('error', () => {});
  await new Promise((res) => client.once('connect', res));
  await waitFor('the link to connect upstream', () => target.received.length === 1, { timeout: 5_000, interval: 5 });
  // Written while the link delays 300 ms, then 100 ms, then not at all: the
  // later chunks must wait for the earlier ones.
  link.delay(300);
  client.write('a');
  await waitFor('the link to hold the first chunk', () => link.held() === 1, { timeout: 5_000, interval: 5 });
  link.delay(100);
  client.write('b');
  await waitFor('the link to hold the second chunk', () => link.held() === 2, { timeout: 5_000, interval: 5 });
  link.delay(0);
  client.write('c');
  await waitFor('every chunk through', () => target.received[0].text.length === 3, { timeout: 5_000, interval: 5 });
  assert.equal(target.received[0].text, 'abc');
  client.destroy();
});
