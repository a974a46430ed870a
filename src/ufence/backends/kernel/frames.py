"""Stack lines as the kernel prints them with ``%pS``.

Forms seen in KFENCE output: `` func+0xoff/0xsize``, `` func+0xoff/0xsize
[module]`` (with a build id when CONFIG_STACKTRACE_BUILD_ID), a bare
`` 0xffffffffc04c00a6`` when no symbol is known, and in ``Call Trace:``
dumps `` ? func+...`` for unreliable frames. The process engine prints the
same shape with C++ and Rust names demangled, so a name may hold spaces and
``+`` (``operator+(Foo const&)+0x1a/0x40``): the offset/size pair at the end
of the name is what ends it.
"""

from __future__ import annotations

import re

from ufence.model import Frame

_SYM = re.compile(
    r"^\s*(?P<unreliable>\? )?(?P<fn>\S.*?)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)"
    r"(?: \[(?P<mod>[^\]\s]+)(?: (?P<bid>[0-9a-f]+))?\])?\s*$"
)
_BARE = re.compile(r"^\s*(?P<unreliable>\? )?0x(?P<pc>[0-9a-f]+)\s*$")


def parse_frame(line: str) -> Frame | None:
    """One stack line -> Frame, or None if the line is not a frame."""
    m = _SYM.match(line)
    if m:
        return Frame(
            function=m["fn"], function_offset=int(m["off"], 16), function_size=int(m["size"], 16),
            module=m["mod"], build_id=m["bid"],
        )
    m = _BARE.match(line)
    if m:
        return Frame(pc=int(m["pc"], 16))
    return None


def is_unreliable(line: str) -> bool:
    """``? func+...`` lines in a Call Trace are guesses from the stack scan."""
    return line.lstrip().startswith("? ")
