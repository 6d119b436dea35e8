#!/usr/bin/env python3
"""Writes the frame fuzzer's seed corpus from the hex vectors of docs/protocol.md (one file per vector)."""
import pathlib, re, sys
root = pathlib.Path(__file__).resolve().parent.parent
text = (root / "docs/protocol.md").read_text()
out = root / "fuzz/corpus/frames"
out.mkdir(parents=True, exist_ok=True)
count = 0
for kind, name, body in re.findall(r"```(hex(?:-invalid)?) (\S+)\n(.*?)```", text, re.S):
    data = bytes.fromhex(" ".join(line.split("#")[0] for line in body.splitlines()))
    (out / f"{kind}-{name}").write_bytes(data)
    count += 1
print(f"wrote {count} seeds to {out.relative_to(root)}", file=sys.stderr)
