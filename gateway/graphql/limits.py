"""Operation limits: refuse abusive GraphQL documents before the expensive standard validation.

Two stages, both cheap and both run before graphql-core's own rules:

1. :func:`parse_limited` parses with ``max_tokens`` so a token bomb is cut off inside the lexer
   (the parser also refuses nesting deeper than its own bound; both become 400s here).
2. :func:`limits_rule` builds a graphql-core validation rule that walks each operation once
   (fragments are measured once and memoized, so a fragment fan-out cannot make the walk itself
   exponential) and reports depth, aliases, root fields, directives, duplicated fields and an
   estimated cost with list-size multipliers from ``first``, where a field whose resolver runs
   a model or a FAISS search weighs what it costs (:data:`FIELD_COSTS`), not 1.

The standard rules only run when this rule passes. That ordering matters: graphql-core's
OverlappingFieldsCanBeMerged is quadratic in repeated fields (600 copies of ``me { id }`` take
seconds), so the duplicate-field limit must reject such a document before it gets there.

Every rejection carries a specific ``extensions.code`` (see :data:`LIMIT_CODES`) and is answered
400 by the endpoint whatever the negotiated media type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    parse,
)
from graphql.language.visitor import SKIP
from graphql.type import GraphQLInterfaceType, GraphQLObjectType
from graphql.validation import NoSchemaIntrospectionCustomRule, ValidationRule

MAX_DEPTH = "MAX_DEPTH_LIMIT"
MAX_ALIASES = "MAX_ALIASES_LIMIT"
MAX_ROOT_FIELDS = "MAX_ROOT_FIELDS_LIMIT"
MAX_DIRECTIVES = "MAX_DIRECTIVES_LIMIT"
MAX_TOKENS = "MAX_TOKENS_LIMIT"
MAX_COST = "MAX_COST_LIMIT"
MAX_DUPLICATE_FIELDS = "MAX_DUPLICATE_FIELDS_LIMIT"
INTROSPECTION_DISABLED = "INTROSPECTION_DISABLED"

# What one call of a field costs, in ordinary fields (an ordinary field costs 1), for the fields
# whose resolver runs a model, an encoder or a FAISS search; keyed "Type.field". Order of
# magnitude: a hybrid recommendation or a semantic search takes milliseconds of CPU, a plain
# field microseconds. With the default ``max_cost`` (5000) an operation may make about nine
# such calls; 24 aliased ``recommendations`` are refused. The subtree of a list field is still
# multiplied by its size on top of this.
FIELD_COSTS: Mapping[str, int] = MappingProxyType(
    {
        # CF + content (FAISS) + segment-popular + trending, blend, MMR diversity, reasons
        "User.recommendations": 500,
        # query encoding (MiniLM) + FAISS search (+ the caller's taste vector)
        "Query.search": 500,
        # one FAISS search from a stored item vector
        "Query.similarItems": 250,
        # the segment's popularity list through the filters
        "Query.segmentRecommendations": 100,
        # conversion-propensity model inference over the profile
        "User.conversionScore": 50,
    }
)

LIMIT_CODES = frozenset(
    {
        MAX_DEPTH,
        MAX_ALIASES,
        MAX_ROOT_FIELDS,
        MAX_DIRECTIVES,
        MAX_TOKENS,
        MAX_COST,
        MAX_DUPLICATE_FIELDS,
        INTROSPECTION_DISABLED,
    }
)


@dataclass(frozen=True, slots=True)
class OperationLimits:
    """Per-operation bounds. Counts are after fragment expansion; ``0`` disables one limit.

    - ``max_depth``: nested field levels (``{ me { id } }`` is 2).
    - ``max_aliases``: aliased fields in the operation.
    - ``max_root_fields``: fields selected on the root type.
    - ``max_directives``: directive uses anywhere in the operation.
    - ``max_tokens``: lexical tokens in the whole document (enforced by the parser).
    - ``max_cost``: estimated resolver cost: each field costs 1, or its weight in
      ``field_costs`` (``"Type.field"``: fields that run a model or a FAISS search), and the
      subtree of a list field of objects is multiplied by its ``first`` argument (clamped to
      ``max_first``; a variable counts as its default or ``max_first``), by the length of a
      literal list argument, or by ``default_list_size``.
    - ``max_duplicate_fields``: copies of one response name in one selection set.
    """

    max_depth: int = 15
    max_aliases: int = 30
    max_root_fields: int = 20
    max_directives: int = 30
    max_tokens: int = 2000
    max_cost: int = 5000
    max_duplicate_fields: int = 10
    max_first: int = 100
    default_list_size: int = 10
    field_costs: Mapping[str, int] = field(default_factory=lambda: FIELD_COSTS, hash=False)


class LimitExceeded(GraphQLError):
    """A document refused by an operation limit; ``extensions.code`` names the limit."""

    def __init__(self, message: str, code: str, nodes: Any = None) -> None:
        super().__init__(message, nodes, extensions={"code": code})
        self.code = code


def is_limit_error(error: GraphQLError) -> bool:
    ext = error.extensions or {}
    return ext.get("code") in LIMIT_CODES


def parse_limited(query: str, limits: OperationLimits | None) -> DocumentNode:
    """Parse with the token limit; raises :class:`LimitExceeded` or ``GraphQLError`` (syntax)."""
    max_tokens = limits.max_tokens if limits and limits.max_tokens > 0 else None
    try:
        return parse(query, max_tokens=max_tokens)
    except GraphQLError as exc:
        # graphql-core words these two as syntax errors; they are limits, not typos.
        if "more than" in exc.message and "tokens" in exc.message:
            raise LimitExceeded(
                f"the document has more than {max_tokens} tokens", MAX_TOKENS
            ) from None
        if "nested too deeply" in exc.message:
            raise LimitExceeded("the document is nested too deeply", MAX_DEPTH) from None
        raise
    except RecursionError:
        raise LimitExceeded("the document is nested too deeply", MAX_DEPTH) from None


@dataclass(slots=True)
class _Stats:
    """Measures of one selection set (fragments expanded)."""

    depth: int = 0
    aliases: int = 0
    directives: int = 0
    cost: int = 0
    max_dup: int = 0
    names: Counter[str] = field(default_factory=Counter)  # response names at this level
    weighted: Counter[str] = field(default_factory=Counter)  # calls of weighted fields


class _Measure:
    """One walk over an operation; fragment measures are memoized by name."""

    def __init__(self, schema: GraphQLSchema, limits: OperationLimits, fragments: dict[str, Any]):
        self.schema = schema
        self.limits = limits
        self.fragments = fragments
        self.memo: dict[str, _Stats] = {}
        self.visiting: set[str] = set()
        self.defaults: dict[str, Any] = {}

    def operation(self, op: OperationDefinitionNode) -> _Stats:
        self.defaults = {
            v.variable.name.value: v.default_value for v in op.variable_definitions or ()
        }
        root = self.schema.get_root_type(op.operation)
        stats = self.selection_set(op.selection_set, root)
        stats.directives += len(op.directives or ())
        return stats

    def selection_set(self, node: SelectionSetNode | None, parent: Any) -> _Stats:
        out = _Stats()
        if node is None:
            return out
        for sel in node.selections:
            n_dirs = len(sel.directives or ())
            if isinstance(sel, FieldNode):
                sub = self.field(sel, parent)
                out.names[(sel.alias or sel.name).value] += 1
                out.aliases += sub.aliases + (1 if sel.alias else 0)
                out.depth = max(out.depth, sub.depth + 1)
                out.cost += sub.cost
                out.max_dup = max(out.max_dup, sub.max_dup)
                out.directives += sub.directives + n_dirs
                out.weighted.update(sub.weighted)
                continue
            if isinstance(sel, InlineFragmentNode):
                cond = sel.type_condition
                typ = self.schema.get_type(cond.name.value) if cond else parent
                sub = self.selection_set(sel.selection_set, typ)
            elif isinstance(sel, FragmentSpreadNode):
                sub = self.fragment(sel.name.value)
            else:  # pragma: no cover - no other selection kinds exist
                continue
            out.names.update(sub.names)
            out.aliases += sub.aliases
            out.depth = max(out.depth, sub.depth)
            out.cost += sub.cost
            out.max_dup = max(out.max_dup, sub.max_dup)
            out.directives += sub.directives + n_dirs
            out.weighted.update(sub.weighted)
        if out.names:
            out.max_dup = max(out.max_dup, max(out.names.values()))
        return out

    def fragment(self, name: str) -> _Stats:
        cached = self.memo.get(name)
        if cached is not None:
            return cached
        frag = self.fragments.get(name)
        if frag is None or name in self.visiting:
            # Unknown fragments and cycles are reported by the standard rules.
            return _Stats()
        self.visiting.add(name)
        try:
            stats = self.selection_set(
                frag.selection_set, self.schema.get_type(frag.type_condition.name.value)
            )
            stats.directives += len(frag.directives or ())
        finally:
            self.visiting.discard(name)
        self.memo[name] = stats
        return stats

    def field(self, node: FieldNode, parent: Any) -> _Stats:
        ftype: Any = None
        weight = 1
        weighted: Counter[str] = Counter()
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            fdef = parent.fields.get(node.name.value)
            if fdef is not None:
                ftype = fdef.type
                name = f"{parent.name}.{node.name.value}"
                weight = self.limits.field_costs.get(name, 1)
                if weight != 1:
                    weighted[name] = 1
        sub = self.selection_set(node.selection_set, get_named_type(ftype) if ftype else None)
        mult = self.multiplier(node, ftype) if node.selection_set is not None else 1
        for name, calls in sub.weighted.items():
            weighted[name] += mult * calls
        return _Stats(
            depth=sub.depth,
            aliases=sub.aliases,
            directives=sub.directives,
            cost=weight + mult * sub.cost,
            max_dup=sub.max_dup,
            weighted=weighted,
        )

    def multiplier(self, node: FieldNode, ftype: Any) -> int:
        while isinstance(ftype, GraphQLNonNull):
            ftype = ftype.of_type
        if not isinstance(ftype, GraphQLList):
            return 1
        lim = self.limits
        args = {a.name.value: a.value for a in node.arguments or ()}
        first = args.get("first")
        if first is not None:
            if isinstance(first, VariableNode):
                first = self.defaults.get(first.name.value)
            if isinstance(first, IntValueNode):
                return max(0, min(int(first.value), lim.max_first))
            return lim.max_first
        for value in args.values():
            if isinstance(value, ListValueNode):
                return len(value.values)
            if isinstance(value, VariableNode):
                return lim.max_first
        return lim.default_list_size


def measure(
    schema: GraphQLSchema, document: DocumentNode, limits: OperationLimits
) -> list[LimitExceeded]:
    """Check every operation of ``document``; returns the limit violations (empty when fine)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    out: list[LimitExceeded] = []
    for op in document.definitions:
        if isinstance(op, OperationDefinitionNode):
            out.extend(_check(_Measure(schema, limits, fragments), op, limits))
    return out


