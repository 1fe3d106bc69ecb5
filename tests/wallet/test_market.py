"""The proxy's choice of rail (``cheaper_rail``): never the dearer way to earn a credit; with
cheques on, servers rank by the cost of a credit by their cheaper rail."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from rpcpay.wallet.market import (
    ServerTerms,
    WeiPrices,
    cheaper_rail,
    credit_cost_wei,
    mining_cost_wei,
    rank_servers,
)

terms_st = st.builds(
    ServerTerms,
    url=st.just("http://127.0.0.1:1"),
    diff=st.integers(0, 10**9),
    credits_per_hash=st.integers(0, 10**6),
    credit_price_wei=st.none() | st.integers(1, 10**20),
    known=st.booleans(),
)
hash_value_st = st.floats(0, 10**15, allow_nan=False)


@given(terms_st, hash_value_st, st.booleans())
def test_the_chosen_rail_is_never_the_dearer(
    terms: ServerTerms, hash_value: float, cheques: bool
) -> None:
    rail = cheaper_rail(terms, hash_value, cheques)
    mining = mining_cost_wei(terms, hash_value)
    cheque = terms.credit_price_wei if cheques else None
    if rail == "cheque":
        # A cheque only where the payer exists and the server sells credits for cheques.
        assert cheque is not None
        assert mining is None or cheque < mining
    elif cheque is not None and mining is not None:
        assert mining <= cheque


def test_mines_without_a_payer_or_without_a_cheque_price() -> None:
    dear = ServerTerms("u", diff=1000, credits_per_hash=1, credit_price_wei=1, known=True)
    assert cheaper_rail(dear, 10**9, cheques=False) == "mine"
    no_lottery = ServerTerms("u", diff=1000, credits_per_hash=1, known=True)
    assert cheaper_rail(no_lottery, 10**9, cheques=True) == "mine"


def test_the_value_of_a_hash_tips_the_choice() -> None:
    # 0.04 hashes a credit (difficulty 2, 50 credits a hash), a credit for 1 gwei.
    terms = ServerTerms("u", diff=2, credits_per_hash=50, credit_price_wei=10**9, known=True)
    assert cheaper_rail(terms, 10**10, cheques=True) == "mine"  # 0.4 gwei a credit
    assert cheaper_rail(terms, 25 * 10**9, cheques=True) == "mine"  # 1 gwei: a tie mines
    assert cheaper_rail(terms, 10**11, cheques=True) == "cheque"  # 4 gwei a credit


def test_a_server_taking_no_hashes_is_paid_by_cheque_once_known() -> None:
    terms = ServerTerms("u", credit_price_wei=10**9, known=True)
    assert cheaper_rail(terms, 0, cheques=True) == "cheque"
    # Before its rpc_access_info answered, nothing says it takes no hashes.
    assert cheaper_rail(ServerTerms("u", credit_price_wei=10**9), 0, cheques=True) == "mine"


@given(st.lists(terms_st, max_size=6), hash_value_st)
def test_with_cheques_servers_rank_by_their_cheaper_rail_in_wei(
    servers: list[ServerTerms], hash_value: float
) -> None:
    servers = [replace(t, url=str(i)) for i, t in enumerate(servers)]
    ranked = rank_servers(servers, ["m"], 1.0, now=0.0, wei=WeiPrices(hash_value, True))
    assert sorted(t.url for t in ranked) == sorted(t.url for t in servers)
    costs = [credit_cost_wei(t, hash_value, True) for t in ranked]
    # All are up with unknown latency: cheapest credit first.
    assert costs == sorted(costs)
    for t in ranked:
        mining = mining_cost_wei(t, hash_value)
        # A credit never costs more than mining it, where hashes pay.
        assert mining is None or credit_cost_wei(t, hash_value, True) <= mining


def test_a_cheap_cheque_server_outranks_a_cheaper_in_hashes_one() -> None:
    # a: 0.04 hashes a credit, no cheques; b: 0.2 hashes a credit, or 1 gwei by cheque.
    a = ServerTerms("a", diff=2, credits_per_hash=50, known=True)
    b = ServerTerms("b", diff=2, credits_per_hash=10, credit_price_wei=10**9, known=True)
    assert [t.url for t in rank_servers([b, a], ["m"], 1.0, 0.0)] == ["a", "b"]
    wei = WeiPrices(10**12, cheques=True)  # a: 40 gwei a credit, b: 1 gwei by cheque
    assert [t.url for t in rank_servers([a, b], ["m"], 1.0, 0.0, wei)] == ["b", "a"]
