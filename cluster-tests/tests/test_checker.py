"""Tests of chaos/checker.py on synthetic histories: a clean run passes, and each check can fail."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from chaos import checker  # noqa: E402

Q = "chaos-q"
NODES = ["warren-1", "warren-2", "warren-3"]


def phase(t, name):
    return {"ev": "phase", "t": t, "name": name}


def pub(t, p, seq, outcome="ack", latency=0.01, q=Q):
    return {"ev": "publish", "t": t, "sent": t - latency, "q": q, "p": p, "seq": seq,
            "value": f"{p}:{seq}", "via": "haproxy", "outcome": outcome}


def dlv(t, value, consumer="c1", redelivered=False, drain=False, q=Q):
    return {"ev": "deliver", "t": t, "q": q, "value": value, "redelivered": redelivered,
            "count": None, "via": "warren-2", "consumer": consumer, "drain": drain}


def fault(t, name, cycle, ph, target="warren-2"):
    return {"ev": "fault", "t": t, "fault": name, "cycle": cycle, "phase": ph, "target": target}


def depths(t, messages=(0, 0, 0), q=Q):
    return [{"ev": "depth", "t": t, "q": q, "via": via, "messages": m}
            for via, m in zip(NODES, messages)]


def clean():
    """Five confirmed values of p1, one timed-out p2 value that came out, one nacked that did not."""
    h = [phase(0, "baseline")]
    h += [pub(float(i), "p1", i) for i in range(1, 6)]
    h += [phase(6, "faults"), fault(6.5, "kill-leader", 0, "start"),
          pub(7, "p2", 1, "timeout"), pub(7.5, "p2", 2, "nack"),
          fault(8, "kill-leader", 0, "heal"), phase(9, "heal")]
    h += [dlv(1.5 + i, f"p1:{i}") for i in range(1, 4)]
    h += [phase(10, "drain"), dlv(10.5, "p1:4", "drain", drain=True),
          dlv(10.6, "p2:1", "drain", drain=True), dlv(10.7, "p1:5", "drain", drain=True)]
    h += depths(11) + [phase(12, "end")]
    return h


def without(history, value):
    return [e for e in history if not (e["ev"] == "deliver" and e["value"] == value)]


# --- verdict -------------------------------------------------------------------------------------

def test_clean_history_is_valid_with_right_counts():
    v = checker.check(clean())
    assert v.valid, v.problems()
    assert (v.attempted, v.confirmed, v.indeterminate) == (7, 5, 2)
    assert (v.delivered, v.deliveries, v.duplicated) == (6, 6, 0)
    assert v.recovered == [(Q, "p2:1")]
    assert v.problems() == []
    assert "recovered=1" in v.summary() and "lost=0" in v.summary()


def test_lost_confirmed_value_is_invalid():
    v = checker.check(without(clean(), "p1:3"))
    assert not v.valid
    assert v.lost == [(Q, "p1:3")]
    assert any("lost" in p and "p1:3" in p for p in v.problems())


def test_unexpected_value_is_invalid():
    v = checker.check(clean() + [dlv(10.8, "p9:1", drain=True)])
    assert not v.valid
    assert v.unexpected == [(Q, "p9:1")]
    assert any("unexpected" in p and "p9:1" in p for p in v.problems())


def test_unflagged_repeat_is_invalid():
    v = checker.check(clean() + [dlv(10.8, "p1:2", "c2")])
    assert not v.valid
    assert v.unflagged_repeats == [(Q, "p1:2", "c2")]
    assert any("redelivered=true" in p and "p1:2" in p for p in v.problems())


def test_flagged_duplicate_is_valid():
    v = checker.check(clean() + [dlv(10.8, "p1:2", "c2", redelivered=True)])
    assert v.valid, v.problems()
    assert (v.duplicated, v.deliveries, v.delivered) == (1, 7, 6)


def test_the_one_unflagged_delivery_may_be_read_after_another_consumers_redelivery():
    # c2's node froze with the first delivery in its socket; the new leader redelivered it
    # (flagged) to c3, who read it first.
    plain, flagged = dlv(20, "p1:2", "c2"), dlv(19, "p1:2", "c3", redelivered=True)
    v = checker.check(without(clean(), "p1:2") + [plain, flagged])
    assert v.valid, v.problems()
    assert v.duplicated == 1


def test_an_unflagged_copy_after_a_flagged_one_to_the_same_consumer_is_invalid():
    flagged, plain = dlv(19, "p1:2", "c2", redelivered=True), dlv(20, "p1:2", "c2")
    v = checker.check(without(clean(), "p1:2") + [flagged, plain])
    assert v.unflagged_repeats == [(Q, "p1:2", "c2")]


def test_order_violation_is_invalid():
    h = [e for e in clean() if e["ev"] != "deliver"]
    h += [dlv(2, "p1:1"), dlv(3, "p1:3"), dlv(4, "p1:2"), dlv(5, "p1:4"), dlv(6, "p1:5"),
          dlv(7, "p2:1")]
    v = checker.check(h)
    assert not v.valid
    assert v.order_violations == [(Q, "c1", "p1:2", "p1:3")]
    assert any("order" in p and "p1:2 after p1:3" in p for p in v.problems())
    v = checker.check(clean() + [dlv(4.6, "p1:3")])  # strictly increasing: a plain repeat breaks it
    assert v.order_violations == [(Q, "c1", "p1:3", "p1:3")]


def test_order_is_per_consumer_and_ignores_redeliveries():
    h = [e for e in clean() if e["ev"] != "deliver"]
    h += [dlv(2, "p1:3", "c1"), dlv(3, "p1:1", "c2"), dlv(4, "p1:2", "c2"),
          dlv(5, "p1:5", "c1"), dlv(6, "p1:4", "c1", redelivered=True), dlv(7, "p2:1", "c1")]
    v = checker.check(h)
    assert v.valid, v.problems()


def test_indeterminate_values_out_of_order_are_not_violations():
    h = [e for e in clean() if e["ev"] != "deliver"]
    h += [pub(7.2, "p2", 3), dlv(7.3, "p2:3"), dlv(7.4, "p2:1")]  # p2:1 (timeout) after p2:3
    h += [dlv(1.5 + i, f"p1:{i}") for i in range(1, 6)]
    v = checker.check(h)
    assert v.order_violations == [] and v.valid, v.problems()
    assert v.recovered == [(Q, "p2:1")]


def test_dedup_retry_timeout_then_ack_is_confirmed_once():
    h = clean() + [pub(8.1, "p3", 1, "timeout"), pub(8.3, "p3", 1, "ack"), dlv(8.4, "p3:1")]
    v = checker.check(h)
    assert v.valid, v.problems()
    assert (v.attempted, v.confirmed, v.indeterminate) == (8, 6, 2)
    assert (Q, "p3:1") not in v.recovered
    assert checker.check(without(h, "p3:1")).lost == [(Q, "p3:1")]


def test_queue_not_empty_after_drain_is_invalid():
    v = checker.check(clean() + depths(11.5, (2, 2, 2)))
    assert not v.valid
    assert v.not_empty == [(Q, via, 2) for via in NODES]
    assert v.diverged == []
    assert any("after the drain" in p and "warren-1 = 2" in p for p in v.problems())


def test_divergent_depths_are_invalid():
    v = checker.check(clean() + depths(11.5, (0, 0, 1)))
    assert not v.valid
    assert [q for q, _ in v.diverged] == [Q]
    assert v.not_empty == [(Q, "warren-3", 1)]
    assert any("differ" in p and "warren-3=1" in p for p in v.problems())


def test_last_depth_report_of_a_node_counts():
    assert checker.check(depths(10.9, (3, 3, 3)) + clean()).valid


def test_unknown_events_and_fields_are_ignored():
    h = clean() + [{"ev": "reconnect", "t": 3.0, "client": "p1"}]
    for e in h:
        e["extra"] = {"nested": True}
    assert checker.check(h).valid


def test_problems_name_at_most_ten_examples():
    h = clean() + [dlv(20 + i, f"p8:{i}") for i in range(15)]
    (sentence,) = checker.check(h).problems()
    assert sentence.startswith("15 ") and "p8:9" in sentence and "p8:10" not in sentence
    assert "and 5 more" in sentence


# --- figures -------------------------------------------------------------------------------------

def timed():
    """Baseline 1 ack/s; kill-leader cycle 0 at [12, 16], cycle 1 at [30, 32]; drain at 41."""
    h = [phase(0, "baseline")] + [pub(0.5 + i, "p1", i) for i in range(10)]
    h += [phase(10, "faults"), pub(10.5, "p1", 10), pub(11.5, "p1", 11)]
    h += [fault(12, "kill-leader", 0, "start"), pub(12.5, "p1", 12, latency=0.5),
          pub(15.5, "p1", 13, latency=3.0), fault(16, "kill-leader", 0, "heal")]
    h += [pub(17.0 + i, "p1", 14 + i) for i in range(13)]  # 17 .. 29
    h += [fault(30, "kill-leader", 1, "start", "warren-1"), fault(32, "kill-leader", 1, "heal"),
          pub(40, "p1", 27, latency=0.2)]
    h += [dlv(11, "p1:0"), dlv(20, "p1:1"), dlv(40.5, "p1:2"), phase(41, "drain"),
          dlv(45, "p1:3", drain=True)]
    return h


def test_percentile_is_nearest_rank():
    xs = list(range(100, 0, -1))
    assert (checker.percentile(xs, 50), checker.percentile(xs, 99)) == (50, 99)
    assert checker.percentile([], 99) is None


def test_longest_gap_counts_open_edges():
    assert checker.longest_gap([2, 3], 0, 10) == (7, 3)
    assert checker.longest_gap([], 5, 8) == (3, 5)
    assert checker.longest_gap([1, 9, 20], 4, 12) == (5, 4)


def test_whole_run_figures():
    f = checker.figures(timed())
    assert f["confirms"] == 28
    assert f["baseline_rate"] == pytest.approx(1.0)
    assert f["confirm_p50"] == pytest.approx(0.01)
    assert f["confirm_p99"] == pytest.approx(3.0) and f["confirm_max"] == pytest.approx(3.0)
    assert (f["longest_confirm_gap"], f["longest_confirm_gap_at"]) == pytest.approx((11.0, 29.0))
    assert (f["longest_delivery_gap"], f["longest_delivery_gap_at"]) == pytest.approx((20.5, 20.0))


def test_fault_cycle_figures():
    a, b = checker.fault_cycles(timed())
    assert (a["fault"], a["cycle"], a["target"], a["duration"]) == ("kill-leader", 0, "warren-2", 4)
    assert a["window_end"] == 26
    assert a["first_confirm_after_start"] == pytest.approx(0.5)
    assert a["first_confirm_after_heal"] == pytest.approx(1.0)
    assert a["first_delivery_after_heal"] == pytest.approx(4.0)
    assert (a["longest_confirm_gap"], a["longest_confirm_gap_at"]) == pytest.approx((3.0, 12.5))
    assert a["longest_delivery_gap"] == pytest.approx(8.0)  # 12 (start) -> 20
    assert a["throughput"] == pytest.approx(0.5)  # 2 acks in 4 s against 1/s
    assert a["confirm_p99"] == pytest.approx(3.0)

    assert (b["target"], b["window_end"]) == ("warren-1", 41)  # cut at the drain
    assert b["first_confirm_after_start"] == pytest.approx(10.0)
    assert b["first_confirm_after_heal"] == pytest.approx(8.0)
    assert b["first_delivery_after_heal"] == pytest.approx(8.5)
    assert (b["longest_confirm_gap"], b["longest_confirm_gap_at"]) == pytest.approx((10.0, 30.0))
    assert b["throughput"] == 0
    assert b["confirm_p99"] == pytest.approx(0.2)


def test_no_confirm_before_next_fault_is_none_and_no_baseline_means_no_throughput():
    h = [phase(0, "faults"), fault(1, "pause", 0, "start"), fault(2, "pause", 0, "heal"),
         fault(5, "pause", 1, "start"), pub(6, "p1", 0), fault(7, "pause", 1, "heal")]
    a, b = checker.fault_cycles(h)
    assert a["first_confirm_after_heal"] is None and a["first_confirm_after_start"] is None
    assert a["window_end"] == 5 and a["longest_confirm_gap"] == 4
    assert b["first_confirm_after_start"] == 1 and b["throughput"] is None


def test_fault_rows_aggregate_per_kind():
    def cyc(name, gap, heal, tp, p99):
        return {"fault": name, "longest_confirm_gap": gap, "longest_delivery_gap": gap,
                "first_confirm_after_start": None, "first_confirm_after_heal": heal,
                "first_delivery_after_heal": heal, "throughput": tp, "confirm_p99": p99}
    rows = checker.fault_rows([cyc("kill", 1.0, None, 0.2, 0.1), cyc("pause", 5.0, 2.0, 0.0, 1.0),
                               cyc("kill", 3.0, 0.5, 0.9, None), cyc("kill", 2.0, None, 0.4, 0.3)])
    kill, pause = rows
    assert (kill["fault"], kill["cycles"], pause["cycles"]) == ("kill", 3, 1)
    assert kill["confirm_gap_max"] == 3.0 and kill["first_confirm_after_heal_max"] == 0.5
    assert kill["throughput_min"] == 0.2 and kill["throughput_median"] == 0.4
    assert kill["confirm_p99_max"] == 0.3 and kill["first_confirm_after_start_max"] is None
    assert pause["throughput_median"] == 0.0


def test_markdown_report():
    h = timed() + [fault(33, "pause", 0, "start"), fault(34, "pause", 0, "heal")]
    rows = checker.fault_rows(checker.fault_cycles(h))
    text = checker.markdown(checker.check(h), checker.figures(h), rows, seed=42)
    assert "seed 42" in text.lower() and "INVALID" in text  # deliveries in timed() are partial
    assert "| fault | cycles | confirm gap max (s) | delivery gap max (s) |" in text
    # kill-leader cycle 1 is now cut at the pause's start (33): its gap is 3 s, not 10 s
    assert "| kill-leader | 2 | 3.00 | 8.00 | 1.00 | 0% / 25% | 3000.0 |" in text
    assert "| pause | 1 | 7.00 | 7.50 | 6.00 | 0% / 0% | 200.0 |" in text
    assert "longest confirm gap (s): 11.00 (from t=29.00)" in text
    assert "24 confirmed value(s) were never delivered" in text
    empty = dict.fromkeys(rows[0], None) | {"fault": "partition", "cycles": 1}
    ok = checker.markdown(checker.check(clean()), checker.figures(clean()), [empty], None)
    assert "**VALID**" in ok and "seed –" in ok
    assert "| partition | 1 | – | – | – | – / – | – |" in ok


# --- loading and the command line ---------------------------------------------------------------

def write(tmp_path, events):
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n\n")
    return str(path)


def test_load_skips_blank_lines(tmp_path):
    assert checker.load(write(tmp_path, clean())) == clean()


def test_load_names_a_malformed_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"ev": "phase", "t": 0, "name": "baseline"}\n\n{"ev": "publish", "t":\n')
    with pytest.raises(ValueError, match="line 3"):
        checker.load(str(path))
    path.write_text('{"ev": "phase", "t": 0, "name": "baseline"}\n[1, 2]\n')
    with pytest.raises(ValueError, match="line 2"):
        checker.load(str(path))


def test_main_exit_codes(tmp_path, capsys):
    assert checker.main([write(tmp_path, clean()), "--seed", "7"]) == 0
    assert "**VALID**" in capsys.readouterr().out
    assert checker.main([write(tmp_path, without(clean(), "p1:1"))]) == 1
    assert "INVALID" in capsys.readouterr().out
    assert checker.main([str(tmp_path / "missing.jsonl")]) == 2


def test_a_publish_sent_without_a_recorded_outcome_is_in_doubt_not_unexpected():
    invoke = {"ev": "invoke", "t": 8.5, "q": Q, "p": "p3", "seq": 1, "value": "p3:1", "via": "haproxy"}
    h = clean() + [invoke, dlv(10.8, "p3:1", "drain", drain=True)]
    v = checker.check(h)
    assert v.valid, v.problems()
    assert ("chaos-q", "p3:1") in v.recovered and not v.unexpected
