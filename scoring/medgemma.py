"""MedGemma back-end: frontal chest images → draft FINDINGS / IMPRESSION, batched and greedy.

Loads ``AutoProcessor`` + ``AutoModelForImageTextToText`` from a local folder or a hub id
(``HF_HUB_OFFLINE`` honoured) and generates a whole batch at once, left-padded, with
greedy decoding, so a batch gives the texts one-at-a-time generation gives (exactly in
float32). torch and transformers are imported only in :meth:`MedGemmaDrafter.load`, so
:func:`missing_model` serves ``/healthz`` without ML libraries.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from common import DISCLAIMER
from scoring import hub
from scoring.draft_prompt import (
    PROMPT_VERSION,
    build_messages,
    parse_report,
    render_report,
)
from scoring.errors import ModelUnavailable, ScoringError

__all__ = ["DEFAULT_MODEL", "Draft", "MedGemmaDrafter", "missing_model"]

DEFAULT_MODEL = "google/medgemma-1.5-4b-it"
DEFAULT_MAX_NEW_TOKENS = 300
# MedGemma 1.5 may reason before answering, between these two tokens (ids 100 and 101).
THINKING_OPEN, THINKING_CLOSE = "<unused94>", "<unused95>"



@dataclass(frozen=True, slots=True)
class Draft:
    """One generated draft and how it was made; stored with the study, shown as UNVERIFIED.

    Attributes
    ----------
    findings, impression : str
        Parsed sections (either may be empty).
    raw_text : str
        The decoded answer, unparsed.
    model_id, prompt_version : str
        Which model and which prompt (:data:`scoring.draft_prompt.PROMPT_VERSION`).
    prompt_tokens, new_tokens : int
        Tokens of this item's prompt (no padding; image tokens included) and tokens it
        generated up to and including the end-of-turn token.
    seconds : float
        Wall time of the whole batch that produced this draft (what the study waited).
    batch_size : int
        How many drafts that batch made; ``seconds / batch_size`` is the cost per draft.
    failure : str or None
        Why this draft is unusable although generation ran (a thinking trace that never
        closed within the token budget); its texts are then empty. None for a usable draft.
    """

    findings: str
    impression: str
    raw_text: str
    model_id: str
    prompt_version: str
    prompt_tokens: int
    new_tokens: int
    seconds: float
    batch_size: int = 1
    failure: str | None = None

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "new_tokens", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")
        if not (math.isfinite(self.seconds) and self.seconds >= 0):
            raise ValueError(f"seconds must be a finite number >= 0, got {self.seconds!r}")
        if not self.model_id or not self.prompt_version:
            raise ValueError("model_id and prompt_version must not be empty")

    @property
    def disclaimer(self) -> str:
        """The UNVERIFIED / research-use notice that goes with every rendering."""
        return DISCLAIMER

    def render(self) -> str:
        """The draft for a human: disclaimer, model and prompt, FINDINGS, IMPRESSION."""
        return render_report(
            self.findings, self.impression, model_id=self.model_id, prompt_version=self.prompt_version
        )


def missing_model(model: str | os.PathLike[str], *, cache_dir: str | os.PathLike[str] | None = None) -> str | None:
    """Why MedGemma cannot be loaded, cheaply (no torch); None when it looks usable.

    See :func:`scoring.hub.missing_model`: a folder needs ``config.json``; a hub id needs it
    in the local Hugging Face cache (``cache_dir``, default ``HF_HUB_CACHE``) when offline.

    Returns
    -------
    str or None
        A PHI-free reason for ``/healthz`` and the log, or None.
    """
    return hub.missing_model("MedGemma", model, cache_dir=cache_dir)


class MedGemmaDrafter:
    """A loaded MedGemma (or any Gemma 3 image-text model) that drafts reports in batches.

    Build it with :meth:`load`; the constructor takes already built objects (the GPU
    benchmark builds a random full-size model in memory).

    Parameters
    ----------
    model, processor
        A ``*ForConditionalGeneration`` image-text model (on its device, in eval mode) and
        its processor.
    model_id : str
        Recorded with each draft (hub id, or the folder's name).
    model_version : str, optional
        Recorded in the SR; default "unknown".
    max_new_tokens : int
        Cap on generated tokens per draft.
    min_new_tokens : int
        Floor on generated tokens (0 in service; the benchmark fixes the length with it).
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        *,
        model_id: str,
        model_version: str = "unknown",
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        min_new_tokens: int = 0,
    ) -> None:
        if not (isinstance(max_new_tokens, int) and max_new_tokens >= 1):
            raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        if not (isinstance(min_new_tokens, int) and 0 <= min_new_tokens <= max_new_tokens):
            raise ValueError(f"min_new_tokens must be an int in [0, max_new_tokens], got {min_new_tokens!r}")
        self.model = model
        self.processor = processor
        self.model_id = model_id
        self.model_version = model_version
        self.max_new_tokens = max_new_tokens
        self.min_new_tokens = min_new_tokens
        tokenizer = processor.tokenizer
        # Left padding keeps every prompt's last token at the end, where generation starts.
        tokenizer.padding_side = "left"
        self._pad_id = tokenizer.pad_token_id
        self._stop_ids = _stop_ids(model, tokenizer)
        self._thinking = _thinking_ids(tokenizer)

    @classmethod
    def load(
        cls,
        model: str | os.PathLike[str],
        *,
        device: str | None = None,
        dtype: Any = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        min_new_tokens: int = 0,
    ) -> "MedGemmaDrafter":
        """Load processor and model from a folder or a hub id.

        Parameters
        ----------
        model : str or path
            Folder with ``config.json`` etc., or a hub id such as ``google/medgemma-1.5-4b-it``.
        device : str, optional
            ``"cuda"``, ``"cuda:1"``, ``"cpu"``...; default: CUDA when available, else CPU.
        dtype : torch.dtype or str, optional
            Default bfloat16 on GPU, float32 on CPU (float32 makes batches exactly equal
            one-at-a-time generation).
        max_new_tokens, min_new_tokens : int
            See the class.

        Raises
        ------
        ModelUnavailable
            torch/transformers missing, weights absent or unreadable, not enough memory.
        """
        reason = missing_model(model)
        if reason:
            raise ModelUnavailable(reason)
        torch, transformers = hub.import_ml("MedGemma")
        name = os.fspath(model)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = torch.float32 if device == "cpu" else torch.bfloat16
        elif isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        processor = hub.load_pretrained("MedGemma", transformers.AutoProcessor, name)
        net = hub.load_pretrained("MedGemma", transformers.AutoModelForImageTextToText, name, dtype=dtype)
        try:
            net = net.to(device).eval()
        except (OSError, ValueError, RuntimeError) as exc:  # e.g. not enough device memory
            raise ModelUnavailable(f"MedGemma failed to load from {name} ({type(exc).__name__})") from exc
        return cls(
            net, processor, model_id=hub.model_id(name), model_version=hub.model_version(name),
            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens,
        )

    @property
    def device(self) -> Any:
        return self.model.device

    def draft_batch(self, images: Sequence[Any], *, views: Sequence[str | None] | None = None) -> list[Draft]:
        """Draft one report per image in a single left-padded, greedy ``generate`` call.

        Parameters
        ----------
        images : sequence of PIL.Image.Image
            Frontal chest images (``dicom.render.to_rgb_image``); converted to RGB if needed.
        views : sequence of str or None, optional
            ViewPosition per image (PA/AP/...), worded into the prompt; unknown → generic.

        Returns
        -------
        list of Draft
            In the order of ``images``.

        Raises
        ------
        ValueError
            No images, or ``views`` of another length.
        ScoringError
            Generation failed (e.g. out of memory even for a single image).
        """
        images = list(images)
        if not images:
            raise ValueError("draft_batch needs at least one image")
        views = list(views) if views is not None else [None] * len(images)
        if len(views) != len(images):
            raise ValueError(f"got {len(images)} images but {len(views)} views")
        return self._generate(images, views)

    def _generate(self, images: list[Any], views: list[str | None]) -> list[Draft]:
        import torch

        started = time.perf_counter()
        try:
            inputs = self._inputs(images, views)
            with torch.inference_mode():
                output = self.model.generate(**inputs, **self._greedy())
        except torch.cuda.OutOfMemoryError as exc:
            if len(images) == 1:
                raise ScoringError("draft generation ran out of GPU memory for a single image") from exc
            # Greedy texts do not depend on the batch (exactly so in float32): halving costs speed only.
            torch.cuda.empty_cache()
            half = len(images) // 2
            return self._generate(images[:half], views[:half]) + self._generate(images[half:], views[half:])
        except (RuntimeError, ValueError, TypeError) as exc:
            raise ScoringError(f"draft generation failed ({type(exc).__name__})") from exc
        seconds = time.perf_counter() - started
        prompt_length = inputs["input_ids"].shape[1]
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        drafts = []
        for row, n_prompt in zip(output[:, prompt_length:].tolist(), prompt_tokens):
            kept = self._until_stop(row)
            answer, failure = self._without_thinking(kept)
            text = self.processor.decode(answer, skip_special_tokens=True).strip()
            sections = parse_report(text)
            drafts.append(
                Draft(
                    findings=sections.findings, impression=sections.impression, raw_text=text,
                    model_id=self.model_id, prompt_version=PROMPT_VERSION, prompt_tokens=int(n_prompt),
                    new_tokens=len(kept), seconds=seconds, batch_size=len(images), failure=failure,
                )
            )
        return drafts

    def _inputs(self, images: list[Any], views: list[str | None]) -> Any:
        """Tokenised prompts (left-padded) and pixel values, on the model's device and dtype."""
        texts = [
            self.processor.apply_chat_template(build_messages(view), add_generation_prompt=True, tokenize=False)
            for view in views
        ]
        rgb = [[_square_rgb(image)] for image in images]
        # The rendered template already starts with <bos>; Gemma tokenizers add one more by
        # default (add_bos_token=True), which would feed the model [<bos>, <bos>, ...].
        inputs = self.processor(
            text=texts, images=rgb, return_tensors="pt", padding=True, add_special_tokens=False
        )
        # Only floating tensors (pixel_values) take the model's dtype; ids stay int64.
        return inputs.to(self.model.device, dtype=self.model.dtype)

    def _greedy(self) -> dict[str, Any]:
        """Greedy decoding and the token limits, passed to ``generate()`` itself.

        Real checkpoints ship a sampling ``generation_config.json`` (do_sample, top_k, top_p);
        explicit ``generate()`` arguments take precedence over it, whereas a passed
        ``GenerationConfig`` was merged with it on some versions and could lose do_sample.
        """
        return dict(
            do_sample=False, num_beams=1, max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.min_new_tokens, eos_token_id=list(self._stop_ids),
            pad_token_id=self._pad_id, top_k=None, top_p=None,
        )

    def _without_thinking(self, ids: list[int]) -> tuple[list[int], str | None]:
        """The answer's ids without a ``<unused94>`` … ``<unused95>`` reasoning trace.

        Cut on ids, not text: the markers are single tokens and the trace may hold anything,
        headings included. A trace still open when the token budget ran out leaves no
        answer at all: ``([], reason)``.
        """
        if self._thinking is None:
            return ids, None
        opening, closing = self._thinking
        if opening not in ids:
            return ids, None
        start = ids.index(opening)
        if closing not in ids[start:]:
            return [], f"thinking trace did not close within {self.max_new_tokens} new tokens"
        end = ids.index(closing, start)
        return ids[:start] + ids[end + 1 :], None

    def _until_stop(self, row: list[int]) -> list[int]:
        """Generated ids up to and including the first stop token (batch padding dropped)."""
        for i, token in enumerate(row):
            if token in self._stop_ids:
                return row[: i + 1]
        return row


def _stop_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    """The model's EOS ids plus ``<end_of_turn>``: a chat model ends its answer with the turn."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    ids.append(tokenizer.eos_token_id)
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.append(end_of_turn)
    return tuple(dict.fromkeys(i for i in ids if isinstance(i, int)))


def _thinking_ids(tokenizer: Any) -> tuple[int, int] | None:
    """Ids of the thinking-trace markers, or None for a vocabulary without them."""
    ids = [tokenizer.convert_tokens_to_ids(t) for t in (THINKING_OPEN, THINKING_CLOSE)]
    if any(not isinstance(i, int) or i == tokenizer.unk_token_id for i in ids):
        return None
    return ids[0], ids[1]


def _square_rgb(image: Any) -> Any:
    """The image as RGB, zero-padded to a square (the processor then resizes without stretching)."""
    from PIL import Image

    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return Image.fromarray(hub.pad_to_square(np.asarray(rgb)))
