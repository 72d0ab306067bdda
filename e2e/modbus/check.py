#!/usr/bin/env python3
"""Compare one uplink message (stdin, from mosquitto_sub) with expected.json."""
import json
import math
import sys

expected = json.load(open(sys.argv[1]))
msg = json.loads(sys.stdin.readline())
frame = msg["frames"][-1]
values, errors = frame.get("values", {}), frame.get("errors", {})
bad = []
for name, want in expected.items():
    if name not in values:
        bad.append(f"{name}: missing (error {errors.get(name)})")
        continue
    got = values[name]
    if isinstance(want, float):
        ok = isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=1e-6)
    elif isinstance(want, int) and abs(want) > 2**53:
        # JSON numbers beyond 2^53 lose precision in some readers; ours keep i64.
        ok = got == want
    else:
        ok = got == want and type(got) is type(want)
    if not ok:
        bad.append(f"{name}: got {got!r}, want {want!r}")
if bad:
    print("MISMATCH:\n  " + "\n  ".join(bad))
    sys.exit(1)
print(f"ok: {len(expected)} tags, every data type and byte order read as written by pymodbus")
