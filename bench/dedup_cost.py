"""The duplicate check alone: CPU a row of `SeenContacts.first_rows` and the process's peak RSS.

    python -m bench.dedup_cost ROWS [--every 10] [--seed 7]

Feeds ROWS generated contacts in batches of planning.BATCH_ROWS, as planning.py calls it; every 10th row
repeats an earlier contact (uniform over what came before, so most are found in the spilled runs). Only the
`first_rows` calls are timed, in CPU seconds of this process (other programs on the machine barely move
them); the contacts are made between calls. Prints one JSON line: rows, µs of CPU a row (overall and
per million rows, to see whether it grows), peak RSS (VmHWM, reset after the imports), `/tmp` used
and the number of runs at the end. The answers are checked: `wrong_batches` must be 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

from bench.split_run import _status_kb, reset_peak_rss
from fanout.dedup import SeenContacts
from fanout.planning import BATCH_ROWS

BATCH = BATCH_ROWS  # as planning calls it


def measure(rows: int, every: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    seen = SeenContacts()
    cpu = mark = 0.0
    per_million: list[float] = []
    wrong = 0
    clock = time.process_time
    reset_peak_rss()
    try:
        for start in range(1, rows + 1, BATCH):
            entries: list[tuple[str, str, int]] = []
            expected: list[int | None] = []
            for row in range(start, min(start + BATCH, rows + 1)):
                # every `every`-th row repeats an earlier row that was itself new (its contact is named
                # by its row): the expected answer needs no record that grows with the rows
                if row % every == 0:
                    first = rng.randrange(1, row)
                    first -= first % every == 0
                    entries.append(("c", f"p{first}@example.com", row))
                    expected.append(first)
                else:
                    entries.append(("c", f"p{row}@example.com", row))
                    expected.append(None)
            began = clock()
            answers = seen.first_rows(entries)
            cpu += clock() - began
            wrong += answers != expected
            done = start + len(entries) - 1
            if done // 1_000_000 > len(per_million) or done == rows:
                per_million.append((cpu - mark) / (done - len(per_million) * 1_000_000) * 1e6)
                mark = cpu
        runs = len(seen._runs)
        tmp_bytes = sum(f.stat().st_size for f in Path(seen._dir).iterdir())
    finally:
        seen.close()
    return {
        "rows": rows,
        "repeat_every": every,
        "us_per_row": round(cpu / rows * 1e6, 3),
        "us_per_row_each_million": [round(x, 2) for x in per_million],
        "peak_rss_mib": round(_status_kb("VmHWM") / 1024, 1),
        "tmp_mb": round(tmp_bytes / 1e6, 1),
        "runs": runs,
        "wrong_batches": wrong,
        "load_average": os.getloadavg(),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", type=int)
    parser.add_argument("--every", type=int, default=10, help="every EVERY-th row repeats an earlier one")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.rows, args.every, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