def _check(m: _Measure, op: OperationDefinitionNode, lim: OperationLimits) -> list[LimitExceeded]:
    stats = m.operation(op)
    errors: list[LimitExceeded] = []
    checks = (
        (lim.max_depth, stats.depth, MAX_DEPTH, "depth"),
        (lim.max_aliases, stats.aliases, MAX_ALIASES, "aliases"),
        (lim.max_root_fields, sum(stats.names.values()), MAX_ROOT_FIELDS, "root fields"),
        (lim.max_directives, stats.directives, MAX_DIRECTIVES, "directives"),
        (
            lim.max_duplicate_fields,
            stats.max_dup,
            MAX_DUPLICATE_FIELDS,
            "copies of one field in a selection set",
        ),
        (lim.max_cost, stats.cost, MAX_COST, "estimated cost"),
    )
    for limit, value, code, what in checks:
        if limit > 0 and value > limit:
            message = f"the operation has {what} {value}; the limit is {limit}"
            if code == MAX_COST and stats.weighted:
                message += _weighted_detail(stats.weighted, lim.field_costs)
            errors.append(LimitExceeded(message, code, op))
    return errors


def _weighted_detail(weighted: Counter[str], costs: Mapping[str, int]) -> str:
    """`` (expensive fields: 24 x User.recommendations at 500 each)``, costliest first."""
    ranked = sorted(weighted.items(), key=lambda kv: (-kv[1] * costs.get(kv[0], 1), kv[0]))
    parts = [f"{calls} x {name} at {costs.get(name, 1)} each" for name, calls in ranked[:5]]
    return f" (expensive fields: {', '.join(parts)})"


def limits_rule(limits: OperationLimits) -> type[ValidationRule]:
    """A graphql-core validation rule enforcing ``limits`` (run it before the standard rules)."""

    class OperationLimitsRule(ValidationRule):
        def enter_document(self, node: DocumentNode, *_args: Any) -> Any:
            for error in measure(self.context.schema, node, limits):
                self.report_error(error)
            return SKIP

    return OperationLimitsRule


class NoIntrospectionRule(NoSchemaIntrospectionCustomRule):
    """graphql-core's introspection ban with an ``extensions.code`` (production mode)."""

    def report_error(self, error: GraphQLError) -> None:
        super().report_error(
            GraphQLError(
                "introspection is disabled",
                error.nodes,
                extensions={"code": INTROSPECTION_DISABLED},
            )
        )


__all__ = [
    "FIELD_COSTS",
    "LIMIT_CODES",
    "LimitExceeded",
    "NoIntrospectionRule",
    "OperationLimits",
    "is_limit_error",
    "limits_rule",
    "measure",
    "parse_limited",
]
