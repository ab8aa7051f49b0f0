"""Packed SFT blocks: no cross-talk between examples, no example split, losses equal to unpacked."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training.chat_data import collate, pack_examples, summed_token_loss, tokenize_all


def conversations(n):
    return [[{"role": "user", "content": f"What is {i} plus one? " + "Think. " * (i % 4)},
             {"role": "assistant", "content": f"{i} plus one is {i + 1}."}] for i in range(n)]


@pytest.fixture(scope="module")
def model_and_examples(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    examples, _ = tokenize_all(tokenizer, conversations(9), max_length=64)
    return model, examples, tokenizer.pad_token_id


def test_blocks_hold_whole_examples_with_positions_restarting_at_each(model_and_examples):
    _, examples, _ = model_and_examples
    blocks = pack_examples(examples, block_size=96)
    assert 1 < len(blocks) < len(examples)
    assert all(len(b.input_ids) <= 96 for b in blocks)
    # Every example is in exactly one block, whole, starting at position 0.
    starts = [(b, i) for b in blocks for i, p in enumerate(b.position_ids) if p == 0]
    pieces = []
    for block, i in starts:
        end = next((j for j in range(i + 1, len(block.position_ids)) if block.position_ids[j] == 0),
                   len(block.position_ids))
        pieces.append(block.input_ids[i:end])
    assert pieces == [e.input_ids for e in examples]
    assert sum(b.trained_tokens for b in blocks) == sum(e.trained_tokens for e in examples)


def test_an_examples_loss_is_the_same_packed_and_alone(model_and_examples):
    model, examples, pad = model_and_examples
    blocks = pack_examples(examples, block_size=128)
    with torch.no_grad():
        alone = [summed_token_loss(model, collate([e], pad)) for e in examples]
        packed = summed_token_loss(model, collate(blocks, pad))  # several rows, padded to one width
    assert packed[1] == sum(n for _, n in alone)
    assert packed[0].item() == pytest.approx(sum(loss.item() for loss, _ in alone), rel=1e-5)
    # and per block: the loss of the block's examples alone adds up to the block's loss
    with torch.no_grad():
        first_block = summed_token_loss(model, collate(blocks[:1], pad))[0].item()
    in_first = sum(1 for p in blocks[0].position_ids if p == 0)
    assert first_block == pytest.approx(sum(loss.item() for loss, _ in alone[:in_first]), rel=1e-5)
