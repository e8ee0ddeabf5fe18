"""Shared pieces of the serving tests: tiny checkpoints, real clusters, the HF oracle, /metrics.

Load it with `pytest_plugins = ["serving_fixtures"]`, so that its session fixtures (checkpoints,
the main cluster) are made once for all the tests/test_serving_*.py modules.

Clusters are real: `helix serve` (or the `helix shard` / `helix coordinator` roles) started as
subprocesses on loopback with free ports, every wait bounded, every process killed at the end.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families

from services.client import HelixClient

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
VOCAB = 256  # every tiny model's vocabulary
# The main cluster: a Llama with a 1024-token context, but KV pages for fewer tokens per sequence,
# so that the model's limit and the KV limit can each be hit on their own.
MAIN_MODEL_CONTEXT = 2048
MAIN_CLUSTER_FLAGS = [
    "--plan",
    "helix",
    "--kvp",
    "2",
    "--tpa",
    "1",
    "--kv-pages",
    "48",
    "--page-size",
    "16",
    "--stage-size",
    "16",
    "--prefill-chunk",
    "64",
    "--max-batch-size",
    "16",
]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "HELIX_LOG_LEVEL": "WARNING"}


# ---- checkpoints ------------------------------------------------------------------------------
def _checkpoint(factory: pytest.TempPathFactory, name: str, make) -> Path:
    """One checkpoint per test session, whichever module asks first (a directory cache)."""
    path = factory.getbasetemp() / "serving-checkpoints" / name
    if not (path / "config.json").is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
    return path


def add_word_tokenizer(model_dir: Path) -> None:
    """A word-level tokenizer over the tiny vocabulary: token i is the word "w<i>"."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({f"w{i}": i for i in range(VOCAB)}, unk_token="w0"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="w0").save_pretrained(model_dir)


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    from helix_core.tiny_models import make_tiny_model

    def make(path):
        make_tiny_model("llama", path, max_position_embeddings=MAIN_MODEL_CONTEXT)
        add_word_tokenizer(path)

    return _checkpoint(tmp_path_factory, "llama-2k", make)


@pytest.fixture(scope="session")
def deepseek_dir(tmp_path_factory) -> Path:
    """Made through `helix make-tiny-model`, which this also tests."""

    def make(path):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "services.cli",
                "make-tiny-model",
                "--arch",
                "deepseek_v3",
                "--out",
                str(path),
            ],
            check=True,
            timeout=120,
            env=child_env(),
            capture_output=True,
        )

    return _checkpoint(tmp_path_factory, "deepseek_v3", make)


# ---- the HF oracle ----------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _hf_model(model_dir: str):
    from helix_core.tiny_models import load_hf_model

    return load_hf_model(model_dir)


@functools.lru_cache(maxsize=256)
def _hf_greedy(model_dir: str, prompt: tuple[int, ...], max_new_tokens: int):
    model = _hf_model(model_dir)
    ids, past, tokens, logprobs = torch.tensor([prompt]), None, [], []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            out = model(input_ids=ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1].float()
            token = int(logits.argmax())
            tokens.append(token)
            logprobs.append(float(logits.log_softmax(-1)[token]))
            ids = torch.tensor([[token]])
    return tokens, logprobs


def hf_greedy(model_dir, prompt, max_new_tokens: int) -> tuple[list[int], list[float]]:
    """Greedy tokens and their log-probabilities from Hugging Face transformers (the oracle)."""
    tokens, logprobs = _hf_greedy(str(model_dir), tuple(prompt), max_new_tokens)
    return list(tokens), list(logprobs)


def assert_matches_hf(result, model_dir, prompt, atol: float = 1e-4) -> None:
    tokens, logprobs = hf_greedy(model_dir, prompt, len(result.token_ids))
    assert result.token_ids == tokens, f"prompt {list(prompt)[:8]}...: served {result.token_ids}, HF {tokens}"
    assert result.logprobs == pytest.approx(logprobs, abs=atol)


def prompt_of(length: int, salt: int = 0) -> list[int]:
    """A deterministic prompt of token ids in the tiny vocabulary."""
    return [(7 * i + 13 * salt + 3) % VOCAB for i in range(length)]


# ---- /metrics ---------------------------------------------------------------------------------
def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_until(condition, timeout_s: float, what: str, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


# ---- clusters ---------------------------------------------------------------------------------
class ServeCluster:
    """`helix serve` in a subprocess, on free loopback ports; `ready` is its --ready-file content."""

    def __init__(self, workdir: Path, flags: list[str], model_dir: Path | None = None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.model_dir = model_dir
        self.ready_file = workdir / "ready.json"
        self.log_path = workdir / "serve.log"
        command = [
            sys.executable,
            "-m",
            "services.cli",
            "serve",
            "--port",
            "0",
            "--metrics-port",
            "0",
            "--shard-port",
            "0",
            "--shard-metrics-port",
            "0",
            "--ready-file",
            str(self.ready_file),
            *(["--model", str(model_dir)] if model_dir else []),
            *flags,
        ]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=child_env())
        self._known_pids: set[int] = set()
        try:
            wait_until(
                lambda: self.ready_file.exists() or self.proc.poll() is not None,
                START_TIMEOUT_S,
                "helix serve to become ready",
            )
            if self.proc.poll() is not None:
                raise AssertionError(f"helix serve exited with {self.proc.returncode}:\n{self.log()}")
        except BaseException:
            self.kill()
            raise

    @property
    def ready(self) -> dict:
        info = json.loads(self.ready_file.read_text())
        self._known_pids.update(shard["pid"] for shard in info["shards"])
        return info

    @property
    def target(self) -> str:
        return self.ready["coordinator"]

    def shard(self, rank: int) -> dict:
        return self.ready["shards"][rank]

    def client(self, **kwargs) -> HelixClient:
        return HelixClient(self.target, **kwargs)

    def coordinator_metrics(self):
        return scrape(self.ready["coordinator_metrics_port"])

    def shard_metrics(self, rank: int):
        return scrape(self.shard(rank)["metrics_port"])

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal helix serve, wait for it to exit; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        finally:
            self.kill()

    def kill(self) -> None:
        """Kill helix serve and every shard it ever started (a no-op for those already gone)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.ready_file.exists():
            try:
                self.ready  # noqa: B018 - collects the latest pids
            except (json.JSONDecodeError, OSError):
                pass
        for pid in self._known_pids:
            _kill_pid(pid)
        self._log.close()

    def leftover_shards(self) -> list[int]:
        return [pid for pid in self._known_pids if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def _kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


LOG_TAIL_LINES = 80


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed serving test shows the tail of its clusters' `helix serve` logs: a flake says why."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    for name, value in getattr(item, "funcargs", {}).items():
        if isinstance(value, ServeCluster):
            tail = value.log().splitlines()[-LOG_TAIL_LINES:]
            report.sections.append((f"helix serve log of {name} (last {len(tail)} lines)", "\n".join(tail)))


@pytest.fixture(scope="session")
def main_cluster(tmp_path_factory, llama_dir):
    """A 2-shard helix:kvp=2,tpa=1 cluster of the tiny Llama, shared by most serving tests."""
    cluster = ServeCluster(tmp_path_factory.mktemp("main-cluster"), MAIN_CLUSTER_FLAGS, llama_dir)
    yield cluster
    cluster.stop()
