# pragma version 0.4.3
# pragma evm-version cancun
"""
@title rpcpay stamped lottery cheques
@notice Stamper registry and payer lotteries in one contract (docs/lottery.md).
    A payer locks a prize in a lottery that names a stamper and a reveal block.
    Cheques give recipients ranges of the lottery's ticket space [0, prize);
    the stamper certifies that the ranges of one lottery never overlap. The
    winning ticket comes from the reveal block's hash; the cheque whose range
    holds it wins the whole prize, once. Two overlapping stamped cheques of one
    lottery slash the stamper's deposit: a share pays the whistleblower, a share
    compensates recipients who hold a winning cheque the prize no longer covers,
    and the rest is burnt, so cheating costs at least that much even if the
    cheater races its own sybils for the compensation.
"""

struct Cheque:
    lottery: bytes32
    recipient: address
    start: uint256
    value: uint256

struct Stamper:
    deposit: uint256
    exit_block: uint256  # 0 while active; else the first block it may withdraw
    slashed: bool

struct Lottery:
    payer: address
    stamper: address
    prize: uint256
    reveal_block: uint256
    seed: bytes32  # empty until drawn
    paid_cheque: bytes32  # struct hash of the cheque that won; empty until claimed
    refunded: bool

event StamperDeposited:
    stamper: indexed(address)
    amount: uint256
    deposit: uint256

event ExitRequested:
    stamper: indexed(address)
    exit_block: uint256

event StamperWithdrawn:
    stamper: indexed(address)
    amount: uint256

event LotteryCreated:
    lottery: indexed(bytes32)
    payer: indexed(address)
    stamper: indexed(address)
    prize: uint256
    reveal_block: uint256
    salt: bytes32

event Drawn:
    lottery: indexed(bytes32)
    seed: bytes32
    ticket: uint256

event Claimed:
    lottery: indexed(bytes32)
    cheque: bytes32
    recipient: indexed(address)
    amount: uint256

event Compensated:
    lottery: indexed(bytes32)
    cheque: bytes32
    recipient: indexed(address)
    amount: uint256

event Slashed:
    stamper: indexed(address)
    lottery: indexed(bytes32)
    whistleblower: address
    reward: uint256
    pool: uint256
    burnt: uint256

event Refunded:
    lottery: indexed(bytes32)
    payer: indexed(address)
    amount: uint256

EIP712_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
CHEQUE_TYPEHASH: constant(bytes32) = keccak256(
    "Cheque(bytes32 lottery,address recipient,uint256 start,uint256 value)"
)
STAMP_TYPEHASH: constant(bytes32) = keccak256(
    "Stamp(Cheque cheque)Cheque(bytes32 lottery,address recipient,uint256 start,uint256 value)"
)
NAME_HASH: constant(bytes32) = keccak256("rpcpay stamped lottery")
VERSION_HASH: constant(bytes32) = keccak256("1")
# secp256k1n / 2: signatures with a larger s are malleable copies (EIP-2).
HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168
# A prize below 2**128 keeps the modulo bias of the draw below 2**-128.
MAX_PRIZE: constant(uint256) = 2**128
BPS: constant(uint256) = 10000

MAX_REVEAL_DELAY: public(immutable(uint256))
REDEEM_BLOCKS: public(immutable(uint256))
EXIT_DELAY: public(immutable(uint256))
WHISTLEBLOWER_BPS: public(immutable(uint256))
COMPENSATION_BPS: public(immutable(uint256))

stampers: public(HashMap[address, Stamper])
lotteries: public(HashMap[bytes32, Lottery])
# Compensation left from each slashed stamper's deposit.
pools: public(HashMap[address, uint256])
# Slashed wei that nobody can ever move (locked in this contract).
burnt: public(uint256)
# Cheques (by struct hash) already compensated.
compensated: public(HashMap[bytes32, bool])
# Fraud-proof commitments: keccak256(abi_encode(whistleblower, cheque_a, cheque_b)) -> block.
commitments: public(HashMap[bytes32, uint256])


