"""A stand-in for `nvidia-smi` on PATH that answers `--query-gpu` as the real tool does, and refuses what the
real tool refuses: a field it does not know (`nvidia-smi --help-query-gpu`'s list, recorded from the driver on
the lent GPU machine in tests/data/nvidia-smi-query-fields.txt), an unknown option, or a query without
`--format=csv…`. The GPUs it reports are the test's; the columns are the ones asked for, in that order.

    install(bin_dir, [(0, "NVIDIA H200", 143771), ...]) -> bin_dir/nvidia-smi
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

FIELDS_FILE = Path(__file__).resolve().parents[1] / "data" / "nvidia-smi-query-fields.txt"

SCRIPT = """#!{python}
import sys
sys.path.insert(0, {tests!r})
from fakes.nvidia_smi import answer
sys.exit(answer(sys.argv[1:], {gpus!r}))
"""


def known_fields() -> set[str]:
    return {line.strip() for line in FIELDS_FILE.read_text().splitlines() if line.strip() and not line.startswith("#")}


def install(bin_dir: Path, gpus: list[tuple[int, str, int]]) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "nvidia-smi"
    script.write_text(SCRIPT.format(python=sys.executable, tests=str(Path(__file__).resolve().parents[1]),
                                    gpus=json.dumps(gpus)))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def answer(args: list[str], gpus_json: str) -> int:
    gpus = json.loads(gpus_json)
    query, form = None, None
    for arg in args:
        if arg.startswith("--query-gpu="):
            query = arg.split("=", 1)[1].split(",")
        elif arg.startswith("--format="):
            form = arg.split("=", 1)[1].split(",")
        else:
            print(f'Invalid combination of input arguments. Please run "nvidia-smi -h" for help. ({arg})',
                  file=sys.stderr)
            return 2
    if query is None or form is None or "csv" not in form:
        print('Invalid combination of input arguments. Please run "nvidia-smi -h" for help.', file=sys.stderr)
        return 2
    fields = known_fields()
    for name in query:
        if name not in fields:
            print(f'Field "{name}" is not a valid field to query.', file=sys.stderr)
            return 2
    units = "nounits" not in form
    columns = {"index": lambda g: str(g[0]), "name": lambda g: g[1],
               "memory.total": lambda g: f"{g[2]}" + (" MiB" if units else "")}
    unknown = [name for name in query if name not in columns]
    if unknown:   # a real field this fake has no value for: the test must add it here
        print(f"fake nvidia-smi: no value for {', '.join(unknown)}", file=sys.stderr)
        return 3
    if "noheader" not in form:
        print(", ".join(name + (" [MiB]" if name == "memory.total" and units else "") for name in query))
    for gpu in gpus:
        print(", ".join(columns[name](gpu) for name in query))
    return 0
