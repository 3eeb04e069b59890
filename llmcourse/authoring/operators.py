"""Mutation operators for the solution regions of notebook cells, on Python's ``ast``.

A mutant is a small set of text edits to one solution cell. Every edit lies inside a
``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region, except ``default_arg``, which
changes a default value in the signature of the function that holds the region (the
signature belongs to the solution cell and its defaults are part of the contract).
Edits are made on the source text (positions come from the ast), so the rest of the
cell keeps its formatting and the report can show the changed line as written.

The operators (``OPERATORS`` lists them with one line each) go past the classic
arithmetic and comparison swaps to the mistakes numerical code invites: reductions
swapped or taken over the wrong axis, ``keepdims`` flipped, casts and dtypes added,
removed or changed, slice bounds and indices moved by one, statements, ``raise``
branches and clauses of a condition dropped, early returns, arguments ignored.
"""
from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field

from ..grading.cells import SOLUTION_BEGIN as BEGIN
from ..grading.cells import SOLUTION_END as END

OPERATORS: dict[str, str] = {
    "arith": "binary or augmented arithmetic operator swapped (+ -, * /, // /, ** *, @ *, % //)",
    "term_drop": "one operand of + - * / dropped (a + b -> a, a * b -> b, a / b -> a)",
    "unary_drop": "unary minus, `not` or `~` removed",
    "compare": "comparison operator changed (< <=, > >=, == !=, is / is not, in / not in)",
    "bool_op": "`and` and `or` swapped",
    "clause_drop": "one operand of an `and` / `or` dropped (a validation clause forgotten)",
    "if_true": "an `if` condition (not a raise guard) replaced by True",
    "if_false": "an `if` condition (not a raise guard) replaced by False",
    "ifexp": "a conditional expression `a if c else b` replaced by one branch",
    "drop_raise": "a raise branch removed (`if bad: raise ...` or a bare `raise` becomes `pass`)",
    "exception_type": "the raised exception class changed (ValueError <-> TypeError, ...)",
    "drop_statement": "a statement removed: a re-assignment, an assignment to an item or attribute, "
                      "an augmented assignment, a call statement, a loop",
    "drop_with": "a `with` context manager removed, its body kept (no_grad, errstate, hooks)",
    "loop_once": "a `for` loop stops after its first iteration",
    "early_return": "the function returns its final expression before the remaining steps",
    "reduction": "a reduction swapped (sum mean, max min, amax amin, argmax argmin, prod sum, any all)",
    "axis": "the axis/dim of a call changed (-1 -> 0 / -2, 1 -> 0, tuple axis shortened, "
            "a variable axis -> None)",
    "axis_drop": "the axis/dim of a reduction removed: a whole-array reduction",
    "axis_add": "a whole-array reduction made per-axis (axis 0)",
    "keepdims": "keepdims/keepdim flipped, or added (True) where absent",
    "dtype_drop": "a dtype= argument removed (the input's dtype is kept)",
    "dtype_swap": "a dtype changed (float64 <-> float32, int64 -> int32)",
    "cast_add": "a float32 dtype added to an array/tensor constructor that had none",
    "cast_drop": "a cast removed: float()/int()/bool(), .astype, .double(), .float(), .long(), .to(), .item()",
    "cast_swap": "float() and int() swapped",
    "func_swap": "a function swapped for a plausible neighbour (log log2, exp exp2, tril triu, "
                 "softmax log_softmax, silu gelu, cos sin, floor ceil, sqrt rsqrt)",
    "func_drop": "sqrt / rsqrt / abs call removed, its argument kept",
    "method_drop": "a shape or copy method removed: .T, .transpose, .reshape, .view, .squeeze, "
                   ".unsqueeze, .clone, .copy, .detach, .contiguous, .flatten, .expand",
    "swap_args": "two positional arguments swapped (the two branches of where())",
    "swap_tuple": "two elements of a tuple swapped (returned pair, index pair, unpacking targets)",
    "kw_drop": "a keyword argument dropped (side=, generator=, device=, descending=, ...)",
    "string_swap": "a keyword's string value swapped (side right/left, reduction none/sum/mean)",
    "bool_const": "a True/False constant flipped",
    "range_bound": "the stop of range() moved by one",
    "slice": "a slice bound moved by one",
    "index": "an integer index moved by one",
    "constant": "a numeric constant perturbed (int +-1; float +1, or 0, or 0 -> 1)",
    "ignore_argument": "a parameter with a default ignored: its uses replaced by the default",
    "default_arg": "a default value in the signature changed (number +1, bool flipped, other -> 2)",
}

