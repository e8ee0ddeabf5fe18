"""Before a GPU call: run GPU scripts with their commands recorded instead of run, and check each one.

    python scripts/dry_run.py --gpus 2 scripts/gpu_next.sh scripts/gpu_next2.sh

Each script runs under bash with `python`, `timeout` and `pip` replaced by shims on PATH: `python`
records its arguments (and the `timeout` limit around it), `timeout` runs its command at once, `pip`
does nothing. Each recorded command is then checked as far as a CPU can:
- `helix bench`: its flags, shape, points and dtype; every plan valid for the shape on at most --gpus GPUs;
- `helix verify`: its flags, arch, dtype and overrides; every plan valid for that tiny model on at most --gpus;
- the kernel benches and the scripts/*.py with a `build_parser()`: their flags;
- `pytest`: the selection collects at least one test (or its module skips itself on a CPU);
- `python -c CODE` and `python -` (a program on stdin): the program compiles.
A typo found here costs nothing; found on the GPU machine it costs a call of a 30-minute budget.
Exit status 1 if any command has a problem, or a script fails or records nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# `timeout [OPTION]... DURATION COMMAND...`: runs COMMAND now, telling the python shim the limit
_TIMEOUT_SHIM = """#!/usr/bin/env bash
while [[ $# -gt 0 && $1 == -* ]]; do
  case $1 in -s|-k) shift 2 ;; *) shift ;; esac
done
HELIX_DRY_RUN_LIMIT=$1 exec "${@:2}"
"""
# records its arguments, the limit of the `timeout` around it, and a program given on stdin (`python -`)
_PYTHON_SHIM = """#!/usr/bin/env bash
exec {python} -c 'import json, os, sys
stdin = sys.stdin.read() if sys.argv[1:2] == ["-"] else None
with open(os.environ["HELIX_DRY_RUN_LOG"], "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "limit": os.environ.get("HELIX_DRY_RUN_LIMIT"),
                          "stdin": stdin}}) + "\\n")' "$@"
"""


@dataclass
class Command:
    script: str
    argv: list[str]
    limit_s: float | None
    stdin: str | None = None  # the program of `python -`
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return "python " + " ".join(self.argv)


def record(script: Path, workdir: Path) -> tuple[list[Command], str]:
    """Run `script` under the shims; its recorded python commands and, if bash failed, why."""
    shims = workdir / "bin"
    shims.mkdir(exist_ok=True)
    for name, text in {"timeout": _TIMEOUT_SHIM, "python": _PYTHON_SHIM.format(python=sys.executable),
                       "python3": _PYTHON_SHIM.format(python=sys.executable), "pip": "#!/bin/sh\nexit 0\n"}.items():
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    log = workdir / f"{script.name}.jsonl"
    log.unlink(missing_ok=True)
    out = workdir / "out"
    out.mkdir(exist_ok=True)
    # the result files go to a folder of the dry run's own: a dry run inside a real one (test_gpu_scripts in
    # gpu_suite.sh, 2026-12-06) wrote into the real run's /tmp/helix-results and overwrote its test logs
    results = workdir / "results"
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ.get('PATH', '')}", "OUT": str(out),
           "HELIX_RESULTS": str(results), "HELIX_DRY_RUN_LOG": str(log)}
    env.pop("HELIX_DRY_RUN_LIMIT", None)
    done = subprocess.run(["bash", str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    # a script's last pipeline may end in a grep that finds nothing here: only an exit that says why fails
    failure = f"bash exited {done.returncode}: {done.stderr[-2000:]}" if done.returncode and done.stderr.strip() else ""
    commands = []
    if log.exists():
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            limit = entry["limit"]
            commands.append(Command(script.name, entry["argv"], float(limit.rstrip("s")) if limit else None,
                                    entry["stdin"]))
    return commands, failure


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace | None, str]:
    """argparse's result, or its error message instead of an exit."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser.parse_args(argv), ""
    except SystemExit:
        lines = err.getvalue().strip().splitlines() or ["argparse exited"]
        return None, lines[-1].partition(": error: ")[2] or lines[-1]


def _check_plans(specs: list[str], cfg, gpus: int) -> list[str]:
    from helix_core.plan import InvalidPlanError, Plan

    problems = []
    for spec in specs:
        try:
            plan = Plan.parse(spec)
            plan.validate(cfg)
        except (InvalidPlanError, ValueError) as error:
            problems.append(str(error) if spec in str(error) else f"plan {spec}: {error}")
            continue
        if plan.world_size > gpus:
            problems.append(f"plan {spec} needs {plan.world_size} GPUs, the call has {gpus}")
    return problems


def check_bench(argv: list[str], gpus: int) -> list[str]:
    from helix_core.bench.main import build_parser, parse_points
    from helix_core.bench.shapes import shape_config
    from helix_core.engine import DTYPES

    args, error = _parse(build_parser(), argv)
    if args is None:
        return [error]
    problems = []
    try:
        parse_points(args.points)
    except ValueError as error:
        problems.append(f"points {args.points}: {error}")
    if args.dtype not in DTYPES:
        problems.append(f"dtype {args.dtype!r}: choose one of {sorted(DTYPES)}")
    try:
        cfg = shape_config(args.shape, args.layers)
    except ValueError as error:
        return problems + [str(error)]
    return problems + _check_plans(args.plans, cfg, gpus)


