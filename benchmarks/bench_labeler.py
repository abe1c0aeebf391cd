"""The web labeler under load: scripted people over HTTP on 127.0.0.1, then an audit of the database.

    python benchmarks/bench_labeler.py [--workers 50] [--answers 5000] [--page-size 10]
                                       [--look] [--kill-after 0]

``iris crowd serve`` runs in a child process (uvicorn, SQLite in WAL mode with
``synchronous=FULL``); every worker is a thread with its own keep-alive connection and
cookie that joins through an invitation link, passes the training and the exam by looking
at the images, then asks for pages and answers them with no think time until nothing is
left (every loop is bounded). ``--look`` also fetches every image of the main pages, as a
browser would. ``--kill-after N`` SIGKILLs the server after N acknowledged pages, restarts
it on the same port and lets the same people finish.

Afterwards the SQLite file is audited: no answer lost (every submit that got a success
response is there, with its labels) or duplicated, no task over the overlap, no worker
with a task twice, at most one pending page per worker. Prints requests/s and p50/p99
latency over all requests.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("IRIS_PROGRESS", "0")

from iris.crowd.web_load import BROKEN, ServerProcess, audit, load_settings_for, make_campaign, run_crowd
from iris.crowd.web_server import invite_links


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--answers", type=int, default=5000, help="Answers to collect (real + honeypots).")
    parser.add_argument("--page-size", type=int, default=10)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--look", action="store_true", help="Fetch every image of the main pages too.")
    parser.add_argument("--kill-after", type=int, default=0, help="SIGKILL the server after N acked pages.")
    args = parser.parse_args()

    real_share = (args.page_size - 1) / args.page_size
    tasks = math.ceil(args.answers * real_share / args.overlap)
    settings = load_settings_for(page_size=args.page_size, overlap=args.overlap)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = make_campaign(Path(tmp) / "work", tasks=tasks, settings=settings)
        db_path = workdir.crowd / "web" / "labeler.db"
        server = ServerProcess(workdir).start()
        links = invite_links(workdir, settings, args.workers, base_url=server.url)
        print(
            f"{args.workers} workers, {tasks} tasks x overlap {args.overlap}, pages of {args.page_size} "
            f"(1 honeypot), {os.cpu_count()} CPUs, server {server.url}"
        )

        def kill(workers: list) -> None:  # type: ignore[type-arg]
            while sum(len(w.log.acked) for w in workers) < args.kill_after:
                time.sleep(0.005)
            server.kill()
            print(f"SIGKILLed the server after {sum(len(w.log.acked) for w in workers)} acknowledged pages")

        runs = [run_crowd(server.url, links, look_main=args.look, during=kill if args.kill_after else None)]
        if args.kill_after:
            print(
                "after the kill:",
                {
                    k: v
                    for k, v in audit(db_path, overlap=args.overlap, acked=runs[0].acked).items()
                    if k in BROKEN or k.startswith("acked")
                },
            )
            server = ServerProcess(workdir, port=server.port).start()
            runs.append(run_crowd(server.url, links, look_main=args.look))
        server.stop()
        acked = [a for run in runs for a in run.acked]
        report = audit(db_path, overlap=args.overlap, acked=acked)

    print()
    print(f"{'run':<10}{'requests':>10}{'seconds':>10}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'pages':>8}")
    for i, run in enumerate(runs):
        s = run.summary()
        name = "after kill" if i else "load"
        print(
            f"{name:<10}{s['requests']:>10}{s['seconds']:>10.1f}{s['requests_per_s']:>10.1f}"
            f"{s['p50_ms']:>10.1f}{s['p99_ms']:>10.1f}{s['acked_pages']:>8}"
        )
        print(f"{'':<10}outcomes: {s['outcomes']}")
    print()
    print(
        f"answers in the database: {report['answers']} on {report['tasks_answered']} tasks "
        f"(max {report['max_answers_per_task']} per task, overlap {args.overlap})"
    )
    print(f"acknowledged pages: {report['acked_pages']}")
    for key in BROKEN:
        print(f"  {key:<34}{report[key]:>6}")
    bad = [k for k in BROKEN if report[k]]
    print("audit: " + ("FAILED " + ", ".join(bad) if bad else "every promise held"))
    if bad:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
