"""The versioned draft prompt and the FINDINGS / IMPRESSION parser."""

from __future__ import annotations

import pytest

from common import DISCLAIMER
from scoring.draft_prompt import (
    PROMPT_VERSION,
    build_messages,
    parse_report,
    render_report,
)


@pytest.mark.parametrize(
    ("text", "findings", "impression"),
    [
        ("FINDINGS: Lungs clear.\nIMPRESSION: Normal.", "Lungs clear.", "Normal."),
        ("Findings:\nLungs clear.\nNo effusion.\n\nImpression:\nNormal chest.", "Lungs clear.\nNo effusion.", "Normal chest."),
        ("**FINDINGS:**\nSmall left effusion.\n\n**IMPRESSION:**\nLeft effusion.", "Small left effusion.", "Left effusion."),
        ("## Findings\nRight pneumothorax.\n## Impression\nPneumothorax.", "Right pneumothorax.", "Pneumothorax."),
        ("**Findings**: Clear.\n**Impressions**: Normal.", "Clear.", "Normal."),
        ("FINDINGS: Clear.\nCONCLUSION: Normal.", "Clear.", "Normal."),
        ("Heart size normal. Lungs clear.", "Heart size normal. Lungs clear.", ""),
        ("Heart size normal.\nIMPRESSION: No acute disease.", "Heart size normal.", "No acute disease."),
        ("IMPRESSION: Normal.\nFINDINGS: Clear lungs.", "Clear lungs.", "Normal."),
        ("", "", ""),
    ],
)
def test_sections_are_parsed(text: str, findings: str, impression: str) -> None:
    parsed = parse_report(text)
    assert (parsed.findings, parsed.impression) == (findings, impression)


def test_words_inside_a_sentence_are_not_headings() -> None:
    parsed = parse_report("FINDINGS: These findings suggest edema; impression of fluid.\nIMPRESSION: Edema.")
    assert parsed.findings == "These findings suggest edema; impression of fluid."
    assert parsed.impression == "Edema."


def test_messages_hold_one_image_and_a_fixed_view_phrase() -> None:
    pa = build_messages("pa")
    user = pa[1]["content"]
    assert pa[0]["role"] == "system" and [part["type"] for part in user] == ["text", "image"]
    assert "posteroanterior (PA)" in user[0]["text"] and "FINDINGS" in user[0]["text"]
    # A header value never reaches the prompt, only one of the fixed phrases.
    odd = build_messages("DOE^JOHN")[1]["content"][0]["text"]
    assert "DOE" not in odd and odd == build_messages(None)[1]["content"][0]["text"]


def test_rendering_starts_with_the_disclaimer() -> None:
    text = render_report("Clear.", "Normal.", model_id="m", prompt_version=PROMPT_VERSION)
    assert text.startswith(DISCLAIMER)
    assert "UNVERIFIED AI DRAFT" in DISCLAIMER and "research use only" in DISCLAIMER
