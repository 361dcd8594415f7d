"""Load: N concurrent runs on one web process, each watched by a browser's worth of clients.

Worker processes replay a real run's events (recorded once from a real mcts-random tuning of
gemm-128) through the production path: ``DatabaseSink`` (PostgreSQL) and the Redis channel
layer, paced to a rate per run. One Daphne process serves everything. Per run, a simulated
browser does what ``run.js`` does: loads the snapshot (``/api/runs/<id>?after=0``), opens the
websocket, asks for what it missed, applies events strictly in sequence (asking again on a
gap), and refreshes the header every 5 s; meanwhile a prober times page loads.

Measures delivered events per second, event latency (commit in the worker to arrival in the
client), page and API latency under load, and checks that every client saw every event.

    .venv/bin/python bench/load.py --runs 20 --rate 10 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def record_events():
    """A real run's events, recorded once (engine only: no Django)."""
    from search.engine import events as ev
    from search.engine.measure import MeasureConfig
    from search.engine.request import Budget, RunRequest, SearchSettings
    from search.engine.tuning import tune
    from search.engine.workloads import get_kernel

    sink = ev.ListSink()
    request = RunRequest(
        kernel=get_kernel("gemm-128"),
        budget=Budget(trials=96),
        timing=MeasureConfig(number=1, repeat=2, min_repeat_ms=0),
        settings=SearchSettings(measure_batch=4, expansions_per_round=8, seed=0),
    ).checked()
    tune(request, sink=sink)
    return sink.events


