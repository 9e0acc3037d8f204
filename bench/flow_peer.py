"""The FastAPI peer of `riffle bench flow-http`: the same endpoint and collector,
served by uvicorn (what BuildFlow serves its endpoints with), driven by the same
wrk command. Prints one JSON line per route with the fields of `riffle bench
--json`: workload `flow-http-fastapi`, `phase` (`endpoint` or `collector`),
`workers` (uvicorn worker processes), `items` (requests), `seconds`,
`items_per_s` (wrk's requests/s), `p50_ms`, `p99_ms`, `non_2xx`,
`socket_errors`, `peak_rss_bytes` (the sum of the server processes' VmHWM).

    python bench/flow_peer.py [--seconds 10] [--connections 64] [--threads 2]
                              [--workers 1] [--wrk wrk]

Run by bench/flow.sh from its own venv (fastapi, uvicorn[standard]).
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from fastapi import FastAPI
from pydantic import BaseModel

# The same bodies as crates/riffle-cli/src/bench/flow.rs.
QUOTE_BODY = '{"sku":"A-1","quantity":3,"unit_price":2.5}'
READING_BODY = '{"sensor":"s-1","value":21.5}'

app = FastAPI()


class QuoteRequest(BaseModel):
    sku: str
    quantity: int
    unit_price: float


class Quote(BaseModel):
    sku: str
    total: float


class Reading(BaseModel):
    sensor: str
    value: float


# The collector's in-memory sink.
READINGS: list = []


@app.post("/quote")
async def quote(q: QuoteRequest) -> Quote:
    return Quote(sku=q.sku, total=q.quantity * q.unit_price)


@app.post("/readings")
async def readings(r: Reading) -> dict:
    READINGS.append(r)
    return {"written": 1}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, server: subprocess.Popen) -> None:
    deadline = time.time() + 30
    while time.time() < deadline:
        if server.poll() is not None:
            sys.exit(f"flow_peer.py: uvicorn exited with {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"flow_peer.py: uvicorn did not listen on 127.0.0.1:{port} within 30 s")


def millis(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"wrk printed an unknown duration {text!r}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
    return float(m.group(1)) * scale[m.group(2)]


def parse_wrk(text: str) -> dict:
    out = {"non_2xx": 0, "socket_errors": 0}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == "50%":
            out["p50_ms"] = millis(words[1])
        elif len(words) == 2 and words[0] == "99%":
            out["p99_ms"] = millis(words[1])
        elif len(words) >= 4 and words[1:3] == ["requests", "in"]:
            out["items"] = int(words[0])
            out["seconds"] = millis(words[3].rstrip(",")) / 1000.0
        elif line.startswith("Requests/sec:"):
            out["items_per_s"] = float(words[1])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            out["non_2xx"] = int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            out["socket_errors"] = sum(int(n) for n in re.findall(r"\d+", line))
    for key in ("items", "items_per_s", "p50_ms", "p99_ms"):
        if key not in out:
            sys.exit(f"flow_peer.py: wrk printed no {key}:\n{text}")
    return out


def peak_rss(pid: int) -> int:
    """VmHWM of the server and its children (uvicorn's worker processes)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def run_wrk(args, script: str, url: str, seconds: int) -> tuple:
    command = [args.wrk, "-t", str(args.threads), "-c", str(args.connections),
               "-d", f"{seconds}s", "--latency", "-s", script, url]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"flow_peer.py: `{' '.join(command)}` failed: {done.stdout}{done.stderr}")
    return parse_wrk(done.stdout), " ".join(command)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--routes", default="endpoint,collector")
    parser.add_argument("--wrk", default=os.environ.get("RIFFLE_BENCH_WRK", "wrk"))
    args = parser.parse_args()

    port = free_port()
    here = os.path.dirname(os.path.abspath(__file__))
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", here, "flow_peer:app",
         "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers),
         "--log-level", "warning", "--no-access-log"],
    )
    try:
        wait_for(port, server)
        for route in args.routes.split(","):
            path, body = {"endpoint": ("/quote", QUOTE_BODY),
                          "collector": ("/readings", READING_BODY)}[route]
            with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
                f.write('wrk.method = "POST"\n')
                f.write('wrk.headers["Content-Type"] = "application/json"\n')
                f.write(f"wrk.body = '{body}'\n")
                script = f.name
            url = f"http://127.0.0.1:{port}{path}"
            # One request by hand first: the route must answer what it should.
            request = urllib.request.Request(url, data=body.encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                got = json.loads(answer.read())
            expected = {"endpoint": {"sku": "A-1", "total": 7.5},
                        "collector": {"written": 1}}[route]
            if got != expected:
                sys.exit(f"flow_peer.py: POST {path} answered {got}, not {expected}")
            try:
                run_wrk(args, script, url, 1)  # warm-up, not reported
                figures, command = run_wrk(args, script, url, args.seconds)
            finally:
                os.unlink(script)
            report = {"workload": "flow-http-fastapi", "workers": args.workers, **figures,
                      "peak_rss_bytes": peak_rss(server.pid), "phase": route,
                      "connections": args.connections, "wrk_threads": args.threads,
                      "wrk_command": command}
            print(json.dumps(report), flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