REDUCTION_SWAPS = {
    "sum": ["mean"], "mean": ["sum"], "max": ["min"], "min": ["max"], "amax": ["amin"],
    "amin": ["amax"], "argmax": ["argmin"], "argmin": ["argmax"], "prod": ["sum"],
    "any": ["all"], "all": ["any"], "nansum": ["nanmean"], "nanmean": ["nansum"],
    "std": ["var"], "var": ["std"], "logsumexp": ["amax"],
}
REDUCTIONS = {"sum", "mean", "max", "min", "amax", "amin", "prod", "any", "all", "nansum",
              "nanmean", "std", "var", "logsumexp", "argmax", "argmin", "norm", "count_nonzero"}
AXIS_CALLS = REDUCTIONS | {"softmax", "log_softmax", "cumsum", "cumprod", "squeeze", "unsqueeze",
                           "sort", "argsort", "flip", "cat", "concatenate", "stack", "split",
                           "chunk", "topk", "diff", "gather", "expand_dims", "take_along_axis"}
AXIS_ALTERNATIVES = {-1: [0, -2], -2: [-1], -3: [-1], 0: [1, -1], 1: [0, -1], 2: [1, -1], 3: [2, -1]}
MODULES = {"np", "numpy", "torch", "F", "nn", "math", "scipy", "functional"}
FUNC_SWAPS = {
    "log": ["log2"], "log2": ["log"], "log10": ["log"], "exp": ["exp2"], "exp2": ["exp"],
    "tril": ["triu"], "triu": ["tril"], "softmax": ["log_softmax"], "log_softmax": ["softmax"],
    "silu": ["gelu"], "gelu": ["silu"], "cos": ["sin"], "sin": ["cos"], "floor": ["ceil"],
    "ceil": ["floor"], "rsqrt": ["sqrt"], "logaddexp": ["maximum"], "log1p": ["log"],
    "expm1": ["exp"], "maximum": ["minimum"], "minimum": ["maximum"],
}
FUNC_DROP = {"sqrt", "rsqrt", "abs"}
CAST_NAMES = {"float", "int", "bool"}
CAST_METHODS = {"astype", "double", "float", "long", "int", "half", "bfloat16", "to", "item"}
SHAPE_METHODS = {"transpose", "reshape", "view", "squeeze", "unsqueeze", "clone", "copy", "detach",
                 "contiguous", "flatten", "ravel", "expand", "t", "permute"}
CONSTRUCTORS = {("np", "asarray"), ("np", "array"), ("torch", "as_tensor"), ("torch", "tensor")}
# calls whose first two arguments have different kinds: swapping them only raises a TypeError
NO_SWAP = {"range", "where", "print", "isinstance", "getattr", "setattr", "hasattr", "masked_fill",
           "masked_fill_", "full_like", "full", "randint", "topk", "split", "chunk", "normal_",
           "uniform_", "copy_", "fill_", "index_select", "gather", "scatter", "expand"}
DTYPE_SWAPS = {
    "np.float64": "np.float32", "np.float32": "np.float64", "np.int64": "np.int32",
    "np.double": "np.float32", "torch.float64": "torch.float32", "torch.double": "torch.float32",
    "torch.float32": "torch.float64", "torch.float": "torch.float64", "torch.int64": "torch.int32",
    "torch.long": "torch.int32",
}
STRING_SWAPS = {"right": ["left"], "left": ["right"], "none": ["sum"], "sum": ["mean"],
                "mean": ["sum"], "batchmean": ["mean"]}
EXCEPTION_SWAPS = {"ValueError": "TypeError", "TypeError": "ValueError", "IndexError": "ValueError",
                   "KeyError": "ValueError", "RuntimeError": "ValueError"}
ARITH = {ast.Add: ("+", ["-"]), ast.Sub: ("-", ["+"]), ast.Mult: ("*", ["/"]),
         ast.Div: ("/", ["*", "//"]), ast.FloorDiv: ("//", ["/"]), ast.Mod: ("%", ["//"]),
         ast.Pow: ("**", ["*"]), ast.MatMult: ("@", ["*"])}
COMPARE = {ast.Lt: ("<", ["<=", ">"]), ast.LtE: ("<=", ["<", ">"]), ast.Gt: (">", [">=", "<"]),
           ast.GtE: (">=", [">", "<"]), ast.Eq: ("==", ["!="]), ast.NotEq: ("!=", ["=="]),
           ast.Is: ("is", ["is not"]), ast.IsNot: ("is not", ["is"]), ast.In: ("in", ["not in"]),
           ast.NotIn: ("not in", ["in"])}
ATOMIC = (ast.Name, ast.Constant, ast.Attribute, ast.Call, ast.Subscript, ast.List, ast.Tuple,
          ast.Dict, ast.Set, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.JoinedStr)


