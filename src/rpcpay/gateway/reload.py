"""SIGHUP: re-read the command line's config file and price file, and apply what can change
while serving.

Contract: ``reload_gateway(gateway, old, new)`` applies the reloadable settings of ``new``
(prices, trusted proxies, abuse limits, free loopback) all together or not at all: the new
price file is loaded and the whole config checked first, and on any error the old settings
stay and the error is logged. Settings that need a restart (listeners, upstream, data dir,
difficulty, credits, ...) are named in a warning and left as they are. The access log is
reopened in any case, for logrotate. Each SIGHUP logs one line saying what happened.

Changing the abuse limits starts new budgets for every address (their use so far is
forgotten); a reload that leaves them unchanged keeps the buckets.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from rpcpay.errors import ConfigError
from rpcpay.gateway.costs import PriceList, load_price_list
from rpcpay.gateway.limits import AbuseGuard

if TYPE_CHECKING:
    from rpcpay.gateway.server import GatewayConfig, RunningGateway

log = logging.getLogger("rpcpay.gateway")

RELOADABLE = frozenset({"price_file", "proxies", "limits", "allow_free_loopback", "access_log"})


def changed_fields(old: GatewayConfig, new: GatewayConfig) -> tuple[list[str], list[str]]:
    """(reloadable fields that changed, fields that changed but need a restart)."""
    changed = [
        f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)
    ]
    return (
        [name for name in changed if name in RELOADABLE],
        [name for name in changed if name not in RELOADABLE],
    )


def reload_gateway(gateway: RunningGateway, old: GatewayConfig, new: GatewayConfig) -> bool:
    """Apply ``new``'s reloadable settings; False (old ones kept, error logged) if it is bad."""
    from rpcpay.gateway.server import check_config

    if gateway.access_log is not None:
        gateway.access_log.reopen()
    try:
        check_config(new)
        prices = load_price_list(new.price_file) if new.price_file else PriceList(1, {})
    except ConfigError as exc:
        log.error("reload refused; keeping the old settings", extra={"error": str(exc)})
        return False
    reloadable, restart = changed_fields(old, new)
    if restart:
        log.warning("these settings change only on restart", extra={"settings": ",".join(restart)})
    core = dataclasses.replace(gateway.core, prices=prices, proxies=new.proxies)
    gateway.swap_core(core)
    payment = core.payment
    payment.settings = dataclasses.replace(
        payment.settings, allow_free_loopback=new.allow_free_loopback
    )
    if new.limits != old.limits:
        payment._guard = AbuseGuard(new.limits)
    log.info(
        "reloaded",
        extra={
            "changed": ",".join(reloadable) or "nothing",
            "price_file": str(new.price_file) if new.price_file else "none",
            "methods_priced": len(prices.methods),
        },
    )
    return True


__all__ = ["RELOADABLE", "changed_fields", "reload_gateway"]
