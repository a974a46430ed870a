"""A standard-library-heavy Python workload: run under ufence (PYTHONMALLOC=malloc) it must finish with no report."""

from __future__ import annotations

import collections
import decimal
import json
import re
import sqlite3
import threading
import zlib


def text_work(seed: int) -> int:
    words = [f"word{i * seed % 97}" for i in range(3000)]
    doc = {"id": seed, "words": words, "nested": [{"k": i, "v": str(i) * (i % 7)} for i in range(300)]}
    back = json.loads(json.dumps(doc, indent=1, sort_keys=True))
    assert back == doc
    counts = collections.Counter(back["words"])
    pattern = re.compile(r"word(\d)(\d)?")
    hits = sum(1 for w in words if pattern.fullmatch(w))
    dq: collections.deque[int] = collections.deque(maxlen=100)
    for i in range(5000):
        dq.append(i)
    od = collections.OrderedDict((str(i), i) for i in range(500))
    od.move_to_end("3")
    return len(counts) + hits + len(dq) + len(od)


def number_work() -> str:
    decimal.getcontext().prec = 60
    total = decimal.Decimal(0)
    for i in range(1, 2000):
        total += decimal.Decimal(1) / decimal.Decimal(i)
    return str(total.sqrt())


def db_work() -> int:
    con = sqlite3.connect(":memory:")
    con.execute("create table t (id integer primary key, name text, blob blob)")
    con.executemany("insert into t (name, blob) values (?, ?)",
                    [(f"name{i}", zlib.compress(bytes(i % 256 for _ in range(200)))) for i in range(2000)])
    con.execute("create index t_name on t(name)")
    rows = con.execute("select name, length(blob) from t where name like 'name1%' order by name").fetchall()
    for _, blob in con.execute("select name, blob from t limit 100"):
        assert len(zlib.decompress(blob)) == 200
    con.close()
    return len(rows)


def compress_work() -> int:
    data = ("".join(chr(65 + (i * 7) % 26) for i in range(200000))).encode()
    z = zlib.compress(data, 9)
    assert zlib.decompress(z) == data
    c = zlib.compressobj()
    chunks = [c.compress(data[i:i + 4096]) for i in range(0, len(data), 4096)] + [c.flush()]
    return len(b"".join(chunks))


def main() -> None:
    results: dict[str, object] = {}
    lock = threading.Lock()

    def job(name: str, fn, *args) -> None:  # type: ignore[no-untyped-def]
        value = fn(*args)
        with lock:
            results[name] = value

    threads = [threading.Thread(target=job, args=(f"text{i}", text_work, i + 1)) for i in range(4)]
    threads += [threading.Thread(target=job, args=("db", db_work)),
                threading.Thread(target=job, args=("zlib", compress_work))]
    for t in threads:
        t.start()
    results["decimal"] = number_work()
    for t in threads:
        t.join()
    assert len(results) == 7, results
    print("results", len(results))
    print("done")


if __name__ == "__main__":
    main()
