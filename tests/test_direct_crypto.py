"""Direct link crypto, sans-I/O: handshake both roles in memory, records, bounds."""

from __future__ import annotations

import pytest
from hotlink.agent.direct.handshake import (
    HELLO_BYTES,
    LENGTH_BYTES,
    MAGIC,
    Established,
    Failed,
    InitiatorHandshake,
    ResponderHandshake,
)
from hotlink.agent.direct.keys import DirectBinding, LocalKey, link_tag
from hotlink.agent.direct.records import (
    HEADER_BYTES,
    MAX_CIPHERTEXT,
    MAX_PAYLOAD,
    RecordCodec,
    RecordError,
)

BINDING = DirectBinding(sid="sid-1", sender="a@x.org", reader="b@x.org", leg="leg-1")


def _pair(binding: DirectBinding = BINDING, expected_binding: DirectBinding | None = None):
    """(initiator, responder, init key, resp key) with the responder expecting the initiator."""
    ki, kr = LocalKey.generate(), LocalKey.generate()
    table = {link_tag(kr.public, ki.public): (kr, ki.public, expected_binding or binding)}
    init = InitiatorHandshake(ki, kr.public, binding, now=0.0)
    resp = ResponderHandshake(table.get, now=0.0)
    return init, resp, ki, kr


def _run(init: InitiatorHandshake, resp: ResponderHandshake) -> None:
    resp.receive_data(init.data_to_send())
    init.receive_data(resp.data_to_send())
    resp.receive_data(init.data_to_send())


def _codecs() -> tuple[RecordCodec, RecordCodec]:
    init, resp, _, _ = _pair()
    _run(init, resp)
    assert isinstance(init.result, Established) and isinstance(resp.result, Established)
    return init.result.codec, resp.result.codec


def test_handshake_both_roles_then_records_both_ways() -> None:
    init, resp, ki, _ = _pair()
    _run(init, resp)
    assert isinstance(init.result, Established) and isinstance(resp.result, Established)
    assert resp.result.binding == BINDING and resp.result.peer_public == ki.public
    assert init.get_timer() is None and resp.get_timer() is None
    a, b = init.result.codec, resp.result.codec
    assert b.feed(a.seal(b"to responder")) == [b"to responder"]
    assert a.feed(b.seal(b"to initiator")) == [b"to initiator"]
    # a record sealed for one direction does not open in the other (no reflection)
    with pytest.raises(RecordError):
        a.feed(a.seal(b"reflected"))


def test_handshake_byte_by_byte_and_trailing_records() -> None:
    init, resp, _, _ = _pair()
    for byte in init.data_to_send():
        resp.receive_data(bytes([byte]))
    for byte in resp.data_to_send():
        init.receive_data(bytes([byte]))
    assert isinstance(init.result, Established)
    first = init.result.codec.seal(b"early")
    resp.receive_data(init.data_to_send() + first)
    assert isinstance(resp.result, Established)
    assert resp.result.codec.feed(resp.trailing_data) == [b"early"]


def test_wrong_initiator_key_fails_on_the_responder_and_vice_versa() -> None:
    ki, kr, mallory = LocalKey.generate(), LocalKey.generate(), LocalKey.generate()
    # Mallory knows both public halves and sends the right tag, but holds neither key.
    table = {link_tag(kr.public, ki.public): (kr, ki.public, BINDING)}
    resp = ResponderHandshake(table.get, now=0.0)
    fake = InitiatorHandshake(mallory, kr.public, BINDING, now=0.0)
    hello = bytearray(fake.data_to_send())
    tag_at = LENGTH_BYTES + len(MAGIC) + 1
    hello[tag_at : tag_at + 16] = link_tag(kr.public, ki.public)
    resp.receive_data(bytes(hello))
    reply = resp.data_to_send()
    assert reply and resp.result is None
    fake.receive_data(reply)  # mallory cannot verify the responder (other shared key) ...
    assert isinstance(fake.result, Failed)
    resp.receive_data(len(b"x" * 32).to_bytes(2, "big") + b"x" * 32)  # ... nor forge MAC_i
    assert isinstance(resp.result, Failed) and "initiator MAC" in resp.result.reason

    # a responder without the expected private key: the initiator refuses its reply
    init = InitiatorHandshake(ki, kr.public, BINDING, now=0.0)
    impostor = ResponderHandshake(lambda tag: (mallory, ki.public, BINDING), now=0.0)
    impostor.receive_data(init.data_to_send())
    init.receive_data(impostor.data_to_send())
    assert isinstance(init.result, Failed) and "responder MAC" in init.result.reason
    assert init.data_to_send() == b""


