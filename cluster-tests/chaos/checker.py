"""Checks a chaos run's history: the safety verdict, the timing figures and the Markdown report.

A run's history is JSON lines written by the chaos suite (publishes with their confirm outcome,
deliveries, phases, faults, and each node's queue depths after the final drain). This module owns
reading it, judging it and rendering it; it never talks to the cluster.

Safety follows Jepsen's ``total-queue`` checker (jepsen/src/jepsen/checker.clj): *lost* = confirmed
but never delivered, *unexpected* = delivered but never attempted, *recovered* = indeterminate
(nack, error or timeout) but delivered. It is stricter than Jepsen's in three ways:

- a value may come more than once only if every delivery but one carried ``redelivered=true``
  (the AMQP 0-9-1 guarantee; Jepsen allows any duplicate), and no consumer may get an
  unflagged copy after a flagged one (clients' clocks cannot order deliveries to different
  consumers, so the one unflagged delivery may be read after another consumer's redelivery);
- each consumer must see each publisher's confirmed, not-redelivered values in publish order
  (a queue is FIFO and a consumer sees a subsequence of it);
- after the drain every node must report every queue empty, and the nodes must agree.

See shared/reference/reliability.md, sections 1.3, 1.4 and 4.2.
"""

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass, field

AFTER_HEAL = 10.0  # seconds after a heal still charged to the fault
EXAMPLES = 10  # examples named per kind of problem


def load(path):
    """Read a JSON-lines history; blank lines are skipped, a malformed line raises ValueError."""
    events = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {n}: malformed JSON: {e.msg}") from None
            if not isinstance(ev, dict):
                raise ValueError(f"{path}: line {n}: not a JSON object")
            events.append(ev)
    return events


