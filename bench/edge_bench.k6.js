// WebSocket watchers for bench/edge_bench.py: SOCKETS sockets spread over the VUs (k6's websockets
// module runs many sockets per VU on its event loop), each held HOLD seconds. Every frame's delay is
// now - its send time: `sentAt` (ms) for the floor's frames, `bid.bid.placedAt` for an auction's.
import { WebSocket } from 'k6/experimental/websockets';
import { Counter, Trend } from 'k6/metrics';

const URL = __ENV.URL;
const SOCKETS = parseInt(__ENV.SOCKETS || '1000');
const VUS = parseInt(__ENV.VUS || '10');
const HOLD = parseFloat(__ENV.HOLD || '20');

const delay = new Trend('frame_delay', true);
const frames = new Counter('frames');
const opened = new Counter('sockets_open');
const closedEarly = new Counter('sockets_closed_early');

export const options = {
  scenarios: { watchers: { executor: 'per-vu-iterations', vus: VUS, iterations: 1, maxDuration: `${HOLD + 60}s` } },
  summaryTrendStats: ['count', 'avg', 'p(50)', 'p(99)', 'max'],
};

function sentAt(frame) {
  if (frame.sentAt !== undefined) return frame.sentAt;
  if (frame.bid && frame.bid.bid && frame.bid.bid.placedAt) return Date.parse(frame.bid.bid.placedAt);
  return undefined;
}

export default function () {
  const mine = Math.floor(SOCKETS / VUS) + (__VU <= SOCKETS % VUS ? 1 : 0);
  const started = Date.now();
  for (let i = 0; i < mine; i++) {
    const ws = new WebSocket(URL);
    ws.onopen = () => opened.add(1);
    ws.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      const at = sentAt(frame);
      if (at === undefined) return; // the snapshot a watcher starts with
      frames.add(1);
      delay.add(Date.now() - at);
    };
    ws.onclose = () => {
      if (Date.now() - started < HOLD * 1000 - 500) closedEarly.add(1);
    };
    ws.onerror = () => {};
    setTimeout(() => ws.close(), HOLD * 1000);
  }
}
