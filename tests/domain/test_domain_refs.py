from __future__ import annotations

from typing import Any

import pytest

from intelligent_orchestrator.domain.refs import (
    Reference,
    ReferenceError_,
    find_references,
    parse_path,
    resolve,
)

OUTPUTS: dict[str, Any] = {
    "load": {
        "rows": [{"region": "EU", "amount": 10}, {"region": "US", "amount": 2.5}],
        "count": 2,
        "ok": True,
        "missing": None,
        "title": "Sales",
    },
    "raw-text": "plain output",
    "numbers": [1, 2, 3],
}


def test_find_references_walks_strings_lists_and_dicts() -> None:
    value = {
        "a": "${steps.load.output.rows[0].region}",
        "b": ["x", {"c": "total: ${steps.load.output.count} of ${ steps.numbers.output[2] }"}],
        "d": 3,
        "e": None,
    }
    refs = list(find_references(value))
    assert [(r.step, r.path) for r in refs] == [
        ("load", ("rows", 0, "region")),
        ("load", ("count",)),
        ("numbers", (2,)),
    ]
    assert refs[2].text == "${ steps.numbers.output[2] }"
    assert str(refs[0]) == "${steps.load.output.rows[0].region}"


def test_find_references_accepts_hyphenated_step_ids_and_whole_output() -> None:
    assert list(find_references("${steps.raw-text.output}")) == [
        Reference(step="raw-text", path=(), text="${steps.raw-text.output}")
    ]


@pytest.mark.parametrize(
    "text",
    [
        "$steps.load.output.count",  # no braces
        "${steps.load.count}",  # no .output
        "${steps.1load.output}",  # step ids start with a letter
        "${steps.load.output[-1]}",  # negative indices are not references
        "{steps.load.output}",
    ],
)
def test_text_that_is_not_a_reference_is_left_alone(text: str) -> None:
    assert list(find_references(text)) == []
    assert resolve(text, OUTPUTS) == text


def test_parse_path_mixes_keys_and_indices() -> None:
    assert parse_path(".rows[10].region[0]") == ("rows", 10, "region", 0)
    assert parse_path("") == ()


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("${steps.load.output.count}", 2),
        ("${steps.load.output.ok}", True),
        ("${steps.load.output.missing}", None),
        ("${steps.load.output.rows[1].amount}", 2.5),
        ("${steps.load.output.rows[0]}", {"region": "EU", "amount": 10}),
        ("${steps.numbers.output}", [1, 2, 3]),
        ("  ${steps.load.output.count}  ", 2),  # surrounding blanks still count as "whole"
    ],
)
def test_whole_string_reference_keeps_the_type(ref: str, expected: Any) -> None:
    got = resolve(ref, OUTPUTS)
    assert got == expected
    assert type(got) is type(expected)


def test_embedded_references_are_formatted_as_text() -> None:
    got = resolve(
        "${steps.load.output.title}: ${steps.load.output.count} rows, first ${steps.load.output.rows[0]}, "
        "ok=${steps.load.output.ok}, none=${steps.load.output.missing}, out=${steps.raw-text.output}",
        OUTPUTS,
    )
    assert got == (
        'Sales: 2 rows, first {"region": "EU", "amount": 10}, ok=true, none=null, out=plain output'
    )


def test_resolve_recurses_and_leaves_other_values_untouched() -> None:
    value = {
        "n": "${steps.load.output.count}",
        "items": ["${steps.numbers.output[0]}", "x-${steps.numbers.output[1]}", 7, None],
        "nested": {"flag": "${steps.load.output.ok}", "f": 1.5},
    }
    assert resolve(value, OUTPUTS) == {
        "n": 2,
        "items": [1, "x-2", 7, None],
        "nested": {"flag": True, "f": 1.5},
    }
    # the input is not modified in place
    assert value["n"] == "${steps.load.output.count}"


def test_non_ascii_text_is_kept_readable() -> None:
    assert resolve("v=${steps.x.output}", {"x": {"name": "Zürich"}}) == 'v={"name": "Zürich"}'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${steps.ghost.output.x}", "${steps.ghost.output.x}: step 'ghost' has no output"),
        ("${steps.load.output.nope}", "${steps.load.output.nope}: output has no field 'nope'"),
        ("${steps.load.output.rows[2]}", "${steps.load.output.rows[2]}: index [2] is out of range"),
        (
            "${steps.load.output.title[0]}",
            "${steps.load.output.title[0]}: index [0] is out of range",
        ),
        (
            "${steps.load.output.rows.region}",
            "${steps.load.output.rows.region}: output has no field 'region'",
        ),
        ("${steps.load.output.count.x}", "${steps.load.output.count.x}: output has no field 'x'"),
    ],
)
def test_unresolvable_references_name_the_reference_and_the_problem(
    text: str, message: str
) -> None:
    with pytest.raises(ReferenceError_) as whole:
        resolve(text, OUTPUTS)
    assert str(whole.value) == message
    with pytest.raises(ReferenceError_) as embedded:
        resolve(f"before {text} after", OUTPUTS)
    assert str(embedded.value) == message


def test_reference_error_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        resolve({"deep": ["${steps.none.output}"]}, {})
