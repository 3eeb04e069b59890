"""Unit tests of the line protocol between the grader and the runner in the sandbox (both ends)."""
from __future__ import annotations

import json
import socket

import pytest

from llmcourse.grading import protocol

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def cell(index: int, records: str = "", outputs=None, seconds: float = 0.5) -> dict:
    return {"index": index, "seconds": seconds, "outputs": outputs if outputs is not None else [], "records": records}


def lines(*payloads, key=KEY) -> list[bytes]:
    return [protocol.sign(key, p, seq) for seq, p in enumerate(payloads)]


# ------------------------------------------------------------------ the request
def test_the_request_carries_the_key_and_the_notebook():
    nb = json.dumps({"cells": [{"source": "print('héllo\\n')"}]}, ensure_ascii=False)
    key, text = protocol.decode_request(protocol.encode_request(KEY, nb))
    assert key == KEY and text == nb


def test_a_request_without_a_hex_key_is_refused():
    with pytest.raises(ValueError):
        protocol.decode_request(b"not-hex\n{}")


def test_every_run_gets_a_fresh_key():
    keys = {protocol.new_key() for _ in range(20)}
    assert len(keys) == 20 and all(len(k) == protocol.KEY_BYTES for k in keys)


# ------------------------------------------------------------------ one line
def test_a_signed_line_verifies_to_its_payload_and_sequence_number():
    line = protocol.sign(KEY, cell(3, "r"), 7)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert protocol.verify(KEY, line) == dict(cell(3, "r"), seq=7)


def test_a_line_signed_with_another_key_is_rejected():
    assert protocol.verify(KEY, protocol.sign(OTHER, cell(0), 0)) is None


def test_an_edited_body_or_signature_is_rejected():
    line = protocol.sign(KEY, cell(0, "test_a/x"), 0)
    mac, body = line.split(b" ", 1)
    assert protocol.verify(KEY, mac + b" " + body.replace(b"test_a/x", b"test_a/y")) is None
    flipped = bytes([mac[0] ^ 1]) + mac[1:]
    assert protocol.verify(KEY, flipped + b" " + body) is None
    assert protocol.verify(KEY, body) is None, "a body without its signature"
    assert protocol.verify(KEY, b"") is None


def test_a_truncated_line_is_rejected_wherever_it_is_cut():
    line = protocol.sign(KEY, cell(2, "x" * 40), 0)
    for cut in range(len(line) - 1):          # everything short of the whole line (the newline is optional)
        assert protocol.verify(KEY, line[:cut]) is None, cut
    assert protocol.verify(KEY, line.rstrip(b"\n")) is not None


def test_a_correctly_signed_body_that_is_no_json_object_is_rejected():
    for body in (b"[1, 2]", b"\"text\"", b"{not json", b"[" * 10000 + b"]" * 10000):
        mac = protocol._mac(KEY, body)
        assert protocol.verify(KEY, mac + b" " + body) is None, body[:20]


# ------------------------------------------------------------------ the replies
def test_good_lines_are_read_in_order():
    got = protocol.read_replies(KEY, lines(cell(1, "a"), cell(4, "b", [{"output_type": "stream"}], 1.25)))
    assert [(c.index, c.records, c.seconds) for c in got.cells] == [(1, "a", 0.5), (4, "b", 1.25)]
    assert got.cells[1].outputs == [{"output_type": "stream"}] and got.fatal is None


def test_a_forged_line_among_good_ones_is_dropped():
    good = lines(cell(1, "a"), cell(2, "b"))
    forged = protocol.sign(OTHER, cell(2, "test_x/v forged"), 1)
    got = protocol.read_replies(KEY, [good[0], forged, good[1], b"garbage line\n", b"\xff\xfe"])
    assert [(c.index, c.records) for c in got.cells] == [(1, "a"), (2, "b")]


def test_a_replayed_line_counts_once():
    good = lines(cell(1, "a"), cell(2, "b"))
    got = protocol.read_replies(KEY, [good[0], good[0], good[1], good[1], good[0]])
    assert [(c.index, c.records) for c in got.cells] == [(1, "a"), (2, "b")]


def test_lines_out_of_order_are_rejected():
    first, second, third = lines(cell(1, "a"), cell(2, "b"), cell(3, "c"))
    got = protocol.read_replies(KEY, [second, first, third])
    assert [c.index for c in got.cells] == [2, 3], "an older line after a newer one is dropped"


def test_a_cell_reported_twice_or_backwards_is_rejected():
    got = protocol.read_replies(KEY, lines(cell(2, "a"), cell(2, "again"), cell(1, "back"), cell(5, "c")))
    assert [(c.index, c.records) for c in got.cells] == [(2, "a"), (5, "c")]


def test_a_lost_line_does_not_lose_the_ones_after_it():
    a, _lost, c = lines(cell(1, "a"), cell(2, "b"), cell(3, "c"))
    assert [x.index for x in protocol.read_replies(KEY, [a, c]).cells] == [1, 3]


def test_a_line_without_a_sequence_number_is_rejected():
    body = json.dumps(cell(1, "a")).encode()
    assert protocol.read_replies(KEY, [protocol._mac(KEY, body) + b" " + body]).cells == []


def test_malformed_cell_replies_are_skipped_and_outputs_capped():
    many = [{"output_type": "stream", "text": str(i)} for i in range(80)] + ["not a dict", 3]
    got = protocol.read_replies(KEY, lines({"index": "x"}, {"seconds": 1}, {"index": 1, "outputs": 5},
                                           cell(2, outputs=many), {"index": 3, "seconds": "slow"}))
    assert [c.index for c in got.cells] == [2]
    assert len(got.cells[0].outputs) == protocol.MAX_OUTPUTS_PER_CELL
    assert all(isinstance(o, dict) for o in got.cells[0].outputs)


def test_the_runners_fatal_error_is_kept_capped():
    got = protocol.read_replies(KEY, lines(cell(0), {"fatal": "Traceback\n" + "x" * 10000}))
    assert got.fatal is not None and len(got.fatal) == 4000 and got.fatal.endswith("x")
    assert [c.index for c in got.cells] == [0]
    assert protocol.read_replies(KEY, None).cells == []


# ------------------------------------------------------------------ both ends
def test_what_the_runner_emits_the_grader_reads():
    from llmcourse.grading.sandbox_runner import Emitter
    a, b = socket.socketpair()
    try:
        emitter = Emitter(KEY, a)
        emitter.emit(cell(0, "r0"))
        emitter.emit(cell(2, "r2"))
        emitter.emit({"fatal": "boom"})
        a.shutdown(socket.SHUT_WR)
        data = b.makefile("rb").read()
    finally:
        a.close()
        b.close()
    got = protocol.read_replies(KEY, data.splitlines(keepends=True))
    assert [(c.index, c.records) for c in got.cells] == [(0, "r0"), (2, "r2")] and got.fatal == "boom"
    assert protocol.read_replies(OTHER, data.splitlines(keepends=True)).cells == []
