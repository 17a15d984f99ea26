"""A small, safe expression language for rule segments. No `eval`: a hand-written tokenizer and
recursive-descent parser compile an expression to nested closures.

Grammar (keywords are lower-case; positions in errors are 1-based columns)::

    expr       := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" expr ")" | comparison
    comparison := number_term CMP number_term
                | STRING ["not"] "in" LIST_ATTRIBUTE
    number_term:= FEATURE | ["-"] NUMBER
    CMP        := "==" | "!=" | "<" | "<=" | ">" | ">="

e.g. ``views_7d >= 5 and purchases_30d == 0``, ``"shoes" in top_categories or not (sessions < 2)``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from segments.types import (
    FEATURE_NAMES,
    LIST_ATTRIBUTES,
    RuleSegment,
    RuleSyntaxError,
    UnknownFeatureError,
)

__all__ = ["CompiledRule", "RuleSegment", "compile_rule", "tokenize"]

Predicate = Callable[[Mapping[str, float], Collection[str]], bool]
NumberTerm = Callable[[Mapping[str, float]], float]

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_KEYWORDS = frozenset({"and", "or", "not", "in"})
_MAX_LENGTH = 2_000  # marketer-written rules are short; bounds parse time and recursion depth


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # NUMBER STRING NAME KEYWORD OP LPAREN RPAREN MINUS EOF
    text: str
    position: int  # 1-based column
    value: float | str | None = None


def tokenize(expression: str) -> list[Token]:
    """Split an expression into tokens, ending with an EOF token."""
    if len(expression) > _MAX_LENGTH:
        raise RuleSyntaxError(1, f"expression longer than {_MAX_LENGTH} characters")
    tokens: list[Token] = []
    i, n = 0, len(expression)
    while i < n:
        ch = expression[i]
        col = i + 1
        if ch.isspace():
            i += 1
        elif ch.isdigit() or (ch == "." and i + 1 < n and expression[i + 1].isdigit()):
            j = i
            while j < n and (expression[j].isdigit() or expression[j] in "._eE"):
                # an exponent sign belongs to the number: 1e-3
                if expression[j] in "eE" and j + 1 < n and expression[j + 1] in "+-":
                    j += 1
                j += 1
            text = expression[i:j]
            try:
                value = float(text)
            except ValueError:
                raise RuleSyntaxError(col, f"invalid number {text!r}") from None
            tokens.append(Token("NUMBER", text, col, value))
            i = j
        elif ch.isalpha() or ch == "_":
            j = i
            while j < n and (expression[j].isalnum() or expression[j] == "_"):
                j += 1
            word = expression[i:j]
            tokens.append(Token("KEYWORD" if word in _KEYWORDS else "NAME", word, col))
            i = j
        elif ch in "\"'":
            j = i + 1
            chars: list[str] = []
            while j < n and expression[j] != ch:
                if expression[j] == "\\" and j + 1 < n:
                    j += 1
                chars.append(expression[j])
                j += 1
            if j >= n:
                raise RuleSyntaxError(col, "unterminated string")
            tokens.append(Token("STRING", expression[i : j + 1], col, "".join(chars)))
            i = j + 1
        elif expression.startswith(("==", "!=", "<=", ">="), i):
            tokens.append(Token("OP", expression[i : i + 2], col))
            i += 2
        elif ch in "<>":
            tokens.append(Token("OP", ch, col))
            i += 1
        elif ch in "()-":
            kind = {"(": "LPAREN", ")": "RPAREN", "-": "MINUS"}[ch]
            tokens.append(Token(kind, ch, col))
            i += 1
        else:
            hint = " (use '==' to compare)" if ch == "=" else ""
            raise RuleSyntaxError(col, f"unexpected character {ch!r}{hint}")
    tokens.append(Token("EOF", "", n + 1))
    return tokens


class _Parser:
    def __init__(self, tokens: list[Token], features: frozenset[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.features = features
        self.used: set[str] = set()

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def fail(self, expected: str) -> RuleSyntaxError:
        tok = self.tok
        found = "end of expression" if tok.kind == "EOF" else repr(tok.text)
        return RuleSyntaxError(tok.position, f"expected {expected}, found {found}")

    def is_keyword(self, word: str) -> bool:
        return self.tok.kind == "KEYWORD" and self.tok.text == word

    def parse(self) -> Predicate:
        pred = self.expr()
        if self.tok.kind != "EOF":
            raise self.fail("'and', 'or' or end of expression")
        return pred

    def expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.is_keyword("or"):
            self.advance()
            parts.append(self.and_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda f, c: any(p(f, c) for p in parts)

    def and_expr(self) -> Predicate:
        parts = [self.not_expr()]
        while self.is_keyword("and"):
            self.advance()
            parts.append(self.not_expr())
        if len(parts) == 1:
            return parts[0]
        return lambda f, c: all(p(f, c) for p in parts)

    def not_expr(self) -> Predicate:
        if self.is_keyword("not"):
            self.advance()
            inner = self.not_expr()
            return lambda f, c: not inner(f, c)
        if self.tok.kind == "LPAREN":
            self.advance()
            inner = self.expr()
            if self.tok.kind != "RPAREN":
                raise self.fail("')'")
            self.advance()
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        if self.tok.kind == "STRING":
            return self.membership()
        left = self.number_term()
        if self.tok.kind != "OP":
            raise self.fail("a comparison operator (== != < <= > >=)")
        compare = _COMPARE[self.advance().text]
        right = self.number_term()
        return lambda f, c: compare(left(f), right(f))

    def membership(self) -> Predicate:
        value = str(self.advance().value)
        negate = self.is_keyword("not")
        if negate:
            self.advance()
        if not self.is_keyword("in"):
            raise self.fail("'in' after a string")
        self.advance()
        tok = self.tok
        if tok.kind != "NAME" or tok.text not in LIST_ATTRIBUTES:
            raise self.fail(f"a list attribute ({', '.join(LIST_ATTRIBUTES)})")
        self.advance()
        if negate:
            return lambda f, c: value not in c
        return lambda f, c: value in c

    def number_term(self) -> NumberTerm:
        tok = self.tok
        if tok.kind == "MINUS":
            self.advance()
            if self.tok.kind != "NUMBER":
                raise self.fail("a number after '-'")
            negative = -float(self.advance().value or 0.0)
            return lambda f: negative
        if tok.kind == "NUMBER":
            number = float(self.advance().value or 0.0)
            return lambda f: number
        if tok.kind == "NAME":
            if tok.text in LIST_ATTRIBUTES:
                raise RuleSyntaxError(
                    tok.position, f"{tok.text!r} is a list; use '\"value\" in {tok.text}'"
                )
            if tok.text not in self.features:
                raise UnknownFeatureError(tok.text, tok.position)
            self.advance()
            self.used.add(tok.text)
            name = tok.text
            return lambda f: float(f.get(name, 0.0))
        raise self.fail("a feature or a number")


@dataclass(frozen=True)
class CompiledRule:
    """A parsed rule; call it with a user's features (missing = 0) and top categories."""

    expression: str
    features: frozenset[str]  # the features the rule reads
    _predicate: Predicate = field(repr=False, compare=False)

    def __call__(self, features: Mapping[str, float], top_categories: Collection[str] = ()) -> bool:
        return bool(self._predicate(features, top_categories))


def compile_rule(expression: str, features: Sequence[str] = FEATURE_NAMES) -> CompiledRule:
    """Parse `expression`; raises `RuleSyntaxError` / `UnknownFeatureError` with the column."""
    parser = _Parser(tokenize(expression), frozenset(features))
    if parser.tok.kind == "EOF":
        raise RuleSyntaxError(1, "empty expression")
    try:
        predicate = parser.parse()
    except RecursionError:
        raise RuleSyntaxError(parser.tok.position, "expression nested too deeply") from None
    return CompiledRule(expression, frozenset(parser.used), predicate)
