"""Run one ``ecgtransfer`` command in this process and write what it cost as JSON.

    python benchmarks/measure.py OUT.json -- ecgtransfer-args...

It records:
- the exit code;
- seconds from the process's start, imports included, as long as a user waits;
- memory of the whole process tree (this process and its workers), sampled every 0.2 s from
  ``/proc``:
  - ``peak_anon_mb``: the largest sum over the tree of each process's proportional share of
    its anonymous and shared-memory pages (``Pss_Anon + Pss_Shmem`` of ``smaps_rollup``). This
    is the RAM the command takes from the machine and what "memory flat" is judged on. A page
    two processes share (a worker started by ``fork``, copy-on-write) counts once, half to
    each: summing ``RssAnon`` counted a forked child's inherited pages again, so a ``git``
    subprocess caught between its fork and its exec doubled the figure.
  - ``peak_rss_mb``: the largest sum of ``VmRSS``. It also counts the pages of memory-mapped
    files the command has read: page cache the kernel can drop, and the store's pages a
    memory-mapped reader touches. It grows with the data read even when nothing is held.

``ru_maxrss`` is not used. A worker started by ``fork`` inherits the parent's resident size,
so the peak it reports for children is the parent's at the moment of the fork (a ``git``
subprocess), not anything a child used.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

START = time.perf_counter()
INTERVAL_S = 0.2


def _status(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile and RssShmem of ``pid`` in kB, and Pss_Anon and Pss_Shmem
    ({} when it is gone)."""
    out = {}
    try:
        for name, keys in (("status", ("VmRSS", "RssAnon", "RssFile", "RssShmem")),
                           ("smaps_rollup", ("Pss_Anon", "Pss_Shmem"))):
            with open(f"/proc/{pid}/{name}") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key in keys:
                        out[key] = int(value.split()[0])
    except OSError:
        return {}
    return out


def _tree(root: int) -> list[int]:
    """``root`` and every process below it."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak_anon = self.peak_rss = 0
        self.stop = threading.Event()

    def sample(self) -> None:
        anon = rss = 0
        for pid in _tree(os.getpid()):
            s = _status(pid)
            anon += s.get("Pss_Anon", 0) + s.get("Pss_Shmem", 0)
            rss += s.get("VmRSS", 0)
        self.peak_anon, self.peak_rss = max(self.peak_anon, anon), max(self.peak_rss, rss)

    def run(self) -> None:
        while not self.stop.wait(INTERVAL_S):
            self.sample()


def main() -> int:
    out, rest = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    sampler = Sampler()
    sampler.sample()
    sampler.start()
    from ecgtransfer.cli import main as cli

    try:
        code = cli(rest)
    except SystemExit as exc:  # argparse and the CLI's own exits
        code = exc.code if isinstance(exc.code, int) else 1
    sampler.stop.set()
    sampler.join()
    sampler.sample()
    seconds = time.perf_counter() - START
    with open(out, "w") as f:
        json.dump({"exit": code, "seconds": seconds, "peak_anon_mb": sampler.peak_anon / 1024,
                   "peak_rss_mb": sampler.peak_rss / 1024, "args": rest}, f)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
