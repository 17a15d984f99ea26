from __future__ import annotations

import pytest

from segments import RuleError, RuleSyntaxError, UnknownFeatureError, compile_rule

USER = {"views_7d": 7.0, "purchases_30d": 0.0, "sessions": 3.0, "monetary": 120.5}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("views_7d >= 5 and purchases_30d == 0", True),
        ("views_7d >= 8 and purchases_30d == 0", False),
        ("views_7d > 100 or sessions < 4", True),
        ("not (views_7d > 5)", False),
        ("not views_7d > 5 or monetary != 120.5", False),
        ("monetary >= 1.205e2", True),
        ("recency_days == 0", True),  # missing feature reads 0
        ("-1 < recency_days", True),
        ("views_7d > 5 and (sessions > 10 or monetary > 100)", True),
        ("views_7d > 5 and sessions > 10 or monetary > 100", True),  # and binds tighter
        ("views_7d > 5 and (sessions > 10 or monetary > 200)", False),
        ("sessions <= 3 and sessions < 3", False),
    ],
)
def test_valid_rules_evaluate(expression: str, expected: bool) -> None:
    assert compile_rule(expression)(USER) is expected


def test_membership_in_top_categories() -> None:
    rule = compile_rule('"shoes" in top_categories and views_7d > 1')
    assert rule(USER, ["books", "shoes"]) is True
    assert rule(USER, ["books"]) is False
    assert compile_rule("'shoes' not in top_categories")(USER, ["books"]) is True
    assert rule.features == frozenset({"views_7d"})


@pytest.mark.parametrize(
    ("expression", "column", "fragment"),
    [
        ("views_7d >= 5 and", 18, "end of expression"),
        ("views_7d = 5", 10, "'=='"),
        ("(views_7d > 5", 14, "expected ')'"),
        ("views_7d > 5)", 13, "')'"),
        ("views_7d 5", 10, "comparison operator"),
        ("views_7d > 'x'", 12, "a feature or a number"),
        ('"shoes" in sessions', 12, "list attribute"),
        ("top_categories > 2", 1, "is a list"),
        ("views_7d > 5 & sessions > 1", 14, "unexpected character '&'"),
        ("'open", 1, "unterminated string"),
        ("", 1, "empty"),
        ("views_7d > 1.2.3", 12, "invalid number"),
    ],
)
def test_syntax_errors_name_the_column(expression: str, column: int, fragment: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        compile_rule(expression)
    assert info.value.position == column
    assert fragment in str(info.value)


def test_unknown_feature_is_named_with_its_column() -> None:
    with pytest.raises(UnknownFeatureError) as info:
        compile_rule("views_7d > 1 and purchaces_30d == 0")
    assert info.value.feature == "purchaces_30d"
    assert info.value.position == 18
    assert "purchaces_30d" in str(info.value)
    assert isinstance(info.value, RuleError)


def test_no_python_evaluation_happens() -> None:
    for hostile in ("__import__('os').system('true')", "views_7d.__class__ > 1", "(lambda: 1)"):
        with pytest.raises(RuleError):
            compile_rule(hostile)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(RuleSyntaxError):
        compile_rule("(" * 900 + "views_7d > 1" + ")" * 900)