@deploy
def __init__(
    max_reveal_delay: uint256,
    redeem_blocks: uint256,
    proof_grace: uint256,
    whistleblower_bps: uint256,
    compensation_bps: uint256,
):
    # A lottery must be able to reveal at all, and be claimable for at least a block.
    assert max_reveal_delay > 0 and redeem_blocks > 0, "zero window"
    # A stamper's withdrawal must come after the last block a claim can slash it in.
    assert proof_grace > 0, "zero proof grace"
    # The whistleblower's and the compensation shares are parts of one deposit.
    assert whistleblower_bps + compensation_bps <= BPS, "shares above 100%"
    MAX_REVEAL_DELAY = max_reveal_delay
    REDEEM_BLOCKS = redeem_blocks
    # Every lottery a stamper may still be named in ends before it can leave.
    EXIT_DELAY = max_reveal_delay + redeem_blocks + proof_grace
    WHISTLEBLOWER_BPS = whistleblower_bps
    COMPENSATION_BPS = compensation_bps


@view
@internal
def _domain_separator() -> bytes32:
    return keccak256(abi_encode(EIP712_DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chain.id, self))


@view
@external
def domain_separator() -> bytes32:
    return self._domain_separator()


@pure
@internal
def _cheque_hash(c: Cheque) -> bytes32:
    return keccak256(abi_encode(CHEQUE_TYPEHASH, c.lottery, c.recipient, c.start, c.value))


@pure
@external
def cheque_hash(c: Cheque) -> bytes32:
    return self._cheque_hash(c)


@view
@internal
def _digest(struct_hash: bytes32) -> bytes32:
    return keccak256(concat(x"1901", self._domain_separator(), struct_hash))


@pure
@internal
def _recover(digest: bytes32, sig: Bytes[65]) -> address:
    # A signature is exactly r || s || v.
    assert len(sig) == 65, "signature length"
    r: uint256 = convert(extract32(sig, 0), uint256)
    s: uint256 = convert(extract32(sig, 32), uint256)
    v: uint256 = convert(slice(sig, 64, 1), uint256)
    # Only the canonical low-s form with v of 27 or 28 is accepted (EIP-2).
    assert s <= HALF_N and (v == 27 or v == 28), "non-canonical signature"
    signer: address = ecrecover(digest, v, r, s)
    # The zero address means the signature recovers to no key.
    assert signer != empty(address), "bad signature"
    return signer


@pure
@internal
def _in_space(c: Cheque, prize: uint256) -> bool:
    # A range is non-empty and lies inside the ticket space [0, prize).
    return c.value > 0 and c.start < prize and c.value <= prize - c.start


@view
@internal
def _stamp_signer(c: Cheque, stamp_sig: Bytes[65]) -> address:
    return self._recover(
        self._digest(keccak256(abi_encode(STAMP_TYPEHASH, self._cheque_hash(c)))), stamp_sig
    )


@payable
@external
def deposit_stamper():
    """
    @notice Open or top up the caller's stamper deposit.
    """
    s: Stamper = self.stampers[msg.sender]
    # A slashed address never stamps again; recipients key trust on addresses.
    assert not s.slashed, "slashed"
    # An exiting stamper cannot be named anymore; topping it up would only lock funds.
    assert s.exit_block == 0, "exiting"
    # A deposit of nothing certifies nothing.
    assert msg.value > 0, "no deposit"
    s.deposit += msg.value
    self.stampers[msg.sender] = s
    log StamperDeposited(stamper=msg.sender, amount=msg.value, deposit=s.deposit)


@external
def request_exit():
    """
    @notice Start the caller's exit: no lottery can name it from now on, and it can
        withdraw after EXIT_DELAY blocks, when every lottery it stamped is over.
    """
    s: Stamper = self.stampers[msg.sender]
    # Only an active stamper with a deposit can exit.
    assert s.deposit > 0 and s.exit_block == 0 and not s.slashed, "not active"
    s.exit_block = block.number + EXIT_DELAY
    self.stampers[msg.sender] = s
    log ExitRequested(stamper=msg.sender, exit_block=s.exit_block)


@nonreentrant
@external
def withdraw_stamper():
    """
    @notice Take back the deposit once the exit delay has passed.
    """
    s: Stamper = self.stampers[msg.sender]
    # The exit must have been requested and its delay passed.
    assert s.exit_block != 0 and block.number >= s.exit_block, "exit delay"
    # A slashed deposit is gone; a withdrawn one too.
    assert not s.slashed and s.deposit > 0, "nothing to withdraw"
    amount: uint256 = s.deposit
    self.stampers[msg.sender] = empty(Stamper)
    raw_call(msg.sender, b"", value=amount)
    log StamperWithdrawn(stamper=msg.sender, amount=amount)


