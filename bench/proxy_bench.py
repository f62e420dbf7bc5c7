#!/usr/bin/env python3
"""The data-plane proxy against going straight to hopx-sim's sandbox
agent, in the same run: the latency a request gains (GET /health on one
kept-alive connection, the two sides taken in turns), and with a
connection per request, and streaming throughput (curl uploading and
downloading SIZE MB, the median of seven each way: one takes a tenth
of a second, so a single run is mostly noise). With --tls the
sandbox hosts speak TLS, as HopX's do: straight, the client does TLS
itself. bench.py's proxy step prints the rows; alone:

usage: proxy_bench.py BUILD_DIR [--quick] [--tls]
"""
import http.client
import json
import os
import ssl
import statistics
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from hopxtest import Agent, Sim, cleanup, tls_certs  # noqa: E402


def setup(build, tmp, ca):
    """hopx-sim (its hosts over TLS with ca's certificate, when given),
    hopxd with its proxy, one tracked sandbox: (sim, agent, proxy URL,
    direct URL, token)."""
    tls = ["--tls-cert", ca["cert"], "--tls-key", ca["key"]] if ca else []
    sim = Sim(f"{build}/tests/sim/hopx-sim", tmp,
              args=["--token-lifetime", "3600", *tls]).start()
    agent = Agent(f"{build}/agent/hopxd", f"{build}/cli/hopxctl", tmp,
                  sim.url, args=["--api-listen", "127.0.0.1:0",
                                 "--log-level", "warn",
                                 *(["--ca-file", ca["ca"]] if ca else [])]
                  ).start()
    st, sb = sim.req("POST", "/v1/sandboxes", {"template_name": "base"})
    agent.rpc("attach", {"id": sb["id"]})
    tok = agent.rpc("token", {"ref": sb["id"]})["result"]["token"]
    u = urllib.parse.urlparse(agent.rpc("status")["result"]["endpoint"])
    with open(os.path.join(tmp, "config", "hopxd", "local-key")) as f:
        key = f.read().strip()
    c = http.client.HTTPConnection(u.netloc, timeout=30)
    c.request("GET", f"/v1/sandboxes/{sb['id']}", headers={"X-API-Key": key})
    via = json.loads(c.getresponse().read())["public_host"]
    return sim, agent, via, sb["public_host"], tok


def connection(url, ca):
    u = urllib.parse.urlparse(url)
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=ca["ca"])
        return http.client.HTTPSConnection(u.netloc, timeout=30,
                                           context=ctx)
    return http.client.HTTPConnection(u.netloc, timeout=30)


def timed(conn, tok, n, fresh=None):
    """Microseconds of n GET /health on a kept-alive connection, or each
    on a new one that fresh() makes."""
    out = []
    hdr = {"Authorization": f"Bearer {tok}"}
    for _ in range(n):
        t0 = time.perf_counter_ns()
        if fresh:
            conn = fresh()
        conn.request("GET", "/health", headers=hdr)
        r = conn.getresponse()
        r.read()
        out.append((time.perf_counter_ns() - t0) / 1000)
        if fresh:
            conn.close()
        if r.status != 200:
            raise RuntimeError(f"proxy bench: /health answered {r.status}")
    return out


def latency(via, direct, tok, rounds, n, ca=None, per_request=False):
    """(p50, p99) in ms of each side, taken in turns."""
    urls = (via, direct)
    conns = [connection(u, ca) for u in urls]
    samples = ([], [])
    for c in conns:
        timed(c, tok, 200)  # warm: connections made, caches filled
    for _ in range(rounds):
        for i, c in enumerate(conns):
            fresh = (lambda u=urls[i]: connection(u, ca)) \
                if per_request else None
            samples[i].extend(timed(c, tok, n, fresh))
    out = []
    for s in samples:
        s.sort()
        out.append((s[len(s) // 2] / 1000, s[int(len(s) * 0.99)] / 1000))
    return out


def curl_speed(args):
    p = subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", "-w",
                        "%{speed_upload} %{speed_download}", *args],
                       capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"proxy bench: curl failed: {p.stderr}")
    up, down = (float(x) for x in p.stdout.split())
    return max(up, down)


def throughput(via, direct, tok, path, ca=None, tries=7):
    """MB/s medians: {(side, way): speed}."""
    auth = ["-H", f"Authorization: Bearer {tok}"] + \
        (["--cacert", ca["ca"]] if ca else [])
    speeds = {}
    for _ in range(tries):
        for side, url in (("proxy", via), ("direct", direct)):
            up = curl_speed(auth + ["-H", "Content-Type: "
                                    "application/octet-stream",
                                    "--data-binary", f"@{path}",
                                    f"{url}/files/upload?path=/workspace/"
                                    "bench.bin"])
            down = curl_speed(auth + [f"{url}/files/download?path="
                                      "/workspace/bench.bin"])
            speeds.setdefault((side, "up"), []).append(up / 1e6)
            speeds.setdefault((side, "down"), []).append(down / 1e6)
    return {k: statistics.median(v) for k, v in speeds.items()}


def run(build, tmp, quick, tls=False):
    """Every figure of the proxy step, as a dict."""
    size_mb = 64 if quick else 256
    ca = tls_certs(tmp, ["127.1.1.1"]) if tls else None
    sim, agent, via, direct, tok = setup(build, tmp, ca)
    try:
        (p50, p99), (d50, d99) = latency(via, direct, tok,
                                         3 if quick else 10, 500, ca)
        (f50, _), (g50, _) = latency(via, direct, tok, 3, 100, ca, True)
        path = os.path.join(tmp, "bench.bin")
        with open(path, "wb") as f:
            block = os.urandom(1 << 20)
            for _ in range(size_mb):
                f.write(block)
        speeds = throughput(via, direct, tok, path, ca)
        os.unlink(path)
    finally:
        cleanup(tmp, agent, sim)
    return {"p50": p50, "p99": p99, "d50": d50, "d99": d99,
            "fresh50": f50, "dfresh50": g50, "size_mb": size_mb,
            "speeds": speeds}


def main():
    import tempfile
    tmp = tempfile.mkdtemp(prefix="hopxd-bench-")
    r = run(sys.argv[1], tmp, "--quick" in sys.argv[2:],
            "--tls" in sys.argv[2:])
    print(json.dumps({**r, "speeds": {f"{k[0]} {k[1]}": v for k, v in
                                      r["speeds"].items()}}, indent=1))


if __name__ == "__main__":
    main()
