"""Benchmark the Alertmanager event source: alerts/s accepted with authentication on, on loopback.

Each server runs in its own process, the client (aiohttp, CONCURRENCY requests in flight) in this one:
1. the anchor: a bare aiohttp handler that answers 200 and does nothing, the ceiling of any aiohttp receiver;
2. the source (extensions/eda/plugins/event_source/alertmanager.py) with a bearer token, its queue drained;
3. the source checking an HMAC-SHA256 over each body.
Each figure is the best of ROUNDS rounds in which the three servers take turns. Every alert has its own
fingerprint, so nothing is de-duplicated; each request carries ALERTS_PER_POST
alerts (1 and 10: Alertmanager groups alerts, so a payload usually carries several). The figure of merit
is the source's rate over the anchor's, measured in the same run.

    .venv/bin/python bench/eda/run.py [--quick]
"""
import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SOURCE = os.path.join(ROOT, "extensions", "eda", "plugins", "event_source")
TOKEN = "bench-token-0123456789"
SECRET = "bench-hmac-secret"
CONCURRENCY = 32
ROUNDS = 3


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def serve(kind, port):
    """The server side, in a child process: prints 'ready' once it listens, then serves until killed."""
    from aiohttp import web

    if kind == "bare":
        async def nothing(_request):
            return web.Response(text="ok")
        app = web.Application()
        app.router.add_post("/alerts", nothing)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    else:
        sys.path.insert(0, SOURCE)
        import alertmanager  # pylint: disable=import-error,import-outside-toplevel

        queue = asyncio.Queue()

        async def drain():
            while True:
                await queue.get()
        args = {"port": port, "token": TOKEN} if kind == "token" else {"port": port, "hmac_secret": SECRET}
        # Keep the tasks referenced: the loop holds only weak references to them.
        serve.tasks = [asyncio.ensure_future(drain()), asyncio.ensure_future(alertmanager.main(queue, args))]
    for _attempt in range(500):
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.01)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.Future()


def payload(serial, alerts_per_post):
    alerts = []
    for index in range(alerts_per_post):
        alerts.append({
            "status": "firing",
            "labels": {"alertname": "FleetopsProbeDown", "instance": "web-%d:9100" % index, "service": "nginx"},
            "annotations": {"summary": "bench"},
            "startsAt": "2026-11-25T10:00:00.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "%08x%08x" % (serial, index),
        })
    return json.dumps({
        "version": "4", "groupKey": "{}:{alertname=\"FleetopsProbeDown\"}", "truncatedAlerts": 0,
        "status": "firing", "receiver": "bench", "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://am:9093", "alerts": alerts,
    }).encode()


async def hammer(kind, port, requests, alerts_per_post):
    import aiohttp

    bodies = [payload(serial, alerts_per_post) for serial in range(requests)]
    url = "http://127.0.0.1:%d/alerts" % port
    statuses = {}
    pending = iter(bodies)

    def headers_for(body):
        if kind == "hmac":
            return {"X-Fleetops-Signature": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}
        return {"Authorization": "Bearer " + TOKEN}

    async def worker(session):
        for body in pending:
            async with session.post(url, data=body, headers=headers_for(body)) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _worker in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return elapsed, statuses


def measure(kind, requests, alerts_per_post):
    port = free_port()
    server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", kind, "--port", str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("bench/eda: the %s server did not start" % kind)
        asyncio.run(hammer(kind, port, max(50, requests // 10), alerts_per_post))  # warm up
        elapsed, statuses = asyncio.run(hammer(kind, port, requests, alerts_per_post))
    finally:
        server.kill()
        server.wait()
    if statuses != {200: requests}:
        raise SystemExit("bench/eda: %s answered %r, expected %d x 200" % (kind, statuses, requests))
    return requests * alerts_per_post / elapsed, requests / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--serve", choices=["bare", "token", "hmac"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve:
        asyncio.run(serve(options.serve, options.port))
        return
    requests = 1000 if options.quick else 3000
    rows = []
    for alerts_per_post in (1, 10):
        # Best of ROUNDS, the three servers taking turns: on a shared machine a single measurement says
        # more about the neighbours than about the code.
        best = {}
        for _round in range(ROUNDS):
            for kind in ("bare", "token", "hmac"):
                best[kind] = max(best.get(kind, (0, 0)), measure(kind, requests, alerts_per_post))
        anchor_requests = best["bare"][1]
        for kind in ("token", "hmac"):
            alerts_rate, requests_rate = best[kind]
            rows.append((kind, alerts_per_post, alerts_rate, requests_rate, anchor_requests,
                         requests_rate / anchor_requests))
    header = ("auth", "alerts", "alerts/s", "requests/s", "anchor req/s", "ratio")
    sys.stdout.write("%-6s %6s %12s %12s %16s %8s\n" % header)
    for kind, per_post, alerts_rate, requests_rate, anchor, ratio in rows:
        row = (kind, per_post, alerts_rate, requests_rate, anchor, ratio)
        sys.stdout.write("%-6s %6d %12.0f %12.0f %16.0f %8.2f\n" % row)
    sys.stdout.write("ratio: the source's requests/s over a bare aiohttp handler's (anchor), same run, best of %d "
                     "rounds of %d requests, %d in flight, loopback\n" % (ROUNDS, requests, CONCURRENCY))


if __name__ == "__main__":
    main()
