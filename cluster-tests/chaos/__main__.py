"""``python -m chaos PROFILE [--seed N] [--out DIR] [--only FAULT,...] [--cycles N] [--keep]``:
one chaos run.

Brings the compose cluster up (its own project, subnet and ports), declares the queues,
starts the workload, waits a baseline, then injects each fault of the profile for its
cycles (targets drawn with the seed), each followed by a recovery window in which the
cluster must be ready again; then stops the publishers, heals everything, lets the
consumers catch up, drains every queue through every node and checks the history. Writes
``history.jsonl``, ``report.md`` and the nodes' logs to the output directory; exits 1 when
the checker finds the history invalid (or the run could not be made).
"""

import argparse
import os
import random
import signal
import sys
import time
import traceback

from . import checker, faults, workload
from .cluster import NODES, Cluster

BASELINE = 8.0
RECOVERY = 8.0
CATCH_UP = 10.0


def run(args):
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    rng = random.Random(seed)
    os.makedirs(args.out, exist_ok=True)
    plan = faults.profile(args.profile)
    if args.cycles is not None:
        plan = [(f, args.cycles) for f, _ in plan]
    if args.only:
        wanted = set(args.only.split(","))
        plan = [(f, n) for f, n in plan if f.name in wanted]
        if not plan:
            raise SystemExit("no fault of the profile is named %s" % args.only)
    print("chaos: profile %s, seed %d, %d fault kinds, output %s" % (args.profile, seed, len(plan), args.out), flush=True)
    cluster = Cluster(args.out)
    history = workload.History(os.path.join(args.out, "history.jsonl"))
    history.record("run", seed=seed, profile=args.profile)
    threads, stop = [], None
    try:
        cluster.up()
        workload.declare(cluster)
        threads, stop = workload.start(cluster, history, rng, NODES)
        history.record("phase", name="baseline")
        time.sleep(BASELINE)
        history.record("phase", name="faults")
        for fault, cycles in plan:
            for cycle in range(cycles):
                target = fault.pick(cluster, workload.QUORUM, rng)
                print("  %-20s cycle %d  target %s" % (fault.name, cycle, target), flush=True)

                def record(phase, fault=fault, cycle=cycle, target=target):
                    history.record("fault", fault=fault.name, cycle=cycle, phase=phase, target=target)

                fault.run(cluster, target, record)
                cluster.await_ready(within=120)
                time.sleep(RECOVERY)
        history.record("phase", name="heal")
        stop_publishers(threads)
        time.sleep(CATCH_UP)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        history.record("phase", name="drain")
        workload.drain(cluster, history, NODES)
        history.record("phase", name="end")
    except Exception:
        history.record("phase", name="aborted")
        traceback.print_exc()
        raise
    finally:
        if stop is not None:
            stop.set()
        try:
            faults.heal_all(cluster)
        except Exception:
            traceback.print_exc()
        save_logs(cluster, args.out)
        history.close()
        if not args.keep:
            cluster.down()
    events = checker.load(os.path.join(args.out, "history.jsonl"))
    verdict = checker.check(events)
    report = checker.markdown(verdict, checker.figures(events), checker.fault_rows(checker.fault_cycles(events)), seed)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(report)
    print(report, flush=True)
    return 0 if verdict.valid else 1


def stop_publishers(threads):
    """Stops only the publishers (the consumers go on to take what is left)."""
    for t in threads:
        if isinstance(t, workload.Publisher):
            t.stop_own.set()
    for t in threads:
        if isinstance(t, workload.Publisher):
            t.join(timeout=30)


def save_logs(cluster, out):
    for service in NODES + ["haproxy"]:
        try:
            with open(os.path.join(out, "%s.log" % service), "w") as f:
                f.write(cluster.logs(service, tail=2000))
        except Exception:
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog="chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", choices=["quick", "full"])
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", default=os.path.join("cluster-tests", "out", time.strftime("%Y%m%d-%H%M%S")))
    parser.add_argument("--only", help="comma-separated fault names of the profile to run")
    parser.add_argument("--cycles", type=int, help="cycles of each fault (the profile's by default)")
    parser.add_argument("--keep", action="store_true", help="leave the cluster running afterwards")
    args = parser.parse_args(argv)
    # `timeout` (CI) ends a run with SIGTERM: heal and take the cluster down all the same.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        return run(args)
    except Exception:
        return 1


if __name__ == "__main__":
    sys.exit(main())
