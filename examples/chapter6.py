"""Chapter 6 of *Build a Large Language Model (From Scratch)*, step by step, with this package.

    python examples/chapter6.py --weights path/to/gpt2/model.safetensors   # OpenAI's GPT-2
    python examples/chapter6.py --model tiny.json --epochs 1 --train-texts 80  # tiny, random

Without ``--weights`` (or ``--init pretrained``, which downloads them) the model is randomly
initialised: the steps are the same, the accuracy is not. Nothing is written to disk.
"""

import argparse

import torch

from gpt_classifier.classifier import GPTClassifier
from gpt_classifier.data import encode_splits, prepare_dataset
from gpt_classifier.inference import classify_review
from gpt_classifier.tokenizer import get_tokenizer
from gpt_classifier.training import calc_accuracy_loader, train_classifier_simple
from gpt_classifier.weights import build_model

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--model", default="gpt2", help="GPT-2 size name or a JSON config file")
parser.add_argument("--weights", help=".safetensors file or Hugging Face model directory")
parser.add_argument("--init", choices=["pretrained", "random"], help="default: from --weights")
parser.add_argument("--data-file", help="labelled file (default: sms-spam, downloaded)")
parser.add_argument("--tokenizer-dir", help="folder with GPT-2's vocab.bpe and encoder.json")
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--train-texts", type=int, help="keep only this many training texts")
args = parser.parse_args()
torch.manual_seed(123)
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# 6.2-6.3: the dataset (duplicates dropped, classes balanced, 70/10/20 split) and its loaders.
tokenizer = get_tokenizer(args.tokenizer_dir)
data = prepare_dataset(data_file=args.data_file, progress=False)
data.train = data.train[: args.train_texts]
init = args.init or ("pretrained" if args.weights else "random")
model = build_model(args.model, weights=args.weights, init=init)  # 6.4: GPTModel + weights
encoded = encode_splits(data, tokenizer, "batch", model.cfg.context_length)
train_loader, val_loader, test_loader = (encoded.loader(s) for s in ("train", "validation", "test"))

# 6.5: the 50,257-way out_head becomes Linear(emb_dim, num_classes); GPTClassifier does it
# and reads the last real token of each text (the lengths come with every batch).
num_classes = data.label_map.num_classes
classifier = GPTClassifier(model, num_classes).to(device)
assert model.out_head.out_features == num_classes
for param in classifier.parameters():  # freeze everything, then unfreeze as the book does:
    param.requires_grad = False
for module in (model.trf_blocks[-1], model.final_norm, model.out_head):
    for param in module.parameters():
        param.requires_grad = True

# 6.6-6.7: accuracy before training, the book's loop, accuracy after.
before = calc_accuracy_loader(test_loader, classifier, device, num_batches=10)  # as the book
print(f"test accuracy before fine-tuning (10 batches): {before:.2%}")
optimizer = torch.optim.AdamW(
    (p for p in classifier.parameters() if p.requires_grad), lr=5e-5, weight_decay=0.1
)
train_losses, val_losses, train_accs, val_accs, examples_seen = train_classifier_simple(
    classifier, train_loader, val_loader, optimizer, device, args.epochs, eval_freq=50, eval_iter=5
)
for name, loader in (("train", train_loader), ("validation", val_loader), ("test", test_loader)):
    print(f"{name} accuracy: {calc_accuracy_loader(loader, classifier, device):.2%}")

# 6.8: the classifier on new texts (class ids map back to the labels of the data file).
for text in (
    "You are a winner you have been specially selected to receive $1000 cash or a $2000 award.",
    "Hey, just wanted to check if we're still on for dinner tonight? Let me know!",
):
    label = data.label_map.classes[int(classify_review(text, classifier, tokenizer, device))]
    print(f"{label}\t{text}")
