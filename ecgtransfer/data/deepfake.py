"""DeepFake ECGs: the ``deepfake-ecg`` package's Pulse2Pulse generator, seeded per record and fast.

The generator class and its trained weights come from the installed ``deepfake-ecg`` package
(``deepfakeecg.Generator``, ``deepfakeecg/checkpoints/g_stat.pt``); nothing is downloaded and
none of its code is copied. Two things are added around it:

* **Per-record seeding.** Record ``i`` of seed ``s`` is made from its own noise, drawn by
  ``numpy.random.default_rng([s, i])`` (uniform on [-1, 1), as the package draws it). Records are
  computed in fixed *passes*: pass ``p`` always holds records ``p*U .. p*U+U-1`` in that order,
  with ``U`` fixed per store (8 on CPU). A record's numbers therefore depend only on ``(s, i)``
  and the machine's arithmetic, never on the batch size, the number of threads, the shard split
  or whether the run was resumed. On CPU each pass runs single-threaded (passes run side by side
  in threads), because oneDNN sums in another order when one batch is split across threads.
* **A cheaper equivalent of the decoder.** Each decoder layer of the package upsamples by
  repeating every sample ``u`` times (nearest neighbour), zero-pads and convolves with a 25-tap
  kernel. ``UpsampleConv1d`` computes exactly that sum at the input rate, as ``u`` polyphase
  filters of 7 (``u = 5``) or 13 (``u = 2``) taps, which is 2.5x fewer multiply-adds for the
  whole network. It is swapped into the package's own module, whose ``forward`` runs unchanged.

The network and its passes (everything that needs torch) are in
:mod:`ecgtransfer.data.pulse2pulse`; this module is the config and the store around them.

Values are ``int(6000 * output)``, the package's scaling and its conversion (which truncates
toward zero), stored as microvolts: see ``docs/synth.md`` for the evidence that these are µV.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ecgtransfer import __version__
from ecgtransfer.config import check, setting
from ecgtransfer.data.leads import LEADS_8, expand_to_12, lead_set

if TYPE_CHECKING:
    from ecgtransfer.data.store import SignalStore

__all__ = ["FS", "SynthConfig", "SynthReport", "identity", "record_id", "synthesize"]

FS = 500.0
"""The generator's sampling rate (10 s of 5000 samples)."""
log = logging.getLogger(__name__)


def record_id(index: int) -> str:
    """Store id of DeepFake record ``index`` (zero-padded, so ids sort in index order)."""
    return f"deepfake-{int(index):08d}"


# ---- into a store ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class SynthConfig:
    """Settings of a ``synth`` run. Shard ``shard_index`` of ``num_shards`` makes the passes
    ``p`` with ``p % num_shards == shard_index``."""

    n: int = setting(help="records 0 .. N-1 of the seed (of this shard); a store holding fewer "
                     "is extended")
    seed: int = setting(0, "generation seed; record i depends only on (seed, i)")
    leads: int = setting(8, "8 = I, II, V1-V6 as generated; 12 adds III, aVR, aVL, aVF derived "
                         "from I and II (Einthoven, Goldberger)", choices=(8, 12))
    batch_size: int | None = setting(None, "CPU: records in flight (memory only; default 64). "
                                     "CUDA: records per forward pass (default 512), part of the "
                                     "store's identity")
    device: str = setting("cpu", "cpu, cuda or cuda:N")
    threads: int | None = setting(None, "CPU: passes computed side by side (default: torch's "
                                  "thread count)")
    shard_index: int = setting(0, "make shard K of num_shards (merge them with `data merge`)",
                               metavar="K")
    num_shards: int = setting(1, "shards the records are split into", metavar="M")

    def __post_init__(self) -> None:
        for key in ("n", "num_shards"):
            check(int(getattr(self, key)) <= 0, key, f"must be positive, got {getattr(self, key)}")
        for key in ("batch_size", "threads"):
            value = getattr(self, key)
            check(value is not None and int(value) <= 0, key, f"must be positive, got {value}")
        check(int(self.seed) < 0, "seed", f"must be a non-negative integer, got {self.seed}")
        check(not 0 <= int(self.shard_index) < int(self.num_shards), "shard_index",
              f"must be in 0 .. {int(self.num_shards) - 1}, got {self.shard_index}")
        check(self.leads not in (8, 12), "leads", f"8 or 12, got {self.leads}")


