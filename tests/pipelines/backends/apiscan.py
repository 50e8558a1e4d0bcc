"""Read, from a module's source, every TensorRT / CUDA API name it uses -- for the API conformance test.

What counts as a use (AST, no import of the module):

* an attribute chain on a module alias: ``trt.BuilderFlag.FP16``, ``cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost``,
  ``trt.IExecutionContext`` in an annotation (aliases from ``import tensorrt as trt``, ``import tensorrt``,
  ``from cuda.bindings import runtime as cudart``);
* an attribute of a variable annotated with an API class, in the function that annotates it
  (``config: trt.IBuilderConfig`` then ``config.set_flag``), or of ``self.x`` annotated in the class
  (``self._context: trt.IExecutionContext``); an assignment to it is a *store* (the property must be
  settable);
* a public method defined in a class derived from an API class (``process_debug_tensor`` of a
  ``trt.IDebugListener`` subclass) -- it must override something that exists.

A ``# tensorrt<11`` or ``# tensorrt>=10.12`` comment on a ``def`` line limits the uses inside that
function to the TensorRT versions it names (code that only those versions run).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

MODULES = {"tensorrt": "tensorrt", "cuda.bindings.runtime": "cuda.bindings.runtime"}
_MARKER = re.compile(r"#\s*tensorrt\s*(<|>=)\s*([\d.]+)")


@dataclass(frozen=True)
class Use:
    module: str  # "tensorrt" | "cuda.bindings.runtime"
    chain: tuple[str, ...]  # attribute path from the module: ("IBuilderConfig", "set_flag")
    store: bool  # assigned to: must be a settable property
    constraint: tuple[str, tuple[int, ...]] | None  # ("<", (11,)) / (">=", (10, 12)) / None
    where: str  # file:line

    def applies_to(self, version: tuple[int, ...]) -> bool:
        if self.constraint is None:
            return True
        op, bound = self.constraint
        head = version[: len(bound)]
        return head < bound if op == "<" else head >= bound

    @property
    def name(self) -> str:
        return ".".join(self.chain)


def _aliases(tree: ast.AST) -> dict[str, str]:
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES:
                    out[a.asname or a.name] = MODULES[a.name]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full in MODULES:
                    out[a.asname or a.name] = MODULES[full]
    return out


def _chain(node: ast.expr) -> tuple[str, ...] | None:
    """a.b.c -> ('a', 'b', 'c'); None when the root is not a plain name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return (node.id, *reversed(parts))
    return None


def _constraint(lines: list[str], func: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str, tuple[int, ...]] | None:
    last = func.body[0].lineno - 1 if func.body else func.lineno
    for text in lines[func.lineno - 1 : max(last, func.lineno)]:
        m = _MARKER.search(text)
        if m:
            return m.group(1), tuple(int(x) for x in m.group(2).split("."))
    return None


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: Path, aliases: dict[str, str], lines: list[str]) -> None:
        self.path, self.aliases, self.lines = path, aliases, lines
        self.uses: list[Use] = []
        self.types: list[dict[str, tuple[str, tuple[str, ...]]]] = [{}]  # scope: variable -> (module, class chain)
        self.self_types: list[dict[str, tuple[str, tuple[str, ...]]]] = [{}]
        self.constraints: list[tuple[str, tuple[int, ...]] | None] = [None]

    def _api_type(self, annotation: ast.expr | None) -> tuple[str, tuple[str, ...]] | None:
        chain = _chain(annotation) if annotation is not None else None
        if chain and chain[0] in self.aliases and len(chain) > 1:
            return self.aliases[chain[0]], chain[1:]
        return None

    def _add(self, module: str, chain: tuple[str, ...], node: ast.AST, store: bool = False) -> None:
        where = f"{self.path.name}:{getattr(node, 'lineno', 0)}"
        self.uses.append(Use(module, chain, store, self.constraints[-1], where))

    # -- scopes ------------------------------------------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        types = {}
        for stmt in ast.walk(node):  # self.x: trt.T = ... anywhere in the class
            if isinstance(stmt, ast.AnnAssign):
                chain = _chain(stmt.target)
                t = self._api_type(stmt.annotation)
                if chain and len(chain) == 2 and chain[0] == "self" and t:
                    types[chain[1]] = t
        for base in node.bases:
            t = self._api_type(base)
            if t is None:
                continue
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and not item.name.startswith("_"):
                    self._add(t[0], (*t[1], item.name), item)
        self.self_types.append(types)
        self.generic_visit(node)
        self.self_types.pop()

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        types = dict(self.types[-1])
        for arg in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
            t = self._api_type(arg.annotation)
            if t:
                types[arg.arg] = t
        for stmt in ast.walk(node):
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                t = self._api_type(stmt.annotation)
                if t:
                    types[stmt.target.id] = t
        self.types.append(types)
        self.constraints.append(_constraint(self.lines, node) or self.constraints[-1])
        self.generic_visit(node)
        self.constraints.pop()
        self.types.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._visit_function(node)

    # -- uses --------------------------------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _chain(node)
        store = isinstance(node.ctx, ast.Store)
        if chain is not None:
            root = chain[0]
            if root in self.aliases:
                self._add(self.aliases[root], chain[1:], node, store)
                return  # the whole chain is one use
            typed = self.types[-1].get(root)
            if typed and len(chain) >= 2:
                self._add(typed[0], (*typed[1], chain[1]), node, store and len(chain) == 2)
            elif root == "self" and len(chain) >= 3 and chain[1] in self.self_types[-1]:
                module, cls = self.self_types[-1][chain[1]]
                self._add(module, (*cls, chain[2]), node, store and len(chain) == 3)
        self.generic_visit(node)


def scan(path: Path) -> list[Use]:
    source = path.read_text()
    tree = ast.parse(source)
    scanner = _Scanner(path, _aliases(tree), source.splitlines())
    scanner.visit(tree)
    return scanner.uses