@pytest.mark.parametrize("field", ["sid", "sender", "reader", "leg"])
def test_other_sessions_binding_fails(field: str) -> None:
    other = DirectBinding(**{**{f: getattr(BINDING, f) for f in BINDING.__slots__}, field: "z"})
    init, resp, _, _ = _pair(BINDING, expected_binding=other)
    _run(init, resp)
    assert isinstance(init.result, Failed)
    assert resp.result is None or isinstance(resp.result, Failed)


def test_unknown_tag_garbage_and_bad_lengths_fail_without_reply() -> None:
    resp = ResponderHandshake(lambda tag: None, now=0.0)
    init = InitiatorHandshake(LocalKey.generate(), LocalKey.generate().public, BINDING, now=0.0)
    resp.receive_data(init.data_to_send())
    assert isinstance(resp.result, Failed) and "no link expected" in resp.result.reason
    assert resp.data_to_send() == b""

    for garbage in (b"GET / HTTP/1.1\r\n\r\n", b"\xff\xff" + b"A" * 100, b"\x00\x00"):
        resp = ResponderHandshake(lambda tag: pytest.fail("looked up garbage"), now=0.0)
        resp.receive_data(garbage)
        assert isinstance(resp.result, Failed), garbage
        assert resp.data_to_send() == b""

    bad_magic = (HELLO_BYTES).to_bytes(2, "big") + b"XXXX" + bytes(HELLO_BYTES - 4)
    resp = ResponderHandshake(lambda tag: None, now=0.0)
    resp.receive_data(bad_magic)
    assert isinstance(resp.result, Failed) and "magic" in resp.result.reason


def test_truncated_handshake_times_out() -> None:
    init, resp, _, _ = _pair()
    resp.receive_data(init.data_to_send()[:-1])
    assert resp.result is None
    deadline = resp.get_timer()
    assert deadline is not None
    resp.handle_timer(deadline - 0.001)
    assert resp.result is None
    resp.handle_timer(deadline)
    assert isinstance(resp.result, Failed) and "in time" in resp.result.reason
    init.handle_timer(init.get_timer() or 0.0)
    assert isinstance(init.result, Failed)


def test_replayed_handshake_gets_fresh_nonce_and_fails() -> None:
    init, resp, _, kr = _pair()
    hello = init.data_to_send()
    resp.receive_data(hello)
    reply = resp.data_to_send()
    init.receive_data(reply)
    confirm = init.data_to_send()
    resp.receive_data(confirm)
    assert isinstance(resp.result, Established)
    # an eavesdropper replays both recorded messages to a responder still expecting them
    table = {resp.tag: (kr, init._key.public, BINDING)}
    again = ResponderHandshake(table.get, now=0.0)
    again.receive_data(hello)
    assert again.data_to_send() != reply  # fresh responder nonce
    again.receive_data(confirm)
    assert isinstance(again.result, Failed)


def test_low_order_peer_key_is_refused() -> None:
    init = InitiatorHandshake(LocalKey.generate(), bytes(32), BINDING, now=0.0)
    resp = ResponderHandshake(lambda tag: (LocalKey.generate(), bytes(32), BINDING), now=0.0)
    resp.receive_data(init.data_to_send())
    assert isinstance(resp.result, Failed)


def test_replayed_reordered_truncated_tampered_records_fail() -> None:
    a, b = _codecs()
    r0, r1 = a.seal(b"zero"), a.seal(b"one")
    assert b.feed(r0) == [b"zero"]
    with pytest.raises(RecordError, match="authentication"):
        b.feed(r0)  # replayed
    with pytest.raises(RecordError, match="already failed"):
        b.feed(r1)  # a broken stream stays broken

    a, b = _codecs()
    r0, r1 = a.seal(b"zero"), a.seal(b"one")
    with pytest.raises(RecordError):
        b.feed(r1 + r0)  # reordered

    a, b = _codecs()
    r0, r1 = a.seal(b"zero"), a.seal(b"one")
    assert b.feed(r1[:-1]) == []  # truncated: waits for the rest, delivers nothing
    assert b.buffered() == len(r1) - 1

    a, b = _codecs()
    r0 = a.seal(b"zero-payload")
    for index in range(len(r0)):
        a2, b2 = _codecs()
        record = bytearray(a2.seal(b"zero-payload"))
        record[index] ^= 0x01
        with pytest.raises(RecordError):
            out = b2.feed(bytes(record))
            if not out:  # a flipped length bit makes it wait; completed, the tag fails
                b2.feed(bytes(MAX_CIPHERTEXT))
            raise AssertionError(f"tampered byte {index} was not rejected")

    a, b = _codecs()
    r0 = a.seal(b"zero")
    with pytest.raises(RecordError):
        b.feed(r0[:-1] + a.seal(b"one"))  # a record cut short and the next one glued on


