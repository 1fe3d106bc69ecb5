"""The paying proxy's market: what each server charges, how fast it is, which to use.

Pure rules over frozen ``ServerTerms`` (the proxy keeps one per server and replaces it):

- A server's **price of a credit** is in hashes: ``diff / credits_per_hash_found`` from its
  ``rpc_access_info`` (0 for a server that does not charge); in wei, ``credit_price_wei``
  from its ``lottery_info`` (``None``: it takes no cheques).
- **How to earn a credit** (``cheaper_rail``): the proxy mines unless it was given a lottery
  payer and the server sells credits for cheques; then a credit by cheque costs
  ``credit_price_wei`` and a credit by mining ``hashes_per_credit * hash_value_wei`` (the
  user's value of one hash), and the strictly cheaper one is used (a tie mines: no stamper
  fee, no prize locked). A server known to take cheques but no hashes is paid by cheque. The
  stamper's fee (``fee_bps``, 1% by default) is not in the comparison.
- A **method's price** in credits is learned: from a paywall refusal's ``item_price``, or
  from the balance a lone call used; until then it is ``default_price`` (1, monerod's and
  the gateway's default).
- **Latency** is an exponentially weighted mean (``LATENCY_WEIGHT`` for the newest sample)
  of free probes and of paid calls that did not have to earn credits first.
- **Choice** (``rank_servers``): servers that are up and whose latency is unknown or within
  the bound, cheapest call first (in hashes; with cheques on, in wei by each server's
  cheaper rail, ``credit_cost_wei``; ties: faster first); then the up servers over the
  bound, fastest first; then the servers marked down, soonest back first, as a last resort. The
  proxy tries them in that order: the next one is the failover.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, Literal

LATENCY_WEIGHT: Final = 0.3
Rail = Literal["mine", "cheque"]
DOWN_FOR_S: Final = 30.0
"""How long a server that erred or refused is passed over (a successful probe ends it)."""


@dataclass(frozen=True, slots=True)
class ServerTerms:
    """What the proxy knows about one server."""

    url: str
    diff: int = 0
    credits_per_hash: int = 0
    credit_price_wei: int | None = None
    prices: tuple[tuple[str, int], ...] = ()
    default_price: int = 1
    latency_s: float | None = None
    down_until: float = 0.0
    known: bool = False  # rpc_access_info has answered at least once

    @property
    def method_prices(self) -> dict[str, int]:
        return dict(self.prices)


@dataclass(frozen=True, slots=True)
class WeiPrices:
    """Compare servers in wei: what a hash is worth, and whether cheques can be paid."""

    hash_value_wei: float
    cheques: bool


def hashes_per_credit(terms: ServerTerms) -> float:
    """What one credit costs at this server, in hashes (0: it does not charge)."""
    if terms.credits_per_hash <= 0:
        return 0.0
    return terms.diff / terms.credits_per_hash


def method_price(terms: ServerTerms, method: str) -> int:
    """Credits one call of ``method`` costs here, as far as the proxy has learned."""
    return next((p for m, p in terms.prices if m == method), terms.default_price)


def call_cost(terms: ServerTerms, methods: list[str], wei: WeiPrices | None = None) -> float:
    """What the calls cost here: in hashes, or (given ``wei``) in wei by the cheaper rail."""
    credits = sum(method_price(terms, m) for m in methods)
    if wei is None:
        return credits * hashes_per_credit(terms)
    return credits * credit_cost_wei(terms, wei.hash_value_wei, wei.cheques)


def mining_cost_wei(terms: ServerTerms, hash_value_wei: float) -> float | None:
    """What one credit costs here by mining, in wei (``None``: this server takes no hashes)."""
    if terms.credits_per_hash <= 0:
        return None
    return hashes_per_credit(terms) * hash_value_wei


def cheaper_rail(terms: ServerTerms, hash_value_wei: float, cheques: bool) -> Rail:
    """How to earn this server's next credit: by mining or by lottery cheque, whichever costs
    less (``cheques``: the proxy has a lottery payer)."""
    # Without a payer, or at a server that sells no credits for cheques, only hashes pay.
    if not cheques or terms.credit_price_wei is None:
        return "mine"
    mining = mining_cost_wei(terms, hash_value_wei)
    # A server that takes no hashes (as far as the proxy knows) is paid by cheque.
    if mining is None:
        return "cheque" if terms.known else "mine"
    # The strictly cheaper rail; a tie mines (no stamper fee, no prize locked up).
    return "cheque" if terms.credit_price_wei < mining else "mine"


def credit_cost_wei(terms: ServerTerms, hash_value_wei: float, cheques: bool) -> float:
    """What one credit costs here in wei, earned by the rail ``cheaper_rail`` picks."""
    mining = mining_cost_wei(terms, hash_value_wei)
    if cheaper_rail(terms, hash_value_wei, cheques) == "cheque" and terms.credit_price_wei:
        return float(terms.credit_price_wei)
    return 0.0 if mining is None else mining


def with_access_info(terms: ServerTerms, diff: int, credits_per_hash: int) -> ServerTerms:
    """The terms after an ``rpc_access_info`` answer: the server is up and its rate known."""
    return replace(terms, diff=diff, credits_per_hash=credits_per_hash, known=True, down_until=0.0)


def with_latency(terms: ServerTerms, sample_s: float) -> ServerTerms:
    """Fold one latency sample into the mean."""
    # A negative or absurd sample is a clock glitch, not a measurement.
    if not 0 <= sample_s < 3600:
        return terms
    if terms.latency_s is None:
        return replace(terms, latency_s=sample_s)
    mean = (1 - LATENCY_WEIGHT) * terms.latency_s + LATENCY_WEIGHT * sample_s
    return replace(terms, latency_s=mean)


def with_price(terms: ServerTerms, method: str, price: int) -> ServerTerms:
    """Remember what ``method`` costs here."""
    # Prices are whole credits; a price already known changes nothing.
    if price < 0 or (method, price) in terms.prices:
        return terms
    prices = {**terms.method_prices, method: price}
    return replace(terms, prices=tuple(sorted(prices.items())))


def with_failure(terms: ServerTerms, now: float, down_for: float = DOWN_FOR_S) -> ServerTerms:
    """Pass the server over for ``down_for`` seconds."""
    return replace(terms, down_until=now + down_for)


def is_up(terms: ServerTerms, now: float) -> bool:
    return terms.down_until <= now


def rank_servers(
    servers: list[ServerTerms],
    methods: list[str],
    max_latency_s: float,
    now: float,
    wei: WeiPrices | None = None,
) -> list[ServerTerms]:
    """Every server, in the order the proxy should try them for these calls (cheapest in
    hashes, or given ``wei`` in wei by each server's cheaper rail)."""
    up = [s for s in servers if is_up(s, now)]
    fast = [s for s in up if s.latency_s is None or s.latency_s <= max_latency_s]
    slow = [s for s in up if s not in fast]
    down = [s for s in servers if not is_up(s, now)]
    fast.sort(key=lambda s: (call_cost(s, methods, wei), s.latency_s or 0.0))
    slow.sort(key=lambda s: s.latency_s or 0.0)
    down.sort(key=lambda s: s.down_until)
    return fast + slow + down