@payable
@external
def create_lottery(stamper: address, reveal_block: uint256, salt: bytes32) -> bytes32:
    """
    @notice Lock msg.value as the prize of a new lottery named by its terms.
    @dev The id hashes every term, so a cheque signed for it means the same
        lottery on any chain fork where the id exists at all.
    """
    s: Stamper = self.stampers[stamper]
    # The stamper must be active: deposited, not exiting, not slashed.
    assert s.deposit > 0 and s.exit_block == 0 and not s.slashed, "stamper not active"
    # The prize is positive and small enough for an unbiased draw.
    assert msg.value > 0 and msg.value < MAX_PRIZE, "prize"
    # The reveal is in the future, but within the stamper's exit delay budget.
    assert reveal_block > block.number, "reveal in the past"
    assert reveal_block <= block.number + MAX_REVEAL_DELAY, "reveal too far"
    lottery_id: bytes32 = keccak256(abi_encode(msg.sender, stamper, msg.value, reveal_block, salt))
    # Each set of terms makes one lottery.
    assert self.lotteries[lottery_id].prize == 0, "lottery exists"
    self.lotteries[lottery_id] = Lottery(
        payer=msg.sender,
        stamper=stamper,
        prize=msg.value,
        reveal_block=reveal_block,
        seed=empty(bytes32),
        paid_cheque=empty(bytes32),
        refunded=False,
    )
    log LotteryCreated(
        lottery=lottery_id, payer=msg.sender, stamper=stamper, prize=msg.value,
        reveal_block=reveal_block, salt=salt
    )
    return lottery_id


@internal
def _draw(lottery_id: bytes32) -> bytes32:
    lot: Lottery = self.lotteries[lottery_id]
    # The lottery exists.
    assert lot.prize > 0, "no lottery"
    if lot.seed != empty(bytes32):
        return lot.seed
    # The reveal block is mined and its hash is still readable (256 blocks).
    assert block.number > lot.reveal_block, "not revealed"
    assert block.number <= lot.reveal_block + 256, "reveal hash expired"
    seed: bytes32 = keccak256(abi_encode(blockhash(lot.reveal_block), lottery_id))
    self.lotteries[lottery_id].seed = seed
    log Drawn(lottery=lottery_id, seed=seed, ticket=convert(seed, uint256) % lot.prize)
    return seed


@external
def draw(lottery_id: bytes32) -> uint256:
    """
    @notice Record the lottery's randomness; anyone may, within 256 blocks of the reveal.
    @return The winning ticket.
    """
    return convert(self._draw(lottery_id), uint256) % self.lotteries[lottery_id].prize


@internal
def _slash(stamper: address, lottery_id: bytes32, whistleblower: address):
    s: Stamper = self.stampers[stamper]
    # A stamper is slashed once; a withdrawn stamper has nothing left to slash.
    assert not s.slashed, "already slashed"
    assert s.deposit > 0, "nothing to slash"
    reward: uint256 = 0
    if whistleblower != empty(address):
        reward = s.deposit * WHISTLEBLOWER_BPS // BPS
    pool: uint256 = s.deposit * COMPENSATION_BPS // BPS
    burn: uint256 = s.deposit - reward - pool
    self.stampers[stamper] = Stamper(deposit=0, exit_block=s.exit_block, slashed=True)
    self.pools[stamper] += pool
    self.burnt += burn
    log Slashed(
        stamper=stamper, lottery=lottery_id, whistleblower=whistleblower, reward=reward,
        pool=pool, burnt=burn
    )
    if reward > 0:
        raw_call(whistleblower, b"", value=reward)


