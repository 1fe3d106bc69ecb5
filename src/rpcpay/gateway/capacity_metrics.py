"""The capacity rules on ``/metrics``: free calls served and refused, calls shed, upstream slots
in use and calls waiting by class, and call latency by class.

Series (all read at scrape time from ``capacity.Capacity``, so the call path pays nothing
extra for them):

- ``rpcpay_free_calls_total{outcome}``: ``served`` (refused for payment, served free),
  ``refused_allowance`` (the host's allowance was short), ``refused_share`` (the global free
  share was spent);
- ``rpcpay_shed_calls_total{class}``: calls shed from a full line ("busy", nothing charged);
- ``rpcpay_upstream_in_flight{class}``, ``rpcpay_upstream_waiting{class}``: slots held and the
  queue's depth;
- ``rpcpay_call_seconds_by_class{class}``: whole-request latency, ``class`` one of ``paid``,
  ``free``, ``refused``, ``shed``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from rpcpay.gateway.capacity import Capacity


class CapacityCollector(Collector):
    """Renders one gateway's ``Capacity``."""

    def __init__(self, capacity: Capacity) -> None:
        self._capacity = capacity

    def collect(self) -> Iterator[Metric]:
        capacity = self._capacity
        free = CounterMetricFamily(
            "rpcpay_free_calls",
            "Calls refused for payment, by free-tier outcome",
            labels=["outcome"],
        )
        free.add_metric(["served"], capacity.free_served)
        free.add_metric(["refused_allowance"], capacity.refused_allowance)
        free.add_metric(["refused_share"], capacity.refused_share)
        yield free
        yield capacity.latency.metric.family()
        queue = capacity.queue
        if queue is None:
            return
        shed = CounterMetricFamily(
            "rpcpay_shed_calls", "Calls shed from a full upstream line", labels=["class"]
        )
        in_flight = GaugeMetricFamily(
            "rpcpay_upstream_in_flight", "Upstream slots held", labels=["class"]
        )
        waiting = GaugeMetricFamily(
            "rpcpay_upstream_waiting", "Calls waiting for an upstream slot", labels=["class"]
        )
        for cls, held in queue.in_flight.items():
            shed.add_metric([cls], queue.stats.shed[cls])
            in_flight.add_metric([cls], held)
            waiting.add_metric([cls], queue.waiting(cls))
        yield shed
        yield in_flight
        yield waiting
