import 'global-agent/bootstrap.js';
// ^ The docs say `import 'global-agent/bootstrap';`. That spelling works where imports are compiled to
// require() (TypeScript, Babel, bundlers), but native Node ES modules need the file extension:
// global-agent 3 has no "exports" map, so Node fails with ERR_MODULE_NOT_FOUND
// ("Did you mean to import "global-agent/bootstrap.js"?"). This is the same module, loaded first so
// that it patches node:http / node:https before any request is made.
//
// Conformance client for Node: node:http / node:https requests, proxied by global-agent from
// GLOBAL_AGENT_HTTP_PROXY / GLOBAL_AGENT_HTTPS_PROXY / GLOBAL_AGENT_NO_PROXY; TLS trust from
// NODE_EXTRA_CA_CERTS. Not fetch(): global-agent does not patch it.
//
// Usage: conformance-client (METHOD URL BODY)...   Prints one JSON object per request on stdout.

import http from 'node:http';
import https from 'node:https';

const TIMEOUT_MS = 10_000;
const USAGE = "usage: conformance-client (METHOD URL BODY)...  (BODY is '-' for none)";

function oneLine(text) {
  return String(text).split(/\s+/).filter(Boolean).join(' ');
}

function errorText(err) {
  if (!(err instanceof Error)) return oneLine(err);
  const code = err.code && !err.message.includes(err.code) ? ` (${err.code})` : '';
  return oneLine(`${err.message}${code}`);
}

function send(method, url, body) {
  return new Promise((resolve, reject) => {
    let target;
    try {
      target = new URL(url);
    } catch (err) {
      reject(err);
      return;
    }
    const module = target.protocol === 'https:' ? https : http;
    const payload = body === '-' ? null : Buffer.from(body, 'utf8');
    const headers = payload === null
      ? {}
      : { 'Content-Type': 'text/plain', 'Content-Length': String(payload.length) };

    let settled = false;
    const finish = (fn, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn(value);
    };

    const req = module.request(url, { method, headers }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => finish(resolve, {
        status: res.statusCode,
        body: Buffer.concat(chunks).toString('utf8'),
      }));
      res.on('error', (err) => finish(reject, err));
      res.on('aborted', () => finish(reject, new Error('response aborted')));
    });
    const timer = setTimeout(() => {
      const err = new Error(`request timed out after ${TIMEOUT_MS / 1000}s`);
      finish(reject, err);
      req.destroy(err);
    }, TIMEOUT_MS);
    req.on('error', (err) => finish(reject, err));
    if (payload !== null) req.write(payload);
    req.end();
  });
}

async function main(args) {
  if (args.length === 0 || args.length % 3 !== 0) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  for (let i = 0; i < args.length; i += 3) {
    if (args[i] !== 'GET' && args[i] !== 'POST') {
      process.stderr.write(`conformance-client: METHOD must be GET or POST, got ${JSON.stringify(args[i])}\n${USAGE}\n`);
      return 2;
    }
  }
  for (let i = 0; i < args.length; i += 3) {
    const [method, url, body] = args.slice(i, i + 3);
    const record = { method, url };
    try {
      const { status, body: text } = await send(method, url, body);
      record.status = status;
      record.body = text;
    } catch (err) {
      record.error = errorText(err);
    }
    process.stdout.write(`${JSON.stringify(record)}\n`);
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
