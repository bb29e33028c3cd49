"""Run by ``torchrun`` in tests/test_distributed.py: one fine-tune on every rank; rank 0 writes
the per-step losses and the report as JSON (``argv[1]``) for the test to compare."""

from __future__ import annotations

import json
import sys

from gpt_classifier.training.pipeline import run_finetune
from gpt_classifier.training.recipe import FinetuneOptions

if __name__ == "__main__":
    out, options = sys.argv[1], FinetuneOptions(**json.loads(sys.argv[2]))
    result = run_finetune(options)
    if result.main_process:
        with open(out, "w", encoding="utf-8") as handle:
            json.dump({"step_losses": result.train.step_losses, "report": result.report}, handle)
