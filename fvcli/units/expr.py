"""Objective expressions: weighted sums of units, parsed at the edge into one typed objective.

Grammar (whitespace is free between tokens; `*` binds tighter than `+` and `-`):

    expr   := term (('+' | '-') term)*
    term   := factor ('*' factor)*          at most one factor of a term may be an objective
    factor := ('+' | '-') factor | NUMBER | atom | '(' expr ')'
    atom   := LAYER ':' CHANNEL                    channel (mean over positions)   mixed4a:476
            | LAYER ':' CHANNEL '@' X ',' Y        neuron at x, y                  mixed4a:11@7,7
            | LAYER ':' CHANNEL '@center'          neuron at the map's center      mixed4a:11@center
            | LAYER ':' CHANNEL '@cls' | '@prefix' N  a token layer's class token   blocks.6:10@cls
            | ('logit' | 'prob') ':' CLASS         class logit / probability       logit:208  logit:tiger_cat
            | 'dream' ':' LAYER                    DeepDream of a layer            dream:mixed4a
            | LAYER ':dir=random:' SEED [':cossim=' P]   random direction       mixed4d:dir=random:7
            | LAYER ':dir=' PATH [':cossim=' P]          a vector from a .npy file  mixed4d:dir=vec.npy
A dictionary's rows, `mixed4d:dir=sae.npy#0-63`, are plain units (fvcli/units/dictionary.py), not expressions.

Directions score the mean over positions of the dot product with the vector (lucid's `direction`); `:cossim=P`
multiplies it by max(cos, 0.1)**P (lucid's cosine-weighted `dot_cossim`, Horama's default P = 2). A PATH runs to the
next whitespace or ')': separate operators from it with spaces.

Examples: "mixed4a:476 + mixed4a:460", "-mixed4a:492", "0.2*mixed4a:20 + 0.8*mixed4a:21",
"mixed4a:11@7,7 - 0.5*mixed4a:11", "2*(mixed4b:1 + mixed4b:2)", "mixed4d:dir=random:7:cossim=1".

The result is an `ExprUnit`: a unit (it has a key, a label and an objective) whose objective is the normalised
linear combination (like terms merged, first-appearance order). Its key is `expr-<slug>-<hash>`, deterministic in the
normalised expression (and a vector file's content), so spacing and parentheses do not change file names.
Errors are `ExprError` (an FvError, exit 2) naming the 1-based column and marking it with `^` in the expression.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import FvError
from ..models import LoadedModel
from ..optvis.objectives import Direction, Objective, Sum, random_direction
from .dictionary import match_ref
from .unit import Unit, dictionary_units, parse_units, split_model_prefix

MAX_EXPR_CHARS = 2000
MAX_TERMS = 256
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z0-9_.]+")  # layer names (features.14, mixed3b_3x3) and class names
_CLASS = re.compile(r"[A-Za-z0-9_.']+")
_ATOM_START = re.compile(r"[A-Za-z0-9_.]")


class ExprError(FvError):
    """A syntax or meaning error in an objective expression, with its 1-based column."""

    def __init__(self, text: str, pos: int, why: str) -> None:
        self.text, self.column, self.why = text, pos + 1, why
        marked = text[:pos] + "^" + text[pos:]
        super().__init__(f"bad objective expression at column {pos + 1}: {why}: {marked}")


def is_expression(text: str) -> bool:
    """Whether a unit argument is an expression rather than plain unit syntax (`mixed4a:0-15` is a range)."""
    t = text.strip()
    if match_ref(split_model_prefix(t)[1]):
        return False  # a dictionary's rows: LAYER:dir=FILE#ROWS
    return (any(c in t for c in "+*()") or "dir=" in t or t.startswith("-")
            or re.search(r"-\s*[A-Za-z_][A-Za-z0-9_.]*\s*:", t) is not None)


# ------------------------------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class Token:
    kind: str  # num | atom | op | end
    text: str
    pos: int  # 0-based offset in the expression


def tokenize(text: str) -> list[Token]:
    """Split an expression into numbers, unit atoms and the operators + - * ( )."""
    toks: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in "+-*()":
            toks.append(Token("op", c, i))
            i += 1
            continue
        m = _NUMBER.match(text, i)
        if m and not _continues_atom(text, m.end()):
            toks.append(Token("num", m.group(), i))
            i = m.end()
            continue
        if _ATOM_START.match(c):
            j = _atom_end(text, i)
            toks.append(Token("atom", text[i:j], i))
            i = j
            continue
        hint = " (an expression term names one channel: no lists or ranges)" if c == "," else ""
        raise ExprError(text, i, f"unexpected character {c!r}{hint}")
    toks.append(Token("end", "", n))
    return toks


def _continues_atom(text: str, j: int) -> bool:
    """A number followed by a name character or ':' is the start of an atom (a layer named `0`, `3.conv`)."""
    return j < len(text) and (text[j] == ":" or text[j].isalpha() or text[j] == "_")


def _atom_end(text: str, i: int) -> int:
    """End offset of the atom starting at i: HEAD ':' SPEC, where SPEC's extent depends on its kind."""
    m = _NAME.match(text, i)
    j = m.end() if m else i
    if j >= len(text) or text[j] != ":":
        return j  # a bare name: the parser reports it
    head = text[i:j]
    j += 1
    if text.startswith("dir=", j):
        j += 4
        r = re.compile(r"random:\d*(?::cossim=(?:\d+\.?\d*|\.\d+)?)?").match(text, j)
        if r and r.end() > j:
            return r.end()
        while j < len(text) and not text[j].isspace() and text[j] != ")":
            j += 1
        return j
    if head in ("logit", "prob"):
        # Class names may contain '-' (Shih-Tzu): a '-' followed by a letter run that is not itself a unit
        # (no ':' after it) continues the name; `logit:pug-mixed4a:3` is a difference.
        while True:
            c = _CLASS.match(text, j)
            if not c:
                return j
            j = c.end()
            nxt = _CLASS.match(text, j + 1) if j < len(text) and text[j] == "-" else None
            if nxt is None or not text[j + 1].isalpha() or (nxt.end() < len(text) and text[nxt.end()] == ":"):
                return j
            j += 1
    spec = re.compile(r"[A-Za-z0-9_.]*(?:@(?:center|\d+\s*,\s*\d+|[A-Za-z0-9_.,]*))?").match(text, j)
    return spec.end() if spec else j


