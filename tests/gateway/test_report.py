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


def test_report_shows_the_capacity_extension_when_present() -> None:
    capacity = {
        "free_served": 5,
        "free_refused_allowance": 2,
        "free_refused_share": 1,
        "free_hosts": 3,
        "concurrency": 8,
        "free_slots": 2,
        "queue_limit": 1024,
        "in_flight": {"paid": 3, "free": 2},
        "waiting": {"paid": 0, "free": 7},
        "shed": {"paid": 0, "free": 4},
        "latency_p50_s": {"paid": 0.005, "free": 0.1, "refused": None, "shed": None},
        "latency_p99_s": {"paid": 0.01, "free": 1.0, "refused": None, "shed": None},
    }
    lines = format_payments({"hashrate": 0, "capacity": capacity}, 0).splitlines()
    assert (
        lines[-3]
        == "Free calls: 5 served, 2 refused (host allowance), 1 refused (free share), 3 hosts"
    )
    assert lines[-2] == (
        "Upstream: 5/8 in flight (2/2 free), 7 waiting (paid 0, free 7; line 1024), "
        "shed: paid 0, free 4"
    )
    assert lines[-1] == (
        "Latency p50/p99: paid <=5 ms/<=10 ms, free <=100 ms/<=1000 ms, refused -/-, shed -/-"
    )
    assert "Free calls" not in format_payments({"hashrate": 0}, 0)
