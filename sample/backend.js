#!/usr/bin/env node
// A sample HTTP backend for trying bal: `node backend.js [PORT]` (default
// 9000). It listens on 127.0.0.1 only, answers every request with JSON that
// names its port, sets the X-Backend-Server header, logs one line per
// request, and exits cleanly on SIGTERM or SIGINT. No dependencies.
'use strict';

const http = require('http');

const arg = process.argv[2] || '9000';
const port = Number(arg);
if (!/^\d+$/.test(arg) || port < 1 || port > 65535) {
  console.error(`backend.js: invalid port ${JSON.stringify(arg)} (want 1-65535)`);
  process.exit(2);
}
const host = '127.0.0.1';
const id = `backend-${port}`;

const server = http.createServer((req, res) => {
  const url = new URL(req.url, `http://${host}:${port}`);
  const body = JSON.stringify({
    status: 'ok',
    message: `Hello from ${id}!`,
    timestamp: new Date().toISOString(),
    request: {
      method: req.method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
    },
    server: { id, port },
  }, null, 2) + '\n';
  res.writeHead(200, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'X-Backend-Server': id,
  });
  res.end(body);
  const client = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
  console.log(`${new Date().toISOString()} ${id} ${client} ${req.method} ${req.url} 200`);
});

server.on('error', (err) => {
  console.error(`${id}: ${err.message}`);
  process.exit(1);
});

server.listen(port, host, () => {
  console.log(`${id} listening on http://${host}:${port}`);
});

let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`${id} received ${signal}, shutting down`);
  server.close(() => process.exit(0));
  // Idle keep-alive connections would hold close() open.
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
