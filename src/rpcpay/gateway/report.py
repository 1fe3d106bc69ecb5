"""The operator's view: ``rpcpay payments``, laid out as monerod's ``rpc_payments`` command."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

JSON = Any


def human_time_ago(then: int, now: int) -> str:
    """How long ago ``then`` was, in the largest whole unit."""
    seconds = max(0, now - then)
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return f"{seconds} second{'s' if seconds != 1 else ''} ago"


def mining_speed(hashes_per_second: int) -> str:
    """A hash rate with a unit, as monerod prints it."""
    if hashes_per_second >= 1_000_000_000:
        return f"{hashes_per_second / 1e9:.2f} GH/s"
    if hashes_per_second >= 1_000_000:
        return f"{hashes_per_second / 1e6:.2f} MH/s"
    if hashes_per_second >= 1_000:
        return f"{hashes_per_second / 1e3:.2f} kH/s"
    return f"{hashes_per_second} H/s"


def format_payments(data: Mapping[str, JSON], now: int) -> str:
    """rpc_access_data as a table: one row per client, then totals and the hash rate."""
    entries: Sequence[Mapping[str, JSON]] = data.get("entries", [])
    row = "{:>64} {:>16} {:>16} {:>8} {:>8} {:>8} {:>8} {}"
    lines = [
        row.format(
            "Client ID", "Balance", "Total mined", "Good", "Stale", "Bad", "Dupes", "Last update"
        )
    ]
    total = 0
    for entry in entries:
        last = int(entry.get("last_update_time", 0))
        lines.append(
            row.format(
                entry["client"],
                entry["balance"],
                entry["credits_total"],
                entry["nonces_good"],
                entry["nonces_stale"],
                entry["nonces_bad"],
                entry["nonces_dupe"],
                "never" if last == 0 else human_time_ago(last, now),
            )
        )
        total += int(entry["balance"])
    lines.append(f"{len(entries)} clients with a total of {total} credits")
    lines.append(f"Aggregated client hash rate: {mining_speed(int(data.get('hashrate', 0)))}")
    capacity = data.get("capacity")
    if isinstance(capacity, Mapping):
        lines.extend(format_capacity(capacity))
    return "\n".join(lines)


def _ms(seconds: JSON) -> str:
    return "-" if seconds is None else f"<={float(seconds) * 1000:g} ms"


def format_capacity(capacity: Mapping[str, JSON]) -> list[str]:
    """The free tier and the upstream line (rpcpay's ``capacity`` extension of the answer)."""
    lines = [
        f"Free calls: {capacity.get('free_served', 0)} served, "
        f"{capacity.get('free_refused_allowance', 0)} refused (host allowance), "
        f"{capacity.get('free_refused_share', 0)} refused (free share), "
        f"{capacity.get('free_hosts', 0)} hosts"
    ]
    if "concurrency" in capacity:
        in_flight, waiting = capacity.get("in_flight", {}), capacity.get("waiting", {})
        shed = capacity.get("shed", {})
        lines.append(
            f"Upstream: {sum(in_flight.values())}/{capacity['concurrency']} in flight "
            f"({in_flight.get('free', 0)}/{capacity.get('free_slots', 0)} free), "
            f"{sum(waiting.values())} waiting (paid {waiting.get('paid', 0)}, free "
            f"{waiting.get('free', 0)}; line {capacity.get('queue_limit', 0)}), "
            f"shed: paid {shed.get('paid', 0)}, free {shed.get('free', 0)}"
        )
    p50, p99 = capacity.get("latency_p50_s", {}), capacity.get("latency_p99_s", {})
    lines.append(
        "Latency p50/p99: "
        + ", ".join(
            f"{c} {_ms(p50.get(c))}/{_ms(p99.get(c))}" for c in ("paid", "free", "refused", "shed")
        )
    )
    return lines
