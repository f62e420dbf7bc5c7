// A client of hopxd's socket protocol (doc/protocol.md), no dependencies.
//
//   const { Client, NotFound } = require('./hopxd-client');
//   const h = await Client.connect();            // the default socket
//   const tok = await h.token('web', 600);       // {id, token, expires_at, ...}
//   for (const sb of await h.ls({ status: 'running' })) console.log(sb.id);
//   for await (const ev of (await Client.connect()).subscribe()) { ... }
//   h.close();
//
// Errors are typed from the protocol's codes: NotFound, InvalidRequest,
// WrongState, AuthError, NetworkError, RateLimited, Timeout, Conflict,
// Unavailable, StorageError, ProtocolError (all HopxdError, with .code);
// NoAgent when nothing listens on the socket.
'use strict';
const net = require('net');
const os = require('os');
const path = require('path');

const LINE_MAX = 1024 * 1024;

class HopxdError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = this.constructor.name;
    this.code = code;
    this.detail = message;
  }
}
const kinds = ['NoAgent', 'NotFound', 'InvalidRequest', 'WrongState',
  'AuthError', 'NetworkError', 'RateLimited', 'Timeout', 'Conflict',
  'Unavailable', 'StorageError', 'ProtocolError'];
const E = {};
for (const k of kinds) E[k] = { [k]: class extends HopxdError {} }[k];

const BY_CODE = {
  not_found: E.NotFound, invalid: E.InvalidRequest, parse: E.InvalidRequest,
  type: E.InvalidRequest, range: E.InvalidRequest, too_big: E.InvalidRequest,
  exists: E.Conflict, conflict: E.Conflict, busy: E.Conflict,
  wrong_state: E.WrongState, auth: E.AuthError, permission: E.AuthError,
  network: E.NetworkError, rate_limited: E.RateLimited, timeout: E.Timeout,
  unavailable: E.Unavailable, bad_response: E.Unavailable,
  unsupported: E.Unavailable, disk_full: E.StorageError,
  read_only: E.StorageError, corrupt: E.StorageError, io: E.StorageError,
  too_new: E.StorageError, protocol: E.ProtocolError,
};

function toError(err) {
  const Kind = BY_CODE[err.code] || HopxdError;
  return new Kind(err.code || 'protocol', err.message || '');
}

// The agent's socket, found the way hopxd and hopxctl find it.
function defaultSocket() {
  if (process.env.HOPXD_SOCKET) return process.env.HOPXD_SOCKET;
  const run = process.env.XDG_RUNTIME_DIR || '';
  if (run.startsWith('/')) return path.join(run, 'hopxd', 'hopxd.sock');
  return `/tmp/hopxd-${os.userInfo().uid}/hopxd.sock`;
}

class Client {
  // Connects; rejects with NoAgent when nothing listens there.
  static connect(socketPath = defaultSocket(), { timeoutMs = 120000 } = {}) {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(socketPath);
      sock.once('connect', () => resolve(new Client(sock, timeoutMs)));
      sock.once('error', (e) => reject(new E.NoAgent('no_agent',
        `no agent at ${socketPath} (${e.code}): start it with ` +
        "'systemctl --user start hopxd' or run 'hopxd'")));
    });
  }

  constructor(sock, timeoutMs) {
    this.sock = sock;
    this.timeoutMs = timeoutMs;
    this.nextId = 0;
    this.pending = new Map();
    this.events = [];
    this.waiters = [];
    this.closed = null;
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('data', (chunk) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        this.onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      if (buf.length > LINE_MAX) this.fail('a line over 1 MiB');
    });
    sock.on('close', () => this.fail('the agent closed the connection'));
    sock.on('error', () => {});
  }

  onLine(line) {
    const msg = JSON.parse(line);
    if (msg.event) {
      const w = this.waiters.shift();
      if (w) w.resolve({ value: msg.event, done: false });
      else this.events.push(msg.event);
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.error) p.reject(toError(msg.error));
    else p.resolve(msg.result);
  }

  fail(why) {
    if (this.closed) return;
    this.closed = new E.ProtocolError('protocol', why);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(this.closed);
    }
    this.pending.clear();
    for (const w of this.waiters) w.resolve({ value: undefined, done: true });
    this.waiters = [];
    this.sock.destroy();
  }

  // One request; resolves with its result or rejects with a typed error.
  call(method, params = {}) {
    if (this.closed) return Promise.reject(this.closed);
    const id = ++this.nextId;
    this.sock.write(JSON.stringify({ id, method, params }) + '\n');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new E.Timeout('timeout', `no answer to ${method}`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  token(ref, minTtl = 0) {
    return this.call('token', { ref, min_ttl_s: Math.floor(minTtl) });
  }

  show(ref) {
    return this.call('show', { ref });
  }

  async ls({ status, label } = {}) {
    const out = [];
    let after = null;
    for (;;) {
      const params = { limit: 1000 };
      if (status) params.status = status;
      if (label) params.label = label;
      if (after) params.after = after;
      const page = await this.call('list', params);
      out.push(...page.sandboxes);
      after = page.next_after;
      if (!after) return out;
    }
  }

  status() {
    return this.call('status');
  }

  // Every event from now (or after seq `since`): an async iterator that
  // ends when the agent goes away. The connection is then the
  // subscription's: use another Client for calls.
  subscribe(since) {
    const params = since === undefined ? {} : { since };
    const started = this.call('subscribe', params);
    const self = this;
    return {
      [Symbol.asyncIterator]() { return this; },
      async next() {
        await started;
        if (self.events.length) return { value: self.events.shift(), done: false };
        if (self.closed) return { value: undefined, done: true };
        return new Promise((resolve) => self.waiters.push({ resolve }));
      },
      async return() {
        self.close();
        return { value: undefined, done: true };
      },
    };
  }

  close() {
    this.fail('closed');
  }
}

module.exports = { Client, defaultSocket, HopxdError, ...E };