@dataclass
class SynthReport:
    """What a ``synth`` run did: the complete store, records written now and already there."""

    store: SignalStore
    written: int
    skipped: int
    seconds: float


def identity(config: SynthConfig, compute: str) -> dict:
    """What must match for a run to continue a DeepFake store."""
    from ecgtransfer.data.manifests import sha256_file
    from ecgtransfer.data.pulse2pulse import SCALE, checkpoint_path, package_version

    ident = {"generator": "deepfake-ecg", "package_version": package_version(),
             "checkpoint_sha256": sha256_file(checkpoint_path()), "seed": int(config.seed),
             "scale": SCALE, "noise": "numpy default_rng([seed, i]) uniform [-1, 1)",
             "compute": compute}
    if config.num_shards > 1:
        ident["shard"] = f"{int(config.shard_index)}/{int(config.num_shards)}"
    return ident


def synthesize(out: str | Path, config: SynthConfig, *, progress: bool = True) -> SynthReport:
    """Generate DeepFake ECGs into a signal store; resumable and extendable.

    Records are ``deepfake-00000000`` ... in index order, int16 µV, 500 Hz, 10 s. A store that
    already holds some of the records (a killed run, a smaller ``n``) gets only the missing
    ones. A store made with another seed, package version, checkpoint, lead set or compute
    setting is refused with one line naming the setting, before anything is written.

    Parameters
    ----------
    out : str or Path
        Store folder.
    config : SynthConfig
    progress : bool
        Show a progress bar.

    Returns
    -------
    SynthReport

    Raises
    ------
    StoreError
        A store of other settings, or a full disk (one line naming the store and the file; the
        records written stay valid and the same command continues from there).
    """
    import torch
    from tqdm.auto import tqdm

    from ecgtransfer.data.pulse2pulse import DeepFakeGenerator, check_device
    from ecgtransfer.data.store import StoreWriter

    t0 = time.perf_counter()
    pass_size = config.batch_size if check_device(config.device).type == "cuda" else None
    leads = lead_set(config.leads)
    gen = DeepFakeGenerator(config.device, pass_size=pass_size, threads=config.threads)
    run = {"ecgtransfer": __version__, "torch": torch.__version__, "device": str(gen.device),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": gen.threads,
           "host": os.uname().nodename if hasattr(os, "uname") else "",
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    writer = StoreWriter(out, source="deepfake", fs=FS, leads=leads,
                         identity=identity(config, gen.compute))
    info = writer.meta["info"]
    earlier = {r.get("cpu_capability") for r in info.get("runs", []) if r.get("device") == "cpu"}
    if gen.device.type == "cpu" and earlier - {run["cpu_capability"]}:
        log.warning("%s: earlier runs used CPU kernels %s, this one %s; records may differ by "
                    "1 µV from a single-machine run", out, sorted(earlier), run["cpu_capability"])
    n, u, shard, shards = int(config.n), gen.pass_size, config.shard_index, config.num_shards
    # a live view; passes are disjoint, so reading ``passes`` ahead never sees a pass's own adds
    done = writer.done

    def missing_in(p: int) -> list[int]:
        return [i for i in range(p * u, min(p * u + u, n)) if record_id(i) not in done]

    mine = sum(min(p * u + u, n) - p * u for p in range(shard, -(-n // u), shards))
    todo = sum(len(missing_in(p)) for p in range(shard, -(-n // u), shards))
    passes = (p for p in range(shard, -(-n // u), shards) if missing_in(p))
    window = (config.batch_size or 64) // u + 1 if gen.device.type == "cpu" else None
    with writer, tqdm(total=todo, desc="synth", unit="ecg", disable=not progress) as bar:
        for p, batch in gen.passes(int(config.seed), passes, window=window):
            for i in missing_in(p):
                data = batch[i - p * u]
                if len(leads) != len(LEADS_8):
                    data = expand_to_12(data)
                writer.add_microvolts(record_id(i), data, deepfake_index=i)
                bar.update()
        info["n"] = max(n, int(info.get("n", 0)))
        info["config"] = {k: v for k, v in asdict(config).items() if k != "n"}
        if todo:
            info.setdefault("runs", []).append({**run, "written": todo})
        store = writer.finalize()
    return SynthReport(store=store, written=todo, skipped=mine - todo,
                       seconds=time.perf_counter() - t0)
