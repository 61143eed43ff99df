"""The ``ecgtransfer`` command: parses arguments, seeds, calls one stage, reports.

Every subcommand but ``run`` is a registered stage (:mod:`ecgtransfer.stages`): its words, help
and flags come from the stage and its config dataclass, so a new stage appears here without an
edit. Settings come from defaults, then ``--config FILE.yaml``, then the flags, then ``--set
KEY=VALUE``.

Errors the user can fix (bad input, a store of other settings, a missing file, a full disk) are
printed as a single ``ecgtransfer: error: ...`` line and exit with status 2; a stage that
finished with something the user asked to fail on (``--strict``) exits 1; Ctrl-C or SIGTERM
exits 130 / 143 with the MLflow run marked KILLED.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import types
import typing
from pathlib import Path
from typing import Any, Sequence

from ecgtransfer import __version__

__all__ = ["main", "build_parser"]

log = logging.getLogger("ecgtransfer")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's preemption, ``timeout``), raised where the process is, so that
    every open run is marked KILLED and every half-written file removed, as for Ctrl-C."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only when it says something (not None, False or [])."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, []) or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


# ---- flags from a config dataclass --------------------------------------------------------
def _kind(hint: Any) -> Any:
    """The type behind ``X | None``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _help(f: dataclasses.Field) -> str:
    meta = f.metadata
    text = meta.get("help", "")
    if meta.get("unit"):
        text += f", {meta['unit']}"
    if meta.get("choices"):
        text += f" ({' | '.join(str(c) for c in meta['choices'])})"
    default = _default_of(f)
    if default is dataclasses.MISSING:
        text += " (required)"
    elif default not in (None, False, [], {}, ""):
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        text += f" (default {shown})"
    return text.replace("%", "%%")


def add_config_flags(parser: argparse.ArgumentParser, config: type, prefix: str = "",
                     skip: set[str] | None = None) -> set[str]:
    """One argument per CLI field of ``config``: ``--name-with-dashes`` (or the field's own
    flag), positional where the field says so. Values stay text here and are parsed and checked
    by the config, so a bad one is the same one-line error as from a file.

    ``prefix`` goes before each destination (flags another stage's config takes), and fields
    named in ``skip`` get no flag. Returns the names of the fields given flags."""
    from ecgtransfer.config import ordered_fields

    hints = typing.get_type_hints(config)
    added: set[str] = set()
    for f in ordered_fields(config):
        meta = f.metadata
        if not meta.get("cli", True) or f.name in (skip or set()):
            continue
        if prefix and meta.get("positional"):
            continue
        added.add(f.name)
        kind = _kind(hints[f.name])
        is_list = typing.get_origin(kind) in (list, tuple)
        kw: dict[str, Any] = {"help": _help(f), "default": None, "dest": prefix + f.name}
        if meta.get("metavar") or prefix:
            kw["metavar"] = meta.get("metavar") or f.name.upper()
        if meta.get("positional"):
            kw.pop("dest")
            choices = meta.get("choices")
            if choices:
                kw["choices"] = [str(c) for c in choices]
            parser.add_argument(f.name, nargs="+" if is_list else None, **kw)
            continue
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        if kind is bool:
            kw.pop("metavar", None)
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif is_list:
            parser.add_argument(flag, action="append", **kw)
        else:
            parser.add_argument(flag, **kw)
    return added


def _flag_values(args: argparse.Namespace, config: type, prefix: str = "") -> dict[str, Any]:
    """The flags given, as YAML-parsed values for the config (None: not given)."""
    hints = typing.get_type_hints(config)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        raw = getattr(args, prefix + f.name, None)
        if raw is None:
            continue
        kind = _kind(hints[f.name])
        if isinstance(raw, list):  # repeated or comma-separated
            raw = [part.strip() for item in raw for part in str(item).split(",") if part.strip()]
            item = (typing.get_args(kind) or (str,))[0]
            values[f.name] = raw if item is str else [_yaml(v) for v in raw]
        elif kind is bool or kind is str:
            values[f.name] = raw
        else:
            values[f.name] = _yaml(raw)
    return values


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


_REST = "rest__"
"""Destination prefix of the flags a stage takes from the stages it searches."""


