"""Tiny stand-ins for the CXR Foundation SavedModels, with exactly the real signatures.

``build_cxr_foundation_standin(out_dir)`` writes ``elixr-c-v2-pooled/``, ``pax-elixr-b-text/``
and a small BERT-style ``vocab.txt`` so tests run the real loading and inference code
(``scoring.cxr_foundation``) offline, like httpx's ``MockTransport``: a seam, not a patch.
Their ``serving_default`` signatures have the real input and output names, dtypes and shapes
(those ``scoring.cxr_foundation`` calls and checks). The weights are random but fixed (seeded numpy), image
embeddings depend on the pixels and text embeddings on the token ids.

``build_medsiglip_standin(out_dir)`` saves a tiny random ``SiglipModel`` (448×448 input,
patch 14, as google/medsiglip-448) with a ``SiglipProcessor`` whose tokenizer is a
SentencePiece-style Unigram ``tokenizer.json`` (``<pad>``=0, ``</s>``=1, ``<unk>``=2, as
MedSigLIP's), loadable with ``AutoModel``/``AutoProcessor.from_pretrained(out_dir)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["STANDIN_WORDS", "build_cxr_foundation_standin", "build_medsiglip_standin", "write_vocab"]

SEED = 20261128
_VOCAB_MODULO = 512  # the stand-in's embedding table; ids are folded into it
_SPECIALS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}

# Lower-case word pieces covering the shipped policy's prompts plus a few common words.
STANDIN_WORDS = (
    "no small large moderate mild severe normal free evidence of the a is there with and "
    "under left right lung lungs chest heart size air airspace opacity disease pneumothorax "
    "pleural effusion pulmonary edema cardiomegaly diaphragm widened mediastinum "
    "pneumoperitoneum consolidation pneumonia atelectasis fracture x - ray . , ##s ##ed"
).split()


def write_vocab(path: Path, words: tuple[str, ...] | list[str] = STANDIN_WORDS) -> Path:
    """Write a BERT ``vocab.txt``: ``[PAD]``=0, ``[unused*]``, ``[UNK]``=100, ``[CLS]``=101,
    ``[SEP]``=102, ``[MASK]``=103, then ``words`` (line number = id)."""
    lines = [_SPECIALS.get(i, f"[unused{i - 1}]") for i in range(104)]
    lines += [w for w in dict.fromkeys(words) if w not in lines]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build_cxr_foundation_standin(out_dir: Path) -> Path:
    """Build both stand-in SavedModels and ``vocab.txt`` under ``out_dir``; return ``out_dir``.

    Needs tensorflow (imported here, so importing this module does not).
    """
    import tensorflow as tf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    elixr_c, qformer = _define_modules(tf, rng)
    tf.saved_model.save(elixr_c, str(out_dir / "elixr-c-v2-pooled"), signatures={"serving_default": elixr_c.serve})
    tf.saved_model.save(qformer, str(out_dir / "pax-elixr-b-text"), signatures={"serving_default": qformer.serve})
    write_vocab(out_dir / "vocab.txt")
    return out_dir


def _define_modules(tf, rng: np.random.Generator):
    """The two tf.Modules; defined here so tensorflow is only imported when building."""

    def variable(*shape: int, scale: float = 1.0) -> tf.Variable:
        return tf.Variable(rng.normal(0.0, scale, size=shape).astype(np.float32))

    class TinyElixrC(tf.Module):
        """serialized tf.Example (PNG) [N] → feature_maps_0 [N, 8, 8, 1376]."""

        def __init__(self) -> None:
            super().__init__()
            # Per-channel gain and bias through tanh: channels respond differently to the
            # same pixel, so different images give different feature directions.
            self.gain = variable(1376, scale=3.0)
            self.bias = variable(1376)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="input_example")])
        def serve(self, input_example):
            parsed = tf.io.parse_example(
                input_example,
                {
                    "image/encoded": tf.io.FixedLenFeature([], tf.string),
                    "image/format": tf.io.FixedLenFeature([], tf.string, default_value="png"),
                },
            )

            def one(png):
                # Like the real graph: decode 1 channel, resize, per-image min-max to [0, 1].
                x = tf.cast(tf.io.decode_png(png, channels=1, dtype=tf.uint16), tf.float32)
                x = tf.image.resize(x, [64, 64])
                x = tf.math.divide_no_nan(x - tf.reduce_min(x), tf.reduce_max(x) - tf.reduce_min(x))
                pooled = tf.nn.avg_pool2d(x[None], 8, 8, "VALID")[0]  # [8, 8, 1]
                return tf.tanh(pooled * self.gain + self.bias)

            maps = tf.map_fn(one, parsed["image/encoded"], fn_output_signature=tf.TensorSpec([8, 8, 1376], tf.float32))
            return {"feature_maps_0": maps}

    class TinyQFormer(tf.Module):
        """(image_feature, ids, paddings) → the five Q-Former outputs of the real model."""

        def __init__(self) -> None:
            super().__init__()
            self.query_mix = variable(32, 64, scale=0.5)  # 32 queries over 64 positions
            self.to_contrastive = variable(1376, 128, scale=1376**-0.5)
            self.to_general = variable(128, 768, scale=128**-0.5)
            self.token_table = variable(_VOCAB_MODULO, 128)
            self.position_table = variable(128, 128, scale=0.1)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 8, 8, 1376], tf.float32, name="image_feature"),
                tf.TensorSpec([None, 1, 128], tf.int32, name="ids"),
                tf.TensorSpec([None, 1, 128], tf.float32, name="paddings"),
            ]
        )
        def serve(self, image_feature, ids, paddings):
            n = tf.shape(image_feature)[0]
            flat = tf.reshape(image_feature, [n, 64, 1376])
            queries = tf.tanh(tf.einsum("npc,qp->nqc", flat, self.query_mix))
            img_tokens = tf.einsum("nqc,cd->nqd", queries, self.to_contrastive)  # [N, 32, 128]

            keep = 1.0 - paddings[:, 0, :]  # 1 = real token
            words = tf.gather(self.token_table, tf.math.floormod(ids[:, 0, :], _VOCAB_MODULO))
            words = (words + self.position_table[None]) * keep[..., None]  # [N, 128, 128]
            pooled = tf.reduce_sum(words, 1) / tf.maximum(tf.reduce_sum(keep, 1, keepdims=True), 1.0)
            return {
                "all_contrastive_img_emb": tf.math.l2_normalize(img_tokens, axis=-1),
                "contrastive_img_emb": tf.math.l2_normalize(tf.reduce_mean(img_tokens, 1), axis=-1),
                "img_emb": tf.einsum("nqd,de->nqe", img_tokens, self.to_general),
                "contrastive_txt_emb": tf.math.l2_normalize(pooled, axis=-1),
                "txt_emb": tf.einsum("ntd,de->nte", words, self.to_general),
            }

    return TinyElixrC(), TinyQFormer()


def build_medsiglip_standin(out_dir: Path) -> Path:
    """Save a tiny MedSigLIP-shaped model + processor under ``out_dir``; return ``out_dir``.

    Needs torch, transformers and tokenizers (imported here).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import (
        PreTrainedTokenizerFast,
        SiglipConfig,
        SiglipImageProcessorPil,
        SiglipModel,
        SiglipProcessor,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    pieces += [(f"\u2581{w}", -1.0) for w in STANDIN_WORDS if w.isalpha()]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    unigram = Tokenizer(models.Unigram(pieces, unk_id=2))
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    unigram.decoder = decoders.Metaspace()
    unigram.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=unigram, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=64
    )
    images = SiglipImageProcessorPil(size={"height": 448, "width": 448}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    config = SiglipConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64, pad_token_id=0, eos_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=448, patch_size=14),
    )
    torch.manual_seed(SEED)
    SiglipModel(config).save_pretrained(out_dir)
    SiglipProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir
