// WatchResults watchers for bench/polls_edge_bench.py: SOCKETS WebSockets to one poll's shared results
// feed (URL), spread over the VUs. Every frame's edge delay is now - the snapshot's asOf (when the polls
// server took it). The first RECORD sockets also log each frame as `F <socket> <received ms> <totalVotes>`
// (the bench runs k6 with --console-output), from which the bench works out vote -> screen.
// A socket ends when the poll closes (its final frame, then the stream ends) or after HOLD seconds.
import { WebSocket } from 'k6/experimental/websockets';
import { Counter, Trend } from 'k6/metrics';

const URL = __ENV.URL;
const SOCKETS = parseInt(__ENV.SOCKETS || '1000');
const VUS = parseInt(__ENV.VUS || '10');
const HOLD = parseFloat(__ENV.HOLD || '120');
const RECORD = parseInt(__ENV.RECORD || '100');

const delay = new Trend('frame_delay', true);
const frames = new Counter('frames');
const finals = new Counter('finals');
const opened = new Counter('sockets_open');
const closedEarly = new Counter('sockets_closed_early');

export const options = {
  scenarios: { watchers: { executor: 'per-vu-iterations', vus: VUS, iterations: 1, maxDuration: `${HOLD + 60}s` } },
  summaryTrendStats: ['count', 'avg', 'p(50)', 'p(99)', 'max'],
};

// Timestamps come with up to nine fractional digits; Date.parse is only sure of three.
function millis(timestamp) {
  return Date.parse(timestamp.replace(/(\.\d{3})\d+/, '$1'));
}

export default function () {
  const mine = Math.floor(SOCKETS / VUS) + (__VU <= SOCKETS % VUS ? 1 : 0);
  const first = (__VU - 1) * Math.floor(SOCKETS / VUS) + Math.min(__VU - 1, SOCKETS % VUS);
  for (let i = 0; i < mine; i++) {
    const socket = first + i;
    const record = socket < RECORD;
    const ws = new WebSocket(URL);
    let final = false;
    const timer = setTimeout(() => ws.close(), HOLD * 1000);
    ws.onopen = () => opened.add(1);
    ws.onmessage = (event) => {
      const now = Date.now();
      const frame = JSON.parse(event.data);
      if (!frame.results) return; // a stream's closing status frame
      frames.add(1);
      if (frame.results.asOf) delay.add(now - millis(frame.results.asOf));
      if (record) console.log(`F ${socket} ${now} ${parseInt(frame.results.totalVotes || '0')}`);
      if (frame.final) {
        final = true;
        finals.add(1);
      }
    };
    ws.onclose = () => {
      clearTimeout(timer);
      if (!final) closedEarly.add(1);
    };
    ws.onerror = () => {};
  }
}
