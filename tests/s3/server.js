// SPDX-License-Identifier: Apache-2.0
// The S3 stand-in for the tests: s3rver (@20minutes/s3rver 4.0.4, checks SigV4; access key and
// secret S3RVER) behind a front that refuses unsigned requests, which s3rver alone would accept
// as anonymous, and header-signed requests without x-amz-content-sha256, as AWS S3 does.
// Run with node --openssl-legacy-provider (s3rver's list tokens use DES).
//
//   node --openssl-legacy-provider server.js DIR BUCKET [PORT]
//
// Stores objects under DIR/store, writes the port to DIR/port once listening.
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

(async () => {
  await s3.configureBuckets();
  const handler = s3.callback();
  const server = http.createServer((req, res) => {
    const signed = 'authorization' in req.headers || /[?&]X-Amz-Algorithm=/.test(req.url);
    fs.appendFileSync(path.join(dir, 'requests.log'),
      `${req.method} ${req.url} ${signed ? 'signed' : 'UNSIGNED'} ${req.headers['x-amz-content-sha256'] || '-'}\n`);
    if (!signed) {
      res.writeHead(403, { 'Content-Type': 'application/xml' });
      res.end('<Error><Code>AccessDenied</Code><Message>unsigned request</Message></Error>');
      return;
    }
    // Like AWS S3: a header-signed request must carry x-amz-content-sha256 (libcurl 7.88 does
    // not add it by itself; s3rver alone would not notice).
    if ('authorization' in req.headers && !('x-amz-content-sha256' in req.headers)) {
      res.writeHead(400, { 'Content-Type': 'application/xml' });
      res.end('<Error><Code>InvalidRequest</Code><Message>Missing required header for this ' +
        'request: x-amz-content-sha256</Message></Error>');
      return;
    }
    handler(req, res);
  });
  server.listen(Number(portArg || 0), '127.0.0.1', () => {
    fs.writeFileSync(path.join(dir, 'port.tmp'), String(server.address().port));
    fs.renameSync(path.join(dir, 'port.tmp'), path.join(dir, 'port'));
  });
})();
