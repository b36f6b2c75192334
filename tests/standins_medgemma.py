"""Tiny Gemma 3 stand-ins for MedGemma, built with the real transformers classes (Gemma 3 processor and model).

``build_medgemma_standin(out_dir)`` saves a random, tiny ``Gemma3ForConditionalGeneration``
and its ``Gemma3Processor`` to a folder, so tests run the real loading and generation code
(``scoring.medgemma``) offline: a seam, not a patch. ``full_config()`` holds the real
MedGemma 4B shape (that of the public gemma-3-4b-it ``config.json``) for the GPU benchmark. torch and transformers are
imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "GEMMA3_CHAT_TEMPLATE",
    "THINKING_ANSWER",
    "build_medgemma_standin",
    "build_thinking_standin",
    "build_processor",
    "full_config",
    "tiny_config",
]

SEED = 20261128

# Gemma 3's own chat template: the system text is folded into the first user turn, image
# parts become <start_of_image>, text parts are trimmed (the layout of Gemma 3's published template).
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}"
    "{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] | trim }}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

_SPECIALS = (
    "<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
    "<start_of_image>", "<end_of_image>", "<image_soft_token>", "<unused94>", "<unused95>",
)
# Gemma's real ids for the specials (as in gemma-3-4b-it's config and tokenizer), used with ``real_ids=True``.
_REAL_IDS = {
    "<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "<start_of_turn>": 105,
    "<end_of_turn>": 106, "<start_of_image>": 255999, "<end_of_image>": 256000,
    "<image_soft_token>": 262144, "<unused94>": 100, "<unused95>": 101,
}
# MedGemma 1.5 wraps its optional reasoning trace in these two (unused94 opens, unused95 closes).
THINKING_OPEN, THINKING_CLOSE = "<unused94>", "<unused95>"
# Whole-word pieces the thinking stand-in answers with (decoding joins them, "\u2581" = space).
_WORDS = ("\u2581thinking", "\u2581about", "\u2581the", "\u2581image", "FINDINGS:", "\u2581Lungs", "\u2581are",
          "\u2581clear.")
# Enough characters for report-like text; everything else goes through byte fallback.
_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;-()/\n"


def _vocab(real_ids: bool) -> dict[str, int]:
    pieces = [f"<0x{i:02X}>" for i in range(256)] + ["\u2581", *dict.fromkeys(_CHARS), *_WORDS]
    if not real_ids:
        return {t: i for i, t in enumerate([*_SPECIALS, *pieces])}
    vocab = dict(_REAL_IDS)
    vocab.update({p: 238 + i for i, p in enumerate(pieces)})  # Gemma's byte block starts at 238
    return vocab


def build_processor(*, image_size: int = 224, mm_tokens_per_image: int = 16, real_ids: bool = False):
    """A ``Gemma3Processor`` (byte-fallback BPE tokenizer + PIL image processor).

    Parameters
    ----------
    image_size : int
        Side the image processor resizes to (896 for the real model).
    mm_tokens_per_image : int
        Soft image tokens per image (256 for the real model); a square number.
    real_ids : bool
        Put the special tokens at Gemma's real ids, for a model with the real vocabulary size.
    """
    from transformers import Gemma3ImageProcessorPil, Gemma3Processor, GemmaTokenizer

    # Real Gemma 3 tokenizers are saved with add_bos_token=True: tokenising a rendered chat
    # template (which already starts with <bos>) would give a second one.
    tokenizer = GemmaTokenizer(
        vocab=_vocab(real_ids), merges=[], add_bos_token=True, boi_token="<start_of_image>", eoi_token="<end_of_image>",
        image_token="<image_soft_token>", extra_special_tokens=["<start_of_turn>", "<end_of_turn>"],
    )
    tokenizer.chat_template = GEMMA3_CHAT_TEMPLATE
    image_processor = Gemma3ImageProcessorPil(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    return Gemma3Processor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=GEMMA3_CHAT_TEMPLATE,
        image_seq_length=mm_tokens_per_image,
    )


def tiny_config(processor, *, image_size: int = 224, mm_tokens_per_image: int = 16):
    """A 2-layer ``Gemma3Config`` (one sliding, one global layer) matching ``processor``."""
    from transformers import Gemma3Config

    tok = processor.tokenizer
    ids = tok.convert_tokens_to_ids
    return Gemma3Config(
        text_config=dict(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
            sliding_window=16, layer_types=["sliding_attention", "full_attention"],
            pad_token_id=ids("<pad>"), bos_token_id=ids("<bos>"), eos_token_id=[ids("<eos>"), ids("<end_of_turn>")],
        ),
        vision_config=dict(
            model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, image_size=image_size, patch_size=14, vision_use_head=False,
        ),
        mm_tokens_per_image=mm_tokens_per_image, boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"), image_token_index=ids("<image_soft_token>"),
    )


def full_config():
    """The MedGemma 4B configuration (gemma-3-4b-it's public ``config.json`` values); 4.3 B parameters."""
    from transformers import Gemma3Config

    text: dict[str, Any] = dict(
        vocab_size=262208, hidden_size=2560, intermediate_size=10240, num_hidden_layers=34,
        num_attention_heads=8, num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
        sliding_window=1024, rope_scaling={"factor": 8.0, "rope_type": "linear"}, rope_theta=1_000_000.0,
        rope_local_base_freq=10_000.0, max_position_embeddings=131072, hidden_activation="gelu_pytorch_tanh",
        rms_norm_eps=1e-6, pad_token_id=0, bos_token_id=2, eos_token_id=[1, 106],
    )
    vision = dict(
        model_type="siglip_vision_model", image_size=896, patch_size=14, hidden_size=1152,
        intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, vision_use_head=False,
    )
    return Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=256, boi_token_index=255999,
        eoi_token_index=256000, image_token_index=262144, eos_token_id=[1, 106],
    )


