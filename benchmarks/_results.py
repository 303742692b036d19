"""A benchmark's figures as text and files: formatted times, sizes and ratios, Markdown tables,
JSONL and CSV rows."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from _memory import GIB, MIB


def fmt_time(s) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.3f} s"


def fmt_bytes(b) -> str:
    if b is None:
        return "-"
    return f"{b / GIB:.2f} GiB" if b >= GIB else f"{b / MIB:.1f} MiB"


def fmt_ratio(x) -> str:
    return "-" if x is None else f"{x:.2f}x"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """rows: dicts of already formatted values; columns: (key, header) pairs."""
    head = "| " + " | ".join(h for _, h in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(str(r.get(k, "-")) for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def append_jsonl(path, record: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record, default=str) + "\n")


def append_csv(path, record: dict) -> None:
    """Append one flat row; nested values are stored as JSON. Writes a header for a new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {k: (json.dumps(v, default=str) if isinstance(v, (dict, list)) else v) for k, v in record.items()}
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(flat))
        if new:
            w.writeheader()
        w.writerow(flat)
