"""A minimal protobuf wire-format writer (proto3 encoding rules).

Enough for profile.proto: varints, zigzag-free int64/uint64 (proto ``int64``
encodes negatives as 10-byte two's complement varints), packed repeated
scalars, length-delimited strings and nested messages. Written here because
no maintained pure-Python protobuf *writer* without generated code exists,
and pprof output must not depend on protoc at run time.

Usage: build a ``Message``, append fields in field-number order, ``bytes()``.
"""

from __future__ import annotations

from collections.abc import Iterable

_VARINT = 0
_LEN = 2


def varint(v: int) -> bytes:
    """Base-128 varint; negative ints as 64-bit two's complement (proto int64)."""
    if v < 0:
        v += 1 << 64
    out = bytearray()
    while v > 0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _tag(field: int, wire: int) -> bytes:
    return varint((field << 3) | wire)


class Message:
    """An encoded message under construction. Zero/empty scalars are omitted, as proto3 does."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def num(self, field: int, v: int | None) -> Message:
        """int64 / uint64 / bool scalar."""
        if v:
            self._buf += _tag(field, _VARINT) + varint(int(v))
        return self

    def flag(self, field: int, v: bool) -> Message:
        return self.num(field, 1 if v else 0)

    def raw(self, field: int, v: bytes) -> Message:
        """Length-delimited; written even when empty when it is a repeated entry (see ``text``)."""
        self._buf += _tag(field, _LEN) + varint(len(v)) + v
        return self

    def text(self, field: int, v: str, always: bool = False) -> Message:
        if v or always:
            self.raw(field, v.encode("utf-8", "surrogateescape"))
        return self

    def sub(self, field: int, m: Message) -> Message:
        """Embedded message (written even when empty: presence matters for repeated entries)."""
        return self.raw(field, bytes(m._buf))

    def packed(self, field: int, values: Iterable[int]) -> Message:
        body = b"".join(varint(int(v)) for v in values)
        if body:
            self.raw(field, body)
        return self

    def __bytes__(self) -> bytes:
        return bytes(self._buf)

    def __len__(self) -> int:
        return len(self._buf)