@nonreentrant
@external
def claim(c: Cheque, payer_sig: Bytes[65], stamp_sig: Bytes[65]) -> uint256:
    """
    @notice Claim a winning cheque. The prize goes to the cheque's recipient,
        whoever sends the transaction. A second winning cheque of the same
        lottery proves the stamper overlapped two ranges: it slashes the
        stamper and compensates this recipient from the slashed deposit.
    @return The amount paid to the recipient.
    """
    lot: Lottery = self.lotteries[c.lottery]
    # The lottery exists.
    assert lot.prize > 0, "no lottery"
    # Claims are open from the block after the reveal for REDEEM_BLOCKS blocks.
    assert block.number > lot.reveal_block, "not revealed"
    assert block.number <= lot.reveal_block + REDEEM_BLOCKS, "redeem window over"
    # The range lies in the ticket space.
    assert self._in_space(c, lot.prize), "range"
    # The payer signed the cheque.
    h: bytes32 = self._cheque_hash(c)
    assert self._recover(self._digest(h), payer_sig) == lot.payer, "not the payer's cheque"
    # The lottery's stamper stamped it.
    assert self._stamp_signer(c, stamp_sig) == lot.stamper, "not stamped by the lottery's stamper"
    # The range holds the winning ticket.
    ticket: uint256 = convert(self._draw(c.lottery), uint256) % lot.prize
    assert c.start <= ticket and ticket - c.start < c.value, "not a winning cheque"
    # The same cheque wins once.
    assert lot.paid_cheque != h, "already claimed"
    if lot.paid_cheque == empty(bytes32):
        self.lotteries[c.lottery].paid_cheque = h
        raw_call(c.recipient, b"", value=lot.prize)
        log Claimed(lottery=c.lottery, cheque=h, recipient=c.recipient, amount=lot.prize)
        return lot.prize
    # A second winning cheque overlaps the paid one at the ticket: the stamper cheated.
    # It is compensated once, from the pool of the slashed deposit.
    assert not self.compensated[h], "already compensated"
    if not self.stampers[lot.stamper].slashed:
        self._slash(lot.stamper, c.lottery, c.recipient)
    amount: uint256 = min(lot.prize, self.pools[lot.stamper])
    # An empty pool pays nothing; the cheque stays unspent rather than burnt for 0.
    assert amount > 0, "pool empty"
    self.pools[lot.stamper] -= amount
    self.compensated[h] = True
    raw_call(c.recipient, b"", value=amount)
    log Compensated(lottery=c.lottery, cheque=h, recipient=c.recipient, amount=amount)
    return amount


@external
def commit_fraud(commitment: bytes32):
    """
    @notice Commit to a fraud proof before revealing it, so that nobody can copy
        the proof from the mempool and take the whistleblower reward.
        commitment = keccak256(abi_encode(whistleblower, cheque_hash_a, cheque_hash_b)).
    """
    # The first commitment counts; a later one cannot move its block forward.
    if self.commitments[commitment] == 0:
        self.commitments[commitment] = block.number


@nonreentrant
@external
def prove_fraud(a: Cheque, stamp_a: Bytes[65], b: Cheque, stamp_b: Bytes[65]):
    """
    @notice Slash a stamper that stamped two different cheques with overlapping
        ranges of one lottery. The sender gets the whistleblower reward if it is
        the recipient of one of the cheques or committed to this proof in an
        earlier block; otherwise its share is burnt with the rest.
    """
    # Both cheques are of the same lottery, which exists.
    assert a.lottery == b.lottery, "different lotteries"
    lot: Lottery = self.lotteries[a.lottery]
    assert lot.prize > 0, "no lottery"
    # They are different cheques.
    ha: bytes32 = self._cheque_hash(a)
    hb: bytes32 = self._cheque_hash(b)
    assert ha != hb, "same cheque"
    # Both ranges lie in the ticket space, and they overlap.
    assert self._in_space(a, lot.prize) and self._in_space(b, lot.prize), "range"
    assert a.start < b.start + b.value and b.start < a.start + a.value, "no overlap"
    # The lottery's stamper stamped both.
    assert self._stamp_signer(a, stamp_a) == lot.stamper, "a not stamped by the lottery's stamper"
    assert self._stamp_signer(b, stamp_b) == lot.stamper, "b not stamped by the lottery's stamper"
    whistleblower: address = empty(address)
    if msg.sender == a.recipient or msg.sender == b.recipient:
        whistleblower = msg.sender
    else:
        committed: uint256 = self.commitments[keccak256(abi_encode(msg.sender, ha, hb))]
        if committed != 0 and committed < block.number:
            whistleblower = msg.sender
    self._slash(lot.stamper, a.lottery, whistleblower)


@nonreentrant
@external
def refund(lottery_id: bytes32):
    """
    @notice Return an unclaimed prize to its payer after the redeem window. Anyone may call.
    """
    lot: Lottery = self.lotteries[lottery_id]
    # The lottery exists.
    assert lot.prize > 0, "no lottery"
    # The redeem window is over.
    assert block.number > lot.reveal_block + REDEEM_BLOCKS, "redeem window open"
    # Nobody won it, and it was not refunded before.
    assert lot.paid_cheque == empty(bytes32) and not lot.refunded, "settled"
    self.lotteries[lottery_id].refunded = True
    raw_call(lot.payer, b"", value=lot.prize)
    log Refunded(lottery=lottery_id, payer=lot.payer, amount=lot.prize)