def _of(events, kind):
    """The events of one kind in history order: by ``t``, ties by file order."""
    picked = []
    for i, e in enumerate(events):
        if e.get("ev") != kind:
            continue
        try:
            t = float(e["t"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"event {i + 1} ({kind}) has no numeric 't'") from None
        picked.append((t, i, e))
    picked.sort(key=lambda x: (x[0], x[1]))
    return [e for _, _, e in picked]


def _key(e):
    """The (queue, value) a publish or delivery is about."""
    if e.get("value") is None:
        raise ValueError(f"{e.get('ev')} event at t={e.get('t')} has no value")
    return (e.get("q"), str(e["value"]))


def _ident(e):
    """(publisher, seq) of a publish: its fields, else parsed from ``value`` = "p:seq"."""
    p, _, seq = str(e["value"]).rpartition(":")
    return (e.get("p", p), int(e["seq"]) if e.get("seq") is not None else int(seq))


def _natural(key):
    """Sort key putting p1:2 before p1:10."""
    q, value = key[0], key[1]
    p, _, seq = value.rpartition(":")
    return (str(q), p, int(seq)) if seq.isdigit() else (str(q), value, -1)


def _examples(items, fmt):
    shown = ", ".join(fmt(x) for x in items[:EXAMPLES])
    more = len(items) - EXAMPLES
    return shown + (f", and {more} more" if more > 0 else "")


@dataclass
class Verdict:
    """What a history shows about safety; counts are of distinct (queue, value) pairs."""

    attempted: int = 0
    confirmed: int = 0
    indeterminate: int = 0
    delivered: int = 0
    deliveries: int = 0  # delivery records, repeats included
    duplicated: int = 0  # repeat deliveries flagged redelivered=true (allowed)
    lost: list = field(default_factory=list)  # (q, value)
    unexpected: list = field(default_factory=list)  # (q, value)
    unflagged_repeats: list = field(default_factory=list)  # (q, value, consumer)
    recovered: list = field(default_factory=list)  # (q, value)
    order_violations: list = field(default_factory=list)  # (q, consumer, value, previous_value)
    not_empty: list = field(default_factory=list)  # (q, via, messages)
    diverged: list = field(default_factory=list)  # (q, ((via, messages), ...))

    @property
    def valid(self):
        """True when no check failed."""
        return not (self.lost or self.unexpected or self.unflagged_repeats
                    or self.order_violations or self.not_empty or self.diverged)

    def problems(self):
        """One sentence per kind of failure, naming up to EXAMPLES items."""
        out = []
        if self.lost:
            out.append(f"{len(self.lost)} confirmed value(s) were never delivered (lost): "
                       + _examples(self.lost, lambda x: f"{x[1]} on {x[0]}"))
        if self.unexpected:
            out.append(f"{len(self.unexpected)} delivered value(s) were never published (unexpected): "
                       + _examples(self.unexpected, lambda x: f"{x[1]} on {x[0]}"))
        if self.unflagged_repeats:
            out.append(f"{len(self.unflagged_repeats)} repeat deliveries lacked redelivered=true: "
                       + _examples(self.unflagged_repeats, lambda x: f"{x[1]} on {x[0]} to {x[2]}"))
        if self.order_violations:
            out.append(f"{len(self.order_violations)} deliveries broke their publisher's order: "
                       + _examples(self.order_violations,
                                   lambda x: f"{x[2]} after {x[3]} on {x[0]} to {x[1]}"))
        if self.not_empty:
            out.append(f"{len(self.not_empty)} node view(s) still held messages after the drain: "
                       + _examples(self.not_empty, lambda x: f"{x[0]} on {x[1]} = {x[2]}"))
        if self.diverged:
            out.append(f"{len(self.diverged)} queue(s) have depths that differ between nodes: "
                       + _examples(self.diverged, lambda x: f"{x[0]} ("
                                   + ", ".join(f"{via}={m}" for via, m in x[1]) + ")"))
        return out

    def summary(self):
        """All the counts on one line."""
        return (f"attempted={self.attempted} confirmed={self.confirmed} "
                f"indeterminate={self.indeterminate} recovered={len(self.recovered)} "
                f"delivered={self.delivered} deliveries={self.deliveries} "
                f"duplicated={self.duplicated} lost={len(self.lost)} "
                f"unexpected={len(self.unexpected)} unflagged_repeats={len(self.unflagged_repeats)} "
                f"order_violations={len(self.order_violations)} not_empty={len(self.not_empty)} "
                f"diverged={len(self.diverged)}")


def check(events):
    """Judge a history (all queues together); see the module docstring for the rules."""
    attempts, ident = {}, {}
    for e in _of(events, "publish"):
        k = _key(e)
        attempts.setdefault(k, []).append(e.get("outcome"))
        ident[k] = _ident(e)
    # A publish sent whose outcome was never recorded (the run ended while it waited) is an
    # attempt in doubt.
    for e in _of(events, "invoke"):
        k = _key(e)
        attempts.setdefault(k, []).append(None)
        ident[k] = _ident(e)
    confirmed = {k for k, outcomes in attempts.items() if "ack" in outcomes}
    v = Verdict(attempted=len(attempts), confirmed=len(confirmed),
                indeterminate=len(attempts) - len(confirmed))

    seen = set()
    plain = set()  # values delivered once without the flag (only the first delivery may be)
    flagged_to = set()  # (value, consumer): that consumer already had a flagged copy
    last = {}  # (q, consumer, publisher) -> (seq, value) of its last in-order delivery
    for e in _of(events, "deliver"):
        k, consumer, flagged = _key(e), e.get("consumer"), bool(e.get("redelivered"))
        v.deliveries += 1
        # Clients' clocks order deliveries to different consumers only roughly (a frozen
        # node's consumer reads its first delivery after the others read the redelivery):
        # a value may have one unflagged delivery, whenever it is read; a second one fails,
        # and so does an unflagged copy after a flagged one to the same consumer.
        if not flagged and (k in plain or (k, consumer) in flagged_to):
            v.unflagged_repeats.append((k[0], k[1], consumer))
        elif k in seen:
            v.duplicated += 1
        if flagged:
            flagged_to.add((k, consumer))
        else:
            plain.add(k)
        seen.add(k)
        if flagged or k not in confirmed:
            continue  # a requeued or in-doubt message may legitimately come late
        p, seq = ident[k]
        stream = (k[0], consumer, p)
        if stream in last and seq <= last[stream][0]:
            v.order_violations.append((k[0], consumer, k[1], last[stream][1]))
        last[stream] = (seq, k[1])

    v.delivered = len(seen)
    v.lost = sorted(confirmed - seen, key=_natural)
    v.unexpected = sorted(seen - attempts.keys(), key=_natural)
    v.recovered = sorted((attempts.keys() - confirmed) & seen, key=_natural)

    views = {}  # q -> via -> messages; a node's last report counts
    for e in _of(events, "depth"):
        views.setdefault(e.get("q"), {})[e.get("via")] = e.get("messages")
    for q in sorted(views, key=str):
        nodes = sorted(views[q].items(), key=lambda x: str(x[0]))
        v.not_empty.extend((q, via, m) for via, m in nodes if m != 0)
        if len({json.dumps(m) for _, m in nodes}) > 1:
            v.diverged.append((q, tuple(nodes)))
    return v


def _phases(events):
    """The time each phase first began."""
    out = {}
    for e in _of(events, "phase"):
        out.setdefault(e.get("name"), float(e["t"]))
    return out


def _end(events):
    """The last time in the history (0 for none)."""
    return max((float(e["t"]) for e in events if isinstance(e.get("t"), (int, float))), default=0.0)


def _acks(events):
    """(t, latency or None) of every acked publish attempt, in time order."""
    return [(float(e["t"]), float(e["t"]) - float(e["sent"]) if e.get("sent") is not None else None)
            for e in _of(events, "publish") if e.get("outcome") == "ack"]


def _live_deliveries(events):
    """Times of the deliveries outside the final drain."""
    return [float(e["t"]) for e in _of(events, "deliver") if not e.get("drain")]


def percentile(xs, p):
    """Nearest-rank percentile (always an observed value); None without data."""
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return xs[max(1, math.ceil(p / 100 * len(xs))) - 1]


def longest_gap(times, lo, hi):
    """(length, start) of the longest stretch of [lo, hi] holding none of ``times``.

    The window's edges count as events: a gap open at either edge is measured up to it."""
    if lo is None or hi is None or hi < lo:
        return (None, None)
    best, at, prev = 0.0, lo, lo
    for t in sorted(times):
        if t <= lo:
            continue
        if t > hi:
            break
        if t - prev > best:
            best, at = t - prev, prev
        prev = t
    if hi - prev > best:
        best, at = hi - prev, prev
    return (best, at)


def _first_after(times, t0, limit):
    """Seconds from t0 to the first of ``times`` in (t0, limit), else None."""
    if t0 is None:
        return None
    for t in times:
        if t0 < t < limit:
            return t - t0
    return None


def _baseline_rate(phases, ack_times, end):
    """Acks per second during the baseline phase (up to the next phase), None without one."""
    b = phases.get("baseline")
    if b is None:
        return None
    b_end = min((t for t in phases.values() if t > b), default=end)
    if b_end <= b:
        return None
    return sum(1 for t in ack_times if b <= t < b_end) / (b_end - b)


def figures(events):
    """Whole-run timing: confirm latency, the longest confirm and delivery gaps between the
    first "faults" phase and the end of the publishing (the "heal" phase, when the publishers
    stop; else the "drain" phase; else the whole run), baseline rate."""
    phases, end = _phases(events), _end(events)
    acks = _acks(events)
    ack_times = [t for t, _ in acks]
    latencies = [lat for _, lat in acks if lat is not None]
    lo = phases.get("faults", min((float(e["t"]) for e in events if "t" in e), default=0.0))
    hi = phases.get("heal", phases.get("drain", end))
    confirm_gap, confirm_at = longest_gap(ack_times, lo, hi)
    delivery_gap, delivery_at = longest_gap(_live_deliveries(events), lo, hi)
    return {
        "confirms": len(acks),
        "confirm_p50": percentile(latencies, 50),
        "confirm_p99": percentile(latencies, 99),
        "confirm_max": max(latencies, default=None),
        "longest_confirm_gap": confirm_gap,
        "longest_confirm_gap_at": confirm_at,
        "longest_delivery_gap": delivery_gap,
        "longest_delivery_gap_at": delivery_at,
        "baseline_rate": _baseline_rate(phases, ack_times, end),
    }


def fault_cycles(events):
    """One dict per (fault, cycle), in start order, with its recovery and availability figures.

    A cycle's window is [start, heal + AFTER_HEAL], cut at the next fault's start, the end of
    publishing (the "heal" phase, else the drain) and the history's end; first-confirm/delivery
    times look up to the next fault or that end."""
    phases, end = _phases(events), _end(events)
    acks = _acks(events)
    ack_times = [t for t, _ in acks]
    deliveries = _live_deliveries(events)
    rate = _baseline_rate(phases, ack_times, end)
    starts, heals = {}, {}
    for e in _of(events, "fault"):
        table = {"start": starts, "heal": heals}.get(e.get("phase"))
        if table is not None:
            table.setdefault((e.get("fault"), e.get("cycle")), e)
    start_times = sorted(float(e["t"]) for e in starts.values())
    drain = phases.get("heal", phases.get("drain"))

    out = []
    for (fault, cycle), s in sorted(starts.items(), key=lambda kv: float(kv[1]["t"])):
        start, h = float(s["t"]), heals.get((fault, cycle))
        heal = float(h["t"]) if h is not None else None
        limit = min([t for t in start_times if t > start]
                    + ([drain] if drain is not None and drain > start else []), default=math.inf)
        window_end = min(limit, end, math.inf if heal is None else heal + AFTER_HEAL)
        window_end = max(window_end, start)
        confirm_gap, confirm_at = longest_gap(ack_times, start, window_end)
        delivery_gap, delivery_at = longest_gap(deliveries, start, window_end)
        throughput = None
        if heal is not None and heal > start and rate:
            throughput = sum(1 for t in ack_times if start <= t <= heal) / (heal - start) / rate
        out.append({
            "fault": fault,
            "cycle": cycle,
            "target": s.get("target", h.get("target") if h else None),
            "start": start,
            "heal": heal,
            "duration": heal - start if heal is not None else None,
            "window_end": window_end,
            "first_confirm_after_start": _first_after(ack_times, start, limit),
            "first_confirm_after_heal": _first_after(ack_times, heal, limit),
            "first_delivery_after_heal": _first_after(deliveries, heal, limit),
            "longest_confirm_gap": confirm_gap,
            "longest_confirm_gap_at": confirm_at,
            "longest_delivery_gap": delivery_gap,
            "longest_delivery_gap_at": delivery_at,
            "throughput": throughput,
            "confirm_p99": percentile([lat for t, lat in acks if start <= t <= window_end], 99),
        })
    return out


def _max(xs):
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None


def fault_rows(cycles):
    """One row per fault kind (in order of first appearance): worst figures over its cycles."""
    groups = {}
    for c in cycles:
        groups.setdefault(c["fault"], []).append(c)
    rows = []
    for fault, cs in groups.items():
        tp = [c["throughput"] for c in cs if c.get("throughput") is not None]
        rows.append({
            "fault": fault,
            "cycles": len(cs),
            "confirm_gap_max": _max(c.get("longest_confirm_gap") for c in cs),
            "delivery_gap_max": _max(c.get("longest_delivery_gap") for c in cs),
            "first_confirm_after_start_max": _max(c.get("first_confirm_after_start") for c in cs),
            "first_confirm_after_heal_max": _max(c.get("first_confirm_after_heal") for c in cs),
            "first_delivery_after_heal_max": _max(c.get("first_delivery_after_heal") for c in cs),
            "throughput_min": min(tp) if tp else None,
            "throughput_median": statistics.median(tp) if tp else None,
            "confirm_p99_max": _max(c.get("confirm_p99") for c in cs),
        })
    return rows


def _s(x):
    return "–" if x is None else f"{x:.2f}"


def _ms(x):
    return "–" if x is None else f"{x * 1000:.1f}"


def _pct(x):
    return "–" if x is None else f"{x * 100:.0f}%"


def markdown(verdict, figures, rows, seed=None):
    """The run's report: verdict line, problems, one table row per fault kind, whole-run figures."""
    state = "VALID" if verdict.valid else "INVALID"
    lines = [f"## Chaos run (seed {'–' if seed is None else seed})", "",
             f"Seed {'–' if seed is None else seed}: **{state}** ({verdict.summary()})", ""]
    lines += [f"- {p}" for p in verdict.problems()] + ([""] if verdict.problems() else [])
    lines += [
        "| fault | cycles | confirm gap max (s) | delivery gap max (s) "
        "| first confirm after heal max (s) | throughput min/median (% of baseline) "
        "| p99 confirm latency (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {str(r['fault']).replace('|', '/')} | {r['cycles']} | {_s(r['confirm_gap_max'])} "
            f"| {_s(r['delivery_gap_max'])} | {_s(r['first_confirm_after_heal_max'])} "
            f"| {_pct(r['throughput_min'])} / {_pct(r['throughput_median'])} "
            f"| {_ms(r['confirm_p99_max'])} |")
    f = figures
    rate = f.get("baseline_rate")
    lines += [
        "", "Whole run:", "",
        f"- confirms: {f.get('confirms', '–')}; confirm latency p50 / p99 / max (ms): "
        f"{_ms(f.get('confirm_p50'))} / {_ms(f.get('confirm_p99'))} / {_ms(f.get('confirm_max'))}",
        f"- longest confirm gap (s): {_s(f.get('longest_confirm_gap'))} "
        f"(from t={_s(f.get('longest_confirm_gap_at'))})",
        f"- longest delivery gap (s): {_s(f.get('longest_delivery_gap'))} "
        f"(from t={_s(f.get('longest_delivery_gap_at'))})",
        f"- baseline rate (confirms/s): {'–' if rate is None else f'{rate:.1f}'}",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    """``python -m chaos.checker HISTORY [--seed N]``: print the report; exit 1 when invalid."""
    ap = argparse.ArgumentParser(prog="python -m chaos.checker", description=__doc__.splitlines()[0])
    ap.add_argument("history", help="the run's JSON-lines history")
    ap.add_argument("--seed", help="the run's seed, shown in the report")
    args = ap.parse_args(argv)
    try:
        events = load(args.history)
        verdict = check(events)
        report = markdown(verdict, figures(events), fault_rows(fault_cycles(events)), args.seed)
    except (OSError, ValueError) as e:
        print(f"checker: {e}", file=sys.stderr)
        return 2
    print(report, end="")
    return 0 if verdict.valid else 1


if __name__ == "__main__":
    sys.exit(main())
