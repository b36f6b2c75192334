"""The versioned MedGemma draft prompt and the parser of its answer.

Pure text: no torch, no DICOM. The prompt version is stored with every draft, so a change
to :data:`SYSTEM_PROMPT`, :data:`INSTRUCTION` or :func:`build_messages` must bump
:data:`PROMPT_VERSION`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from common import DISCLAIMER

__all__ = [
    "PROMPT_VERSION",
    "ReportSections",
    "build_messages",
    "parse_report",
    "render_report",
]

PROMPT_VERSION = "cxr-findings-v1"


SYSTEM_PROMPT = "You are an expert radiologist."
INSTRUCTION = (
    "Write the FINDINGS and IMPRESSION sections of a radiology report for this {view}. "
    "Begin the findings with 'FINDINGS:' and the impression with 'IMPRESSION:'. "
    "Describe only what is visible in the image; do not mention prior studies or clinical history."
)

# Only these fixed phrases reach the prompt: a header value never does (no PHI, no injection).
_VIEW_PHRASES = {
    "PA": "posteroanterior (PA) chest X-ray",
    "AP": "anteroposterior (AP) chest X-ray",
    "LL": "lateral chest X-ray",
    "RL": "lateral chest X-ray",
    "LATERAL": "lateral chest X-ray",
    "LAT": "lateral chest X-ray",
}
_DEFAULT_VIEW = "chest X-ray"

# A section heading at the start of a line, optionally as markdown ("## Findings", "**IMPRESSION:**").
_HEADING = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(findings|impressions?|conclusions?)[ \t]*"
    r"(?::[ \t]*(?:\*\*|__)?|(?:\*\*|__)[ \t]*:?|(?=\n|$))",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class ReportSections:
    """The two sections parsed from a generated report (either may be empty)."""

    findings: str
    impression: str


def build_messages(view: str | None = None) -> list[dict[str, Any]]:
    """Chat messages for one image (the processor puts the image where ``{"type": "image"}`` is).

    Parameters
    ----------
    view : str, optional
        ViewPosition of the image (PA, AP, LL, ...); anything unknown gives a generic prompt.

    Returns
    -------
    list of dict
        A system turn and a user turn (text, then the image), as in Google's sample.
    """
    phrase = _VIEW_PHRASES.get((view or "").strip().upper(), _DEFAULT_VIEW)
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {
            "role": "user",
            "content": [{"type": "text", "text": INSTRUCTION.format(view=phrase)}, {"type": "image"}],
        },
    ]


def parse_report(text: str) -> ReportSections:
    """Split generated text into FINDINGS and IMPRESSION.

    Headings are matched case-insensitively at the start of a line, plain or in markdown;
    "Impressions" and "Conclusion" count as the impression. Text before the first heading
    is kept as findings when there is no FINDINGS heading (a model that skips it still
    gives a usable draft); with no heading at all, everything is findings.

    Parameters
    ----------
    text : str
        The decoded answer of the model.

    Returns
    -------
    ReportSections
    """
    matches = list(_HEADING.finditer(text))
    if not matches:
        return ReportSections(_clean(text), "")
    parts: dict[str, list[str]] = {"findings": [], "impression": []}
    preamble = text[: matches[0].start()]
    for match, following in zip(matches, [*matches[1:], None]):
        body = text[match.end() : following.start() if following else len(text)]
        key = "findings" if match.group(1).lower() == "findings" else "impression"
        parts[key].append(_clean(body))
    if not parts["findings"]:
        parts["findings"].append(_clean(preamble))
    return ReportSections(
        "\n".join(p for p in parts["findings"] if p), "\n".join(p for p in parts["impression"] if p)
    )


def render_report(findings: str, impression: str, *, model_id: str, prompt_version: str) -> str:
    """The draft as a human reads it: disclaimer first, then both sections."""
    return (
        f"{DISCLAIMER}\nModel: {model_id}; prompt {prompt_version}.\n\n"
        f"FINDINGS:\n{findings or '(none generated)'}\n\n"
        f"IMPRESSION:\n{impression or '(none generated)'}\n"
    )


def _clean(section: str) -> str:
    """Trim blank lines and stray markdown emphasis around a section body."""
    return section.strip().strip("*_").strip()
