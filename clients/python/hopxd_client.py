"""A client of hopxd's socket protocol (doc/protocol.md), standard
library only.

    from hopxd_client import Client, NotFound
    with Client() as h:
        tok = h.token("web", min_ttl=600)    # {"id", "token", "expires_at", ...}
        for sb in h.ls(status="running"):
            print(sb["id"], sb["name"])
        for event in h.subscribe():           # blocks; an iterator
            print(event["type"], event["sandbox_id"])

Errors are typed from the protocol's codes: NotFound, InvalidRequest,
WrongState, AuthError, NetworkError, RateLimited, Timeout, Conflict,
Unavailable, StorageError, ProtocolError (all HopxdError, with .code and
.message); NoAgent when nothing listens on the socket.
"""
import json
import os
import socket

__all__ = ["Client", "default_socket", "HopxdError", "NoAgent", "NotFound",
           "InvalidRequest", "WrongState", "AuthError", "NetworkError",
           "RateLimited", "Timeout", "Conflict", "Unavailable",
           "StorageError", "ProtocolError"]

LINE_MAX = 1024 * 1024  # the protocol's bound on a line


class HopxdError(Exception):
    """An error answer of the agent: code (stable) and message (for
    people)."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class NoAgent(HopxdError):
    """Nothing listens on the socket: start the agent ('systemctl --user
    start hopxd' or 'hopxd')."""


class NotFound(HopxdError):
    pass


class InvalidRequest(HopxdError):
    pass


class WrongState(HopxdError):
    pass


class AuthError(HopxdError):
    pass


class NetworkError(HopxdError):
    pass


class RateLimited(HopxdError):
    pass


class Timeout(HopxdError):
    pass


class Conflict(HopxdError):
    pass


class Unavailable(HopxdError):
    pass


class StorageError(HopxdError):
    pass


class ProtocolError(HopxdError):
    pass


_BY_CODE = {
    "not_found": NotFound, "invalid": InvalidRequest, "parse": InvalidRequest,
    "type": InvalidRequest, "range": InvalidRequest, "too_big": InvalidRequest,
    "exists": Conflict, "conflict": Conflict, "busy": Conflict,
    "wrong_state": WrongState, "auth": AuthError, "permission": AuthError,
    "network": NetworkError, "rate_limited": RateLimited,
    "timeout": Timeout, "unavailable": Unavailable,
    "bad_response": Unavailable, "unsupported": Unavailable,
    "disk_full": StorageError, "read_only": StorageError,
    "corrupt": StorageError, "io": StorageError, "too_new": StorageError,
    "protocol": ProtocolError,
}


def _error(err):
    code = err.get("code", "protocol")
    return _BY_CODE.get(code, HopxdError)(code, err.get("message", ""))


def default_socket():
    """The agent's socket, found the way hopxd and hopxctl find it."""
    if os.environ.get("HOPXD_SOCKET"):
        return os.environ["HOPXD_SOCKET"]
    run = os.environ.get("XDG_RUNTIME_DIR", "")
    if run.startswith("/"):
        return os.path.join(run, "hopxd", "hopxd.sock")
    return f"/tmp/hopxd-{os.getuid()}/hopxd.sock"


class Client:
    """One connection to the agent. Not for several threads at once (use
    one Client each: connections are cheap)."""

    def __init__(self, path=None, timeout=120):
        self.path = path or default_socket()
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            self._sock.close()
            raise NoAgent("no_agent", f"no agent at {self.path} ({e}): "
                          "start it with 'systemctl --user start hopxd' "
                          "or run 'hopxd'") from None
        self._file = self._sock.makefile("rwb")
        self._next = 0

    def close(self):
        self._file.close()
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self):
        line = self._file.readline(LINE_MAX + 1)
        if not line:
            raise ProtocolError("protocol", "the agent closed the "
                                "connection")
        if not line.endswith(b"\n"):
            raise ProtocolError("protocol", "a line over 1 MiB")
        return json.loads(line)

    def call(self, method, **params):
        """Sends one request and returns its result (or raises)."""
        self._next += 1
        req = {"id": self._next, "method": method, "params": params}
        self._file.write(json.dumps(req).encode() + b"\n")
        self._file.flush()
        while True:
            try:
                reply = self._read()
            except socket.timeout:
                raise Timeout("timeout", f"no answer to {method} in "
                              f"{self.timeout} s") from None
            if "event" in reply:
                continue
            if reply.get("id") in (self._next, None):
                break
        if "error" in reply:
            raise _error(reply["error"])
        return reply["result"]

    def token(self, ref, min_ttl=0):
        """A token for the sandbox (id or name) valid at least min_ttl
        seconds: {"id", "token", "expires_at", "public_host"}. A paused
        sandbox is resumed first when its policy allows (WrongState
        otherwise, naming the command that fixes it)."""
        return self.call("token", ref=ref, min_ttl_s=int(min_ttl))

    def show(self, ref):
        """One tracked sandbox (never its token)."""
        return self.call("show", ref=ref)

    def ls(self, status=None, label=None):
        """Every tracked sandbox matching, in id order (paged)."""
        out, after = [], None
        while True:
            params = {"limit": 1000}
            if status:
                params["status"] = status
            if label:
                params["label"] = label
            if after:
                params["after"] = after
            page = self.call("list", **params)
            out += page["sandboxes"]
            after = page.get("next_after")
            if not after:
                return out

    def status(self):
        return self.call("status")

    def subscribe(self, since=None):
        """Every event from now (or after seq since) as it happens: an
        iterator that ends when the agent goes away. This connection is
        then the subscription's; use another Client for calls."""
        params = {} if since is None else {"since": int(since)}
        self._next += 1
        sid = self._next
        self._file.write(json.dumps({"id": sid, "method": "subscribe",
                                     "params": params}).encode() + b"\n")
        self._file.flush()
        self._sock.settimeout(None)
        while True:
            try:
                msg = self._read()
            except ProtocolError:
                return
            if "error" in msg:
                raise _error(msg["error"])
            if "event" in msg:
                yield msg["event"]
