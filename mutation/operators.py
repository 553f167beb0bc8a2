"""Single-point source mutations found on the AST of one module, and how to apply one.

Each mutant changes one node: a comparison flipped at its boundary or negated (`<` -> `<=`,
`==` -> `!=`, `in` -> `not in`), `and` <-> `or`, an integer constant +1 or -1, True <-> False,
a condition negated, an arithmetic or bitwise operator swapped (also in `+=`), a statement
dropped (`raise`, an augmented assignment, a call, a store into a subscript or attribute,
`del`), a returned value replaced by None, `break` <-> `continue`.

Left alone: docstrings, strings and f-strings (error messages), annotations, decorators,
`assert` statements (internal invariants: dropping one that never fires is always
equivalent), `__all__`, and Protocol bodies (`...`).

A mutant is named by what it changes, not by where the node sits: the file, the enclosing
function's qualified name, the text of the source line, and a description such as
"compare: `<` -> `<=`" (plus "#n" when the same change appears n times on that line). The
list of equivalent mutants is keyed the same way, so it survives edits elsewhere in a file.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_COMPARE_SWAPS: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Lt: (ast.LtE,),
    ast.LtE: (ast.Lt,),
    ast.Gt: (ast.GtE,),
    ast.GtE: (ast.Gt,),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
}

_BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
    ast.Div: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.LShift: ast.RShift,
    ast.RShift: ast.LShift,
    ast.BitAnd: ast.BitOr,
    ast.BitOr: ast.BitAnd,
    ast.BitXor: ast.BitOr,
}

_OP_TEXT = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.FloorDiv: "//",
    ast.Div: "/",
    ast.Mod: "%",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitAnd: "&",
    ast.BitOr: "|",
    ast.BitXor: "^",
    ast.And: "and",
    ast.Or: "or",
}

Loc = tuple[str, int, int, int, int]
Transform = Callable[[ast.AST], ast.AST]


@dataclass(frozen=True)
class Mutant:
    """One single-point change of one module."""

    file: str
    lineno: int
    scope: str
    line: str
    description: str
    occurrence: int
    loc: Loc
    variant: int

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Line-number independent identity: (file, scope, line text, description#n)."""
        return (self.file, self.scope, self.line, self.mutation)

    @property
    def mutation(self) -> str:
        return self.description + (f" #{self.occurrence}" if self.occurrence else "")


def _short(node: ast.AST, limit: int = 70) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _loc(node: ast.AST) -> Loc:
    return (
        type(node).__name__,
        node.lineno,  # type: ignore[attr-defined]
        node.col_offset,  # type: ignore[attr-defined]
        node.end_lineno or 0,  # type: ignore[attr-defined]
        node.end_col_offset or 0,  # type: ignore[attr-defined]
    )


def _negate(test: ast.expr) -> ast.expr:
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return test.operand
    return ast.UnaryOp(op=ast.Not(), operand=test)


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _node_mutations(node: ast.AST) -> Iterator[tuple[str, Transform]]:
    """(description, transform) for every mutation of `node` itself (not its children)."""
    if isinstance(node, ast.Compare):
        for index, op in enumerate(node.ops):
            for new in _COMPARE_SWAPS.get(type(op), ()):

                def swap(n: ast.AST, i: int = index, new: type[ast.cmpop] = new) -> ast.AST:
                    assert isinstance(n, ast.Compare)
                    n.ops[i] = new()
                    return n

                yield f"compare: `{_OP_TEXT[type(op)]}` -> `{_OP_TEXT[new]}`", swap
    elif isinstance(node, ast.BoolOp):
        new_op: type[ast.boolop] = ast.Or if isinstance(node.op, ast.And) else ast.And

        def flip(n: ast.AST, new_op: type[ast.boolop] = new_op) -> ast.AST:
            assert isinstance(n, ast.BoolOp)
            n.op = new_op()
            return n

        yield f"boolean: `{_OP_TEXT[type(node.op)]}` -> `{_OP_TEXT[new_op]}`", flip
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            yield (
                f"constant: `{value}` -> `{not value}`",
                lambda n: ast.Constant(value=not value),
            )
        elif isinstance(value, int):
            for delta in (1, -1):
                new_value = value + delta
                yield (
                    f"constant: `{value}` -> `{new_value}`",
                    lambda n, v=new_value: ast.Constant(value=v),
                )
    elif isinstance(node, ast.BinOp | ast.AugAssign):
        new_bin = _BINOP_SWAPS.get(type(node.op))
        if new_bin is not None:

            def swap_bin(n: ast.AST, new_bin: type[ast.operator] = new_bin) -> ast.AST:
                assert isinstance(n, ast.BinOp | ast.AugAssign)
                n.op = new_bin()
                return n

            eq = "=" if isinstance(node, ast.AugAssign) else ""
            yield (
                f"operator: `{_OP_TEXT[type(node.op)]}{eq}` -> `{_OP_TEXT[new_bin]}{eq}`",
                swap_bin,
            )
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not | ast.USub):
        op = "not" if isinstance(node.op, ast.Not) else "-"
        yield f"unary: drop `{op}` in `{_short(node)}`", lambda n: n.operand  # type: ignore[attr-defined]
    elif isinstance(node, ast.If | ast.While | ast.IfExp):
        yield (
            f"negate: `{_short(node.test, 50)}`",
            lambda n: _with_test(n, _negate(n.test)),  # type: ignore[attr-defined]
        )
    elif isinstance(node, ast.comprehension):
        for index, cond in enumerate(node.ifs):
            yield (
                f"negate: `{_short(cond, 50)}`",
                lambda n, i=index: _with_if(n, i),
            )
    if isinstance(node, ast.Raise):
        yield f"drop: `{_short(node)}`", lambda n: ast.Pass()
    elif isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            yield (
                f"return None: `{_short(node)}`",
                lambda n: ast.Return(value=ast.Constant(value=None)),
            )
    elif _droppable(node):
        yield f"drop: `{_short(node)}`", lambda n: ast.Pass()
    elif isinstance(node, ast.Break):
        yield "flow: `break` -> `continue`", lambda n: ast.Continue()
    elif isinstance(node, ast.Continue):
        yield "flow: `continue` -> `break`", lambda n: ast.Break()


