// SPDX-License-Identifier: Apache-2.0
// A real HTTP ingest server for the http sink's tests (node's http module, no dependencies).
//
//   node server.js DIR [PORT]
//
// Listens on 127.0.0.1:PORT (0: any; the port is written to DIR/port). Every request re-reads
// DIR/mode.json (absent: {}), which steers it:
//   {"status": 500}      answer every POST with this status
//   {"delay_ms": 3000}   answer after this long
//   {"token": "abc"}     require "Authorization: Bearer abc", else 403
//   {"reject_seq": 17}   answer 422 to a batch that contains the line with seq 17
// A 2xx stores the (gunzipped) body as DIR/batches/<Idempotency-Key>.ndjson, overwriting a retry.
// Every request is logged to DIR/requests.log as "<key> <status> <content-encoding>".
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const zlib = require('zlib');

const dir = process.argv[2];
const port = Number(process.argv[3] || 0);
fs.mkdirSync(path.join(dir, 'batches'), { recursive: true });

function mode() {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, 'mode.json'), 'utf8'));
  } catch (e) {
    return {};
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const m = mode();
    const key = req.headers['idempotency-key'] || '-';
    const encoding = req.headers['content-encoding'] || 'identity';
    let status = 200;
    let text = '';
    try {
      const raw = Buffer.concat(chunks);
      text = (encoding === 'gzip' ? zlib.gunzipSync(raw) : raw).toString('utf8');
    } catch (e) {
      status = 400;
    }
    if (req.method !== 'POST') status = 405;
    if (status === 200 && m.token && req.headers['authorization'] !== 'Bearer ' + m.token) status = 403;
    if (status === 200 && m.status) status = m.status;
    if (status === 200 && m.reject_seq !== undefined) {
      for (const line of text.split('\n')) {
        if (line && JSON.parse(line).seq === m.reject_seq) status = 422;
      }
    }
    const answer = () => {
      if (status >= 200 && status < 300) {
        fs.writeFileSync(path.join(dir, 'batches', key + '.ndjson'), text);
      }
      fs.appendFileSync(path.join(dir, 'requests.log'), `${key} ${status} ${encoding}\n`);
      res.writeHead(status, { 'Content-Type': 'text/plain' });
      res.end(status === 200 ? 'ok\n' : 'no\n');
    };
    if (m.delay_ms) setTimeout(answer, m.delay_ms); else answer();
  });
});
server.listen(port, '127.0.0.1', () => {
  fs.writeFileSync(path.join(dir, 'port.tmp'), String(server.address().port));
  fs.renameSync(path.join(dir, 'port.tmp'), path.join(dir, 'port'));
});
