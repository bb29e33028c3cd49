"""Helpers shared by the benchmark scripts: machine description, peak RSS, timing, subprocesses.

Not part of the package: these scripts measure it. Each configuration runs in its own process
(``ru_maxrss`` is a per-process high-water mark) and reports one JSON line on stdout, prefixed
with ``RESULT_PREFIX``; the parent collects those lines and prints the tables.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gpt_classifier.training.memory import peak_rss_mb

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_FILE = (
    REPO_ROOT / ".." / "shared" / "data" / "sms_spam_collection" / "SMSSpamCollection"
)
DEFAULT_TOKENIZER_DIR = REPO_ROOT / ".." / "shared" / "data" / "gpt2-tokenizer"
DEFAULT_OUT_DIR = REPO_ROOT / "benchmarks" / ".out"  # ignored by benchmarks/.gitignore
TOKENIZER_ENV = "GPT_CLASSIFIER_TOKENIZER_DIR"
RESULT_PREFIX = "BENCH_RESULT "

# ISA extensions that decide how fast fp32/bf16 matmuls can run on a CPU.
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


# --- data ----------------------------------------------------------------------------------


def add_data_arguments(parser: Any) -> None:
    """``--data-file`` and ``--tokenizer-dir`` with the shared-data defaults."""
    parser.add_argument(
        "--data-file",
        type=Path,
        default=DEFAULT_DATA_FILE,
        help="the UCI SMS Spam Collection file (default: ../shared/data/... from the repo root)",
    )
    parser.add_argument(
        "--tokenizer-dir",
        type=Path,
        default=DEFAULT_TOKENIZER_DIR,
        help="GPT-2's encoder.json and vocab.bpe (default: ../shared/data/gpt2-tokenizer)",
    )


def require_shared_data(data_file: Path, tokenizer_dir: Path) -> tuple[Path, Path]:
    """Resolved paths, with ``$GPT_CLASSIFIER_TOKENIZER_DIR`` set (inherited by subprocesses).

    Exits with status 0 and a clear message when the shared data is absent: the benchmarks
    have nothing to measure then, and that is not an error of the package."""
    data_file = data_file.expanduser().resolve()
    tokenizer_dir = tokenizer_dir.expanduser().resolve()
    missing = [str(data_file)] if not data_file.is_file() else []
    missing += [
        str(tokenizer_dir / name)
        for name in ("encoder.json", "vocab.bpe")
        if not (tokenizer_dir / name).is_file()
    ]
    if missing:
        print(
            "SKIPPED: the shared benchmark data is absent (" + ", ".join(missing) + "). Pass "
            "--data-file / --tokenizer-dir, or put the files under ../shared/data "
            "(see ../shared/data/README.md).",
            flush=True,
        )
        sys.exit(0)
    os.environ[TOKENIZER_ENV] = str(tokenizer_dir)
    return data_file, tokenizer_dir


def read_sms_texts(data_file: Path, limit: int | None = None) -> list[str]:
    """Texts of the SMS file in file order (``label<TAB>text``, no quoting)."""
    from gpt_classifier.data import read_records

    texts = [record.text for record in read_records(data_file, "sms")]
    return texts if limit is None else texts[:limit]


# --- machine -------------------------------------------------------------------------------


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model, flags


def machine_info() -> dict[str, Any]:
    import torch

    model, flags = _cpuinfo()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        capability = "?"
    try:
        import transformers

        transformers_version = transformers.__version__
    except ImportError:
        transformers_version = "not installed"
    try:
        from gpt_classifier.precision import cpu_has_fast_bf16

        fast_bf16 = cpu_has_fast_bf16()
    except ImportError:
        fast_bf16 = None
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "isa_present": [f for f in ISA_FLAGS if f in flags],
        "isa_absent": [f for f in ISA_FLAGS if flags and f not in flags],
        "torch_cpu_capability": capability,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers_version,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu_has_fast_bf16": fast_bf16,
        "load_average": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
    }


def format_machine(info: dict[str, Any]) -> str:
    lines = [
        f"CPU:          {info['cpu']} ({info['logical_cpus']} logical CPUs, "
        f"{info['usable_cpus']} usable by this process)",
        f"ISA flags:    present {' '.join(info['isa_present']) or '-'}; "
        f"absent {' '.join(info['isa_absent']) or '-'}",
        f"torch:        {info['torch']} (CPU capability {info['torch_cpu_capability']}, "
        f"{info['torch_threads']} intra-op threads, {info['torch_interop_threads']} inter-op, "
        f"oneDNN {'yes' if info['mkldnn'] else 'no'})",
        f"transformers: {info['transformers']}; Python {info['python']}",
        f"cpu_has_fast_bf16(): {info['cpu_has_fast_bf16']}",
    ]
    if info.get("load_average") is not None:
        one, five, fifteen = info["load_average"]
        lines.append(f"load average at start: {one} {five} {fifteen} (the CPU may be shared)")
    return "\n".join(lines)


# --- measuring -----------------------------------------------------------------------------


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):
        return float("nan")


@contextmanager
def timed(into: dict[str, float], name: str) -> Iterator[None]:
    """Adds the wall time of the block, in seconds, to ``into[name]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        into[name] = into.get(name, 0.0) + time.perf_counter() - start


