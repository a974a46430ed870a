"""Load tests/formats/profile.proto into real protobuf message classes, offline.

With ``protoc`` on PATH the .proto is compiled to a descriptor set; without
it, a small parser for the proto3 subset profile.proto uses (package,
messages, optional ``repeated``, scalar and message-typed fields) builds the
same FileDescriptorProto with google.protobuf.descriptor_pb2. Either way the
official protobuf runtime does the decoding, so our encoder is checked
against an independent implementation of the wire format.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PROTO = Path(__file__).with_name("profile.proto")

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "int64": _F.TYPE_INT64, "uint64": _F.TYPE_UINT64, "int32": _F.TYPE_INT32, "uint32": _F.TYPE_UINT32,
    "bool": _F.TYPE_BOOL, "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES, "double": _F.TYPE_DOUBLE,
}


def parse(text: str) -> descriptor_pb2.FileDescriptorProto:
    text = re.sub(r"//[^\n]*", "", text)
    fd = descriptor_pb2.FileDescriptorProto(name=PROTO.name, syntax="proto3")
    pkg = re.search(r"\bpackage\s+([\w.]+)\s*;", text)
    fd.package = pkg.group(1) if pkg else ""
    for name, body in re.findall(r"\bmessage\s+(\w+)\s*\{([^}]*)\}", text):
        msg = fd.message_type.add(name=name)
        for rep, typ, fname, num in re.findall(r"(repeated\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;", body):
            f = msg.field.add(name=fname, number=int(num))
            f.label = _F.LABEL_REPEATED if rep else _F.LABEL_OPTIONAL
            if typ in _SCALARS:
                f.type = _SCALARS[typ]
            else:
                f.type = _F.TYPE_MESSAGE
                f.type_name = f".{fd.package}.{typ}"
    return fd


def _compile_with_protoc() -> descriptor_pb2.FileDescriptorProto | None:
    protoc = shutil.which("protoc")
    if not protoc:
        return None
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "set.pb"
        subprocess.run([protoc, f"-I{PROTO.parent}", f"--descriptor_set_out={out}", PROTO.name],
                       check=True, capture_output=True)
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return fds.file[0]


def profile_class() -> Any:
    """The ``perftools.profiles.Profile`` message class."""
    fd = _compile_with_protoc() or parse(PROTO.read_text())
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{fd.package}.Profile"))
