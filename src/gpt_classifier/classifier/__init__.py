"""GPT-2 as a text classifier: new head, pooling, what to fine-tune, LoRA (book ch. 6, app. E)."""

from .model import GPTClassifier
from .pooling import POOLINGS, Pooling, pool_hidden, validate_pooling
from .trainable import (
    LinearWithLoRA,
    LoRALayer,
    TrainableKind,
    TrainableSpec,
    apply_trainable,
    count_parameters,
    describe_trainable,
    first_trainable_block,
    has_lora,
    merge_lora,
    parse_trainable,
    replace_linear_with_lora,
)