# ------------------------------------------------------------------------------------------------------------------
# Parser: a linear combination {atom: weight}, or a plain number


@dataclass(frozen=True)
class Atom:
    """One unit of an expression, canonical text plus what it scores."""

    canon: str  # e.g. mixed4a:476, mixed4a:11@7,7, logit:208, mixed4d:dir=random:7:cossim=1
    layer: str
    objective: Objective
    digest: str = ""  # content hash of a vector file (so the key changes when the file does)


Lin = dict  # {canon: (Atom, weight)} in first-appearance order


class _Parser:
    def __init__(self, text: str, model: LoadedModel, base_dir: Path | None) -> None:
        self.text, self.model, self.base_dir = text, model, base_dir
        self.toks = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def fail(self, tok: Token, why: str) -> ExprError:
        found = "the end of the expression" if tok.kind == "end" else repr(tok.text)
        return ExprError(self.text, tok.pos, f"{why}, found {found}")

    def parse(self) -> Lin:
        if self.tok.kind == "end":
            raise ExprError(self.text, 0, "empty expression")
        value = self.expr()
        if self.tok.kind != "end":
            raise self.fail(self.tok, "expected '+', '-', '*' or the end")
        if not isinstance(value, dict):
            raise ExprError(self.text, 0, "the expression is a number; it must name at least one unit")
        return value

    def expr(self):
        left_tok = self.tok
        left = self.term()
        while self.tok.kind == "op" and self.tok.text in "+-":
            op = self.tok
            self.i += 1
            right_tok = self.tok
            right = self.term()
            for value, tok in ((left, left_tok), (right, right_tok)):
                if not isinstance(value, dict):
                    raise ExprError(self.text, tok.pos, "cannot add a number to an objective (numbers only scale units)")
            left = _add(left, right, -1.0 if op.text == "-" else 1.0)
            if len(left) > MAX_TERMS:
                raise ExprError(self.text, op.pos, f"more than {MAX_TERMS} terms")
        return left

    def term(self):
        value = self.factor()
        while self.tok.kind == "op" and self.tok.text == "*":
            self.i += 1
            rtok = self.tok
            right = self.factor()
            if isinstance(value, dict) and isinstance(right, dict):
                raise ExprError(self.text, rtok.pos, "cannot multiply two objectives (only a number times a unit)")
            if isinstance(value, dict):
                value = _scale(value, right)
            elif isinstance(right, dict):
                value = _scale(right, value)
            else:
                value = value * right
        return value

    def factor(self):
        tok = self.tok
        if tok.kind == "op" and tok.text in "+-":
            self.i += 1
            v = self.factor()
            return (_scale(v, -1.0) if isinstance(v, dict) else -v) if tok.text == "-" else v
        if tok.kind == "num":
            self.i += 1
            v = float(tok.text)
            if not math.isfinite(v):
                raise ExprError(self.text, tok.pos, f"number {tok.text!r} is not finite")
            return v
        if tok.kind == "op" and tok.text == "(":
            self.i += 1
            v = self.expr()
            if not (self.tok.kind == "op" and self.tok.text == ")"):
                raise self.fail(self.tok, f"expected ')' to close the '(' at column {tok.pos + 1}")
            self.i += 1
            return v
        if tok.kind == "atom":
            self.i += 1
            atom = self.atom(tok)
            return {atom.canon: (atom, 1.0)}
        raise self.fail(tok, "expected a unit (e.g. mixed4a:476), a number or '('")

    # -- atoms ------------------------------------------------------------------------------------------------
    def atom(self, tok: Token) -> Atom:
        text, pos = tok.text, tok.pos
        if ":" not in text:
            raise ExprError(self.text, pos, f"expected a unit LAYER:CHANNEL (e.g. mixed4a:476), found {text!r}")
        head, spec = text.split(":", 1)
        if spec.startswith("dir="):
            return self.direction(head, spec[4:], pos, pos + len(head) + 5)
        try:
            units = parse_units(text, self.model)
        except FvError as exc:
            raise ExprError(self.text, pos, str(exc)) from None
        if len(units) != 1:
            raise ExprError(self.text, pos, f"{text!r} names {len(units)} units; an expression term names one")
        u: Unit = units[0]
        return Atom(u.label, u.layer, u.objective(self.model))

    def direction(self, layer: str, spec: str, pos: int, spec_pos: int) -> Atom:
        try:
            info = self.model.layer(layer)
        except FvError as exc:
            raise ExprError(self.text, pos, str(exc)) from None
        cossim = 0.0
        m = re.search(r":cossim=(.*)$", spec)
        if m:
            if not _NUMBER.fullmatch(m.group(1)):
                raise ExprError(self.text, spec_pos + m.start(1), "expected a number after ':cossim=' (e.g. :cossim=1)")
            cossim = float(m.group(1))
            spec = spec[: m.start()]
        if not spec:
            raise ExprError(self.text, spec_pos, "expected random:SEED or a .npy path after 'dir='")
        suffix = f":cossim={cossim:g}" if cossim else ""
        if spec.startswith("random:"):
            seed = spec[7:]
            if not re.fullmatch(r"\d{1,18}", seed):
                raise ExprError(self.text, spec_pos + 7, "expected a non-negative integer seed after 'random:'")
            d = random_direction(layer, info.channels, int(seed), cossim)
            return Atom(f"{layer}:dir=random:{int(seed)}{suffix}", layer, d)
        vec, digest, path = self.load_vector(spec, info.channels, layer, spec_pos)
        d = Direction(layer, vec, cossim, Path(path).name)
        return Atom(f"{layer}:dir={path}{suffix}", layer, d, digest)

    def load_vector(self, spec: str, channels: int, layer: str, spec_pos: int) -> tuple[tuple[float, ...], str, str]:
        import numpy as np

        p = Path(os.path.expanduser(spec))
        if not p.is_absolute() and self.base_dir is not None:
            p = self.base_dir / p
        try:
            data = p.read_bytes()
        except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte (os calls refuse it)
            raise ExprError(self.text, spec_pos, f"cannot read direction file {spec!r}: {exc.strerror or exc}"
                            if isinstance(exc, OSError) else f"bad direction file path {spec!r}: {exc}") from None
        try:
            import io

            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise ExprError(self.text, spec_pos, f"direction file {spec!r} is not a .npy array: {exc}") from None
        if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
            raise ExprError(self.text, spec_pos, f"direction file {spec!r} must hold a numeric array")
        if arr.size != channels or max(arr.shape, default=0) != channels:
            raise ExprError(self.text, spec_pos, f"direction file {spec!r} has shape {tuple(arr.shape)}; "
                            f"layer {layer} has {channels} channels, so expected shape ({channels},)")
        flat = arr.astype(np.float64).ravel()
        if not np.isfinite(flat).all() or not np.any(flat):
            raise ExprError(self.text, spec_pos, f"direction file {spec!r} must be finite and not all zero")
        return tuple(float(v) for v in flat), hashlib.sha256(data).hexdigest()[:16], str(p.resolve())


