"""Calico's label selector language: parser and evaluator.

Grammar (whitespace between tokens is free)::

    expr    := and ( "||" and )*
    and     := unary ( "&&" unary )*
    unary   := "!" unary | primary
    primary := "(" expr ")" | "all()" | "global()" | "has(" key ")"
             | key ( "==" | "!=" ) string
             | key [ "not" ] "in" "{" [ string ( "," string )* ] "}"
             | key ( "contains" | "starts with" | "ends with" ) string
    string  := '...' | "..."

A selector is parsed once into a tree of small frozen nodes; evaluating it against a label
mapping is a walk of that tree.  A syntax error names the position and what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Labels = Mapping[str, str]

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>'[^']*'|"[^"]*")
    | (?P<op>==|!=|&&|\|\||[!(){},])
    | (?P<word>[A-Za-z0-9_./\-]+)
    )""", re.VERBOSE)


class SelectorError(ValueError):
    def __init__(self, text: str, position: int, message: str) -> None:
        super().__init__(f"{message} at position {position} in selector {text!r}")
        self.position = position


@dataclass(frozen=True, slots=True)
class Selector:
    text: str
    test: Callable[[Labels], bool] = field(compare=False, repr=False)

    def matches(self, labels: Labels) -> bool:
        return self.test(labels)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string | op | word | end
    value: str
    position: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            start = len(text) - len(text[pos:].lstrip())
            if text[start] in "'\"":
                raise SelectorError(text, start, "unterminated string")
            raise SelectorError(text, start, f"unexpected character {text[start]!r}")
        kind = match.lastgroup or "op"
        value = match.group(kind)
        out.append(_Token(kind, value, match.start(kind)))
        pos = match.end()
    out.append(_Token("end", "", len(text)))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0

    @property
    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expect(self, value: str) -> None:
        token = self.take()
        if token.value != value or token.kind == "string":
            found = "end of selector" if token.kind == "end" else repr(token.value)
            raise SelectorError(self.text, token.position, f"expected {value!r}, found {found}")

    def fail(self, what: str) -> SelectorError:
        token = self.peek
        found = "end of selector" if token.kind == "end" else repr(token.value)
        return SelectorError(self.text, token.position, f"expected {what}, found {found}")

    def parse(self) -> Callable[[Labels], bool]:
        if self.peek.kind == "end":
            return lambda labels: True  # an empty selector selects everything
        test = self.expr()
        if self.peek.kind != "end":
            raise self.fail("'&&', '||' or end of selector")
        return test

    def expr(self) -> Callable[[Labels], bool]:
        parts = [self.conj()]
        while self.peek.value == "||" and self.peek.kind == "op":
            self.take()
            parts.append(self.conj())
        if len(parts) == 1:
            return parts[0]
        return lambda labels: any(p(labels) for p in parts)

    def conj(self) -> Callable[[Labels], bool]:
        parts = [self.unary()]
        while self.peek.value == "&&" and self.peek.kind == "op":
            self.take()
            parts.append(self.unary())
        if len(parts) == 1:
            return parts[0]
        return lambda labels: all(p(labels) for p in parts)

    def unary(self) -> Callable[[Labels], bool]:
        if self.peek.kind == "op" and self.peek.value == "!":
            self.take()
            inner = self.unary()
            return lambda labels: not inner(labels)
        return self.primary()

    def string(self) -> str:
        token = self.peek
        if token.kind != "string":
            raise self.fail("a quoted string")
        self.take()
        return token.value[1:-1]

    def primary(self) -> Callable[[Labels], bool]:
        token = self.peek
        if token.kind == "op" and token.value == "(":
            self.take()
            inner = self.expr()
            self.expect(")")
            return inner
        if token.kind != "word":
            raise self.fail("a label, 'all()', 'has(...)', '!' or '('")
        self.take()
        if token.value in ("all", "global") and self.peek.value == "(":
            self.expect("(")
            self.expect(")")
            return lambda labels: True
        if token.value == "has" and self.peek.value == "(":
            self.expect("(")
            key = self.take()
            if key.kind != "word":
                raise SelectorError(self.text, key.position, "expected a label name")
            self.expect(")")
            name = key.value
            return lambda labels: name in labels
        return self.comparison(token.value)

    def comparison(self, key: str) -> Callable[[Labels], bool]:
        token = self.take()
        if token.kind == "op" and token.value in ("==", "!="):
            value = self.string()
            if token.value == "==":
                return lambda labels: labels.get(key) == value
            return lambda labels: labels.get(key) != value
        if token.kind == "word":
            word = token.value
            if word == "not":
                if self.take().value != "in":
                    raise SelectorError(self.text, self.tokens[self.i - 1].position,
                                        "expected 'in' after 'not'")
                values = self.value_set()
                return lambda labels: labels.get(key) not in values
            if word == "in":
                values = self.value_set()
                return lambda labels: labels.get(key) in values
            if word == "contains":
                part = self.string()
                return lambda labels: key in labels and part in labels[key]
            if word in ("starts", "ends"):
                if self.take().value != "with":
                    raise SelectorError(self.text, self.tokens[self.i - 1].position,
                                        f"expected 'with' after {word!r}")
                affix = self.string()
                if word == "starts":
                    return lambda labels: key in labels and labels[key].startswith(affix)
                return lambda labels: key in labels and labels[key].endswith(affix)
        self.i -= 1
        raise self.fail(f"an operator after label {key!r} "
                        "(==, !=, in, not in, contains, starts with, ends with)")

    def value_set(self) -> frozenset[str]:
        self.expect("{")
        values: set[str] = set()
        if self.peek.value == "}" and self.peek.kind == "op":
            self.take()
            return frozenset()
        values.add(self.string())
        while self.peek.value == "," and self.peek.kind == "op":
            self.take()
            values.add(self.string())
        self.expect("}")
        return frozenset(values)


def parse(text: str) -> Selector:
    """Parse a selector; raises :class:`SelectorError` naming the position of a mistake."""
    return Selector(text, _Parser(text).parse())
