"""The one length planner: padded and packed batches under the one token budget."""

from __future__ import annotations

import math

from gpt_classifier.data.batching import TOKENS_PER_PASS, plan_batches


def test_padded_batches_go_longest_first_within_the_budget():
    lengths = [3, 10, 5, 10, 1]
    # Rows padded to each batch's first (longest) text: 2 rows of 10, then 3 rows of 5.
    assert plan_batches(lengths, 20) == [[1, 3], [2, 0, 4]]
    assert plan_batches(lengths, 20, max_texts=2) == [[1, 3], [2, 0], [4]]
    assert plan_batches(lengths, 100, pad_to=25) == [[1, 3, 2, 0], [4]]  # 4 rows of 25
    assert plan_batches(lengths, math.inf, equal_lengths=True) == [[1, 3], [2], [0], [4]]


def test_a_text_over_the_budget_gets_a_batch_of_its_own():
    assert plan_batches([2000, 3, 4]) == [[0], [2, 1]]
    assert plan_batches([2000, 3, 4], packed=True) == [[0], [2, 1]]
    assert TOKENS_PER_PASS == 1024


def test_packed_batches_sum_their_texts_and_may_keep_the_order():
    lengths = [5, 1, 9, 3, 12, 2, 7]
    assert plan_batches(lengths, 12, packed=True, sort=False) == [[0, 1], [2, 3], [4], [5, 6]]
    assert plan_batches(lengths, 12, packed=True) == [[4], [2], [6, 0], [3, 5, 1]]
    for batch in plan_batches(lengths * 50, packed=True):
        assert len(batch) == 1 or sum((lengths * 50)[i] for i in batch) <= TOKENS_PER_PASS