# ---- the parser -------------------------------------------------------------------------
def _stage_parser(commands, stage, common, fmt, help_only: bool = False) -> None:
    p = commands.add_parser(stage.command[-1], help=stage.help, description=stage.description,
                            formatter_class=fmt, parents=[common])
    p.set_defaults(stage=stage.name)
    taken = add_config_flags(p, stage.config)
    if stage.flags_from:
        from ecgtransfer.stages import get_stage

        taken |= {f.name for f in dataclasses.fields(stage.config)}
        group = p.add_argument_group(f"settings of the stage searched ({', '.join(stage.flags_from)})")
        for name in stage.flags_from:
            taken |= add_config_flags(group, get_stage(name).config, _REST, taken)
    p.add_argument("--config", dest="config_file", type=Path, default=None, metavar="FILE",
                   help=f"YAML of settings ({stage.config.__name__} fields)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="any setting, value as YAML (e.g. model_kwargs.width=64); repeatable")
    if stage.resume_flag:
        p.add_argument("--resume", action="store_true",
                       help="continue an interrupted run in --out (same settings)")
    for name, (text, _) in stage.actions.items():
        p.add_argument("--" + name.replace("_", "-"), dest=f"action_{name}",
                       action="store_true", help=text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ecgtransfer`` command, built from the stage registry."""
    from ecgtransfer.stages import list_stages

    fmt = _HelpFormatter
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bars, warnings only")
    parser = argparse.ArgumentParser(
        prog="ecgtransfer",
        description="Synthetic-to-real transfer learning on ECGs: prepare data into signal "
                    "stores, generate and label ECGs, pretrain interval regressors and fine-tune "
                    "PTB-XL classifiers, tracked in MLflow.",
        formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"ecgtransfer {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, Any] = {}
    for stage in list_stages():
        if len(stage.command) == 1:
            _stage_parser(commands, stage, common, fmt)
            continue
        group = stage.command[0]
        if group not in groups:
            g = commands.add_parser(group, help="get, verify and prepare datasets",
                                    description="Get, verify and prepare datasets into signal "
                                                "stores.", formatter_class=fmt)
            groups[group] = g.add_subparsers(dest=f"{group}_command", metavar="ACTION",
                                             required=True)
        _stage_parser(groups[group], stage, common, fmt)
    run = commands.add_parser(
        "run", help="run a whole experiment: the stages of a pipeline file, under one MLflow "
                    "parent run",
        description="Run the stages a pipeline YAML names in order, under one MLflow parent run "
                    "with a child run per stage. A stage whose inputs, settings and code are "
                    "unchanged is reused; a killed pipeline re-run continues where it stopped. "
                    "The file is checked whole before any work. See docs/pipelines.md.",
        formatter_class=fmt, parents=[common])
    run.add_argument("pipeline", type=Path, metavar="PIPELINE.yaml")
    run.add_argument("--rerun", default="", metavar="STAGE[,STAGE]",
                     help="run these stages (and every stage downstream of them) again even "
                          "where their outputs could be reused; 'all' for every stage")
    run.add_argument("--plan", action="store_true",
                     help="print, without running anything, what each stage would do (reuse "
                          "or run, and why), how many runs it expands to, and a time estimate")
    run.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE",
                     dest="overrides",
                     help="change a stage's setting, value as YAML (e.g. deepfake.n=64, "
                          "finetune.grid.seed=[0]); repeatable")
    return parser


# ---- commands ----------------------------------------------------------------------------
def _run_stage(args: argparse.Namespace) -> int:
    from ecgtransfer.config import load_config
    from ecgtransfer.stages import Context, get_stage

    stage = get_stage(args.stage)
    for name, (_, action) in stage.actions.items():
        if getattr(args, f"action_{name}", False):
            print(action())
            return 0
    values = _flag_values(args, stage.config)
    for name in stage.flags_from:  # another stage's flags: its settings, in the rest setting
        values.update({k: v for k, v in _flag_values(args, get_stage(name).config, _REST).items()
                       if k not in values})
    config = load_config(stage.config, args.config_file, args.overrides, **values)
    seed = getattr(config, "seed", None)
    if seed is not None:  # the CLI alone seeds the process's generators
        import numpy as np
        import torch

        torch.manual_seed(int(seed))
        np.random.seed(int(seed) % 2**32)
    result = stage.run(config, Context(progress=not args.quiet and sys.stderr.isatty(),
                                       resume=getattr(args, "resume", False),
                                       say=lambda text: print(text, flush=True)))
    if result.summary:
        print(result.summary)
    return result.exit_code


def _cmd_run(args: argparse.Namespace) -> int:
    from ecgtransfer.pipeline import load_pipeline, plan_pipeline, plan_text, run_pipeline

    pipeline = load_pipeline(args.pipeline, args.overrides)
    rerun = [n.strip() for n in args.rerun.split(",") if n.strip()]
    if args.plan:
        print(plan_text(plan_pipeline(pipeline, rerun)))
        return 0

    from ecgtransfer.stages import get_stage

    def report(r) -> None:
        answers = get_stage(r.kind).answers  # printed whole at the end
        first = r.summary.splitlines()[0] if r.summary and not answers else ""
        took = "reused" if r.reused else f"done in {r.seconds:.0f} s"
        print(f"{r.kind} {r.name}: {took} -> {r.output}{'; ' + first if first else ''}",
              flush=True)

    results = run_pipeline(pipeline, progress=not args.quiet and sys.stderr.isatty(),
                           on_stage=report, rerun=rerun)
    for r in results:
        if get_stage(r.kind).answers:
            print(f"\n{r.summary}", end="" if r.summary.endswith("\n") else "\n")
    from ecgtransfer.tracking import DEFAULT_TRACKING_URI, Tracker, ui_link

    tracker = Tracker(pipeline.tracking_uri)
    link = ui_link(tracker, "http://127.0.0.1:5000", pipeline.experiment)
    where = "" if tracker.uri == DEFAULT_TRACKING_URI else f" --tracking-uri {tracker.uri}"
    what = ("the fine-tune runs side by side" if any(r.kind == "finetune" for r in results)
            else "its runs")
    print(f"\nMLflow experiment {pipeline.experiment!r}. To see {what}: "
          f"ecgtransfer ui{where}, then open {link}")
    return 0


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ecgtransfer`` command; returns the exit status."""
    from ecgtransfer.errors import UserError
    from ecgtransfer.files import disk_full

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():
            return _cmd_run(args) if args.command == "run" else _run_stage(args)
    except (UserError, FileNotFoundError, ValueError) as exc:
        print(f"ecgtransfer: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if not disk_full(exc):
            raise
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"ecgtransfer: error: disk full{where}; free space and re-run the same command to "
              "continue (nothing finished is lost)", file=sys.stderr)
        return 2
    except Terminated:
        print("ecgtransfer: terminated; re-run the same command to continue", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("ecgtransfer: interrupted; re-run the same command to continue", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