def _droppable(node: ast.AST) -> bool:
    """A statement whose only effect is a side effect: augmented assignment, del, a call, a
    store into a subscript or an attribute."""
    if isinstance(node, ast.AugAssign | ast.Delete):
        return True
    if isinstance(node, ast.Expr):
        return isinstance(node.value, ast.Call)
    return isinstance(node, ast.Assign) and all(
        isinstance(t, ast.Subscript | ast.Attribute) for t in node.targets
    )


def _with_test(node: ast.AST, test: ast.expr) -> ast.AST:
    node.test = test  # type: ignore[attr-defined]
    return node


def _with_if(node: ast.AST, index: int) -> ast.AST:
    assert isinstance(node, ast.comprehension)
    node.ifs[index] = _negate(node.ifs[index])
    return node


def _skipped(tree: ast.AST) -> set[int]:
    """ids of the nodes not to mutate or descend into: annotations, decorators, class bases,
    docstrings."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            skip.update(id(d) for d in node.decorator_list)
            if node.returns is not None:
                skip.add(id(node.returns))
        elif isinstance(node, ast.arg) and node.annotation is not None:
            skip.add(id(node.annotation))
        elif isinstance(node, ast.ClassDef):
            skip.update(id(d) for d in node.decorator_list)
            skip.update(id(b) for b in node.bases)
            skip.update(id(k) for k in node.keywords)
        elif isinstance(node, ast.AnnAssign):
            skip.add(id(node.annotation))
        scopes = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
        if isinstance(node, scopes) and node.body and _is_docstring(node.body[0]):
            skip.add(id(node.body[0]))
    return skip


def _is_excluded(node: ast.AST) -> bool:
    if isinstance(node, ast.Assert | ast.JoinedStr | ast.Import | ast.ImportFrom):
        return True
    if isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
    ):
        return True
    if isinstance(node, ast.ClassDef) and any(
        isinstance(b, ast.Name) and b.id == "Protocol" for b in node.bases
    ):
        return True
    return isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"


def _walk(node: ast.AST, scope: list[str], skip: set[int]) -> Iterator[tuple[ast.AST, str]]:
    if id(node) in skip or _is_excluded(node):
        return
    yield node, ".".join(scope) or "<module>"
    named = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    if named:
        scope.append(node.name)  # type: ignore[attr-defined]
    for child in ast.iter_child_nodes(node):
        yield from _walk(child, scope, skip)
    if named:
        scope.pop()


def find_mutants(path: str, source: str) -> list[Mutant]:
    """Every mutant of the module at `path` (relative, for the report) with `source`."""
    tree = ast.parse(source)
    lines = source.splitlines()
    found: list[Mutant] = []
    seen: dict[tuple[str, str, str], int] = {}
    for node, scope in _walk(tree, [], _skipped(tree)):
        if not hasattr(node, "lineno"):
            continue
        for variant, (description, _) in enumerate(_node_mutations(node)):
            lineno = node.lineno  # type: ignore[attr-defined]
            line = lines[lineno - 1].strip()
            ident = (scope, line, description)
            occurrence = seen.get(ident, 0)
            seen[ident] = occurrence + 1
            found.append(
                Mutant(path, lineno, scope, line, description, occurrence, _loc(node), variant)
            )
    return found


class _Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, replacement: ast.AST) -> None:
        self.target = target
        self.replacement = replacement
        self.done = False

    def visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            self.done = True
            return self.replacement
        return self.generic_visit(node)


def mutate(source: str, mutant: Mutant) -> ast.Module:
    """The module tree of `source` with `mutant` applied (line numbers kept)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if hasattr(node, "lineno") and _loc(node) == mutant.loc:
            transforms = list(_node_mutations(node))
            if mutant.variant < len(transforms):
                description, transform = transforms[mutant.variant]
                if description == mutant.description:
                    replacement = transform(copy.deepcopy(node))
                    ast.copy_location(replacement, node)
                    replacer = _Replace(node, replacement)
                    tree = replacer.visit(tree)
                    assert replacer.done
                    return ast.fix_missing_locations(tree)
    raise LookupError(f"mutant not found in source: {mutant.key}")