@dataclass(frozen=True)
class Edit:
    start: int          # character offsets into the cell source
    end: int
    text: str


@dataclass
class Mutant:
    """One mutant of one solution cell."""
    id: str             # stable: hash of notebook, function, operator, original and mutated line
    notebook: str       # assignment id, e.g. "01_chain_rule"
    cell: int           # index of the solution cell in nb.cells
    grade_id: str       # nbgrader grade id of the solution cell
    function: str       # qualified name of the function that holds the change
    operator: str
    line: int           # first changed line, 1-based, within the cell
    before: str         # the original line(s), as written
    after: str          # the same line(s), mutated
    source: str = field(repr=False)   # the whole mutated cell

    def summary(self) -> dict:
        return {k: getattr(self, k) for k in ("id", "notebook", "grade_id", "function", "operator",
                                               "line", "before", "after")}


def solution_regions(source: str) -> list[tuple[int, int]]:
    """1-based (first, last) line numbers strictly inside each BEGIN/END SOLUTION pair."""
    regions, start = [], None
    for no, line in enumerate(source.split("\n"), 1):
        if BEGIN in line:
            start = no + 1
        elif END in line and start is not None:
            if no - 1 >= start:
                regions.append((start, no - 1))
            start = None
    return regions


class _Source:
    """Offsets of a cell's source: ast (line, utf-8 column) <-> character offset."""

    def __init__(self, text: str):
        self.text = text
        self.lines = text.splitlines(keepends=True) or [""]
        self.starts, pos = [], 0
        for ln in self.lines:
            self.starts.append(pos)
            pos += len(ln)
        self.starts.append(pos)

    def off(self, lineno: int, col: int) -> int:
        line = self.lines[lineno - 1] if lineno - 1 < len(self.lines) else ""
        return self.starts[lineno - 1] + len(line.encode("utf-8")[:col].decode("utf-8", "replace"))

    def span(self, node) -> tuple[int, int]:
        return self.off(node.lineno, node.col_offset), self.off(node.end_lineno, node.end_col_offset)

    def seg(self, node) -> str:
        a, b = self.span(node)
        return self.text[a:b]

    def line_of(self, offset: int) -> int:
        lo, hi = 0, len(self.starts) - 1
        while lo < hi - 1:
            mid = (lo + hi) // 2
            if self.starts[mid] <= offset:
                lo = mid
            else:
                hi = mid
        return lo + 1

    def indent_of(self, lineno: int) -> str:
        line = self.lines[lineno - 1]
        return line[: len(line) - len(line.lstrip())]


def _paren(text: str, node) -> str:
    return text if isinstance(node, ATOMIC) else f"({text})"