def tiny_config(arch: str, overrides: dict):
    """The ModelConfig of `helix verify`'s tiny checkpoint of `arch` (its config only, no weights)."""
    from transformers import AutoConfig

    from helix_core.config import ModelConfig
    from helix_core.tiny_models import TINY_DEFAULTS

    if arch not in TINY_DEFAULTS:
        raise ValueError(f"unknown tiny model arch {arch!r}; known: {sorted(TINY_DEFAULTS)}")
    return ModelConfig.from_dict(AutoConfig.for_model(arch, **{**TINY_DEFAULTS[arch], **overrides}).to_dict())


def check_verify(argv: list[str], gpus: int) -> list[str]:
    from helix_core.engine import DTYPES
    from helix_core.verify import build_parser

    args, error = _parse(build_parser(), argv)
    if args is None:
        return [error]
    problems = [] if args.dtype in DTYPES else [f"dtype {args.dtype!r}: choose one of {sorted(DTYPES)}"]
    try:
        overrides = json.loads(args.overrides)
    except json.JSONDecodeError as error:
        return problems + [f"--overrides is not JSON: {error}"]
    if args.model:
        return problems  # a checkpoint on the GPU machine: its config is not here to check the plans against
    try:
        cfg = tiny_config(args.arch, overrides)
    except (ValueError, TypeError) as error:
        return problems + [str(error)]
    return problems + _check_plans(args.plan, cfg, gpus)


def _check_with_parser(module: str):
    def check(argv: list[str], gpus: int) -> list[str]:
        _, error = _parse(importlib.import_module(module).build_parser(), argv)
        return [error] if error else []
    return check


def check_pytest(argv: list[str], gpus: int) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "pytest", *argv, "--collect-only", "-q", "-rs", "-p",
                           "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode == 0:
        return []
    if done.returncode == 5 and "SKIPPED [" in done.stdout:
        return []  # a module that skips itself on a CPU (a GPU-only test): collected on the GPU machine
    return [f"pytest collects nothing or fails to collect (exit {done.returncode}): {done.stdout.strip()[-400:]}"]


def check_script_file(path: str, argv: list[str]) -> list[str]:
    file = ROOT / path
    if not file.exists():
        return [f"{path} does not exist"]
    spec = importlib.util.spec_from_file_location(f"_dry_run_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "build_parser"):
        return [f"{path} has no build_parser() to check its flags with"]
    _, error = _parse(module.build_parser(), argv)
    return [error] if error else []


MODULE_CHECKS = {
    "helix_core.bench.main": check_bench,
    "helix_core.verify": check_verify,
    "helix_core.kernels.bench_decode": _check_with_parser("helix_core.kernels.bench_decode"),
    "helix_core.kernels.bench_small_linear": _check_with_parser("helix_core.kernels.bench_small_linear"),
    "helix_core.kernels.bench_sliced": _check_with_parser("helix_core.kernels.bench_sliced"),
    "helix_core.bench.collective_probe": _check_with_parser("helix_core.bench.collective_probe"),
    "pytest": check_pytest,
}


def check(command: Command, gpus: int) -> list[str]:
    try:
        if command.argv[:1] == ["-"]:
            return _check_source(command.stdin or "", "<stdin>")
        if command.argv[:1] == ["-c"] and len(command.argv) > 1:
            return _check_source(command.argv[1], "<-c>")
        return _check(command.argv, gpus)
    except Exception as error:  # noqa: BLE001 - a checker's crash is this command's problem, the rest go on
        return [f"the check itself failed: {type(error).__name__}: {error}"]


def _check_source(source: str, name: str) -> list[str]:
    """An inline program: as far as a CPU can tell without running it, that it compiles."""
    try:
        compile(source, name, "exec")
    except SyntaxError as error:
        return [f"{name} does not compile: {error}"]
    return []


def _check(argv: list[str], gpus: int) -> list[str]:
    if len(argv) >= 2 and argv[0] == "-m":
        checker = MODULE_CHECKS.get(argv[1])
        if checker is None:
            return [f"module {argv[1]} is not known to scripts/dry_run.py: teach it (MODULE_CHECKS)"]
        return checker(argv[2:], gpus)
    if argv and argv[0].endswith(".py"):
        return check_script_file(argv[0], argv[1:])
    return ["not a `python -m MODULE` or `python FILE.py` command: teach scripts/dry_run.py"]


def dry_run(scripts: list[Path], gpus: int) -> tuple[list[Command], list[str]]:
    """Every recorded command with its problems, and the scripts' own failures."""
    commands, failures = [], []
    with tempfile.TemporaryDirectory(prefix="helix-dry-run-") as workdir:
        for script in scripts:
            recorded, failure = record(script.resolve(), Path(workdir))
            if failure:
                failures.append(f"{script}: {failure}")
            if not recorded:
                failures.append(f"{script}: no python command recorded")
            for command in recorded:
                command.problems = check(command, gpus)
            commands += recorded
    return commands, failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scripts", nargs="+", type=Path)
    parser.add_argument("--gpus", type=int, required=True, help="GPUs of the machine the scripts are for")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    commands, failures = dry_run(args.scripts, args.gpus)
    for script in args.scripts:
        mine = [c for c in commands if c.script == script.name]
        limits = sum(c.limit_s or 0.0 for c in mine)
        print(f"{script}: {len(mine)} commands; {limits:.0f} s if each ran to its timeout "
              f"({sum(c.limit_s is None for c in mine)} without one)")
    for command in commands:
        for problem in command.problems:
            print(f"PROBLEM {command.script}: {command.describe()}\n    {problem}")
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures or any(c.problems for c in commands) else 0


if __name__ == "__main__":
    sys.exit(main())
