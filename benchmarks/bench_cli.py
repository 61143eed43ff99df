"""Command-line start-up: ``ecgtransfer --help`` and ``ecgtransfer <command> --help``.

Run from the repository root (a git checkout)::

    python benchmarks/bench_cli.py [--baseline 043bc63] [--repeat 7]

Ours: this checkout. Baseline: the package at git revision ``--baseline`` (default: 0.2.0 as it
landed, whose ``--help`` imported torch, pandas and SciPy with every stage's flags), checked out
into a temporary ``git worktree`` and put first on ``PYTHONPATH``. Each command runs in a fresh
interpreter ``--repeat`` times, alternating baseline and ours; the median wall time is reported
(the whole process: interpreter start, imports, parser, printing). The target is 0.5 s for
every command. The figures of record are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [["--help"], ["pretrain", "--help"], ["finetune", "--help"], ["compare", "--help"],
            ["tune", "--help"], ["synth", "--help"], ["data", "prepare", "--help"],
            ["run", "--help"]]
MAIN = "import sys; from ecgtransfer.cli import main; sys.exit(main(sys.argv[1:]))"
HEAVY = ("torch", "pandas", "scipy", "mlflow")


def _time(args: list[str], path: str | None) -> float:
    env = {**os.environ, "PYTHONPATH": path} if path else dict(os.environ)
    env.pop("PYTHONSAFEPATH", None)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", MAIN, *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    return time.perf_counter() - start


def _heavy(path: str | None) -> list[str]:
    """The heavy packages ``ecgtransfer --help`` imports."""
    env = {**os.environ, "PYTHONPATH": path} if path else dict(os.environ)
    code = (f"{MAIN.split('; sys.exit')[0]}\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
            f"    pass\nprint('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules), "
            "file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=tempfile.gettempdir())
    line = [t for t in out.stderr.splitlines() if t.startswith("heavy:")][-1]
    return [m for m in line[len("heavy:"):].split(",") if m]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="043bc63", help="git revision of the baseline")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(base),
                        args.baseline], check=True, capture_output=True)
        try:
            print(f"heavy imports of --help: baseline {args.baseline}: "
                  f"{', '.join(_heavy(str(base))) or 'none'}; ours: "
                  f"{', '.join(_heavy(None)) or 'none'}")
            print(f"{'command':<28} {'baseline s':>10} {'ours s':>8} {'ratio':>6}")
            worst = 0.0
            for command in COMMANDS:
                theirs, ours = [], []
                for _ in range(args.repeat):
                    theirs.append(_time(command, str(base)))
                    ours.append(_time(command, None))
                t, o = statistics.median(theirs), statistics.median(ours)
                worst = max(worst, o)
                print(f"{' '.join(command):<28} {t:>10.2f} {o:>8.2f} {t / o:>5.1f}x")
            print(f"slowest of ours: {worst:.2f} s (target 0.5 s): "
                  f"{'met' if worst < 0.5 else 'NOT met'}")
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)],
                           check=False, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