def _const_int(node):
    """The int value of `3` or `-3`, else None."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) is int):
        return -node.operand.value
    return None


def _call_name(call: ast.Call) -> tuple[str | None, str | None]:
    """(receiver, name) of a call: ("np", "sum") for np.sum(x) or np.linalg.norm(x) (the module
    at the root), ("<expr>", "sum") for x.sum(), (None, "float") for float(x)."""
    f = call.func
    if isinstance(f, ast.Name):
        return None, f.id
    if not isinstance(f, ast.Attribute):
        return "<expr>", None
    base = f.value
    while isinstance(base, ast.Attribute):
        base = base.value
    if isinstance(base, ast.Name) and base.id in MODULES:
        return base.id, f.attr
    return "<expr>", f.attr


def _names_loaded(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _names_stored(stmt) -> set[str]:
    out = set()
    for n in ast.walk(stmt):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
    return out


class _Generator(ast.NodeVisitor):
    """Walks one cell; collects (operator, function, [edits]) for nodes inside solution regions."""

    def __init__(self, src: _Source, regions: list[tuple[int, int]]):
        self.src = src
        self.regions = regions
        self.found: list[tuple[str, str, list[Edit]]] = []
        self.funcs: list[str] = []        # qualified-name stack (classes and functions)
        self.func_nodes: list = []
        self.in_raise = 0
        self.in_fstring = 0

    # ------------------------------------------------------------ helpers
    def inside(self, node) -> bool:
        if self.in_raise or self.in_fstring:     # error messages are not behaviour
            return False
        first, last = node.lineno, getattr(node, "end_lineno", node.lineno)
        return any(a <= first and last <= b for a, b in self.regions)

    def function(self) -> str:
        """Outermost function (with its class): nested helpers count for the graded function."""
        parts = []
        for name, kind in self.funcs:
            parts.append(name)
            if kind == "def":
                break
        return ".".join(parts) if parts else "<cell>"

    def add(self, op: str, edits: list[Edit]) -> None:
        self.found.append((op, self.function(), edits))

    def replace(self, op: str, node, text: str) -> None:
        a, b = self.src.span(node)
        self.add(op, [Edit(a, b, text)])

    def gap_token(self, left, right, token: str) -> tuple[int, int] | None:
        """Offsets of `token` in the text between two nodes (an operator between operands)."""
        a, b = self.src.off(left.end_lineno, left.end_col_offset), self.src.off(right.lineno, right.col_offset)
        gap = self.src.text[a:b]
        if "#" in gap:
            return None
        if token.isalpha() or " " in token:
            words = gap.replace("(", " ").replace(")", " ").split()
            joined = " ".join(words)
            if joined != token:
                return None
            i = gap.find(words[0])
            j = gap.rfind(words[-1]) + len(words[-1])
            return a + i, a + j
        i = gap.find(token)
        if i < 0:
            return None
        # "*" must not be half of "**", "/" not half of "//"
        if len(token) == 1 and gap[i:i + 2] in ("**", "//"):
            return None
        return a + i, a + i + len(token)

    # ------------------------------------------------------------ scopes
    def visit_FunctionDef(self, node):
        self.default_args(node)
        self.funcs.append((node.name, "def"))
        self.func_nodes.append(node)
        if self.inside_body(node):
            self.ignore_arguments(node)
            self.early_return(node)
        self.generic_visit(node)
        self.func_nodes.pop()
        self.funcs.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.funcs.append((node.name, "class"))
        self.generic_visit(node)
        self.funcs.pop()

    def visit_JoinedStr(self, node):
        self.in_fstring += 1
        self.generic_visit(node)
        self.in_fstring -= 1

    def inside_body(self, fn) -> bool:
        return any(self.inside(s) for s in fn.body)

    # ------------------------------------------------------------ function-level operators
    def default_args(self, fn) -> None:
        """Change each default of a function whose body holds a solution region."""
        if not self.inside_body(fn) or self.func_nodes:
            return
        self.funcs.append((fn.name, "def"))
        args = fn.args
        for d in list(args.defaults) + [d for d in args.kw_defaults if d is not None]:
            if isinstance(d, ast.Constant) and isinstance(d.value, bool):
                new = str(not d.value)
            elif isinstance(d, ast.Constant) and type(d.value) in (int, float):
                new = repr(d.value + 1)
            elif isinstance(d, ast.Constant) and d.value is None:
                continue
            elif isinstance(d, (ast.Attribute, ast.Name)):
                new = "2"
            elif _const_int(d) is not None:
                new = repr(_const_int(d) + 1)
            else:
                continue
            self.replace("default_arg", d, new)
        self.funcs.pop()

    def ignore_arguments(self, fn) -> None:
        """Replace every use of a defaulted parameter, inside the region, by its default."""
        args = fn.args
        pos = args.posonlyargs + args.args
        pairs = list(zip(pos[len(pos) - len(args.defaults):], args.defaults, strict=True))
        pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
        for arg, default in pairs:
            uses = [n for s in fn.body if self.inside(s) for n in ast.walk(s)
                    if isinstance(n, ast.Name) and n.id == arg.arg and isinstance(n.ctx, ast.Load)]
            if not uses:
                continue
            text = _paren(self.src.seg(default), default)
            self.add("ignore_argument", [Edit(*self.src.span(n), text) for n in uses])

    def early_return(self, fn) -> None:
        """Return the final expression right after each step that follows the validation."""
        body = [s for s in fn.body if self.inside(s)]
        if len(body) < 3 or not isinstance(body[-1], ast.Return) or body[-1].value is None:
            return
        final = body[-1].value
        needed = _names_loaded(final)
        params = {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
        if fn.args.vararg:
            params.add(fn.args.vararg.arg)
        stored_anywhere = set().union(*(_names_stored(s) for s in fn.body))
        must_bind = (needed & stored_anywhere) - params
        last_guard = -1
        for i, s in enumerate(body[:-1]):
            if isinstance(s, ast.If) and any(isinstance(x, ast.Raise) for x in ast.walk(s)):
                last_guard = i
        bound = set()
        for i, s in enumerate(body[:-2]):
            bound |= _names_stored(s)
            if i < last_guard or not must_bind <= bound:
                continue
            if isinstance(s, (ast.FunctionDef, ast.ClassDef)):
                continue
            if any(isinstance(n, ast.Call) and _call_name(n)[1] in ("empty", "empty_like")
                   for n in ast.walk(s)):
                continue      # returning uninitialised memory would make the verdict random
            end = self.src.off(s.end_lineno, s.end_col_offset)
            indent = self.src.indent_of(s.lineno)
            self.add("early_return", [Edit(end, end, f"\n{indent}return {self.src.seg(final)}")])

    # ------------------------------------------------------------ statements
    def visit_If(self, node):
        if self.inside(node):
            raise_only = len(node.body) == 1 and isinstance(node.body[0], ast.Raise) and not node.orelse
            if raise_only:
                self.replace("drop_raise", node, "pass")
            else:
                self.replace("if_true", node.test, "True")
                self.replace("if_false", node.test, "False")
        self.generic_visit(node)

    def visit_Raise(self, node):
        if self.inside(node):
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in EXCEPTION_SWAPS:
                self.replace("exception_type", exc, EXCEPTION_SWAPS[exc.id])
            parent_if = getattr(node, "_parent", None)
            if not (isinstance(parent_if, ast.If) and parent_if.body == [node] and not parent_if.orelse):
                self.replace("drop_raise", node, "pass")
        self.in_raise += 1
        self.generic_visit(node)
        self.in_raise -= 1

    def _rebinding(self, stmt, targets) -> bool:
        """True when dropping the assignment leaves the names bound (re-assignment, item or
        attribute target): dropping a first binding only gives a NameError."""
        fn = self.func_nodes[-1] if self.func_nodes else None
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    if fn is None:
                        return False
                    params = {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
                    earlier = any(isinstance(m, ast.Name) and m.id == n.id and isinstance(m.ctx, ast.Store)
                                  and (m.lineno, m.col_offset) < (stmt.lineno, stmt.col_offset)
                                  for s in fn.body for m in ast.walk(s))
                    if n.id not in params and not earlier:
                        return False
        return True

    def visit_Assign(self, node):
        fn = self.func_nodes[-1] if self.func_nodes else None
        first_attr = (fn is not None and fn.name == "__init__"
                      and all(isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                              and t.value.id == "self" for t in node.targets))
        if self.inside(node) and self._rebinding(node, node.targets) and not first_attr:
            self.replace("drop_statement", node, "pass")
        for t in node.targets:
            if isinstance(t, ast.Tuple) and self.inside(node):
                self.tuple_swaps(t)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        if self.inside(node):
            self.replace("drop_statement", node, "pass")
            sym, alts = ARITH.get(type(node.op), (None, []))
            if sym:
                pos = self.gap_token(node.target, node.value, sym + "=")
                if pos:
                    for alt in alts:
                        self.add("arith", [Edit(pos[0], pos[1], alt + "=")])
        self.generic_visit(node)

    def visit_Expr(self, node):
        if self.inside(node) and isinstance(node.value, ast.Call):
            self.replace("drop_statement", node, "pass")
        self.generic_visit(node)

    def visit_For(self, node):
        if self.inside(node):
            self.replace("drop_statement", node, "pass")
            last = node.body[-1]
            end = self.src.off(last.end_lineno, last.end_col_offset)
            indent = self.src.indent_of(node.body[0].lineno)
            self.add("loop_once", [Edit(end, end, f"\n{indent}break")])
        self.generic_visit(node)

    def visit_With(self, node):
        if self.inside(node) and all(i.optional_vars is None for i in node.items):
            a = self.src.off(node.lineno, node.col_offset)
            b = self.src.off(node.items[-1].context_expr.end_lineno, node.items[-1].context_expr.end_col_offset)
            self.add("drop_with", [Edit(a, b, "if True")])
        self.generic_visit(node)

    # ------------------------------------------------------------ expressions
    def visit_BinOp(self, node):
        if self.inside(node):
            sym, alts = ARITH.get(type(node.op), (None, []))
            pos = self.gap_token(node.left, node.right, sym) if sym else None
            if pos:
                for alt in alts:
                    self.add("arith", [Edit(pos[0], pos[1], alt)])
            left = _paren(self.src.seg(node.left), node.left)
            right = _paren(self.src.seg(node.right), node.right)
            if isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
                self.replace("term_drop", node, left)
            if isinstance(node.op, (ast.Add, ast.Mult)):
                self.replace("term_drop", node, right)
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        if self.inside(node) and isinstance(node.op, (ast.USub, ast.Not, ast.Invert)):
            value = node.operand.value if isinstance(node.operand, ast.Constant) else None
            if isinstance(node.op, ast.USub) and type(value) in (int, float):
                # a negative literal is one constant: -1 -> 0 and -2 (not "-0")
                if not self.in_fstring and not self.in_raise:
                    for new in (-value + 1, -value - 1) if type(value) is int else (-value + 1.0, 0.0):
                        self.replace("constant", node, repr(new))
                return
            self.replace("unary_drop", node, _paren(self.src.seg(node.operand), node.operand))
        self.generic_visit(node)

    def visit_Compare(self, node):
        if self.inside(node):
            prev = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                sym, alts = COMPARE[type(op)]
                pos = self.gap_token(prev, right, sym)
                if pos:
                    for alt in alts:
                        self.add("compare", [Edit(pos[0], pos[1], alt)])
                prev = right
        self.generic_visit(node)

    def visit_BoolOp(self, node):
        if self.inside(node):
            word = "and" if isinstance(node.op, ast.And) else "or"
            other = "or" if word == "and" else "and"
            edits = []
            for a, b in zip(node.values, node.values[1:], strict=False):   # neighbours
                pos = self.gap_token(a, b, word)
                if pos is None:
                    edits = None
                    break
                edits.append(Edit(pos[0], pos[1], other))
            if edits:
                self.add("bool_op", edits)
            texts = [_paren(self.src.seg(v), v) for v in node.values]
            for i in range(len(texts)):
                rest = texts[:i] + texts[i + 1:]
                self.replace("clause_drop", node, f" {word} ".join(rest) if len(rest) > 1 else rest[0])
        self.generic_visit(node)

    def visit_IfExp(self, node):
        if self.inside(node):
            self.replace("ifexp", node, _paren(self.src.seg(node.body), node.body))
            self.replace("ifexp", node, _paren(self.src.seg(node.orelse), node.orelse))
        self.generic_visit(node)

    def visit_Tuple(self, node):
        parent = getattr(node, "_parent", None)
        order_free = (isinstance(parent, (ast.Compare, ast.For, ast.keyword, ast.comprehension))
                      or (isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name)
                          and parent.func.id == "isinstance")
                      or all(isinstance(e, ast.Constant) for e in node.elts))
        if self.inside(node) and isinstance(node.ctx, ast.Load) and not self.in_raise and not order_free:
            self.tuple_swaps(node)
        self.generic_visit(node)

    def tuple_swaps(self, node) -> None:
        elts = node.elts
        if not 2 <= len(elts) <= 4 or any(isinstance(e, ast.Starred) for e in elts):
            return
        for i in range(len(elts) - 1):
            a, b = self.src.seg(elts[i]), self.src.seg(elts[i + 1])
            if a != b:
                self.add("swap_tuple", [Edit(*self.src.span(elts[i]), b), Edit(*self.src.span(elts[i + 1]), a)])

    def visit_Attribute(self, node):
        if self.inside(node) and not self.in_fstring:
            text = self.src.seg(node)
            if text in DTYPE_SWAPS:
                self.replace("dtype_swap", node, DTYPE_SWAPS[text])
            if node.attr in ("T", "mT") and isinstance(node.ctx, ast.Load):
                self.replace("method_drop", node, _paren(self.src.seg(node.value), node.value))
        self.generic_visit(node)

    def visit_Subscript(self, node):
        if self.inside(node) and not self.in_fstring:
            parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            for p in parts:
                if isinstance(p, ast.Slice):
                    for bound in (p.lower, p.upper):
                        if bound is not None:
                            self.shift("slice", bound)
                elif _const_int(p) is not None:
                    self.shift("index", p)
        self.generic_visit(node)

    def shift(self, op: str, node) -> None:
        value = _const_int(node)
        if value is not None:
            for v in (value + 1, value - 1):
                self.replace(op, node, str(v))
        else:
            text = _paren(self.src.seg(node), node)
            self.replace(op, node, f"{text} + 1")
            self.replace(op, node, f"{text} - 1")

    def visit_Constant(self, node):
        if self.inside(node) and not self.in_fstring and not self.in_raise:
            v = node.value
            if isinstance(v, bool):
                self.replace("bool_const", node, str(not v))
            elif type(v) is int:
                self.replace("constant", node, str(v + 1))
                self.replace("constant", node, str(v - 1))
            elif type(v) is float:
                if v == 0.0:
                    self.replace("constant", node, "1.0")
                else:
                    self.replace("constant", node, repr(v + 1.0))
                    self.replace("constant", node, "0.0")
        self.generic_visit(node)

    def visit_Call(self, node):
        if self.inside(node) and not self.in_fstring and not self.in_raise:
            self.call_operators(node)
        self.generic_visit(node)

    def call_operators(self, node: ast.Call) -> None:
        recv, name = _call_name(node)
        f = node.func
        kws = {k.arg: k for k in node.keywords if k.arg}
        positional = [a for a in node.args if not isinstance(a, ast.Starred)]
        is_method = recv == "<expr>"

        def rename(new: str, op: str) -> None:
            a, b = self.src.span(f)
            self.add(op, [Edit(b - len(name), b, new)])

        # reductions and math functions swapped
        if name in REDUCTION_SWAPS and not (recv is None and name in ("sum",)):
            for new in REDUCTION_SWAPS[name]:
                if recv is None and new not in ("max", "min", "any", "all"):
                    continue
                rename(new, "reduction")
        if name in FUNC_SWAPS and recv is not None:
            for new in FUNC_SWAPS[name]:
                rename(new, "func_swap")
        if name in FUNC_DROP:
            if is_method and not node.args:
                self.replace("func_drop", node, _paren(self.src.seg(f.value), f.value))
            elif not is_method and len(node.args) == 1 and not node.keywords:
                self.replace("func_drop", node, _paren(self.src.seg(node.args[0]), node.args[0]))

        # axis / dim
        axis_kw = kws.get("axis") or kws.get("dim")
        axis_node = axis_kw.value if axis_kw is not None else None
        axis_pos = None
        if axis_node is None and name in AXIS_CALLS:
            idx = 0 if is_method else 1
            if name in ("split", "chunk", "topk", "gather", "take_along_axis"):
                idx += 1
            if len(positional) > idx and (_const_int(positional[idx]) is not None
                                          or isinstance(positional[idx], ast.Tuple)):
                axis_node = axis_pos = positional[idx]
        if axis_node is not None:
            self.axis_alternatives(axis_node)
        if name in REDUCTIONS and (axis_kw is not None or axis_pos is not None):
            if axis_kw is not None:
                self.drop_keyword(node, axis_kw, "axis_drop")
            else:
                self.drop_positional(node, axis_pos, "axis_drop")
        if (name in REDUCTIONS and axis_node is None
                and name not in ("argmax", "argmin", "norm", "any", "all", "count_nonzero")
                and recv is not None and not (recv == "math")):
            if is_method and not positional:
                start = self.src.off(f.end_lineno, f.end_col_offset)
                paren = self.src.text.find("(", start)
                extra = "0, " if node.keywords else "0"
                self.add("axis_add", [Edit(paren + 1, paren + 1, extra)])
            elif not is_method and len(positional) == 1:
                end = self.src.off(positional[0].end_lineno, positional[0].end_col_offset)
                self.add("axis_add", [Edit(end, end, ", 0")])

        # keepdims
        kd = kws.get("keepdims") or kws.get("keepdim")
        if kd is not None and isinstance(kd.value, ast.Constant) and isinstance(kd.value.value, bool):
            self.replace("keepdims", kd.value, str(not kd.value.value))
        elif kd is None and name in REDUCTIONS and name not in ("argmax", "argmin"):
            if "axis" in kws:
                self.append_keyword(node, "keepdims=True", "keepdims")
            elif "dim" in kws:
                self.append_keyword(node, "keepdim=True", "keepdims")

        # dtypes and casts
        if "dtype" in kws:
            self.drop_keyword(node, kws["dtype"], "dtype_drop")
        elif (recv, name) in CONSTRUCTORS and len(positional) == 1:
            self.append_keyword(node, f"dtype={recv}.float32", "cast_add")
        string_arg = node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
        if recv is None and name in CAST_NAMES and len(node.args) == 1 and not node.keywords and not string_arg:
            self.replace("cast_drop", node, _paren(self.src.seg(node.args[0]), node.args[0]))
            if name in ("float", "int"):
                rename("int" if name == "float" else "float", "cast_swap")
        if is_method and name in CAST_METHODS and len(node.args) <= 1 and not node.keywords:
            dtype_words = ("float", "double", "int", "long", "half", "bool")
            if name != "to" or (node.args and any(w in self.src.seg(node.args[0]) for w in dtype_words)):
                self.replace("cast_drop", node, _paren(self.src.seg(f.value), f.value))
        if is_method and name in SHAPE_METHODS:
            self.replace("method_drop", node, _paren(self.src.seg(f.value), f.value))

        # arguments
        if name == "where" and len(positional) == 3:
            self.swap_two(positional[1], positional[2])
        elif len(positional) >= 2 and name not in NO_SWAP:
            self.swap_two(positional[0], positional[1])
        for k in node.keywords:
            if k.arg and k.arg not in ("axis", "dim", "keepdims", "keepdim", "dtype"):
                self.drop_keyword(node, k, "kw_drop")
                if isinstance(k.value, ast.Constant) and isinstance(k.value.value, str):
                    for new in STRING_SWAPS.get(k.value.value, []):
                        self.replace("string_swap", k.value, repr(new))
        if recv is None and name == "range" and 1 <= len(positional) <= 3:
            stop = positional[0] if len(positional) == 1 else positional[1]
            value = _const_int(stop)
            text = _paren(self.src.seg(stop), stop)
            for new in ((str(value + 1), str(value - 1)) if value is not None else (f"{text} + 1", f"{text} - 1")):
                self.replace("range_bound", stop, new)

    def axis_alternatives(self, node) -> None:
        value = _const_int(node)
        if value is not None:
            for alt in AXIS_ALTERNATIVES.get(value, [0]):
                self.replace("axis", node, str(alt))
        elif isinstance(node, ast.Tuple) and len(node.elts) >= 2:
            for i in range(len(node.elts)):
                rest = [self.src.seg(e) for j, e in enumerate(node.elts) if j != i]
                self.replace("axis", node, "(" + ", ".join(rest) + ",)")
        elif isinstance(node, (ast.Name, ast.Attribute)):
            self.replace("axis", node, "None")

    def swap_two(self, a, b) -> None:
        ta, tb = self.src.seg(a), self.src.seg(b)
        if ta != tb:
            self.add("swap_args", [Edit(*self.src.span(a), tb), Edit(*self.src.span(b), ta)])

    def _arg_nodes(self, call):
        items = list(call.args) + list(call.keywords)
        return sorted(items, key=lambda n: (n.lineno, n.col_offset))

    def drop_keyword(self, call, kw, op: str) -> None:
        self._drop_item(call, kw, op)

    def drop_positional(self, call, arg, op: str) -> None:
        self._drop_item(call, arg, op)

    def _drop_item(self, call, item, op: str) -> None:
        items = self._arg_nodes(call)
        i = items.index(item)
        if i > 0:
            prev = items[i - 1]
            a = self.src.off(prev.end_lineno, prev.end_col_offset)
            b = self.src.off(item.end_lineno, item.end_col_offset)
        elif len(items) > 1:
            a = self.src.off(item.lineno, item.col_offset)
            b = self.src.off(items[1].lineno, items[1].col_offset)
        else:
            a, b = self.src.span(item)
        self.add(op, [Edit(a, b, "")])

    def append_keyword(self, call, text: str, op: str) -> None:
        end = self.src.off(call.end_lineno, call.end_col_offset) - 1   # the closing parenthesis
        if self.src.text[end] != ")":
            return
        sep = ", " if (call.args or call.keywords) else ""
        self.add(op, [Edit(end, end, sep + text)])


def _set_parents(tree) -> None:
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child._parent = node


def _apply(text: str, edits: list[Edit]) -> str:
    for e in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        text = text[: e.start] + e.text + text[e.end:]
    return text


def _changed_lines(src: _Source, edits: list[Edit]) -> tuple[int, str, str]:
    """(first line, original lines, mutated lines) of the lines the edits touch.

    Edits on lines far apart (a parameter replaced at each use) give one block per group of
    touching lines, joined by a line "...": the lines between them are not part of the mutant,
    so editing them leaves its id unchanged."""
    spans = sorted(((src.line_of(e.start), src.line_of(max(e.end - 1, e.start)), e) for e in edits),
                   key=lambda t: (t[0], t[1], t[2].start))
    blocks: list[list] = []
    for first, last, e in spans:
        if blocks and first <= blocks[-1][1]:
            blocks[-1][1] = max(blocks[-1][1], last)
            blocks[-1][2].append(e)
        else:
            blocks.append([first, last, [e]])
    befores, afters = [], []
    for first, last, group in blocks:
        a, b = src.starts[first - 1], src.starts[last]
        shifted = [Edit(e.start - a, e.end - a, e.text) for e in group]
        befores.append(src.text[a:b].rstrip("\n"))
        afters.append(_apply(src.text[a:b], shifted).rstrip("\n"))
    return blocks[0][0], "\n...\n".join(befores), "\n...\n".join(afters)


def _norm(block: str) -> str:
    return "\n".join(line.strip() for line in block.split("\n") if line.strip())


def mutant_id(notebook: str, function: str, operator: str, before: str, after: str, occurrence: int) -> str:
    key = "\x1f".join([notebook, function, operator, _norm(before), _norm(after), str(occurrence)])
    return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


def mutate_cell(notebook: str, cell_index: int, grade_id: str, source: str) -> list[Mutant]:
    """Every mutant of one solution cell, in source order, without duplicates."""
    regions = solution_regions(source)
    if not regions:
        return []
    tree = ast.parse(source)
    _set_parents(tree)
    src = _Source(source)
    gen = _Generator(src, regions)
    gen.visit(tree)
    out, seen, counts = [], {source}, {}
    for op, function, edits in gen.found:
        new = _apply(source, edits)
        if new in seen:
            continue
        try:
            compile(new, f"<mutant of {grade_id}>", "exec")
        except SyntaxError:
            continue
        seen.add(new)
        line, before, after = _changed_lines(src, edits)
        key = (function, op, _norm(before), _norm(after))
        counts[key] = counts.get(key, 0) + 1
        mid = mutant_id(notebook, function, op, before, after, counts[key])
        out.append(Mutant(mid, notebook, cell_index, grade_id, function, op, line, before, after, new))
    return out
