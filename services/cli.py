"""`helix`: the command line of a Helix cluster.

    helix serve                      coordinator + N shard processes on this machine (no args: CPU,
                                     2 shards, a small random Llama made on the fly)
    helix coordinator                the coordinator alone (Kubernetes)
    helix shard                      one shard process, or one per local GPU (Kubernetes)
    helix generate                   stream tokens from a running cluster, then TTL statistics
    helix profile                    turn the sampled per-phase decode profiling on or off
    helix make-tiny-model            write a small random-weight checkpoint
    helix plan                       choose a sharding for a model, GPUs and a TTL budget
    helix bench                      decode TTL of real-size shapes: Helix, TP, one GPU, HF (GPUs)
    helix verify                     exactness against HF transformers on CPU workers or GPUs

Shard flags fall back to HELIX_RANK, HELIX_WORLD_SIZE, HELIX_RENDEZVOUS, HELIX_POD_INDEX and
HELIX_LOCAL_RANKS, so a pod's index and GPU count can give each process its rank.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys

from services.config_checks import ConfigError
from services.ports import PortUnavailable
from services.shard.config import DEFAULT_COLLECTIVE_TIMEOUT_S, DEFAULT_JOIN_TIMEOUT_S, ShardConfig

TINY_ARCHS = ("llama", "qwen2", "mistral", "deepseek_v3")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if args.command in FORWARDED:
        args.rest = rest  # parsed by the subcommand's own module
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(
        level=os.environ.get("HELIX_LOG_LEVEL", "WARNING"),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return args.run(args)
    except (CliError, ConfigError, PortUnavailable) as error:
        print(f"helix {args.command}: error: {error}", file=sys.stderr)
        return 2


FORWARDED = ("bench", "verify")


class CliError(Exception):
    """A flag combination that cannot work; the message says what to change."""


# ---- parsers ------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="helix", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _serve_parser(commands.add_parser("serve", help="run a whole cluster on this machine"))
    _shard_parser(commands.add_parser("shard", help="run shard process(es)"))
    _coordinator_parser(commands.add_parser("coordinator", help="run the coordinator"))
    _generate_parser(commands.add_parser("generate", help="generate from a running cluster"))
    profile = commands.add_parser("profile", help="time decode phases on a running shard group, on demand")
    profile.add_argument("--shard-address", required=True, help="HOST:PORT of shard rank 0's gRPC")
    profile.add_argument("--every", type=_non_negative_int, required=True,
                         help="profile one decode step in N (0: off)")
    profile.set_defaults(run=_profile)
    tiny = commands.add_parser("make-tiny-model", help="write a small random-weight checkpoint")
    tiny.add_argument("--arch", choices=TINY_ARCHS, default="llama")
    tiny.add_argument("--out", required=True, help="directory to write config.json and safetensors to")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--max-position-embeddings", type=int, default=None)
    tiny.set_defaults(run=_make_tiny_model)
    from helix_core.planner.cli import build_parser as plan_parser, run as plan_run

    plan_parser(commands.add_parser("plan", help="choose the sharding for a model, GPUs and a TTL budget")
                ).set_defaults(run=plan_run)
    bench = commands.add_parser("bench", help="decode TTL of real-size shapes against baselines and the roofline",
                                add_help=False)
    bench.set_defaults(run=_forward_to("helix_core.bench.main"))
    verify = commands.add_parser("verify", help="exactness against HF transformers (CPU or GPUs)", add_help=False)
    verify.set_defaults(run=_forward_to("helix_core.verify"))
    return parser


def _forward_to(module: str):
    """Subcommands whose flags their own module parses (they import torch; the SDK does not)."""

    def run(args) -> int:
        import importlib

        return importlib.import_module(module).main(args.rest)

    return run


def _engine_flags(parser: argparse.ArgumentParser) -> None:
    defaults = ShardConfig("", "", 1, 0, "")
    parser.add_argument(
        "--dtype", default="auto", help="float32|bfloat16|float16 (auto: bf16 on cuda, fp32 on cpu)"
    )
    parser.add_argument(
        "--kv-pages",
        type=int,
        default=defaults.kv_pages,
        help="KV pages per shard (0: fill --kv-memory-fraction of the free GPU memory)",
    )
    parser.add_argument("--kv-memory-fraction", type=float, default=defaults.kv_memory_fraction)
    parser.add_argument("--page-size", type=int, default=defaults.page_size,
                        help="tokens per KV page (default: 64 for MLA models, 16 otherwise)")
    parser.add_argument(
        "--stage-size",
        type=int,
        default=defaults.stage_size,
        help="tokens appended to one KVP rank before moving to the next",
    )
    parser.add_argument(
        "--prefill-chunk",
        type=int,
        default=defaults.prefill_chunk,
        help="prompt tokens prefilled per step (bounds how long a new prompt delays running streams)",
    )
    parser.add_argument("--hopb-pieces", type=int, default=defaults.hopb_pieces, help="HOP-B pieces (1: off)")
    parser.add_argument(
        "--all-reduce",
        choices=["auto", "nccl", "symm", "nccl-window"],
        default=defaults.all_reduce,
        help="all-reduces of the decode step: symm (torch symmetric-memory one-shot kernel over NVLink "
        "peer-to-peer; CUDA, bf16/fp32), nccl, nccl-window (NCCL's symmetric kernels through a "
        "window-registered buffer; CUDA), or auto (symm where it can run, else NCCL)",
    )
    parser.add_argument(
        "--exchange",
        choices=["auto", "all_to_all", "gather"],
        default=defaults.exchange,
        help="the decode step's KVP exchange: gather (one sum over zero-padded slots, by the symm-mem "
        "one-shot kernel), all_to_all, or auto (gather for small exchanges where symmetric memory runs "
        "and --all-reduce is not nccl)",
    )
    parser.add_argument(
        "--small-linear",
        choices=["auto", "on", "off"],
        default=defaults.small_linear,
        help="batch-1 projections by the Triton weight-streaming kernel: auto (CUDA), on, off (cuBLAS)",
    )
    parser.add_argument(
        "--o-projection",
        choices=["sharded", "replicated"],
        default=defaults.o_projection,
        help="replicated: every shard holds all of o_proj and, where the KVP exchange gathers (batches of "
        "a few rows on CUDA symmetric memory), projects every head itself, one all-reduce a layer fewer "
        "(Llama family, helix with --tpa 1); sharded: each shard its heads' columns",
    )
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size)
    parser.add_argument("--max-waiting-requests", type=int, default=0, help="0: no limit")
    parser.add_argument(
        "--profile-every",
        type=int,
        default=0,
        help="time the phases of one decode step in N (0: off; see Shard.SetProfiling)",
    )
    parser.add_argument(
        "--collective-timeout-s",
        type=float,
        default=DEFAULT_COLLECTIVE_TIMEOUT_S,
        help="a collective stuck longer than this fails the group",
    )
    parser.add_argument(
        "--drain-grace-s",
        type=float,
        default=defaults.drain_grace_s,
        help="on SIGTERM, how long live requests may take to finish",
    )
    parser.add_argument(
        "--model-name", default="", help="name reported to clients (default: the directory's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of unseeded sampling")


def _serve_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=None, help="Hugging Face checkpoint directory (default: a tiny random one)"
    )
    parser.add_argument("--shards", type=int, default=2, help="shard processes (one per device)")
    parser.add_argument("--plan", choices=("helix", "tp", "headslice", "auto"), default="helix",
                        help="auto: the planner's choice for --shards GPUs (see `helix plan`)")
    parser.add_argument("--hardware", default="h200", help="--plan auto: h100|h200|b200|gb200-nvl72 or a profile JSON")
    parser.add_argument("--context", type=int, default=None,
                        help="--plan auto: KV tokens per sequence to plan for (default: min(max positions, 32768))")
    parser.add_argument("--ttl-budget-ms", type=float, default=None, help="--plan auto: refuse to start above this TTL")
    parser.add_argument(
        "--kvp", type=int, default=None, help="helix: KV-parallel ranks (default: shards / tpa)"
    )
    parser.add_argument("--tpa", type=int, default=1, help="helix: head groups")
    parser.add_argument("--n", type=int, default=None, help="headslice: head groups (default: shards / m)")
    parser.add_argument("--m", type=int, default=1, help="headslice: slices of each head's dimension")
    parser.add_argument("--ep", type=int, default=1, help="expert-parallel ranks (MoE models)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--host", default="127.0.0.1", help="address every server listens on")
    parser.add_argument("--port", type=int, default=50051, help="coordinator gRPC port (0: any free port)")
    parser.add_argument("--metrics-port", type=int, default=9300, help="coordinator /metrics port (0: any)")
    parser.add_argument(
        "--shard-port", type=int, default=50061, help="shard r's gRPC port is this + r (0: any)"
    )
    parser.add_argument(
        "--shard-metrics-port", type=int, default=9400, help="shard r's /metrics: this + r (0: any)"
    )
    parser.add_argument("--no-metrics", action="store_true", help="no /metrics endpoints")
    parser.add_argument("--threads-per-shard", type=int, default=0, help="torch threads (0: cores / shards)")
    parser.add_argument(
        "--ready-file", default="", help="write where everything listens, as JSON, once ready"
    )
    parser.add_argument("--max-restarts", type=int, default=5, help="group restarts after a shard dies")
    parser.add_argument("--demo", type=int, default=0, metavar="N",
                        help="once ready, stream N tokens from a client and print them with TTL statistics")
    parser.add_argument("--exit-after-demo", action="store_true", help="stop once the --demo request is done")
    parser.add_argument(
        "--inject-control-delay-ms",
        type=float,
        default=0.0,
        help="testing: delay every coordinator<->shard message by this much",
    )
    _engine_flags(parser)
    parser.set_defaults(run=_serve)


def _shard_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint directory as this machine sees it")
    parser.add_argument(
        "--plan", required=True, help="plan spec, e.g. helix:kvp=2,tpa=1 | tp:n=4 | headslice:n=2,m=2"
    )
    parser.add_argument("--world-size", type=int, default=_env_int("HELIX_WORLD_SIZE"))
    parser.add_argument("--rank", type=int, default=_env_int("HELIX_RANK"))
    parser.add_argument(
        "--rendezvous",
        default=os.environ.get("HELIX_RENDEZVOUS"),
        help="HOST:PORT of rank 0's torch.distributed store (the same for every rank)",
    )
    parser.add_argument(
        "--local-ranks",
        type=int,
        default=_env_int("HELIX_LOCAL_RANKS"),
        help="instead of --rank: start this many shard processes, one per local GPU",
    )
    parser.add_argument(
        "--pod-index",
        type=int,
        default=_env_int("HELIX_POD_INDEX"),
        help="with --local-ranks: ranks are pod_index * local_ranks + j",
    )
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=50061, help="gRPC port (local rank j: + j)")
    parser.add_argument("--metrics-port", type=int, default=9400, help="/metrics port (local rank j: + j)")
    parser.add_argument("--no-metrics", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: cores / local shards)")
    parser.add_argument(
        "--join-timeout-s",
        type=float,
        default=DEFAULT_JOIN_TIMEOUT_S,
        help="how long to wait for every rank to join the group",
    )
    _engine_flags(parser)
    parser.set_defaults(run=_shard)


def _coordinator_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard-address",
        default=os.environ.get("HELIX_SHARD_ADDRESS"),
        help="HOST:PORT of shard rank 0's gRPC service",
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--metrics-port", type=int, default=9300)
    parser.add_argument("--no-metrics", action="store_true")
    parser.add_argument(
        "--tokenizer", default="", help="tokenizer directory (default: the checkpoint's, if readable)"
    )
    parser.add_argument("--no-tokenizer", action="store_true", help="token-id prompts only")
    parser.add_argument("--max-new-tokens-limit", type=int, default=0, help="0: the cluster's max context")
    parser.add_argument("--drain-grace-s", type=float, default=30.0)
    parser.add_argument("--max-streams", type=int, default=256, help="concurrent Generate streams")
    parser.add_argument(
        "--inject-control-delay-ms",
        type=float,
        default=0.0,
        help="testing: delay every coordinator<->shard message by this much",
    )
    parser.set_defaults(run=_coordinator)


def _generate_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="127.0.0.1:50051", help="coordinator HOST:PORT")
    parser.add_argument(
        "--prompt-ids", type=_token_ids, default=None, help="comma-separated token ids, e.g. 1,2,3"
    )
    parser.add_argument("--prompt", default=None, help="prompt text (needs a model with a tokenizer)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--stop-ids", type=_token_ids, default=(), help="comma-separated stop token ids")
    parser.add_argument("--timeout-s", type=float, default=None, help="deadline of the whole request")
    parser.add_argument("--model", default=None, help="fail unless the cluster serves this model name")
    parser.add_argument(
        "--wait-ready-s", type=_non_negative_seconds, default=0.0,
        help="first wait up to this long for the cluster to be ready (a helix serve still loading; 0: don't)",
    )
    parser.set_defaults(run=_generate)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 0")
    return value


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds of at least 0")
    return value


def _token_ids(text: str) -> list[int]:
    """A comma-separated list of token ids, refused by argparse with a usage error if not that."""
    parts = [part for part in text.replace(" ", "").split(",") if part]
    if not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of token ids (e.g. 1,2,3)")
    return [int(part) for part in parts]


# ---- commands -----------------------------------------------------------------------------------
def _serve(args) -> int:
    from services.serve import tiny_default_model

    if args.model:
        spec = _auto_plan(args, args.model) if args.plan == "auto" else _plan_spec(args)
        _check_model_and_plan(args.model, spec)
        return _serve_model(args, args.model, spec)
    spec = None if args.plan == "auto" else _plan_spec(args)
    model_dir = tiny_default_model()
    print(f"helix serve: no --model given: made a tiny random Llama in {model_dir}", flush=True)
    try:
        spec = spec or _auto_plan(args, model_dir)
        _check_model_and_plan(model_dir, spec)
        return _serve_model(args, model_dir, spec)
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)  # made for this run only


def _serve_model(args, model_dir: str, spec: str) -> int:
    from helix_core.launcher import device_unavailable
    from services.serve import ServeOptions, serve

    if (reason := device_unavailable(args.device)) is not None:
        raise CliError(reason)
    dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if args.device == "cuda" else "float32")
    shard = _shard_config(
        args,
        model_dir=model_dir,
        plan_spec=spec,
        world_size=args.shards,
        rank=0,
        rendezvous="",
        device=args.device,
        dtype=dtype,
        host=args.host,
        port=args.shard_port,
        metrics_port=None,
        threads=args.threads_per_shard,
        join_timeout_s=DEFAULT_JOIN_TIMEOUT_S,
    )
    return serve(
        ServeOptions(
            shard=shard,
            host=args.host,
            port=args.port,
            metrics_port=None if args.no_metrics else args.metrics_port,
            shard_base_port=args.shard_port,
            shard_metrics_base_port=None if args.no_metrics else args.shard_metrics_port,
            ready_file=args.ready_file,
            inject_control_delay_ms=args.inject_control_delay_ms,
            max_restarts=args.max_restarts,
            demo_tokens=args.demo,
            exit_after_demo=args.exit_after_demo,
        )
    )


def _plan_spec(args) -> str:
    extra = f",ep={args.ep}" if args.ep > 1 else ""
    if args.plan == "helix":
        kvp = args.kvp if args.kvp is not None else max(1, args.shards // max(1, args.tpa))
        spec = f"helix:kvp={kvp},tpa={args.tpa}{extra}"
    elif args.plan == "tp":
        spec = f"tp:n={args.shards}{extra}"
    else:
        n = args.n if args.n is not None else max(1, args.shards // max(1, args.m))
        spec = f"headslice:n={n},m={args.m}{extra}"
    from helix_core.plan import InvalidPlanError, Plan

    try:
        world = Plan.parse(spec).world_size
    except InvalidPlanError as error:
        raise CliError(str(error)) from None
    if world != args.shards:
        raise CliError(f"plan {spec} needs {world} shards but --shards is {args.shards}; change one of them")
    return spec


def _auto_plan(args, model_dir: str) -> str:
    """The planner's layout for this model on --shards GPUs (it only picks plans the engine runs)."""
    from helix_core.config import ModelConfig
    from helix_core.planner import NoPlanError, choose

    cfg = ModelConfig.from_dir(model_dir)
    dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if args.device == "cuda" else "float32")
    try:
        choice = choose(cfg, gpus=args.shards, hardware=args.hardware,
                        context=args.context or min(cfg.max_position_embeddings, 32768), batch=args.max_batch_size,
                        ttl_budget_s=args.ttl_budget_ms / 1e3 if args.ttl_budget_ms else None, dtype=dtype)
    except NoPlanError as error:
        raise CliError(f"--plan auto: {error}") from None
    if args.hopb_pieces == 1:
        args.hopb_pieces = choice.hopb_pieces
    print(f"helix serve: --plan auto chose {choice.describe()}", flush=True)
    return choice.plan.spec()


