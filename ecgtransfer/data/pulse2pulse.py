"""The DeepFake generator network: the ``deepfake-ecg`` package's Pulse2Pulse generator with its
shipped weights, a cheaper equivalent of its decoder and per-record seeded passes.

See :mod:`ecgtransfer.data.deepfake` for how records are seeded and stored; this module is the
part that needs torch, imported when records are generated (not when a command's flags are
built).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ecgtransfer.data.leads import LEADS_8

__all__ = ["CPU_PASS", "DeepFakeGenerator", "N_SAMPLES", "SCALE", "UpsampleConv1d",
           "accelerate", "check_device", "checkpoint_path", "load_generator", "package_version",
           "record_noise"]

SCALE = 6000
"""The package's output scaling: ``int(SCALE * tanh output)`` are the ECG's microvolts."""
CPU_PASS = 8
"""Records per forward pass on CPU; part of a store's identity."""
N_SAMPLES = 5000
_PACKAGE = "deepfake-ecg"
_DECODER = ("deconv_1", "deconv_2", "deconv_3", "deconv_5", "deconv_6", "deconv_7")


# ---- the generator -------------------------------------------------------------------------
def checkpoint_path() -> Path:
    """The generator weights shipped inside the installed ``deepfake-ecg`` package."""
    return Path(str(resources.files("deepfakeecg") / "checkpoints" / "g_stat.pt"))


def package_version() -> str:
    """Version of the installed ``deepfake-ecg`` package."""
    return importlib.metadata.version(_PACKAGE)


class UpsampleConv1d(nn.Module):
    """Nearest-neighbour upsampling by ``u``, zero padding and a convolution, computed at the
    input rate.

    With ``x_up[m] = x[m // u]`` and ``p`` zeros of padding on each side, output sample
    ``n = u*q + r`` of the original layer is ``sum_j w[j] x[q + (r - p + j) // u]``: for each
    phase ``r`` a short filter on ``x`` whose taps are sums of the original taps. All ``u``
    phases run as one convolution with ``u * C_out`` outputs whose results are interleaved. The
    padding maps exactly: an upsampled position is outside the signal if and only if its source
    sample is, so zero-padding ``x`` is the same as zero-padding ``x_up``.

    Parameters
    ----------
    conv : torch.nn.Conv1d
        The layer's convolution (stride 1, no padding of its own, no dilation, one group).
    factor : int
        Upsampling factor ``u``.
    padding : int
        Zeros added on each side of the upsampled signal.
    """

    def __init__(self, conv: nn.Conv1d, factor: int, padding: int):
        super().__init__()
        if (conv.stride, conv.dilation, conv.groups, conv.padding) != ((1,), (1,), 1, (0,)):
            raise ValueError("UpsampleConv1d needs a plain convolution (stride 1, no padding, "
                             "no dilation, one group)")
        weight = conv.weight.detach().to(torch.float64)
        c_out, c_in, k = weight.shape
        u, p = int(factor), int(padding)
        if k != 2 * p + 1:
            raise ValueError(f"UpsampleConv1d needs kernel = 2 * padding + 1, got {k} and {p}")
        lo, hi = (-p) // u, (u - 1 - p + k - 1) // u
        taps = torch.zeros(c_out, u, c_in, hi - lo + 1, dtype=torch.float64)
        for r in range(u):
            for j in range(k):
                taps[:, r, :, (r - p + j) // u - lo] += weight[:, :, j]
        self.factor, self.out_channels = u, c_out
        self.pad = (-lo, hi)
        self.register_buffer("weight", taps.reshape(c_out * u, c_in, -1).to(conv.weight.dtype))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(c_out)
        self.register_buffer("bias", bias.repeat_interleave(u))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, length = x.shape
        y = F.conv1d(F.pad(x, self.pad), self.weight, self.bias)
        # (B, C_out*u, L): channel o*u + r holds phase r of output channel o
        y = y.view(b, self.out_channels, self.factor, length).transpose(2, 3)
        return y.reshape(b, self.out_channels, length * self.factor)


def accelerate(generator: nn.Module) -> nn.Module:
    """Swap each decoder layer's upsample + pad + convolution for :class:`UpsampleConv1d`.

    Works in place on a ``deepfakeecg.Generator``; its ``forward`` is untouched. A layer of
    another shape than the package's (a future version) raises ``ValueError`` rather than being
    computed wrongly.

    Parameters
    ----------
    generator : torch.nn.Module
        A ``deepfakeecg.Generator`` with its weights loaded.

    Returns
    -------
    torch.nn.Module
        The same module.
    """
    for name in _DECODER:
        layer = getattr(generator, name)
        up, pad = layer.upsample_layer, layer.reflection_pad
        if isinstance(layer.conv1d, UpsampleConv1d):
            continue
        if not (isinstance(up, nn.Upsample) and up.mode == "nearest"
                and isinstance(pad, nn.ConstantPad1d) and pad.value == 0
                and pad.padding[0] == pad.padding[1] and layer.upsample):
            raise ValueError(f"deepfakeecg.Generator.{name} is not nearest-upsample + zero-pad + "
                             f"conv; deepfake-ecg {package_version()} is not supported")
        factor = float(up.scale_factor)
        if factor != int(factor):
            raise ValueError(f"deepfakeecg.Generator.{name}: upsampling by {factor} is not an "
                             "integer factor")
        layer.conv1d = UpsampleConv1d(layer.conv1d, int(factor), pad.padding[0])
        layer.upsample_layer = nn.Identity()
        layer.reflection_pad = nn.Identity()
    return generator


def load_generator(device: str | torch.device = "cpu", *, fast: bool = True) -> nn.Module:
    """The package's generator with its shipped weights, in eval mode.

    Parameters
    ----------
    device : str or torch.device
        Where the module lives.
    fast : bool
        Apply :func:`accelerate`; ``False`` gives the package's module as it is.

    Returns
    -------
    torch.nn.Module
    """
    import deepfakeecg

    path = checkpoint_path()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)["stat_dict"]
    except (OSError, RuntimeError, KeyError, EOFError) as exc:
        raise ValueError(f"{path}: unreadable deepfake-ecg checkpoint ({exc}); reinstall "
                         f"deepfake-ecg") from None
    # The constructor initialises weights from torch's global RNG (and warns about a deprecated
    # init); neither should leak into the caller, and both are overwritten by the checkpoint.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generator = deepfakeecg.Generator()
    generator.load_state_dict(state)
    generator.eval().requires_grad_(False)
    if fast:
        accelerate(generator)
    return generator.to(device)


