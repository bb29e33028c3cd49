"""Faithfulness of ``classify --explain`` / ``POST /explain`` on a saved run's test split.

For each test text the occlusion scores (``gpt_classifier.inference.explain``) are computed,
then the predicted class's probability is measured with the 3 top-scored tokens deleted, and
with 3 random tokens deleted (5 seeded draws per text). A faithful explanation names the tokens
the prediction rests on: deleting them should lower the probability more. Texts of 3 tokens or
fewer are left out (nothing would remain).

Usage: ``python benchmarks/bench_explain.py RUN_DIR [--limit N --k 3 --draws 5 --seed 0]``
(the run's own ``data/test.csv``, or ``--texts FILE`` read as ``classify --file`` reads it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import DEFAULT_TOKENIZER_DIR, format_machine, log, machine_info, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--texts", type=Path, default=None, help="default: RUN/data/test.csv")
    parser.add_argument("--limit", type=int, default=None, help="the first N texts only")
    parser.add_argument("--k", type=int, default=3, help="tokens deleted")
    parser.add_argument("--draws", type=int, default=5, help="random deletions per text")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tokenizer-dir", type=Path, default=DEFAULT_TOKENIZER_DIR)
    args = parser.parse_args()

    from gpt_classifier.inference import TextClassifier
    from gpt_classifier.inference.explain import deletion_faithfulness
    from gpt_classifier.inference.file_stream import read_texts

    machine = machine_info()
    texts_file = args.texts or args.run_dir / "data" / "test.csv"
    _, texts = read_texts(texts_file)
    texts = texts[: args.limit]
    tokenizer = args.tokenizer_dir if args.tokenizer_dir.is_dir() else None
    classifier = TextClassifier.from_run(args.run_dir, tokenizer_dir=tokenizer)
    log(f"explaining {len(texts)} texts of {texts_file} with {args.run_dir}")
    started = time.perf_counter()
    result = deletion_faithfulness(classifier, texts, k=args.k, draws=args.draws, seed=args.seed)
    seconds = time.perf_counter() - started
    print(format_machine(machine))
    print(
        f"run {args.run_dir} ({classifier.info.base_model}, {classifier.info.init} init, "
        f"pooling {classifier.info.pooling}), {texts_file}: {result.texts} texts with more "
        f"than {args.k} tokens, {result.draws} random draws each (seed {args.seed}), "
        f"{seconds:.1f} s, precision {classifier.precision}"
    )
    print(
        table(
            ["deleted", "mean fall of p(predicted class)"],
            [
                [f"{args.k} top-scored tokens", f"{result.top_drop:.4f}"],
                [f"{args.k} random tokens", f"{result.random_drop:.4f}"],
            ],
        )
    )
    print(
        f"top-scored deletion lowers it more than random deletion for "
        f"{100 * result.top_wins:.1f} % of the texts"
    )


if __name__ == "__main__":
    main()
