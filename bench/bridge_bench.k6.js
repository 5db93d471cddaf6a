// k6 legs of bench/bridge_bench.py: the same unary RPC from a compiled load generator.
//
//   MODE=grpc  Mirror.GetSample over gRPC (k6/net/grpc, one HTTP/2 connection per VU), the
//              messages from the descriptor set the bench's server serves (PROTOSET)
//   MODE=http  GET URL through the bridge (k6/http, HTTP/1.1 keep-alive, one connection per VU)
//
// Env: MODE, TARGET (host:port, grpc) or URL (http), PROTOSET (grpc), VUS, DURATION (k6 units, "5s"),
// OUT (where the JSON summary goes). bridge_bench.py runs it; it is not meant to be run by hand.
import grpc from 'k6/net/grpc';
import http from 'k6/http';
import { Counter } from 'k6/metrics';

const MODE = __ENV.MODE;
const failures = new Counter('failures');

export const options = {
  vus: Number(__ENV.VUS || 64),
  duration: __ENV.DURATION || '5s',
  summaryTrendStats: ['med', 'p(99)'],
  discardResponseBodies: true,
};

const client = MODE === 'grpc' ? new grpc.Client() : null;
if (client) {
  client.loadProtoset(__ENV.PROTOSET);
}

export default function () {
  if (MODE === 'grpc') {
    if (__ITER === 0) {
      client.connect(__ENV.TARGET, { plaintext: true });
    }
    const res = client.invoke('agora.testing.v1.Mirror/GetSample', { name: 'abc' });
    if (res.status !== grpc.StatusOK) {
      failures.add(1);
    }
  } else {
    const res = http.get(__ENV.URL);
    if (res.status !== 200) {
      failures.add(1);
    }
  }
}

export function handleSummary(data) {
  const latency = data.metrics[MODE === 'grpc' ? 'grpc_req_duration' : 'http_req_duration'].values;
  const calls = data.metrics.iterations.values.count;
  const seconds = data.state.testRunDurationMs / 1000;
  return {
    [__ENV.OUT]: JSON.stringify({
      rps: calls / seconds,
      p50_ms: latency.med,
      p99_ms: latency['p(99)'],
      requests: calls,
      errors: data.metrics.failures ? data.metrics.failures.values.count : 0,
    }),
  };
}
