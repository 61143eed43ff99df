"""Run one ``ecgtransfer`` command in this process and write what it cost as JSON: exit code,
seconds from the process's start (imports included, as a user waits), this process's peak RSS
and the largest peak RSS among the processes it waited for (label's workers, DataLoader
workers).

    python benchmarks/measure.py OUT.json -- ecgtransfer-args...
"""

from __future__ import annotations

import json
import resource
import sys
import time

START = time.perf_counter()


def main() -> int:
    out, rest = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    from ecgtransfer.cli import main as cli

    try:
        code = cli(rest)
    except SystemExit as exc:  # argparse and the CLI's own exits
        code = exc.code if isinstance(exc.code, int) else 1
    seconds = time.perf_counter() - START
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    with open(out, "w") as f:
        json.dump({"exit": code, "seconds": seconds, "peak_rss_mb": own,
                   "peak_child_rss_mb": children, "args": rest}, f)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