def _add(a: Lin, b: Lin, sign: float) -> Lin:
    out = dict(a)
    for k, (atom, w) in b.items():
        w0 = out[k][1] if k in out else 0.0
        out[k] = (atom, w0 + sign * w)
    return out


def _scale(a: Lin, w: float) -> Lin:
    return {k: (atom, w * x) for k, (atom, x) in a.items()}


def _fmt(w: float) -> str:
    return f"{w:.6g}"


def normalize(lin: Lin) -> str:
    """Canonical text of a linear combination: '0.2*mixed4a:20 + 0.8*mixed4a:21', '-mixed4a:492'."""
    parts = []
    for atom, w in lin.values():
        mag = abs(w)
        body = atom.canon if mag == 1 else f"{_fmt(mag)}*{atom.canon}"
        parts.append(("- " if w < 0 else "+ ") + body)
    s = " ".join(parts)
    return s[2:] if s.startswith("+ ") else "-" + s[2:]


# ------------------------------------------------------------------------------------------------------------------
# The unit an expression becomes


@dataclass(frozen=True)
class ExprUnit:
    """An objective expression as a unit: duck-types `units.Unit` for the runner (key, label, layer, objective)."""

    text: str  # as given
    normalized: str  # canonical form (the label)
    layer: str  # the first term's layer: batches are planned per layer
    obj: Objective
    digest: str  # sha256 (16 hex) of the normalised form and any vector files' contents
    kind: str = "expr"
    channel: int | None = None
    x: int | None = None
    y: int | None = None

    @property
    def key(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9.]+", "_", self.normalized.replace("-", " neg ").replace("*", "x")).strip("_.")
        return f"expr-{slug[:48].rstrip('_.')}-{self.digest[:8]}"

    @property
    def label(self) -> str:
        return self.normalized

    def objective(self, model: LoadedModel | None = None) -> Objective:
        return self.obj