def producer(run_ids, events, rate, seconds, out_path):
    """One worker process: replays ``events`` into each of its runs at ``rate`` events/s."""
    import django

    django.setup()
    from django.db import connection

    from search.models import Run
    from search.persistence import DatabaseSink

    # the sink publishes each committed event on the live channel (search.live) itself
    sinks = [DatabaseSink(Run.objects.get(pk=r)) for r in run_ids]
    commits = []  # (run, seq, wall time after commit)
    start, i = time.time(), 0
    interval = 1.0 / (rate * len(sinks))
    while time.time() - start < seconds and i // len(sinks) < len(events):
        sink = sinks[i % len(sinks)]
        event = events[i // len(sinks)]
        sink.emit(event)
        commits.append((sink.run_id, sink.seq, time.time()))
        i += 1
        delay = start + i * interval - time.time()
        if delay > 0:
            time.sleep(delay)
    connection.close()
    Path(out_path).write_text(json.dumps(commits))


async def browser(base, session, run_id, stop_at, stats):
    """What run.js does for one open run page."""
    import aiohttp

    cookies = {"sessionid": session}
    last, received, gaps = 0, {}, 0
    async with aiohttp.ClientSession(cookies=cookies) as http:
        t0 = time.perf_counter()
        async with http.get(f"{base}/api/runs/{run_id}?after=0") as r:
            data = await r.json()
        stats["snapshot_ms"].append((time.perf_counter() - t0) * 1e3)
        for e in data["events"]:
            last = e["seq"]
        ws_url = base.replace("http", "ws") + f"/ws/runs/{run_id}/"
        async with http.ws_connect(ws_url, headers={"Origin": base}) as ws:
            next_refresh = time.time() + 5
            while time.time() < stop_at:
                try:
                    msg = await ws.receive_json(timeout=1.0)
                except TimeoutError:
                    msg = None
                now = time.time()
                if msg is not None:
                    if msg["type"] == "hello" and msg["last_seq"] > last:
                        await ws.send_json({"after": last})
                    elif msg["type"] == "events":
                        for e in msg["events"]:
                            if e["seq"] == last + 1:
                                last = e["seq"]
                                received[last] = now
                    elif msg["type"] == "event":
                        seq = msg["event"]["seq"]
                        if seq > last + 1:
                            gaps += 1
                            await ws.send_json({"after": last})
                        elif seq == last + 1:
                            last = seq
                            received[seq] = now
                if now >= next_refresh:
                    next_refresh = now + 5
                    t0 = time.perf_counter()
                    async with http.get(f"{base}/api/runs/{run_id}") as r:
                        header = (await r.json())["run"]
                    stats["api_ms"].append((time.perf_counter() - t0) * 1e3)
                    if header["last_seq"] > last:
                        await ws.send_json({"after": last})
            # drain: ask for anything still missing once the producers stopped
            await ws.send_json({"after": last})
            try:
                msg = await ws.receive_json(timeout=10)
                for e in msg.get("events", []):
                    if e["seq"] == last + 1:
                        last = e["seq"]
                        received[last] = time.time()
            except TimeoutError:
                pass
    stats["clients"][run_id] = {"last": last, "received": received, "gaps": gaps}


async def prober(base, session, run_ids, stop_at, stats):
    """Opens run pages (HTML) while the load runs, as people arriving would."""
    import aiohttp

    async with aiohttp.ClientSession(cookies={"sessionid": session}) as http:
        i = 0
        while time.time() < stop_at:
            t0 = time.perf_counter()
            async with http.get(f"{base}/runs/{run_ids[i % len(run_ids)]}") as r:
                await r.read()
                assert r.status == 200
            stats["page_ms"].append((time.perf_counter() - t0) * 1e3)
            i += 1
            await asyncio.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10.0, help="events per second per run")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=4, help="producer processes (the runs are split among them)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/colt_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    os.environ.update(
        DATABASE_URL=args.database_url, REDIS_URL=args.redis_url, DJANGO_SETTINGS_MODULE="colt_site.settings"
    )
    import django
    import psutil
    import redis

    _ensure_database(args.database_url)
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from bench._app import bench_member, start_daphne
    from bench._report import table, write_section
    from search.engine.request import RunRequest
    from search.engine.workloads import get_kernel
    from search.models import Event, Run
    from search.services import create_run

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(args.redis_url).flushdb()
    print("recording a real run's events ...", flush=True)
    events = record_events()
    if len(events) < args.rate * args.seconds:
        print(f"note: the recorded run has {len(events)} events; each run stops after them", flush=True)
    _, team, session = bench_member("load")
    request = RunRequest(kernel=get_kernel("gemm-128")).checked()
    run_ids = [create_run(request, team=team, enqueue=False).pk for _ in range(args.runs)]
    Run.objects.filter(pk__in=run_ids).update(status="running")
    connection.close()
    daphne, base = start_daphne(dict(os.environ, PYTHONPATH=str(ROOT)))
    web = psutil.Process(daphne.pid)
    web.cpu_percent()
    stats = {"snapshot_ms": [], "api_ms": [], "page_ms": [], "clients": {}}
    tmp = Path("/tmp") / f"colt-load-{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    try:
        start = time.time()
        stop_at = start + args.seconds + 3
        ctx = mp.get_context("fork")
        chunks = [run_ids[i :: args.workers] for i in range(args.workers)]
        procs = [
            ctx.Process(target=producer, args=(chunk, events, args.rate, args.seconds, tmp / f"p{i}.json"))
            for i, chunk in enumerate(chunks)
            if chunk
        ]

        async def scenario():
            clients = [asyncio.create_task(browser(base, session, r, stop_at, stats)) for r in run_ids]
            await asyncio.sleep(0.5)  # the pages are open before the runs start emitting
            for p in procs:
                p.start()
            await asyncio.gather(prober(base, session, run_ids, stop_at, stats), *clients)

        asyncio.run(scenario())
        for p in procs:
            p.join()

        web_cpu = web.cpu_percent() / 100.0
    finally:
        daphne.terminate()
        daphne.wait()
    commits = {}
    for f in tmp.glob("p*.json"):
        for run_id, seq, t in json.loads(f.read_text()):
            commits[(run_id, seq)] = t
    stored = {r: n for r, n in Run.objects.filter(pk__in=run_ids).values_list("pk", "last_seq")}
    latencies, lost, gaps = [], 0, 0
    for run_id in run_ids:
        client = stats["clients"].get(run_id, {"last": 0, "received": {}, "gaps": 0})
        lost += stored[run_id] - client["last"]
        gaps += client["gaps"]
        for seq, t in client["received"].items():
            if (run_id, seq) in commits:
                latencies.append((t - commits[(run_id, seq)]) * 1e3)
    total = len(commits)
    emitted_rate = total / args.seconds
    delivered = sum(len(c["received"]) for c in stats["clients"].values())
    assert Event.objects.filter(run_id__in=run_ids).count() == sum(stored.values())
    rows = [
        [
            args.runs,
            args.runs,
            f"{args.rate:g}",
            total,
            f"{emitted_rate:.0f}",
            delivered,
            lost,
            gaps,
            f"{pct(latencies, 0.5):.0f}",
            f"{pct(latencies, 0.95):.0f}",
            f"{pct(latencies, 0.99):.0f}",
            f"{statistics.median(stats['snapshot_ms']):.0f}",
            f"{pct(stats['page_ms'], 0.5):.0f}",
            f"{pct(stats['page_ms'], 0.95):.0f}",
            f"{pct(stats['api_ms'], 0.5):.0f}",
            f"{pct(stats['api_ms'], 0.95):.0f}",
            f"{web_cpu * 100:.0f}% of a core",
        ]
    ]
    headers = [
        "runs",
        "websocket clients",
        "events/s per run (target)",
        "events stored",
        "events/s stored",
        "events delivered",
        "lost",
        "gaps resynced",
        "event latency p50 (ms)",
        "p95",
        "p99",
        "snapshot load p50 (ms)",
        "run page p50 (ms)",
        "p95",
        "header API p50 (ms)",
        "p95",
        "web process CPU",
    ]
    md = table(headers, rows)
    print(md)
    if not args.no_docs:
        write_section(
            "load",
            "### Load: concurrent runs on one web process\n\n"
            f"`bench/load.py --runs {args.runs} --rate {args.rate:g} --seconds {args.seconds:g}`, measured "
            f"{time.strftime('%Y-%m-%d')} on this 2-core host: {len(procs)} worker processes replay a real "
            "run's events through the database sink (PostgreSQL) and the Redis channel layer into "
            f"{args.runs} runs; one Daphne process serves {args.runs} simulated browsers (snapshot, "
            "websocket, resync on gaps, header refresh every 5 s) and a prober opening run pages "
            "twice a second. Latency runs from the worker's commit to the client's receipt; 'lost' "
            "counts events stored but never applied by a client (it must be 0).\n\n" + md,
        )


def _ensure_database(url: str) -> None:
    """Create the benchmark's PostgreSQL database if it is missing."""
    if not url.startswith("postgres"):
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


if __name__ == "__main__":
    main()
