"""Deterministic quality checks: each issue names its check, dimension, severity and step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from intelligent_orchestrator.domain.models import Deliverable, QualityIssue
from intelligent_orchestrator.quality.checks import (
    CHECKS,
    check_channel_limit,
    check_citations,
    check_figures,
    check_language,
    check_length,
    check_links,
    check_not_empty,
    check_qa_review,
    check_sections,
    detect_language,
    material_text,
    run_checks,
)
from intelligent_orchestrator.quality.checks import Subject as CheckSubject

ENGLISH = (
    "We are proud to announce that our new garden furniture is available in all of our "
    "stores. It is made by hand and it lasts for years, and you can order it online."
)
GERMAN = (
    "Wir freuen uns, dass unsere neuen Gartenmöbel ab sofort in allen Filialen erhältlich "
    "sind. Sie werden von Hand gefertigt und halten viele Jahre."
)
FRENCH = (
    "Nous sommes fiers de vous présenter nos nouveaux meubles de jardin, disponibles dans "
    "tous les magasins. Ils sont faits à la main et durent des années."
)
SPANISH = (
    "Estamos orgullosos de presentar nuestros nuevos muebles de jardín, disponibles en todas "
    "las tiendas. Están hechos a mano y duran muchos años para su casa."
)


def subject(
    text: str,
    *,
    step_id: str = "write_blog",
    channel: str = "blog",
    language: str | None = None,
    tool: str = "write_content",
    **fields: Any,
) -> CheckSubject:
    return CheckSubject(
        deliverable=Deliverable(step_id=step_id, channel=channel, language=language),
        tool=tool,
        title=None,
        text=text,
        **fields,
    )


def prose(n: int) -> str:
    """``n`` words of plain text without figures."""
    return " ".join(["garden"] * n)


def summary(issues: list[QualityIssue]) -> list[tuple[str, str, str, str | None]]:
    return [(i.check, i.dimension, i.severity, i.step_id) for i in issues]


# Figures ------------------------------------------------------------------------------------


def test_invented_percentage_is_flagged_against_the_data() -> None:
    s = subject("Revenue grew 37% last year.", material="growth: 12.5%")

    issues = check_figures(s, 0.5)

    assert summary(issues) == [("figures", "accuracy", "error", "write_blog")]
    assert issues[0].message == (
        "figures not found in the data or sources: 37%; use only the material's figures"
    )
    assert issues[0].deliverable == "blog"


@pytest.mark.parametrize(
    ("text", "material"),
    [
        ("Revenue grew 12.5% last year.", "growth: 12.5%"),
        ("Revenue grew 13% last year.", "growth: 12.5%"),  # rounded half up
        ("Revenue grew 12% last year.", "growth: 12.5%"),  # rounded half to even
        ("Revenue grew 12.5 percent last year.", "growth 0.125"),
        ("Revenue grew 13% last year.", material_text([{"growth": 0.125}])),
        ("Revenue grew 15% last year.", "growth 0.145"),  # 14.499999... in floats
        ("The table costs $1,200.", "price 1200"),
        ("The table costs $1.2k.", "price 1200"),
        ("The table costs 1200 dollars.", "price $1,200"),
    ],
)
def test_figures_from_the_material_pass_in_any_form(text: str, material: str) -> None:
    assert check_figures(subject(text, material=material), 0.5) == []


def test_a_figure_off_the_data_is_flagged_with_its_currency() -> None:
    issues = check_figures(subject("The table costs $1,250.", material="price 1200"), 0.5)

    assert issues[0].message.startswith("figures not found in the data or sources: $1,250;")


def test_years_and_small_counts_are_not_claims() -> None:
    text = "In 2024, we opened 3, then 12 more stores. Since 1999 we sell chairs."

    assert check_figures(subject(text, material="nothing numeric"), 0.5) == []


def test_a_count_over_twelve_is_checked() -> None:
    issues = check_figures(subject("We opened 13 stores.", material="nothing numeric"), 0.5)

    assert issues[0].message.startswith("figures not found in the data or sources: 13;")


def test_citations_and_list_numbers_are_not_figures() -> None:
    text = "Growth was strong [14].\n17. A list item\n18) another one"

    assert check_figures(subject(text, material="none"), 0.5) == []


def test_figures_of_a_translation_are_checked_at_its_source() -> None:
    s = subject("Der Umsatz wuchs um 37%.", language="German", material="growth 12.5%")

    assert check_figures(s, 0.5) == []


def test_unknown_figures_are_listed_once_each() -> None:
    text = "Sales rose 37%, then 37% again, and 41% in the end."

    issues = check_figures(subject(text, material="growth 12.5%"), 0.5)

    assert issues[0].message.startswith("figures not found in the data or sources: 37%, 41%;")


# Citations ----------------------------------------------------------------------------------


def test_a_citation_without_a_source_is_flagged() -> None:
    s = subject("Demand rose [1] and prices fell [3].", sources=[{"n": 1}, {"n": 2}], research=True)

    issues = check_citations(s, 0.5)

    assert summary(issues) == [("citations", "accuracy", "error", "write_blog")]
    assert issues[0].message == "cites [3], which no source has"


def test_several_unknown_citations_are_named_in_order() -> None:
    s = subject("A [5], b [3], c [1].", sources=[{"n": 1}])

    assert check_citations(s, 0.5)[0].message == "cites [3], [5], which no source has"


def test_research_without_any_citation_is_flagged() -> None:
    s = subject("Demand rose sharply this spring.", sources=[{"n": 1}], research=True)

    issues = check_citations(s, 0.5)

    assert summary(issues) == [("citations", "accuracy", "error", "write_blog")]
    assert issues[0].message == (
        "the research findings are not cited: cite the sources used as [n]"
    )


def test_cited_research_passes() -> None:
    s = subject("Demand rose [1] and prices fell [2].", sources=[{"n": 1}, {"n": 2}], research=True)

    assert check_citations(s, 0.5) == []


def test_bracketed_numbers_are_not_citations_without_sources_or_research() -> None:
    assert check_citations(subject("See item [7] of the list."), 0.5) == []


# Language -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language"),
    [(ENGLISH, "english"), (GERMAN, "german"), (FRENCH, "french"), (SPANISH, "spanish")],
)
def test_detect_language_of_a_short_paragraph(text: str, language: str) -> None:
    assert detect_language(text) == language


def test_detect_language_needs_eight_words() -> None:
    assert detect_language("We are the best in the world") is None


def test_a_german_translation_in_english_is_flagged_at_the_translate_step() -> None:
    s = subject(
        ENGLISH, step_id="translate_de", language="German", tool="translate", writer_step="w"
    )

    issues = check_language(s, 0.5)

    assert summary(issues) == [("language", "completeness", "error", "translate_de")]
    assert issues[0].message == "the text reads as English, not German"
    assert issues[0].deliverable == "blog:german"


@pytest.mark.parametrize("language", ["German", "de", "de-DE", "DE"])
def test_language_names_and_codes_are_understood(language: str) -> None:
    s = subject(ENGLISH, step_id="t", language=language, tool="translate")

    assert check_language(s, 0.5)[0].message == "the text reads as English, not German"


def test_a_dutch_translation_in_english_is_flagged() -> None:
    s = subject(ENGLISH, step_id="t", language="Dutch", tool="translate")

    assert check_language(s, 0.5)[0].message == "the text reads as English, not Dutch"


def test_a_translation_in_the_right_language_passes() -> None:
    s = subject(GERMAN, step_id="t", language="German", tool="translate")

    assert check_language(s, 0.5) == []


def test_an_unknown_language_gets_no_verdict() -> None:
    s = subject(ENGLISH, step_id="t", language="Japanese", tool="translate")

    assert check_language(s, 0.5) == []


# Length, channel limits, sections -----------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (100, []),  # on target
        (76, []),  # within the tolerance (24 % short)
        (74, [("length", "completeness", "warning", "write_blog")]),  # over it, within twice
        (38, [("length", "completeness", "warning", "write_blog")]),
        (37, [("length", "completeness", "error", "write_blog")]),  # under half the low bound
        (150, [("length", "completeness", "warning", "write_blog")]),
        (151, [("length", "completeness", "error", "write_blog")]),  # over twice the tolerance
    ],
)
def test_length_against_the_target(n: int, expected: list[tuple[str, str, str, str]]) -> None:
    issues = check_length(subject(prose(n), target_words=100), 0.25)

    assert summary(issues) == expected


def test_a_text_far_too_short_is_an_error_at_the_default_tolerance() -> None:
    """27 words for a 600-word blog post (what a small model wrote) must be redone."""
    issues = check_length(subject(prose(27), target_words=600), 0.5)

    assert summary(issues) == [("length", "completeness", "error", "write_blog")]


def test_length_message_names_both_counts() -> None:
    issues = check_length(subject(prose(20), target_words=100), 0.25)

    assert issues[0].message == "20 words where about 100 were asked for"


def test_length_is_not_checked_without_a_target_or_on_a_translation() -> None:
    assert check_length(subject(prose(5)), 0.25) == []
    assert check_length(subject(prose(5), target_words=100, language="German"), 0.25) == []


def test_linkedin_over_3000_characters_is_flagged() -> None:
    issues = check_channel_limit(subject("a" * 3001, channel="linkedin"), 0.5)

    assert summary(issues) == [("channel_limit", "format", "warning", "write_blog")]
    assert issues[0].message == "3001 characters; linkedin takes at most 3000"


def test_linkedin_far_over_the_limit_is_an_error() -> None:
    issues = check_channel_limit(subject("a" * 4501, channel="linkedin"), 0.5)

    assert summary(issues) == [("channel_limit", "format", "error", "write_blog")]


def test_linkedin_at_the_limit_and_a_blog_of_any_length_pass() -> None:
    assert check_channel_limit(subject("a" * 3000, channel="linkedin"), 0.5) == []
    assert check_channel_limit(subject("a" * 9000, channel="blog"), 0.5) == []


def test_a_long_blog_without_headings_gets_a_warning() -> None:
    issues = check_sections(subject(prose(300)), 0.5)

    assert summary(issues) == [("sections", "format", "warning", "write_blog")]
    assert issues[0].message == (
        "0 section heading(s); a blog of this length needs at least 2 ('## ' headings)"
    )


def test_a_long_blog_with_one_heading_still_needs_another() -> None:
    text = f"## Start\n{prose(300)}"

    assert check_sections(subject(text), 0.5)[0].message.startswith("1 section heading(s);")


def test_a_sectioned_long_blog_a_short_blog_and_a_linkedin_post_pass() -> None:
    assert check_sections(subject(f"## One\n{prose(150)}\n### Two\n{prose(150)}"), 0.5) == []
    assert check_sections(subject(prose(249)), 0.5) == []
    assert check_sections(subject(prose(300), channel="linkedin"), 0.5) == []


# Placeholders, links ------------------------------------------------------------------------


def test_a_placeholder_is_flagged() -> None:
    issues = check_not_empty(subject("Welcome to [Insert company name], the best shop."), 0.5)

    assert summary(issues) == [("placeholder", "completeness", "error", "write_blog")]
    assert issues[0].message == "the text still has a placeholder: '[Insert company name]'"


def test_an_almost_empty_text_is_flagged() -> None:
    issues = check_not_empty(subject("Coming soon, stay tuned."), 0.5)

    assert summary(issues) == [("not_empty", "completeness", "error", "write_blog")]


def test_broken_workspace_links_are_flagged(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "reports").mkdir(parents=True)
    (workspace / "reports" / "q1.md").write_text("# Q1")
    (tmp_path / "outside.md").write_text("exists, but outside the workspace")
    text = (
        "See [the report](reports/q1.md#summary), [the site](https://example.com/a.md), "
        "[top](#intro), [missing](reports/q2.md) and [escape](../outside.md)."
    )

    issues = check_links(subject(text, workspace=workspace), 0.5)

    assert summary(issues) == [("links", "format", "error", "write_blog")]
    assert issues[0].message == (
        "links to files that do not exist in the workspace: reports/q2.md, ../outside.md"
    )


def test_links_to_existing_files_and_urls_pass(tmp_path: Path) -> None:
    (tmp_path / "chart.png").write_bytes(b"png")
    text = "![chart](chart.png) and [docs](https://example.com/missing.md)"

    assert check_links(subject(text, workspace=tmp_path), 0.5) == []


def test_links_are_not_checked_without_a_workspace() -> None:
    assert check_links(subject("[missing](nowhere.md)"), 0.5) == []


# qa_review ----------------------------------------------------------------------------------


def test_qa_review_problems_map_to_dimensions_and_point_at_the_writer() -> None:
    problems: list[tuple[str, dict[str, Any]]] = [
        ("qa", {"check": "banned_phrase", "message": "uses 'synergy'", "severity": "error"}),
        ("qa", {"check": "Citations", "message": "no source for the claim"}),
        ("qa", {"check": "grammar", "message": "run-on sentence", "severity": "warning"}),
        ("qa", {"message": "something odd"}),
    ]
    s = subject("text", step_id="translate_de", language="German", writer_step="write_blog")
    s.qa_problems = problems

    issues = check_qa_review(s, 0.5)

    assert [(i.check, i.dimension, i.severity, i.step_id, i.message) for i in issues] == [
        ("qa_review:banned_phrase", "tone", "error", "write_blog", "uses 'synergy'"),
        ("qa_review:citations", "accuracy", "warning", "write_blog", "no source for the claim"),
        ("qa_review:grammar", "coherence", "warning", "write_blog", "run-on sentence"),
        ("qa_review:problem", "coherence", "warning", "write_blog", "something odd"),
    ]
    assert {i.deliverable for i in issues} == {"blog:german"}


def test_qa_review_problems_point_at_the_deliverable_without_a_writer() -> None:
    s = subject("text", qa_problems=[("qa", {"check": "tone", "message": "too casual"})])

    assert summary(check_qa_review(s, 0.5)) == [("qa_review:tone", "tone", "warning", "write_blog")]


# All together -------------------------------------------------------------------------------


def test_run_checks_names_every_check_and_passes_a_clean_text() -> None:
    s = subject("Our garden chairs are made by hand and last for years.", target_words=11)

    names, issues = run_checks(s, tolerance=0.5)

    assert names == list(CHECKS)
    assert names == [
        "not_empty",
        "length",
        "channel_limit",
        "sections",
        "citations",
        "language",
        "figures",
        "links",
        "qa_review",
    ]
    assert issues == []


def test_run_checks_collects_every_issue() -> None:
    s = subject(
        "Revenue at [Insert company name] grew 37% [4].",
        sources=[{"n": 1}],
        material="growth 12.5%",
    )

    _, issues = run_checks(s, tolerance=0.5)

    assert [i.check for i in issues] == ["placeholder", "citations", "figures"]
