// The seats page: the browser module built from examples/seats-rust/web
// (wasm-pack build --target web --out-dir www/pkg) folds with the same
// Rust reducer crate as logsync-seats-server, which serves this page.
import init, { open } from './pkg/seats_web.js';

const ROWS = [1, 2, 3, 4, 5];
const LETTERS = ['A', 'B', 'C', 'D'];
const params = new URLSearchParams(location.search);
// ?show=NAME picks the stream seats/NAME (default seats/show1).
const stream = `seats/${params.get('show') || 'show1'}`;
const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;

const $ = (id) => document.getElementById(id);
const who = $('who');
who.value = localStorage.getItem('seats-who') || who.value;
who.addEventListener('change', () => localStorage.setItem('seats-who', who.value));

await init();
const app = await open(wsUrl, stream, 'logsync-seats');
let offline = false;

function render() {
  const { seats } = app.state();
  const plan = $('plan');
  plan.replaceChildren();
  for (const row of ROWS) {
    for (const letter of LETTERS) {
      const seat = `${row}${letter}`;
      const b = document.createElement('button');
      b.type = 'button';
      b.dataset.seat = seat;
      const holder = seats[seat];
      b.textContent = holder ? `${seat} ${holder}` : seat;
      if (holder) b.className = holder === who.value ? 'taken mine' : 'taken';
      b.disabled = holder !== undefined;
      b.addEventListener('click', () => {
        $('notice').textContent = '';
        try {
          app.book(seat, who.value.trim() || 'anonymous');
        } catch (e) {
          $('notice').textContent = e.message;
        }
      });
      plan.append(b);
    }
  }
  renderStatus();
}

function renderStatus() {
  const s = app.status();
  $('status').textContent =
    `${stream} · ${s.online ? 'online' : 'offline'} · offset ${s.offset} · ${s.pending} pending` +
    (s.lastError ? ` · ${s.lastError.code}: ${s.lastError.message}` : '');
}

app.onChange(render);
app.onRejected(({ seat, who: by, code, message }) => {
  $('notice').textContent = `${by}'s booking of ${seat} was refused (${code}): ${message}`;
});
$('offline').addEventListener('click', () => {
  offline = !offline;
  if (offline) app.goOffline(); else app.reconnect();
  $('offline').textContent = offline ? 'Go online' : 'Go offline';
  renderStatus();
});
// The status (online, offset) changes without a state change too.
setInterval(renderStatus, 500);
render();