# ---- per-record seeding ----------------------------------------------------------------------
def record_noise(seed: int, index: int) -> np.ndarray:
    """The generator input of record ``index`` of ``seed``: uniform on [-1, 1), ``(8, 5000)``.

    Drawn from ``numpy.random.default_rng([seed, index])``, so it depends on nothing else.
    """
    rng = np.random.default_rng([int(seed), int(index)])
    noise = rng.random((len(LEADS_8), N_SAMPLES), dtype=np.float32)
    noise *= 2
    noise -= 1
    return noise


class DeepFakeGenerator:
    """Seeded DeepFake ECGs in fixed passes.

    Parameters
    ----------
    device : str
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    pass_size : int, optional
        Records per forward pass. Fixed at :data:`CPU_PASS` on CPU; on CUDA the default is 512.
    threads : int, optional
        Passes computed side by side (CPU: each single-threaded). Default: torch's thread count
        on CPU, 2 on CUDA (to prepare noise while the GPU computes).

    Attributes
    ----------
    compute : str
        ``"<device type>:<pass size>"``, the part of a store's identity that fixes the arithmetic.
    """

    def __init__(self, device: str = "cpu", *, pass_size: int | None = None,
                 threads: int | None = None):
        self.device = check_device(device)
        if self.device.type == "cpu":
            if pass_size not in (None, CPU_PASS):
                raise ValueError(f"pass_size: fixed at {CPU_PASS} on CPU, got {pass_size}")
            pass_size = CPU_PASS
            threads = threads or torch.get_num_threads()
        else:
            pass_size = pass_size or 512
            threads = threads or 2
        if pass_size <= 0 or threads <= 0:
            raise ValueError(f"pass_size and threads must be positive, got {pass_size}, {threads}")
        self.pass_size, self.threads = int(pass_size), int(threads)
        self.compute = f"{self.device.type}:{self.pass_size}"
        self.model = load_generator(self.device)

    def run_pass(self, seed: int, p: int) -> np.ndarray:
        """Records ``p*U .. p*U+U-1`` of ``seed``: int16 µV, ``(U, 8, 5000)``."""
        start = p * self.pass_size
        noise = np.stack([record_noise(seed, i) for i in range(start, start + self.pass_size)])
        with torch.inference_mode():
            x = torch.from_numpy(noise).to(self.device)
            out = self.model(x) * SCALE
            # as deepfakeecg.generate: float32 product, then .int() (truncates toward zero)
            return out.int().to(torch.int16).cpu().numpy()

    def passes(self, seed: int, pass_numbers: Iterable[int], *,
               window: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Compute passes in order, ``threads`` at a time, at most ``window`` in flight.

        Yields
        ------
        (int, numpy.ndarray)
            The pass number and its records, as :meth:`run_pass` returns them.
        """
        window = max(int(window or 0), 2 * self.threads)
        todo = iter(pass_numbers)
        with _deterministic(self.device), ThreadPoolExecutor(self.threads) as pool:
            flight: deque = deque()
            for p in todo:
                flight.append((p, pool.submit(self.run_pass, seed, p)))
                if len(flight) >= window:
                    break
            while flight:
                p, future = flight.popleft()
                for q in todo:
                    flight.append((q, pool.submit(self.run_pass, seed, q)))
                    break
                yield p, future.result()

    def generate(self, seed: int, indices: Sequence[int]) -> np.ndarray:
        """Records ``indices`` of ``seed`` as int16 µV, ``(len(indices), 8, 5000)``."""
        indices = [int(i) for i in indices]
        if not indices:
            return np.zeros((0, len(LEADS_8), N_SAMPLES), dtype=np.int16)
        done = dict(self.passes(seed, sorted({i // self.pass_size for i in indices})))
        return np.stack([done[i // self.pass_size][i % self.pass_size] for i in indices])


def check_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected cpu or cuda, got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: no CUDA GPU is available to torch "
                             f"{torch.__version__}; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA GPU(s)")
    elif dev.type != "cpu":
        raise ValueError(f"device: expected cpu or cuda, got {device!r}")
    return dev


@contextlib.contextmanager
def _deterministic(device: torch.device):
    """Single-threaded passes on CPU; on CUDA deterministic cuDNN and no TF32 (which would cost
    the 16-bit output its last bits). Global settings are restored afterwards."""
    if device.type == "cpu":
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
        return
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32 = True, False, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32 = saved