def _check_model_and_plan(model_dir: str, spec: str) -> None:
    """Refuse an unknown model or a plan it cannot run before any process starts."""
    from helix_core.config import ModelConfig, UnsupportedConfigError
    from helix_core.plan import InvalidPlanError, Plan

    try:
        Plan.parse(spec).validate(ModelConfig.from_dir(model_dir))
    except (FileNotFoundError, UnsupportedConfigError, InvalidPlanError) as error:
        raise CliError(f"--model {model_dir}: {error}") from None


def _shard_config(args, **fields) -> ShardConfig:
    return ShardConfig(
        kv_pages=args.kv_pages,
        kv_memory_fraction=args.kv_memory_fraction,
        page_size=args.page_size,
        stage_size=args.stage_size,
        prefill_chunk=args.prefill_chunk,
        hopb_pieces=args.hopb_pieces,
        all_reduce=args.all_reduce,
        exchange=args.exchange,
        small_linear=args.small_linear,
        o_projection=args.o_projection,
        max_batch_size=args.max_batch_size,
        max_waiting_requests=args.max_waiting_requests,
        profile_every_n_steps=args.profile_every,
        collective_timeout_s=args.collective_timeout_s,
        drain_grace_s=args.drain_grace_s,
        model_name=args.model_name,
        seed=args.seed,
        **fields,
    )


