"""The model card (``README.md``) of a run folder or an export, from what the run records."""

import json
import math
from pathlib import Path
from typing import Any

from ..fileio import write_text
from .run_dir import RunInfo

CARD_FILE = "README.md"
RUN_USAGE = """```bash
gpt-classifier classify path/to/this/folder "Your text here"
```

```python
from gpt_classifier.inference import TextClassifier
print(TextClassifier.from_run("path/to/this/folder").classify("Your text here"))
```"""
_Z95 = 1.959964  # the normal quantile of a two-sided 95 % interval
_NO_METRICS = "No metrics were recorded for this run (no `metrics.json`)."


def wilson_interval(share: float, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion ``share`` seen in ``n`` trials."""
    centre = (share + _Z95**2 / (2 * n)) / (1 + _Z95**2 / n)
    spread = _Z95 * math.sqrt(share * (1 - share) / n + _Z95**2 / (4 * n * n)) / (1 + _Z95**2 / n)
    return max(0.0, centre - spread), min(1.0, centre + spread)


def model_card(info: RunInfo, metrics: dict[str, Any] | None, usage: str, note: str = "") -> str:
    """The card's Markdown; ``usage``: how to load this folder; ``note``: format specifics."""
    extra = info.extra or {}
    data = extra.get("data")
    lines = ["- Not recorded (the run was saved from Python, not by `train`)."]
    if isinstance(data, dict):
        lines = [f"- Source: `{data.get('source', 'unknown')}`"]
        for split, counts in (data.get("splits") or {}).items():
            lines.append(f"- {split}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    rows = ["| split | texts | accuracy | 95 % interval (Wilson) | macro F1 |", "|---" * 5 + "|"]
    for split, values in (metrics or {}).items():
        accuracy, n = values.get("accuracy"), values.get("num_examples")
        if type(accuracy) is float and type(n) is int and n >= 1:
            low, high = wilson_interval(accuracy, n)
            f1 = (values.get("macro_avg") or {}).get("f1")
            f1_text = f"{f1:.3f}" if isinstance(f1, float) else "-"
            shares = f"{100 * accuracy:.2f} % | {100 * low:.2f} % – {100 * high:.2f} %"
            rows.append(f"| {split} | {n} | {shares} | {f1_text} |")
    init = "random weights, not pretrained" if info.init == "random" else "pretrained weights"
    recipe = {
        "base model": f"`{info.base_model or 'gpt2'}` ({init})",
        "size": json.dumps(info.gpt_config.to_dict()),
        "pooling": info.pooling,
        "padding": info.padding,
        "texts cut to": f"{info.max_length} tokens",
        "trained parameters": extra.get("trainable", "not recorded"),
        "LoRA": extra.get("lora") and json.dumps(extra["lora"]),
        "training settings": extra.get("training") and json.dumps(extra["training"]),
    }
    return f"""# Text classifier: {", ".join(info.classes)}

A GPT-2 fine-tuned as a text classifier with gpt-classifier.

## Data
{chr(10).join(lines)}

## Recipe
{chr(10).join(f"- {key}: {value}" for key, value in recipe.items() if value)}

## Metrics
{chr(10).join(rows) if len(rows) > 2 else _NO_METRICS}

## Intended use
Sorting texts like the training texts into the classes {", ".join(info.classes)}.

## Limits
- Only texts like the training data: the metrics above hold for texts drawn as the test split was.
- A text longer than {info.max_length} tokens is cut to its first {info.max_length} tokens.
- The probabilities are the model's, not calibrated; check decisions that matter by hand.
{note}
## How to load it
{usage}
"""


def write_model_card(folder: Path, info: RunInfo, metrics: dict[str, Any] | None) -> None:
    write_text(folder / CARD_FILE, model_card(info, metrics, RUN_USAGE))
