"""Merging workers' /metrics: every sample labelled with its worker, families kept whole."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from rpcpay.gateway.metrics import GatewayMetrics
from rpcpay.gateway.worker_metrics import merge, read_others, write_snapshot


def exposition(calls: int, ledger_s: float) -> str:
    metrics = GatewayMetrics()
    metrics.calls.labels("get_info", "paid").inc(calls)
    metrics.ledger_seconds.labels("pay").observe(ledger_s)
    return metrics.exposition().decode()


def test_merged_text_parses_with_every_worker_labelled() -> None:
    merged = merge([(0, exposition(3, 0.001)), (1, exposition(5, 0.2))]).decode()
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    calls = [s for s in families["rpcpay_calls"].samples if s.name == "rpcpay_calls_total"]
    assert {(s.labels["worker"], s.value) for s in calls} == {("0", 3.0), ("1", 5.0)}
    counts = [s for s in families["rpcpay_ledger_seconds"].samples if s.name.endswith("_count")]
    assert {s.labels["worker"]: s.value for s in counts} == {"0": 1.0, "1": 1.0}
    # One HELP and one TYPE line per family, however many workers.
    assert merged.count("# TYPE rpcpay_calls_total counter") == 1


def test_snapshots_of_other_workers_are_read_back(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 0, b"# TYPE a counter\na_total 1\n")
    write_snapshot(tmp_path, 1, b"# TYPE a counter\na_total 2\n")
    (tmp_path / "metrics-junk.prom").write_text("x")
    assert read_others(tmp_path, 0) == [(1, "# TYPE a counter\na_total 2\n")]
    assert merge([(0, "# TYPE a counter\na_total 1\n"), *read_others(tmp_path, 0)]) == (
        b'# TYPE a counter\na_total{worker="0"} 1\na_total{worker="1"} 2\n'
    )
