"""Text → Q-Former inputs: BERT-uncased WordPiece ids and paddings, as Google's code builds them.

Reference: Google's serving code (``predictor.py`` in Google-Health/cxr-foundation,
``_run_tokenizer``) and the model card's quick-start: TF-Hub
``bert_en_uncased_preprocess`` with ``seq_length=128`` on ``text.lower()``, then
``paddings = 1 - input_mask`` and every ``[SEP]`` (id 102) zeroed with padding 1.0, shaped
``[1, 1, 128]``. Offline we rebuild the same with ``transformers.BertTokenizer`` over the
model's ``vocab.txt``; transformers is imported lazily so the daemon starts without it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scoring.errors import ModelUnavailable

__all__ = ["SEQ_LENGTH", "SEP_ID", "TextTokenizer", "TokenizedText"]

SEQ_LENGTH = 128
SEP_ID = 102  # [SEP] in BERT-uncased's vocabulary; the reference removes it


@dataclass(frozen=True, slots=True, eq=False)
class TokenizedText:
    """Q-Former text inputs for one text: ``ids`` int32 and ``paddings`` float32, [1, 1, 128]."""

    ids: np.ndarray
    paddings: np.ndarray

    def __post_init__(self) -> None:
        shape = (1, 1, SEQ_LENGTH)
        if self.ids.shape != shape or self.ids.dtype != np.int32:
            raise ValueError(f"ids must be int32 {shape}, got {self.ids.dtype} {self.ids.shape}")
        if self.paddings.shape != shape or self.paddings.dtype != np.float32:
            raise ValueError(
                f"paddings must be float32 {shape}, got {self.paddings.dtype} {self.paddings.shape}"
            )


class TextTokenizer:
    """BERT-uncased WordPiece tokeniser producing the Q-Former's ``ids``/``paddings``.

    Parameters
    ----------
    vocab_path : Path
        A BERT ``vocab.txt`` (one word piece a line; line number = id).

    Raises
    ------
    ModelUnavailable
        If transformers is not installed or the vocabulary file is absent.
    """

    def __init__(self, vocab_path: Path) -> None:
        vocab_path = Path(vocab_path)
        if not vocab_path.is_file():
            raise ModelUnavailable(f"tokeniser vocabulary not found: {vocab_path}")
        try:
            from transformers import BertTokenizer  # lazy: an optional ML dependency
        except ImportError as exc:
            raise ModelUnavailable(
                "transformers is not installed (pip install 'radtriage[ml]')"
            ) from exc
        self._bert = _bert_from_vocab(BertTokenizer, vocab_path)

    def __call__(self, text: str) -> TokenizedText:
        """Tokenise one text exactly as the reference does.

        Parameters
        ----------
        text : str
            Free text (a prompt or query); lower-cased first.

        Returns
        -------
        TokenizedText
            ``[CLS] tokens… [PAD]…`` ids (``[SEP]`` replaced by 0) and their paddings
            (1.0 = padding), both ``[1, 1, 128]``.
        """
        encoded = self._bert(
            text.lower(),
            max_length=SEQ_LENGTH,
            padding="max_length",
            truncation=True,
            return_attention_mask=True,
        )
        ids = np.asarray(encoded["input_ids"], dtype=np.int32)
        paddings = 1.0 - np.asarray(encoded["attention_mask"], dtype=np.float32)
        # The reference drops [SEP]: its id becomes 0 and it counts as padding.
        is_sep = ids == SEP_ID
        ids[is_sep] = 0
        paddings[is_sep] = 1.0
        return TokenizedText(ids=ids.reshape(1, 1, SEQ_LENGTH), paddings=paddings.reshape(1, 1, SEQ_LENGTH))

    def tokens(self, text: str) -> list[str]:
        """The word pieces of ``text`` (without special tokens), for checking a vocabulary."""
        return self._bert.tokenize(text.lower())

    @property
    def unk_token(self) -> str:
        """The unknown-word token (``[UNK]``)."""
        return str(self._bert.unk_token)


def _bert_from_vocab(bert_class: type, vocab_path: Path):
    """Build a BertTokenizer from a vocab.txt under transformers 4 and 5 alike.

    transformers 5 takes ``vocab=<path or dict>`` and silently ignores the old
    ``vocab_file=`` keyword (every word then becomes [UNK]); 4.x needs ``vocab_file``.
    do_lower_case also strips accents, as BERT-uncased's preprocessor does.
    """
    params = inspect.signature(bert_class.__init__).parameters
    key = "vocab_file" if "vocab_file" in params else "vocab"
    return bert_class(**{key: str(vocab_path)}, do_lower_case=True)
