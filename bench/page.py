"""The run page under load: a synthetic 5,000-node tree, then a stream of live events, in
headless Chromium. Records frames per second while events stream, redraws per second, and
event-to-screen latency (from the moment an event is sent to the end of the redraw that shows
it). Needs Redis (the channel layer between this process and Daphne) and Debian's chromium.

    .venv/bin/python bench/page.py --nodes 5000 --stream 20 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--stream", type=float, default=20.0, help="live events per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="colt-page-")
    os.environ.update(
        DATABASE_URL=f"sqlite:///{tmp}/page.sqlite3",
        REDIS_URL=args.redis_url,
        DJANGO_SETTINGS_MODULE="colt_site.settings",
    )
    import django

    django.setup()
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.core.management import call_command

    from bench._app import bench_member, start_daphne
    from bench._report import table, write_section
    from search import live
    from search.engine import events as ev
    from search.engine.llm import Fleet
    from search.engine.request import Budget, RunRequest
    from search.engine.workloads import get_kernel
    from search.models import Event, Run
    from search.services import create_run

    call_command("migrate", verbosity=0)
    fleet = Fleet.of(
        [
            {"name": n, "model": f"openai/{n}", "params": p, "usd_per_m_input": 0.1, "usd_per_m_output": 0.3}
            for n, p in (("small", 1e8), ("mid", 3e8), ("large", 1e9))
        ]
    )
    request = RunRequest(
        kernel=get_kernel("gemm-512"), strategy="colt", budget=Budget(trials=10_000), fleet=fleet
    ).checked()
    _, team, session = bench_member()
    run = create_run(request, team=team, enqueue=False)
    Run.objects.filter(pk=run.pk).update(status="running")

    def node_created(**fields) -> dict:
        """A node_created event as the engine stores it (the one node schema), without the trace."""
        data = ev.NodeCreated(**fields).to_dict()
        data.pop("trace")
        return data

    rng = random.Random(0)
    models = ["small", "mid", "large", None]
    events, children = [], {0: 0}
    ids = [0]
    for i in range(1, args.nodes + 1):
        parent = rng.choice(ids[-400:]) if i > 3 else 0
        while children.get(parent, 0) >= 2 and parent != 0:
            parent = rng.choice(ids)
        children[parent] = children.get(parent, 0) + 1
        ids.append(i)
        events.append(
            node_created(
                node_id=i,
                parent_id=parent,
                depth=0,
                created_by=rng.choice(models),
                expand_model="small",
                mutators=["MutateTileSize"],
                predicted=rng.random(),
                shash=f"{i:016x}",
            )
        )
        events.append({"kind": "backpropagated", "path": [i, parent, 0], "reward": rng.random()})
    Event.objects.bulk_create([Event(run=run, seq=k + 1, kind=e["kind"], data=e) for k, e in enumerate(events)])
    seq = len(events)
    Run.objects.filter(pk=run.pk).update(last_seq=seq)

    daphne, base = start_daphne(dict(os.environ, PYTHONPATH=str(ROOT)))
    from playwright.sync_api import sync_playwright

    layer = get_channel_layer()
    send = async_to_sync(layer.group_send)
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 950})
            page.context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
            t0 = time.perf_counter()
            page.goto(f"{base}/runs/{run.pk}")
            page.wait_for_function(f"window.coltState && window.coltState.nodes.size > {args.nodes}", timeout=120_000)
            page.wait_for_function("window.coltState.drawn > 0")
            load_s = time.perf_counter() - t0
            page.evaluate("""() => { window.frames_ = 0;
                                     const tick = () => { window.frames_++; requestAnimationFrame(tick); };
                                     requestAnimationFrame(tick); }""")
            drawn0 = page.evaluate("window.coltState.drawn")
            start = time.perf_counter()
            counters = {"seq": seq, "sent": 0}

            def stream():  # in its own thread: Playwright's loop owns this one
                next_id = args.nodes + 1
                while time.perf_counter() - start < args.seconds:
                    counters["seq"] += 1
                    data = node_created(
                        node_id=next_id,
                        parent_id=rng.randrange(1, next_id),
                        depth=0,
                        created_by=rng.choice(models),
                        expand_model="small",
                        predicted=0.5,
                        shash="x",
                    )
                    payload = dict(live.wire(counters["seq"], data), sent_ms=time.time() * 1000)
                    send(live.group(run.pk), {"type": live.MESSAGE_TYPE, "event": payload})
                    next_id += 1
                    counters["sent"] += 1
                    time.sleep(1.0 / args.stream)

            import threading

            sender = threading.Thread(target=stream)
            sender.start()
            while sender.is_alive():
                page.wait_for_timeout(200)
            sent = counters["sent"]
            elapsed = time.perf_counter() - start
            page.wait_for_timeout(1000)
            frames = page.evaluate("window.frames_")
            drawn = page.evaluate("window.coltState.drawn") - drawn0
            lat = sorted(page.evaluate("window.coltState.latencies"))
            size = page.evaluate("window.coltState.nodes.size") - 1
            browser.close()
    finally:
        daphne.terminate()
        daphne.wait()
    p50 = lat[len(lat) // 2] if lat else float("nan")
    p95 = lat[int(len(lat) * 0.95)] if lat else float("nan")
    rows.append(
        [
            args.nodes,
            f"{load_s:.1f}",
            f"{args.stream:g}",
            sent,
            size,
            f"{frames / elapsed:.0f}",
            f"{drawn / elapsed:.1f}",
            f"{p50:.0f}",
            f"{p95:.0f}",
        ]
    )
    headers = [
        "initial nodes",
        "snapshot load + first draw (s)",
        "events/s sent",
        "events sent",
        "nodes shown",
        "frames/s",
        "redraws/s",
        "event-to-screen p50 (ms)",
        "p95 (ms)",
    ]
    md = table(headers, rows)
    print(md)
    if not args.no_docs:
        write_section(
            "page",
            "### The run page with a 5,000-node tree (headless Chromium)\n\n"
            f"`bench/page.py --nodes {args.nodes} --stream {args.stream:g} --seconds {args.seconds:g}`, "
            f"measured {time.strftime('%Y-%m-%d')} on this 2-core host (Daphne, the Redis channel layer and "
            "Chromium all on it). Frames/s counts requestAnimationFrame callbacks while events stream; "
            "redraws are batched to at most 4 per second; latency runs from the send to the end of the "
            "redraw that shows the event.\n\n" + md,
        )


if __name__ == "__main__":
    main()
