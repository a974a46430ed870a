"""The engine settings, read from the one table ``engine/settings.def``.

The C engine builds its parser from the same file (X-macro), so names,
ranges and defaults cannot drift. The engine re-validates everything; this
module validates early so the CLI can say what is wrong before it writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from ufence.engine import settings_table_path
from ufence.errors import UfenceError

_ENTRY = re.compile(
    r'^UF_SETTING\((?P<name>\w+),\s*UF_(?P<kind>INT|BOOL|ENUM|STR),\s*"(?P<default>[^"]*)",\s*'
    r'(?P<min>-?\d+),\s*(?P<max>-?\d+),\s*"(?P<choices>[^"]*)",\s*UF_(?P<flags>LIVE|BOOT),\s*'
    r'"(?P<help>[^"]*)"\)\s*$'
)

_TRUE = {"1", "y", "yes", "on", "true"}
_FALSE = {"0", "n", "no", "off", "false"}


@dataclass(frozen=True)
class Setting:
    index: int
    name: str
    kind: str  # INT | BOOL | ENUM | STR
    default: str
    min: int
    max: int
    choices: tuple[str, ...]
    live: bool
    help: str

    def canonical(self, text: str) -> str:
        """Validate ``text`` and return the engine's canonical form; UfenceError if invalid."""
        t = text.strip()
        if self.kind == "INT":
            try:
                v = int(t, 0)
            except ValueError:
                raise UfenceError(f"{self.name}: {text!r} is not an integer") from None
            if not self.min <= v <= self.max:
                raise UfenceError(f"{self.name}: {v} is out of range [{self.min}, {self.max}]")
            return str(v)
        if self.kind == "BOOL":
            lt = t.lower()
            if lt in _TRUE:
                return "1"
            if lt in _FALSE:
                return "0"
            raise UfenceError(f"{self.name}: {text!r} is not a boolean (use 1/0, on/off)")
        if self.kind == "ENUM":
            if t not in self.choices:
                raise UfenceError(f"{self.name}: {text!r} is not one of {', '.join(self.choices)}")
            return t
        if len(t.encode()) >= 248:
            raise UfenceError(f"{self.name}: value too long (max 247 bytes)")
        if any(ord(c) < 32 for c in t):
            raise UfenceError(f"{self.name}: value contains control characters")
        return t


@cache
def table() -> tuple[Setting, ...]:
    out: list[Setting] = []
    for line in settings_table_path().read_text().splitlines():
        m = _ENTRY.match(line.strip())
        if not m:
            continue
        out.append(
            Setting(
                index=len(out), name=m["name"], kind=m["kind"], default=m["default"],
                min=int(m["min"]), max=int(m["max"]),
                choices=tuple(c for c in m["choices"].split("|") if c),
                live=m["flags"] == "LIVE", help=m["help"],
            )
        )
    if not out:
        raise UfenceError("settings table is empty or unreadable")
    return tuple(out)


def by_name(name: str) -> Setting:
    for s in table():
        if s.name == name:
            return s
    names = ", ".join(s.name for s in table())
    raise UfenceError(f"unknown setting {name!r} (known: {names})")


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``, each validated."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UfenceError(f"expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out
