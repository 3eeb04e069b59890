"""The line protocol between the grader and the runner in the sandbox: both ends, one module.

The grader (llmcourse.grading.sandboxrun) writes the *request*; the runner
(llmcourse.grading.sandbox_runner, inside the sandbox) reads it and writes one *signed line*
per code cell; the grader keeps only the lines whose signature is right.

  request: ``<hex key>\\n<notebook JSON>`` then end of input;
  line:    ``<hmac-sha256(key, body) hex> <body>\\n``, body a JSON object: a cell
           ``{"index", "seconds", "outputs", "records"}`` or ``{"fatal": traceback}``.

The key is fresh for every run and never leaves the runner's process; student code in the
kernel can write to the same stream, but a line it forges fails the HMAC and is dropped, as is
a well-signed line that is not the JSON object described (:func:`read_replies`).
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
def sign(key: bytes, payload: dict) -> bytes:
    """One line: the signature, a space, the JSON body, a newline."""
    body = json.dumps(payload, default=str).encode()
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


def read_replies(key: bytes, lines) -> Replies:
    """The verified replies among `lines`; anything forged or malformed is skipped."""
    out = Replies()
    for line in lines or []:
        msg = verify(key, line)
        if msg is None:
            continue
        if "fatal" in msg:
            out.fatal = str(msg["fatal"])[-4000:]
            continue
        try:
            reply = CellReply(index=int(msg["index"]),
                              outputs=[o for o in msg.get("outputs", []) if isinstance(o, dict)][:MAX_OUTPUTS_PER_CELL],
                              seconds=float(msg.get("seconds", 0)), records=str(msg.get("records", "")))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            continue
        out.cells.append(reply)
    return out
