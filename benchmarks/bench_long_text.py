"""Long texts: SMS messages placed after ~200 neutral filler words, past a tiny model's context.

Builds, offline and deterministically (seeded), ``--texts`` SMS messages of the UCI collection
(half ham, half spam, no repeats), each preceded by ``--filler-words`` words drawn from a fixed
list of neutral words: the label's evidence starts after token 128, beyond the context of the
tiny model trained here (context 128, 128-dim embeddings, 4 blocks, 4 heads, random init, every
weight trained). Trains ``--long-text truncate``, ``head-tail`` and ``chunks`` on the same
splits, then TF-IDF + logistic regression (scikit-learn, the ``experiments`` extra) on the splits
the runs wrote, and prints test accuracy and wall time side by side.

``--long-documents`` adds a second corpus: each text several SMS messages of one class between
filler, thousands of tokens long (``--max-chunks`` bounds what chunks reads of each).

    python benchmarks/bench_long_text.py [--texts 800] [--long-documents]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from common import (
    DEFAULT_OUT_DIR,
    add_data_arguments,
    format_machine,
    machine_info,
    require_shared_data,
    table,
)

from gpt_classifier.data import read_splits
from gpt_classifier.training.pipeline import FinetuneOptions, run_finetune

TINY = dict(vocab_size=50257, context_length=128, emb_dim=128, n_heads=4, n_layers=4)
TINY |= dict(drop_rate=0.0, qkv_bias=True)
# Words that say nothing about spam: function words and everyday nouns and verbs.
NEUTRAL = """the a of and to in is it that was for on are with as be at by this from or have an
they which one were her all she there would their we him been has when who will more if out so
said what up its about into than them can only other some could time these two may then do first
any my now such like our over even most made after also did many before must through back years
where much way well down should because each just those people how too little state good very
make world still own see work long get here between both life being under never day same another
know while last might us great old year off come since against go came right used take three
house water room tree river table chair road city garden window paper morning evening weather
""".split()  # noqa: SIM905 (a list literal of 150 words is longer)
MODES = ("chunks", "head-tail", "truncate")


def read_sms(data_file: Path) -> dict[str, list[str]]:
    """The collection's distinct messages by label, in file order."""
    by_label: dict[str, list[str]] = {"ham": [], "spam": []}
    seen: set[str] = set()
    for line in data_file.read_text(encoding="utf-8").splitlines():
        label, _, text = line.partition("\t")
        if label in by_label and text.strip() and text not in seen:
            seen.add(text)
            by_label[label].append(text.strip())
    return by_label


def filler(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(NEUTRAL) for _ in range(words))


def filler_corpus(by_label: dict[str, list[str]], texts: int, words: int, seed: int) -> list:
    """``texts`` (label, filler + message) rows, half of each class, shuffled."""
    rng = random.Random(seed)
    rows = []
    for label, messages in by_label.items():
        for message in rng.sample(messages, texts // 2):
            rows.append((label, f"{filler(rng, words)} {message}"))
    rng.shuffle(rows)
    return rows


def long_document_corpus(by_label: dict[str, list[str]], texts: int, seed: int) -> list:
    """``texts`` documents, each 12 messages of one class between 150-word fillers."""
    rng = random.Random(seed)
    rows = []
    for number in range(texts):
        label = ("ham", "spam")[number % 2]
        parts = [f"{filler(rng, 150)} {message}" for message in rng.sample(by_label[label], 12)]
        rows.append((label, " ".join(parts)))
    rng.shuffle(rows)
    return rows


def write_tsv(rows: list, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{label}\t{text}\n" for label, text in rows), encoding="utf-8")
    return path


def train(data: Path, mode: str, out: Path, args: argparse.Namespace) -> dict:
    """One run of ``mode``: test accuracy, wall time and training windows per epoch."""
    options = FinetuneOptions(
        output_dir=str(out / mode),
        overwrite=True,
        data_file=str(data),
        model=str(out / "tiny.json"),
        init="random",
        tokenizer_dir=str(args.tokenizer_dir),
        trainable="all",
        epochs=args.epochs,
        lr=args.lr,
        precision=args.precision,
        long_text=mode,
        max_chunks=args.max_chunks,
        progress=False,
        plots=False,
        disk_cache=False,
    )
    started = time.perf_counter()
    result = run_finetune(options, log=lambda message: None)
    seconds = time.perf_counter() - started
    return {"accuracy": result.report["test"]["accuracy"], "seconds": seconds}


def tfidf(run_dir: Path) -> dict:
    """TF-IDF (words and bigrams) + logistic regression on the splits ``run_dir`` wrote."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    splits = read_splits(run_dir / "data")
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    train_x = vectorizer.fit_transform([r.text for r in splits.train])
    model = LogisticRegression(max_iter=2000).fit(train_x, [r.label for r in splits.train])
    predicted = model.predict(vectorizer.transform([r.text for r in splits.test]))
    correct = sum(p == r.label for p, r in zip(predicted, splits.test, strict=True))
    return {"accuracy": correct / len(splits.test), "seconds": time.perf_counter() - started}


def compare(name: str, rows: list, out: Path, args: argparse.Namespace) -> list[list[str]]:
    data = write_tsv(rows, out / name / "data.tsv")
    results = {}
    for mode in MODES:
        results[mode] = train(data, mode, out / name, args)
        print(f"{name} {mode}: {results[mode]}", file=sys.stderr, flush=True)
    results["tf-idf + logistic regression"] = tfidf(out / name / "chunks")
    print(f"{name} tf-idf: {results['tf-idf + logistic regression']}", file=sys.stderr)
    return [
        [name, method, f"{r['accuracy'] * 100:.1f} %", f"{r['seconds']:.1f}"]
        for method, r in results.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--texts", type=int, default=800)
    parser.add_argument("--filler-words", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--precision", default="fp32", help="fp32: a tiny model's matmuls")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-chunks", type=int, default=8)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--long-documents", action="store_true")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR / "long-text")
    args = parser.parse_args()
    args.data_file, args.tokenizer_dir = require_shared_data(args.data_file, args.tokenizer_dir)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("filler-sms", "long-documents"):
        (args.out / name).mkdir(exist_ok=True)
        (args.out / name / "tiny.json").write_text(json.dumps(TINY))
    print(format_machine(machine_info()), flush=True)
    by_label = read_sms(args.data_file)
    rows = compare(
        "filler-sms",
        filler_corpus(by_label, args.texts, args.filler_words, args.seed),
        args.out,
        args,
    )
    if args.long_documents:
        documents = long_document_corpus(by_label, args.texts // 2, args.seed)
        rows += compare("long-documents", documents, args.out, args)
    print(table(["corpus", "method", "test accuracy", "seconds"], rows))


if __name__ == "__main__":
    main()