def reinit_projector(model, seed: int = SEED) -> None:
    """Give the multimodal projector random weights: it is created as zeros, and a zero
    projector makes the image invisible to the language model (and stays zero after save/load)."""
    import torch

    weight = model.model.multi_modal_projector.mm_input_projection_weight
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        values = torch.randn(weight.shape, generator=generator, dtype=torch.float32) * 0.02
        weight.copy_(values.to(weight.device, weight.dtype))


def build_medgemma_standin(out_dir: Path, *, image_size: int = 224, mm_tokens_per_image: int = 16) -> Path:
    """Save a tiny random MedGemma look-alike (model + processor) under ``out_dir``; return it.

    The folder has what ``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained``
    read from a real download: ``config.json``, ``model.safetensors``,
    ``processor_config.json``, tokenizer files and the chat template.
    """
    import torch
    from transformers import Gemma3ForConditionalGeneration

    out_dir = Path(out_dir)
    processor = build_processor(image_size=image_size, mm_tokens_per_image=mm_tokens_per_image)
    config = tiny_config(processor, image_size=image_size, mm_tokens_per_image=mm_tokens_per_image)
    torch.manual_seed(SEED)
    model = Gemma3ForConditionalGeneration(config)
    reinit_projector(model)
    # Real MedGemma checkpoints ship a sampling generation_config.json (do_sample, top_k 64,
    # top_p 0.95); the drafter must stay greedy whatever it says.
    model.generation_config.update(do_sample=True, top_k=64, top_p=0.95)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


# What the thinking stand-in generates after the prompt, whatever the image: a trace, then the answer.
THINKING_ANSWER = (
    THINKING_OPEN, "\u2581thinking", "\u2581about", "\u2581the", "\u2581image", THINKING_CLOSE,
    "FINDINGS:", "\u2581Lungs", "\u2581are", "\u2581clear.", "<end_of_turn>",
)


def build_thinking_standin(out_dir: Path) -> Path:
    """Save a tiny Gemma 3 that answers like MedGemma 1.5 in thinking mode; return the folder.

    Every layer's output projections are zeroed, so each position's logits depend on its own
    token only, and an untied output layer maps the prompt's last token ("\\n" after
    ``<start_of_turn>model``) to :data:`THINKING_ANSWER` one token after the other: a
    ``<unused94>`` … ``<unused95>`` trace, FINDINGS, then ``<end_of_turn>``. With fewer new
    tokens than the trace needs, the trace never closes.
    """
    import torch
    from transformers import Gemma3ForConditionalGeneration

    out_dir = Path(out_dir)
    processor = build_processor()
    config = tiny_config(processor)
    config.tie_word_embeddings = False
    config.text_config.tie_word_embeddings = False
    torch.manual_seed(SEED)
    model = Gemma3ForConditionalGeneration(config)
    reinit_projector(model)
    ids = processor.tokenizer.convert_tokens_to_ids
    chain = [ids("\n"), *(ids(t) for t in THINKING_ANSWER)]
    assert len(set(chain)) == len(chain), "each token of the script must be distinct"
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed = model.model.language_model.embed_tokens.weight
        head = model.lm_head.weight
        head.zero_()
        for current, following in zip(chain, chain[1:]):
            direction = embed[current] / embed[current].norm()
            head[following] = direction * 40.0
    model.generation_config.update(do_sample=True, top_k=64, top_p=0.95)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