def _shard(args) -> int:
    from services.shard.main import run_shard

    config = _shard_config_from_args(args)
    if args.rank is not None:
        return run_shard(config)
    if args.pod_index is None:
        raise CliError("--local-ranks needs --pod-index (or HELIX_POD_INDEX)")
    from services.shard_processes import run_local_ranks

    return run_local_ranks(config, args.local_ranks, args.pod_index)


def shard_config_from_argv(argv: list[str]) -> ShardConfig:
    """The ShardConfig `helix shard ARGV` runs (with --rank; the launcher's view of the flags)."""
    return _shard_config_from_args(_parser().parse_args(["shard", *argv]))


def _shard_config_from_args(args) -> ShardConfig:
    missing = [
        flag
        for flag, value in (("--world-size", args.world_size), ("--rendezvous", args.rendezvous))
        if value is None
    ]
    if args.rank is None and args.local_ranks is None:
        missing.append("--rank (or --local-ranks with --pod-index)")
    if missing:
        raise CliError(f"missing {', '.join(missing)} (or their HELIX_* environment variables)")
    device = args.device if args.device != "auto" else _default_device()
    dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if device == "cuda" else "float32")
    return _shard_config(
        args,
        model_dir=args.model,
        plan_spec=args.plan,
        world_size=args.world_size,
        rank=args.rank if args.rank is not None else 0,
        rendezvous=args.rendezvous,
        device=device,
        dtype=dtype,
        host=args.host,
        port=args.port,
        metrics_port=None if args.no_metrics else args.metrics_port,
        threads=args.threads,
        join_timeout_s=args.join_timeout_s,
    )


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _coordinator(args) -> int:
    from services.coordinator.config import CoordinatorConfig
    from services.coordinator.server import run_coordinator

    if not args.shard_address:
        raise CliError("missing --shard-address HOST:PORT (shard rank 0's gRPC), or HELIX_SHARD_ADDRESS")
    return run_coordinator(
        CoordinatorConfig(
            shard_address=args.shard_address,
            host=args.host,
            port=args.port,
            metrics_port=None if args.no_metrics else args.metrics_port,
            tokenizer_dir=args.tokenizer,
            use_checkpoint_tokenizer=not args.no_tokenizer,
            max_new_tokens_limit=args.max_new_tokens_limit,
            drain_grace_s=args.drain_grace_s,
            max_streams=args.max_streams,
            inject_control_delay_ms=args.inject_control_delay_ms,
        )
    )


