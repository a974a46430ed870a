"""The demangler the engine's text reports use (engine/src/demangle.c, demangle_v0.c), on its own.

It runs in the signal handler, so it is a small allocation-free one of the
engine's own; c++filt is the oracle. Every name it demangles must read
exactly as c++filt prints it (with std::string for the basic_string
abbreviation, as gdb prints it), it must cover nearly every function in
libstdc++, and no input may crash it (built with ASan and UBSan here).
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ENGINE = HERE.parents[1] / "engine"
LIBSTDCXX = Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")
# typeinfo, vtables, guard variables, transaction clones: never a code address in a stack
SPECIAL = re.compile(r"^_Z(?:T|GV|GT)")
SHORT = {
    "std::basic_string<char, std::char_traits<char>, std::allocator<char> >": "std::string",
    "std::basic_istream<char, std::char_traits<char> >": "std::istream",
    "std::basic_ostream<char, std::char_traits<char> >": "std::ostream",
    "std::basic_iostream<char, std::char_traits<char> >": "std::iostream",
}


@pytest.fixture(scope="module")
def demangler(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("demangle") / "demangle"
    subprocess.run(["gcc", "-D_GNU_SOURCE", "-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g",
                    "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                    f"-I{ENGINE / 'src'}", f"-I{ENGINE}", f"-I{ENGINE / 'include'}", "-o", str(exe),
                    str(HERE / "progs" / "demangle_main.c"), str(ENGINE / "src" / "demangle.c"),
                    str(ENGINE / "src" / "demangle_v0.c"), str(ENGINE / "src" / "fmt.c")],
                   check=True, capture_output=True, text=True, timeout=120)
    return exe


def demangle(exe: Path, names: list[str]) -> list[str | None]:
    p = subprocess.run([str(exe)], input="".join(n + "\n" for n in names), capture_output=True, text=True,
                       timeout=120, check=True)
    out = p.stdout.splitlines()
    assert len(out) == len(names), p.stderr
    return [None if o.startswith("!") else o for o in out]


def normal(s: str) -> str:
    for full, short in SHORT.items():
        s = s.replace(full, short)
    return s.replace(" >", ">")


def test_every_name_reads_as_cxxfilt_prints_it(demangler: Path) -> None:
    if not shutil.which("c++filt") or not LIBSTDCXX.exists():
        pytest.skip("needs binutils' c++filt and libstdc++")
    nm = subprocess.run(["nm", "-D", "--defined-only", str(LIBSTDCXX)], capture_output=True, text=True,
                        check=True).stdout
    names = sorted({ln.split()[-1].split("@")[0] for ln in nm.splitlines() if " _Z" in ln})
    funcs = [n for n in names if not SPECIAL.match(n)]
    assert len(funcs) > 3000
    theirs = subprocess.run(["c++filt"], input="\n".join(funcs) + "\n", capture_output=True, text=True,
                            check=True).stdout.splitlines()
    ours = demangle(demangler, funcs)
    wrong = [(n, o, t) for n, o, t in zip(funcs, ours, theirs, strict=True) if o is not None and normal(o) != normal(t)]
    assert not wrong, "\n".join(f"{n}\n  ours:     {o}\n  c++filt:  {t}" for n, o, t in wrong[:10])
    done = sum(o is not None for o in ours)
    assert done >= 0.95 * len(funcs), f"demangled {done} of {len(funcs)}"


def test_names_a_report_is_made_of(demangler: Path) -> None:
    cases = {
        "_Z10make_orderl": "make_order(long)",
        "_Znwm": "operator new(unsigned long)",
        "_ZdlPvm": "operator delete(void*, unsigned long)",
        "_ZN5Store6insertERKS_": "Store::insert(Store const&)",
        "_ZN5StoreC2Ev": "Store::Store()",
        "_ZN5StoreD0Ev": "Store::~Store()",
        "_ZNKSt6vectorIiSaIiEE4sizeEv": "std::vector<int, std::allocator<int> >::size() const",
        "_Z3maxIiET_S0_S0_": "int max<int>(int, int)",
        "_ZN3foo3barEi.constprop.0": "foo::bar(int) [clone .constprop.0]",
        # vector growth, the allocation under most C++ push_back/emplace_back: packs and their expansion
        "_ZNSt6vectorIiSaIiEE17_M_realloc_insertIJRKiEEEvN9__gnu_cxx17__normal_iteratorIPiS1_EEDpOT_":
            "void std::vector<int, std::allocator<int> >::_M_realloc_insert<int const&>(__gnu_cxx::__normal_iterator"
            "<int*, std::vector<int, std::allocator<int> > >, int const&)",
        "_ZNSt6vectorIiSaIiEE12emplace_backIJEEERiDpOT_":
            "int& std::vector<int, std::allocator<int> >::emplace_back<>()",
        "_Z1fIJicEEvDpT_": "void f<int, char>(int, char)",
        # lambdas and other names local to a function (std::function, algorithms, threads run them)
        "_ZZ4mainENKUlvE_clEv": "main::{lambda()#1}::operator()() const",
        "_ZZ3foovENKUliE0_clEi": "foo()::{lambda(int)#2}::operator()(int) const",
        "_ZZ3maxIiET_S0_S0_ENKUlvE_clEv": "max<int>(int, int)::{lambda()#1}::operator()() const",
        # function types: callbacks, std::function
        "_ZNSolsEPFRSoS_E": "std::ostream::operator<<(std::ostream& (*)(std::ostream&))",
        "_Z1fPPFviE": "f(void (**)(int))",
        "_Z1fSt8functionIFvvEE": "f(std::function<void ()>)",
        "_Z1fPFvvES0_": "f(void (*)(), void (*)())",
        "_Z1fM3FooKFviE": "f(void (Foo::*)(int) const)",
        "_Z1fM3Fooi": "f(int Foo::*)",
        # Rust's legacy scheme: the hash dropped, the escapes decoded, LLVM's suffix dropped
        "_ZN8rust_uaf13stale_pointer17h0123456789abcdefE": "rust_uaf::stale_pointer",
        "_ZN4core3ptr13drop_in_place17h0123456789abcdefE.llvm.1234": "core::ptr::drop_in_place",
        "_ZN70_$LT$alloc..vec..Vec$LT$T$C$A$GT$$u20$as$u20$core..ops..drop..Drop$GT$4drop17h0123456789abcdefE":
            "<alloc::vec::Vec<T,A> as core::ops::drop::Drop>::drop",
        "_ZN8caf$ue9$3bar17h0123456789abcdefE": "caf\u00e9::bar",
        # v0, as the standard library ships: impls, generics, closures, backrefs, consts, dyn
        "_RNvCs1234_7mycrate4main": "mycrate::main",
        "_RINvNtCsgEmfK2I1SDS_4core3ptr13drop_in_placeINtNtCslNYArtu3iFV_5alloc3vec3VechEEB4_":
            "core::ptr::drop_in_place::<alloc::vec::Vec<u8>>",
        "_RNCNvCs1234_7mycrate4main0B3_": "mycrate::main::{closure#0}",
        "_RNvXsV_NtCsgEmfK2I1SDS_4core5arrayAhj4_NtNtB7_7default7Default7defaultCsfEOYDRpO4Ta_11miniz_oxide":
            "<[u8; 4] as core::default::Default>::default",
    }
    # beyond what it reads: the report keeps the symbol (lambdas, packs, plain C names)
    refused = ["main", "_Z1fPKFviE", "_Z1fIXadL_Z1gvEEEvv", "_Z", "_ZN3foo", "_R4main", "_RNvB_3foo",
               "_RNvCs_u3foo"]
    names = list(cases) + refused
    got = demangle(demangler, names)
    assert got[: len(cases)] == list(cases.values())
    assert got[len(cases):] == [None] * len(refused)


def test_rust_names_from_rustc(demangler: Path, tmp_path: Path) -> None:
    from test_unwind import rustc
    rc = rustc()
    if rc is None or not shutil.which("c++filt"):
        pytest.skip("rustc or c++filt not installed")
    src = tmp_path / "m.rs"
    src.write_text("use std::collections::HashMap;\nfn main() { let mut m = HashMap::new();\n"
                   "for i in 0..10 { m.insert(i, vec![i; 3]); }\nprintln!(\"{}\", m.len()); }\n")
    exe = tmp_path / "m"
    subprocess.run([rc, "-C", "opt-level=0", "-o", str(exe), str(src)],
                   check=True, capture_output=True, text=True, timeout=300)
    nm = subprocess.run(["nm", str(exe)], capture_output=True, text=True, check=True).stdout
    # the crate's own code in the legacy scheme (stable rustc's default), the standard library's in v0
    legacy = sorted({ln.split()[-1] for ln in nm.splitlines() if " _ZN" in ln})
    v0 = sorted({ln.split()[-1] for ln in nm.splitlines() if " _R" in ln})
    assert len(legacy) + len(v0) > 50
    for names in (legacy, v0):
        theirs = subprocess.run(["c++filt"], input="\n".join(names) + "\n", capture_output=True, text=True,
                                check=True).stdout.splitlines()
        ours = demangle(demangler, names)
        assert all(o is not None for o in ours), [n for n, o in zip(names, ours, strict=True) if o is None][:5]
        # c++filt keeps the hashes (and gives up on some); where it answers, the rest must agree
        for n, o, t in zip(names, ours, theirs, strict=True):
            if t.startswith(("_Z", "_R")):
                continue
            t = re.sub(r"::h[0-9a-f]{16}$", "", t.split(".llvm.")[0])      # legacy: the hash
            t = re.sub(r"\[[0-9a-f]+\]", "", t)                               # v0: crates' disambiguators
            t = re.sub(r"(\d+): [ui](?:8|16|32|64|128|size)\b", r"\1", t)    # v0: const generics' types
            assert o == t, n


def test_no_input_breaks_it(demangler: Path) -> None:
    """Cut and mutated real names and random strings: answered or refused, never a crash (ASan/UBSan)."""
    if not LIBSTDCXX.exists():
        pytest.skip("needs libstdc++")
    nm = subprocess.run(["nm", "-D", "--defined-only", str(LIBSTDCXX)], capture_output=True, text=True,
                        check=True).stdout
    real = sorted({ln.split()[-1].split("@")[0] for ln in nm.splitlines() if " _Z" in ln})[:3000]
    rng = random.Random(7)
    alphabet = "0123456789_ZNEISKRPOVLCDTJXSaEbcdijlmvxy$."
    inputs = []
    for s in real:
        inputs += [s[:k] for k in range(2, len(s), max(1, len(s) // 8))]
        for _ in range(3):
            t = list(s)
            for _ in range(3):
                t[rng.randrange(len(t))] = rng.choice(alphabet)
            inputs.append("".join(t))
    inputs += ["_Z" + "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 60))) for _ in range(20000)]
    inputs += ["_Z" + "P" * 5000 + "i", "_ZN" + "3foo" * 700 + "Ev", "_Z3fooI" + "I" * 200 + "i" + "E" * 201 + "v",
               "_ZN" + "S_" * 100 + "E", "_Z3fooIT_T0_T1_EvS_S0_S1_", "_R" + "R" * 5000 + "u", "_RB_",
               "_RNvCs_3foo" + "B" * 100]
    v0 = ["_RINvNtCsgEmfK2I1SDS_4core3ptr13drop_in_placeINtNtCslNYArtu3iFV_5alloc3vec3VechEEB4_",
          "_RNvXsV_NtCsgEmfK2I1SDS_4core5arrayAhj4_NtNtB7_7default7Default7defaultCsfEOYDRpO4Ta_11miniz_oxide"]
    for s in v0:
        inputs += [s[:k] for k in range(2, len(s))]
        for _ in range(2000):
            t = list(s)
            for _ in range(3):
                t[rng.randrange(2, len(t))] = rng.choice("0123456789_RNCMXYIBEKLGUFDTAPOQSsupvjhe")
            inputs.append("".join(t))
    inputs += ["_R" + "".join(rng.choice("0123456789_RNCMXYIBEKLGUFDTAPOQSsupvjhe") for _ in range(40))
               for _ in range(10000)]
    got = demangle(demangler, inputs)
    assert sum(g is not None for g in got) > 1000     # the cut names that are still whole names
