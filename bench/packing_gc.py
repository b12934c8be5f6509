"""What the packing-GC plugin saves per packed dataloader, in a process that has imported what axolotl's
trainer imports (the collections' cost grows with the objects the process holds).

    python bench/packing_gc.py [--rows 200] [--repeat 5]

Prints one JSON line: seconds to build a MultipackBatchSampler and take its len() (as axolotl does for
every packed dataloader) with axolotl's gc.collect() calls and without them (runner.integrations.packing_gc),
the best of --repeat each, and the tracked objects in the process.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200)   # the default job's held-out split
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import axolotl.cli.train  # noqa: F401 - the trainer's imports
    import axolotl.core.trainers.base  # noqa: F401
    import axolotl.utils.data.sft  # noqa: F401
    import numpy as np
    import peft  # noqa: F401
    from axolotl.utils.samplers.multipack import MultipackBatchSampler
    from torch.utils.data import SequentialSampler

    from runner.integrations import packing_gc

    lengths = np.random.default_rng(0).integers(64, 140, size=args.rows)

    def best() -> float:
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            len(MultipackBatchSampler(SequentialSampler(range(args.rows)), lengths=lengths, batch_max_len=16 * 4096,
                                      batch_size=1, bin_size=200, drop_last=True, num_processes=1))
            times.append(time.perf_counter() - started)
        return round(min(times), 3)

    best()   # numba compiles the packing functions on the first call
    with_collect = best()
    packing_gc.skip_sampler_gc()
    without = best()
    print(json.dumps({"rows": args.rows, "tracked_objects": len(gc.get_objects()),
                      "sampler_s_axolotl": with_collect, "sampler_s_packing_gc": without}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
