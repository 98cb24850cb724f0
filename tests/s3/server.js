// SPDX-License-Identifier: Apache-2.0
// The S3 stand-in for the tests: s3rver (@20minutes/s3rver 4.0.4, checks SigV4; access key and
// secret S3RVER) behind a front that refuses unsigned requests, which s3rver alone would accept
// as anonymous, and header-signed requests without x-amz-content-sha256, as AWS S3 does.
// Run with node --openssl-legacy-provider (s3rver's list tokens use DES).
//
//   node --openssl-legacy-provider server.js DIR BUCKET [PORT]
//
// Stores objects under DIR/store, writes the port to DIR/port once listening, and one line per
// request to DIR/requests.log: METHOD URL signed|UNSIGNED SHA256 [fault].
//
// The front is also the stub for what s3rver lacks, for the multipart fault cases:
// - AbortMultipartUpload (DELETE ?uploadId=X): answered here, 204, logged; later UploadPart
//   and CompleteMultipartUpload of X get 404 NoSuchUpload, as from S3; so do those of a
//   completed upload.
// - S3's part size rule: CompleteMultipartUpload with a part other than the last under 5 MiB is
//   400 EntityTooSmall (s3rver accepts any size).
// - Faults on demand: `POST /__faults` with a JSON array of rules
//   {"method": "PUT", "match": "REGEX on the URL", "count": N, and one of
//    "status": 500, "code": "InternalError" (answer that) | "hold": true (never answer)}.
//   Each matching request uses up one count of the first rule that matches. `POST /__expire`
//   makes every upload id seen so far unknown (NoSuchUpload), like an expired upload.
// ListParts is not offered (the gateway resumes from its own records).
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');
const S3rver = require('@20minutes/s3rver');

const [dir, bucket, portArg] = process.argv.slice(2);
fs.mkdirSync(path.join(dir, 'store'), { recursive: true });
const s3 = new S3rver({
  directory: path.join(dir, 'store'),
  silent: true,
  configureBuckets: [{ name: bucket }],
});

const MIN_PART = 5 * 1024 * 1024;
let faults = [];
const gone = new Set();     // upload ids aborted or expired
const seen = new Set();     // upload ids used so far
const partSizes = new Map(); // upload id -> Map(part number -> bytes)
const held = [];            // requests never answered (kept so they are not collected)

function log(line) {
  fs.appendFileSync(path.join(dir, 'requests.log'), line + '\n');
}

function xmlError(res, status, code, message) {
  res.writeHead(status, { 'Content-Type': 'application/xml' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
    `<Message>${message}</Message></Error>`);
}

function readBody(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString()));
  });
}

(async () => {
  await s3.configureBuckets();
  const handler = s3.callback();
  const server = http.createServer(async (req, res) => {
    if (req.url === '/__faults' && req.method === 'POST') {
      faults = JSON.parse(await readBody(req));
      res.end('ok');
      return;
    }
    if (req.url === '/__expire' && req.method === 'POST') {
      for (const id of seen) gone.add(id);
      res.end('ok');
      return;
    }
    const signed = 'authorization' in req.headers || /[?&]X-Amz-Algorithm=/.test(req.url);
    const entry = `${req.method} ${req.url} ${signed ? 'signed' : 'UNSIGNED'} ` +
      `${req.headers['x-amz-content-sha256'] || '-'}`;
    if (!signed) {
      log(entry);
      xmlError(res, 403, 'AccessDenied', 'unsigned request');
      return;
    }
    // Like AWS S3: a header-signed request must carry x-amz-content-sha256 (libcurl 7.88 does
    // not add it by itself; s3rver alone would not notice).
    if ('authorization' in req.headers && !('x-amz-content-sha256' in req.headers)) {
      log(entry);
      xmlError(res, 400, 'InvalidRequest',
        'Missing required header for this request: x-amz-content-sha256');
      return;
    }
    const rule = faults.find((f) => f.count > 0 && (!f.method || f.method === req.method) &&
      new RegExp(f.match || '').test(req.url));
    if (rule) {
      rule.count -= 1;
      log(`${entry} ${rule.hold ? 'held' : 'fault ' + rule.status}`);
      if (rule.hold) {
        held.push(req, res);
        return;
      }
      xmlError(res, rule.status, rule.code || 'InternalError', 'injected fault');
      return;
    }
    log(entry);
    const url = new URL(req.url, 'http://stand-in');
    const uploadId = url.searchParams.get('uploadId');
    if (uploadId) {
      seen.add(uploadId);
      if (req.method === 'DELETE') {
        gone.add(uploadId);
        res.writeHead(204);
        res.end();
        return;
      }
      if (gone.has(uploadId)) {
        xmlError(res, 404, 'NoSuchUpload', 'The specified upload does not exist.');
        return;
      }
      const part = url.searchParams.get('partNumber');
      if (req.method === 'PUT' && part) {
        if (!partSizes.has(uploadId)) partSizes.set(uploadId, new Map());
        partSizes.get(uploadId).set(Number(part), Number(req.headers['content-length'] || 0));
      }
      if (req.method === 'POST') {
        const sizes = [...(partSizes.get(uploadId) || new Map()).entries()].sort((a, b) => a[0] - b[0]);
        if (sizes.slice(0, -1).some(([, n]) => n < MIN_PART)) {
          xmlError(res, 400, 'EntityTooSmall',
            'Your proposed upload is smaller than the minimum allowed object size.');
          return;
        }
        // Like S3: a completed upload is gone (s3rver would answer a second completion 500).
        res.on('finish', () => { if (res.statusCode === 200) gone.add(uploadId); });
      }
    }
    handler(req, res);
  });
  server.listen(Number(portArg || 0), '127.0.0.1', () => {
    fs.writeFileSync(path.join(dir, 'port.tmp'), String(server.address().port));
    fs.renameSync(path.join(dir, 'port.tmp'), path.join(dir, 'port'));
  });
})();
