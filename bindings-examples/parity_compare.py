"""Compare the parity documents the Rust, C and Python scenarios print (``make parity-test``).

Ids differ between runs, so every id (hyphenated or in the compact form used in file paths) is
replaced by the name of the object it identifies; MAC addresses are dropped. Tagged records
``{"kind": K, "object": {...}}`` are compared as their object. Exits non-zero on any difference.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


def untag(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"kind", "object"} and isinstance(v["object"], dict):
            return untag(v["object"])
        return {k: untag(x) for k, x in v.items()}
    if isinstance(v, list):
        return [untag(x) for x in v]
    return v


def names(v: Any, out: dict[str, str]) -> None:
    if isinstance(v, dict):
        if isinstance(v.get("id"), str) and isinstance(v.get("name"), str):
            out[v["id"].replace("-", "")] = v["name"]
        for x in v.values():
            names(x, out)
    elif isinstance(v, list):
        for x in v:
            names(x, out)


def canon(v: Any, ids: dict[str, str]) -> Any:
    if isinstance(v, dict):
        return {k: canon(x, ids) for k, x in v.items() if k != "mac"}
    if isinstance(v, list):
        return [canon(x, ids) for x in v]
    if isinstance(v, str):
        return UUID.sub(lambda m: "<" + ids.get(m.group(0).replace("-", ""), "?") + ">", v)
    return v


def load(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        doc = untag(json.load(f))
    ids: dict[str, str] = {}
    names(doc, ids)
    return canon(doc, ids)


def main() -> int:
    paths = sys.argv[1:]
    if len(paths) < 2:
        print("usage: parity_compare.py REFERENCE.json OTHER.json...", file=sys.stderr)
        return 2
    ref = load(paths[0])
    failed = False
    for p in paths[1:]:
        other = load(p)
        for key in sorted(set(ref) | set(other)):
            if ref.get(key) != other.get(key):
                failed = True
                print(f"{p} differs from {paths[0]} in {key!r}:", file=sys.stderr)
                print("  " + json.dumps(ref.get(key), sort_keys=True)[:2000], file=sys.stderr)
                print("  " + json.dumps(other.get(key), sort_keys=True)[:2000], file=sys.stderr)
    if not failed:
        print(f"parity: {len(paths)} bindings agree on {len(ref)} sections")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
