#!/usr/bin/env bash
# The CUDA checks in one go: the GPU tests (pytest -m gpu), the influence scaling
# sweep (n up to 60,000, m up to 10,000) and the peers (captum, dattri), all on
# the first CUDA device, then one table. Under 5 minutes on one recent GPU; each
# step has a time limit. Fails at once, with a message, where torch sees no CUDA
# device.
#
#   bash benchmarks/gpu.sh            # uses .venv/bin/python (make setup), else python3
#   PY=/path/to/python bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "benchmarks/gpu.sh: torch sees no CUDA device here ($("$PY" -c 'import torch; print("torch", torch.__version__)' 2>&1)); run it on a machine with an NVIDIA GPU and a CUDA build of torch" >&2
    exit 1
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
status=0

echo "== pytest -m gpu"
timeout 120 "$PY" -m pytest -m gpu -q -p no:cacheprovider --junitxml "$OUT/tests.xml" tests || status=1
echo "== benchmarks/influence_scaling.py --device cuda"
timeout 120 "$PY" benchmarks/influence_scaling.py --device cuda --json "$OUT/scaling.json" || status=1
echo "== benchmarks/influence_peers.py --device cuda"
timeout 120 "$PY" benchmarks/influence_peers.py --device cuda --n 2000 --m 500 --json "$OUT/peers.json" || status=1

"$PY" - "$OUT" <<'EOF'
import json, sys
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

out = Path(sys.argv[1])
rows = []
if (out / "tests.xml").is_file():
    suite = ET.parse(out / "tests.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    rows.append(("pytest -m gpu", f"{counts['tests']} tests", "", "", "",
                 f"{counts['failures'] + counts['errors']} failed, {counts['skipped']} skipped"))
for name in ("scaling", "peers"):
    path = out / f"{name}.json"
    if not path.is_file():
        rows.append((f"influence {name}", "did not finish", "", "", "", ""))
        continue
    for r in json.loads(path.read_text())["rows"]:
        if name == "scaling":
            rows.append((f"scaling {r['sweep']}: {r['case']}", f"n={r['n']} m={r['m']} d={r['d']}",
                         f"{r['seconds']:.3f}", f"{r['mm_seconds']:.3f} (mm)", f"{r['mm_share']:.0%}",
                         f"{r['peak_mib']:.0f} MiB peak"))
        else:
            rows.append((f"peers {r['model']}: {r['peer']}", f"n={r['n']} m={r['m']}", f"{r['glitchlib_s']:.3f}",
                         f"{r['peer_s']:.3f}", f"{r['ratio']:.1f}x", f"rel. error {r['rel_error']:.1e}"))
header = ("what", "size", "glitchlib s", "other s", "share / ratio", "check")
widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
print(f"\n{torch.cuda.get_device_name(0)}, torch {torch.__version__}")
for row in [header] + rows:
    print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))
EOF
exit $status
