"""The line protocol between the grader and the runner in the sandbox: both ends, one module.

The grader (llmcourse.grading.sandboxrun) writes the *request*; the runner
(llmcourse.grading.sandbox_runner, inside the sandbox) reads it and writes one *signed line*
per code cell; the grader keeps only the lines whose signature is right.

  request: ``<hex key>\\n<notebook JSON>`` then end of input;
  line:    ``<hmac-sha256(key, body) hex> <body>\\n``, body a JSON object: a cell
           ``{"index", "seconds", "outputs", "records", "seq"}`` or ``{"fatal": traceback, "seq"}``;
           ``seq`` counts the runner's lines from 0, ``index`` the cell (the runner reports
           each code cell once, in notebook order).

The key is fresh for every run and never leaves the runner's process; student code in the
kernel can write to the same stream, but a line it forges fails the HMAC and is dropped, as is
a truncated line and a well-signed line that is not the JSON object described. A correctly
signed line counts only if its ``seq`` is higher than that of every line accepted before it,
and a cell's only if its index is too (:func:`read_replies`): a line repeated or moved back in
the stream is dropped, and no cell is reported twice.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field

KEY_BYTES = 32
MAX_OUTPUTS_PER_CELL = 50


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).hexdigest().encode()


# ---------------------------------------------------------------- grader -> runner
def encode_request(key: bytes, notebook_json: str) -> bytes:
    return key.hex().encode() + b"\n" + notebook_json.encode()


def decode_request(data: bytes) -> tuple[bytes, str]:
    """(key, notebook JSON) of a request; ValueError if the key line is not hex."""
    key_line, _, notebook = data.partition(b"\n")
    return bytes.fromhex(key_line.strip().decode()), notebook.decode("utf-8")


# ---------------------------------------------------------------- runner -> grader
def sign(key: bytes, payload: dict, seq: int) -> bytes:
    """One line: the signature, a space, the JSON body (the payload and its sequence number), a newline."""
    body = json.dumps({**payload, "seq": int(seq)}, default=str).encode()
    return _mac(key, body) + b" " + body + b"\n"


def verify(key: bytes, line: bytes) -> dict | None:
    """The body of a correctly signed line as a dict, else None (forged, broken, not an object)."""
    mac, _, body = line.rstrip(b"\n").partition(b" ")
    if not hmac.compare_digest(mac, _mac(key, body)):
        return None
    try:
        msg = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return msg if isinstance(msg, dict) else None


@dataclass
class CellReply:
    """What the runner reported for one code cell."""
    index: int
    outputs: list
    seconds: float
    records: str


@dataclass
class Replies:
    cells: list[CellReply] = field(default_factory=list)   # in the order received
    fatal: str | None = None                                # the runner's own traceback, if it failed


class Signer:
    """The runner's end: signs each payload with the next sequence number."""

    def __init__(self, key: bytes):
        self.key = key
        self.seq = 0

    def line(self, payload: dict) -> bytes:
        out = sign(self.key, payload, self.seq)
        self.seq += 1
        return out


def read_replies(key: bytes, lines) -> Replies:
    """The verified replies among `lines`, in stream order; anything forged, malformed, repeated
    or out of order is skipped (module doc)."""
    out = Replies()
    last_seq, last_index = -1, -1
    for line in lines or []:
        msg = verify(key, line)
        if msg is None:
            continue
        seq = msg.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq <= last_seq:
            continue
        last_seq = seq
        if "fatal" in msg:
            out.fatal = str(msg["fatal"])[-4000:]
            continue
        try:
            reply = CellReply(index=int(msg["index"]),
                              outputs=[o for o in msg.get("outputs", []) if isinstance(o, dict)][:MAX_OUTPUTS_PER_CELL],
                              seconds=float(msg.get("seconds", 0)), records=str(msg.get("records", "")))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            continue
        if reply.index <= last_index:
            continue
        last_index = reply.index
        out.cells.append(reply)
    return out
