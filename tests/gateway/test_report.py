"""The ``rpcpay payments`` table."""

from __future__ import annotations

from rpcpay.gateway.report import format_payments, human_time_ago, mining_speed


def test_report_lists_clients_then_totals() -> None:
    data = {
        "entries": [
            {
                "client": "ab" * 32,
                "balance": 7,
                "credits_total": 100,
                "nonces_good": 1,
                "nonces_stale": 2,
                "nonces_bad": 3,
                "nonces_dupe": 4,
                "last_update_time": 990,
            },
            {
                "client": "cd" * 32,
                "balance": 5,
                "credits_total": 0,
                "nonces_good": 0,
                "nonces_stale": 0,
                "nonces_bad": 0,
                "nonces_dupe": 0,
                "last_update_time": 0,
            },
        ],
        "hashrate": 1500,
    }
    lines = format_payments(data, 1000).splitlines()
    assert lines[0].split()[:3] == ["Client", "ID", "Balance"]
    assert lines[1].split() == ["ab" * 32, "7", "100", "1", "2", "3", "4", "10", "seconds", "ago"]
    assert lines[2].endswith("never")
    assert lines[3] == "2 clients with a total of 12 credits"
    assert lines[4] == "Aggregated client hash rate: 1.50 kH/s"


def test_empty_report() -> None:
    assert format_payments({"hashrate": 0}, 0).splitlines()[1:] == [
        "0 clients with a total of 0 credits",
        "Aggregated client hash rate: 0 H/s",
    ]


def test_units() -> None:
    assert human_time_ago(0, 3 * 86400 + 5) == "3 days ago"
    assert human_time_ago(0, 61) == "1 minute ago"
    assert mining_speed(999) == "999 H/s"
    assert mining_speed(2_500_000) == "2.50 MH/s"