def parse_expression(text: str, model: LoadedModel, base_dir: str | Path | None = None) -> ExprUnit:
    """Parse an objective expression against `model` (layers and channels are range-checked)."""
    if len(text) > MAX_EXPR_CHARS:
        raise ExprError(text[:60] + "...", 60, f"expression longer than {MAX_EXPR_CHARS} characters")
    lin = _Parser(text, model, Path(base_dir) if base_dir is not None else None).parse()
    if not all(math.isfinite(w) for _, w in lin.values()):
        raise ExprError(text, 0, "a weight overflows (is not finite)")
    lin = {k: v for k, v in lin.items() if v[1] != 0.0}
    if not lin:
        raise ExprError(text, 0, "all the weights cancel out; the objective would be zero")
    norm = normalize(lin)
    terms = [(w, atom.objective) for atom, w in lin.values()]
    obj: Objective = terms[0][1] if len(terms) == 1 and terms[0][0] == 1.0 else Sum.of(*terms)
    digest_src = norm + "|" + "|".join(a.digest for a, _ in lin.values() if a.digest)
    digest = hashlib.sha256(digest_src.encode()).hexdigest()[:16]
    first = next(iter(lin.values()))[0]
    return ExprUnit(text, norm, first.layer, obj, digest)


def parse_unit_arg(text: str, model: LoadedModel, base_dir: str | Path | None = None) -> list:
    """One command-line or recipe unit argument: an expression (-> [ExprUnit]) or plain unit syntax (-> [Unit])."""
    if is_expression(text):
        return [parse_expression(text, model, base_dir)]
    ref = match_ref(split_model_prefix(text.strip())[1])
    if ref:
        return dictionary_units(model, ref["layer"], ref["file"], ref["rows"], base_dir,
                                float(ref["p"] or 0.0))
    return parse_units(text, model)