def test_records_split_and_batched_in_order() -> None:
    a, b = _codecs()
    payloads = [bytes([i]) * i for i in range(200)]
    stream = b"".join(a.seal(p) for p in payloads)
    got: list[bytes] = []
    for cut in range(0, len(stream), 7):
        got += b.feed(memoryview(stream)[cut : cut + 7])
    assert got == payloads and b.buffered() == 0 and b.received == 200


def test_counter_limit_refuses_instead_of_wrapping() -> None:
    limited = RecordCodec(b"k" * 32, b"j" * 32, max_records=3)
    peer = RecordCodec(b"j" * 32, b"k" * 32, max_records=3)
    records = [limited.seal(b"x") for _ in range(3)]
    with pytest.raises(RecordError, match="exhausted"):
        limited.seal(b"x")
    assert peer.feed(b"".join(records)) == [b"x"] * 3
    with pytest.raises(RecordError, match="exhausted"):
        peer.feed(RecordCodec(b"k" * 32, b"j" * 32).seal(b"x"))


def test_key_byte_budget_refuses_instead_of_overusing_the_key() -> None:
    """Past its byte budget a direction refuses to seal (the link is then replaced by
    a fresh handshake); what it sealed before still opens at the peer."""
    from hotlink.agent.direct.records import MAX_KEY_BYTES, CounterExhausted

    a, b = _codecs()
    assert a.send_byte_limit == MAX_KEY_BYTES == 2**39
    a.send_byte_limit = 10
    records = [a.seal(b"12345"), a.seal(b"12345")]
    with pytest.raises(CounterExhausted, match="10-byte budget"):
        a.seal(b"x")
    assert b.feed(b"".join(records)) == [b"12345", b"12345"]
    with pytest.raises(ValueError, match="positive"):
        a.send_byte_limit = 0


def test_key_budget_from_env() -> None:
    from hotlink.agent.direct.records import MAX_KEY_BYTES
    from hotlink.agent.direct.service import key_budget_from_env

    assert key_budget_from_env({}) == MAX_KEY_BYTES
    assert key_budget_from_env({"HOTLINK_DIRECT_KEY_BYTES": "1MiB"}) == 1 << 20
    assert key_budget_from_env({"HOTLINK_DIRECT_KEY_BYTES": "4TiB"}) == MAX_KEY_BYTES  # a cap
    for bad in ("lots", "1k"):
        with pytest.raises(ValueError, match="HOTLINK_DIRECT_KEY_BYTES"):
            key_budget_from_env({"HOTLINK_DIRECT_KEY_BYTES": bad})


def test_bounds() -> None:
    a, b = _codecs()
    with pytest.raises(RecordError, match="exceeds"):
        a.seal(bytes(MAX_PAYLOAD + 1))
    big = a.seal(bytes(MAX_PAYLOAD))
    assert b.feed(big) == [bytes(MAX_PAYLOAD)]
    a, b = _codecs()
    with pytest.raises(RecordError, match="outside"):
        b.feed((MAX_CIPHERTEXT + 1).to_bytes(HEADER_BYTES, "big"))
    a, b = _codecs()
    with pytest.raises(RecordError, match="outside"):
        b.feed((15).to_bytes(HEADER_BYTES, "big") + bytes(15))
    with pytest.raises(ValueError):
        RecordCodec(b"k" * 32, b"k" * 32)


def test_public_key_parsing_errors_are_clear() -> None:
    key = LocalKey.generate()
    assert LocalKey.parse_public(key.public_b64()) == key.public
    with pytest.raises(ValueError, match="base64"):
        LocalKey.parse_public("not base64!!")
    with pytest.raises(ValueError, match="32 bytes"):
        LocalKey.parse_public("AAAA")
    with pytest.raises(ValueError, match="string"):
        LocalKey.parse_public(None)  # type: ignore[arg-type]