def log(message: str) -> None:
    """Progress messages go to stderr; stdout carries the result line and the tables."""
    print(message, file=sys.stderr, flush=True)


def emit_result(result: dict[str, Any]) -> None:
    result = dict(result)
    result.setdefault("peak_rss_mb", round(peak_rss_mb(), 1))
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


def run_child(script: Path, args: Sequence[str], timeout: float | None = None) -> dict[str, Any]:
    """Run ``python script *args`` in a fresh process (its own peak RSS) and return the JSON it
    emitted; ``{"error": ...}`` when it failed. Its stderr (progress) passes through."""
    command = [sys.executable, str(script), *args]
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            command,
            stdout=subprocess.PIPE,
            stderr=None,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            env=os.environ.copy(),
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "command": command}
    wall = time.perf_counter() - started
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
            result["process_wall_s"] = round(wall, 2)
            return result
    tail = completed.stdout.strip().splitlines()[-5:]
    return {
        "error": f"exit status {completed.returncode}, no result line",
        "stdout_tail": tail,
        "command": command,
    }


# --- printing ------------------------------------------------------------------------------


def fmt_s(seconds: float | None, digits: int = 1) -> str:
    if seconds is None or seconds != seconds:  # None or NaN
        return "-"
    if seconds >= 120:
        return f"{seconds:.{digits}f} s ({seconds / 60:.1f} min)"
    return f"{seconds:.{digits}f} s"


def fmt_ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "-"
    return f"{numerator / denominator:.1f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table, first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


# --- Hugging Face --------------------------------------------------------------------------


def hf_weights_dir(name: str) -> Path:
    """A transformers ``save_pretrained`` folder of GPT-2 ``name``'s size, randomly initialised:
    the layout of pretrained weights without a download. Made once under ``DEFAULT_OUT_DIR``, in
    another process (the measured one's peak memory stays its own)."""
    folder = DEFAULT_OUT_DIR / f"{name}-transformers"
    if not (folder / "model.safetensors").is_file():
        code = (
            "import sys, torch, transformers\n"
            "from gpt_classifier.config import resolve_config\n"
            "c = resolve_config(sys.argv[1]); torch.manual_seed(0)\n"
            "config = transformers.GPT2Config(n_embd=c.emb_dim, n_layer=c.n_layers, "
            "n_head=c.n_heads, n_positions=c.context_length, vocab_size=c.vocab_size)\n"
            "transformers.GPT2LMHeadModel(config).save_pretrained(sys.argv[2])\n"
        )
        subprocess.run([sys.executable, "-c", code, name, str(folder)], check=True)
    return folder


def hf_gpt2_config(cfg: Any, classes: Sequence[str]) -> Any:
    """``transformers.GPT2Config`` for ``GPT2ForSequenceClassification`` computing what our
    ``GPTClassifier`` with GPTConfig ``cfg`` computes: tanh GELU, eps 1e-5, no dropout."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.context_length,
        n_embd=cfg.emb_dim,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        summary_first_dropout=0.0,
        pad_token_id=50256,
        num_labels=len(classes),
        id2label=dict(enumerate(classes)),
        label2id={name: i for i, name in enumerate(classes)},
    )
