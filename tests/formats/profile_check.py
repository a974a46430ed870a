"""Structural checks of a pprof heap profile, decoded by the official protobuf runtime."""

from __future__ import annotations

import gzip
from typing import Any

from protoschema import profile_class


def check_pprof(data: bytes, total_count: int, total_bytes: int) -> Any:
    """Decode gzipped ``data``; assert the heap-profile conventions; return the Profile."""
    assert data[:2] == b"\x1f\x8b", "pprof output must be gzipped"
    prof = profile_class().FromString(gzip.decompress(data))
    st = prof.string_table
    assert st[0] == "", "string_table[0] must be empty"
    assert [(st[t.type], st[t.unit]) for t in prof.sample_type] == [("inuse_objects", "count"),
                                                                     ("inuse_space", "bytes")]
    assert (st[prof.period_type.type], st[prof.period_type.unit]) == ("space", "bytes")
    assert st[prof.default_sample_type] == "inuse_space"
    loc_ids = {loc.id for loc in prof.location}
    fn_ids = {f.id for f in prof.function}
    map_ids = {m.id for m in prof.mapping}
    assert len(loc_ids) == len(prof.location) and 0 not in loc_ids
    for loc in prof.location:
        assert loc.mapping_id == 0 or loc.mapping_id in map_ids
        for line in loc.line:
            assert line.function_id in fn_ids
    for f in prof.function:
        assert 0 < f.name < len(st)
    for s in prof.sample:
        assert s.location_id and all(i in loc_ids for i in s.location_id)
        assert len(s.value) == 2
    assert sum(s.value[0] for s in prof.sample) == total_count
    assert sum(s.value[1] for s in prof.sample) == total_bytes
    return prof


def leaf_function(prof: Any, sample: Any) -> str:
    """Name of the innermost function of a sample (location_id[0] is the leaf)."""
    loc = next(loc for loc in prof.location if loc.id == sample.location_id[0])
    fn = next(f for f in prof.function if f.id == loc.line[0].function_id)
    return str(prof.string_table[fn.name])