def _generate(args) -> int:
    from services.generate_cli import run_generate

    if (args.prompt_ids is None) == (args.prompt is None):
        raise CliError("give exactly one of --prompt-ids 1,2,3 and --prompt TEXT")
    return run_generate(args)


def _profile(args) -> int:
    import grpc

    from services.proto_gen.helix.v1 import shard_pb2, shard_pb2_grpc

    with grpc.insecure_channel(args.shard_address) as channel:
        request = shard_pb2.SetProfilingRequest(every_n_steps=args.every)
        try:
            previous = (
                shard_pb2_grpc.ShardStub(channel).SetProfiling(request, timeout=30).previous_every_n_steps
            )
        except grpc.RpcError as error:
            raise CliError(f"{error.code().name}: {error.details()}") from None

    def describe(n):
        return f"one decode step in {n}" if n else "off"

    print(f"helix profile: {describe(args.every)} (was {describe(previous)}); see helix_decode_phase_seconds")
    return 0


def _make_tiny_model(args) -> int:
    from helix_core.tiny_models import make_tiny_model

    overrides = (
        {}
        if args.max_position_embeddings is None
        else {"max_position_embeddings": args.max_position_embeddings}
    )
    try:
        out = make_tiny_model(args.arch, args.out, seed=args.seed, **overrides)
    except OSError as error:
        raise CliError(f"--out {args.out}: cannot write the checkpoint there ({error.strerror})") from None
    print(f"helix make-tiny-model: wrote a random {args.arch} checkpoint to {out}")
    return 0


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


if __name__ == "__main__":
    sys.exit(main())
