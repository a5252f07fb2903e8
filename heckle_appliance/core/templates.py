"""Image templates: Genshi text templates, plus the two spellings of the 2011 docs.

Templates are Genshi ``NewTextTemplate`` text: ``$name`` and ``${expression}``
substitute, ``{% if ... %}``/``{% for ... %}``/... ``{% end %}`` are
directives, ``{# ... #}`` is a comment and ``$$`` is a literal ``$``. Lookup is
strict: using a variable the node does not have is an error, never an empty
string.

The original Heckle documentation's example letter says "My address is
$address." and "eating various {$food}s". Plain Genshi rejects the first (it
reads ``address.`` as the name) and prints the braces of the second, so two
rules make the documented text work:

* A reference ends before trailing dots: ``$address.`` is ``${address}.``,
  while ``$image.kernel`` still reads ``kernel`` of ``image``.
* ``{$name}`` is ``${name}``: the braces are not printed. ``{${name}}`` prints
  literal braces around the value.

Neither rule applies to a ``$$``-escaped dollar or inside ``${...}``, ``{%
%}`` or ``{# #}``, and a template plain Genshi accepts renders exactly as plain
Genshi renders it, unless it contains ``{$name}``.

Errors name the template and, where it can be found, the line. Genshi's own
line count drifts after every directive, so lines are counted afresh from the
file.
"""

import bisect
import io
import os
import re
import traceback
from typing import NamedTuple

from genshi.template import NewTextTemplate
from genshi.template.base import EXEC, EXPR, SUB, TemplateSyntaxError
from genshi.template.eval import UndefinedError
from genshi.template.interpolation import NAMECHARS, NAMESTART, token_re

_DELIMITERS = ('{%', '%}', '{#', '#}')
_DIRECTIVE_RE = re.compile(
    NewTextTemplate._DIRECTIVE_RE % tuple(map(re.escape, _DELIMITERS)), re.DOTALL)
_ESCAPE_RE = re.compile(
    NewTextTemplate._ESCAPE_RE % tuple(map(re.escape, _DELIMITERS[::2])))

# Genshi leaves Python's own "(file, line N)" suffix in syntax error messages;
# it names an anonymous one-line snippet, which only misleads.
_SNIPPET_POSITION = re.compile(r' \([^()]*, line \d+\)$')
_NEED_EXPRESSION = {'if', 'for', 'with', 'def', 'when', 'include'}
_UNDEFINED = re.compile(r'"(.*)" not defined|.* has no member named "(.*)"', re.DOTALL)


class TemplateError(Exception):
    """A template could not be loaded or rendered, located for the operator."""

    def __init__(self, path, line, cause):
        super().__init__(path, line, cause)
        self.path = path
        self.line = line
        self.cause = cause

    def __str__(self):
        where = self.path if self.line is None else f'{self.path}, line {self.line}'
        return f'{where}: {self.cause}'


class _Text(NamedTuple):
    """A stretch of template text as Genshi's lexer sees it."""

    text: str
    origin: list  # source offset of each character of text


def _unescape(source, start, end):
    # Genshi drops backslash-newlines and unescapes \\, \{% and \{# before it
    # lexes; origin lets what is found in that text be changed in the source.
    pieces, origin = [], []

    def keep(first, last):
        pieces.append(source[first:last])
        origin.extend(range(first, last))

    pos = start
    for match in _ESCAPE_RE.finditer(source, start, end):
        keep(pos, match.start())
        if match.lastindex:
            keep(*match.span(match.lastindex))
        pos = match.end()
    keep(pos, end)
    return _Text(''.join(pieces), origin)


def _split(source):
    """Yield source's text (as _Text) and directive/comment matches in order,
    split exactly where NewTextTemplate splits it."""
    offset = 0
    for match in _DIRECTIVE_RE.finditer(source):
        if match.start() > offset:
            yield _unescape(source, offset, match.start())
        yield match
        offset = match.end()
    if offset < len(source):
        yield _unescape(source, offset, len(source))


def _references(text):
    """Yield (kind, start, end) for each substitution Genshi's lexer finds.

    Follows genshi.template.interpolation.lex step by step so that runs of
    ``$`` and ``${...}`` braces are read exactly as Genshi reads them. kind is
    'name' for ``$name``, 'expression' for ``${...}`` and 'unclosed' for a
    ``${`` whose brace never closes (Genshi rejects the template there).
    """
    pos = offset = 0
    escaped = False
    while True:
        offset = text.find('$', offset + 2 if escaped else pos)
        escaped = False
        if offset < 0 or offset == len(text) - 1:
            return
        follower = text[offset + 1]
        if follower == '{':
            pos, level = offset + 2, 1
            while level:
                match = token_re.match(text, pos)
                if match is None or not match.group():
                    yield 'unclosed', offset, len(text)
                    return
                pos = match.end()
                level += {'{': 1, '}': -1}.get(match.group(3), 0)
            yield 'expression', offset, pos
        elif follower in NAMESTART:
            pos = offset + 1
            while pos < len(text) and text[pos] in NAMECHARS:
                pos += 1
            yield 'name', offset, pos
        elif follower == '$':
            escaped, pos = True, offset + 1
        else:
            pos = offset + 1


def preprocess(source: str) -> str:
    """Rewrite the seed spellings into plain Genshi, keeping every line intact."""
    edits = {}  # source offset -> what replaces that one character
    for piece in _split(source):
        if not isinstance(piece, _Text):
            continue
        text, origin = piece
        for kind, start, end in _references(text):
            if kind != 'name':
                continue
            name_end = start + 1 + len(text[start + 1:end].rstrip('.'))
            if name_end < end:
                edits[origin[start]] = '${'
                edits[origin[name_end - 1]] = text[name_end - 1] + '}'
            elif text[start - 1:start] == '{' and text[end:end + 1] == '}':
                # Swapped rather than moved: a backslash-newline between the
                # two characters stays where it is.
                edits[origin[start - 1]] = '$'
                edits[origin[start]] = '{'
    out, last = [], 0
    for offset in sorted(edits):
        out += [source[last:offset], edits[offset]]
        last = offset + 1
    out.append(source[last:])
    return ''.join(out)


class _Layout:
    """True line numbers for what Genshi finds in a preprocessed template.

    NewTextTemplate miscounts lines: a directive, the text before it on its
    line and a text chunk ending in a newline each shift everything after
    them, so its numbers cannot point an operator at a problem.
    """

    def __init__(self, source):
        newlines = [match.start() for match in re.finditer('\n', source)]

        def line(offset):
            return bisect.bisect_left(newlines, offset) + 1

        self.expression_lines = []  # one per EXPR event, in stream order
        self.suite_lines = []  # first code line of each {% python %} block (EXEC event)
        self.directive_lines = {}  # Genshi's line for a directive -> true line
        self.boundaries = []  # (end offset, line) of expressions and directives
        genshi_line = 1
        for piece in _split(source):
            if isinstance(piece, _Text):
                text, origin = piece
                for kind, start, end in _references(text):
                    if kind == 'name' or (kind == 'expression' and end - start > 3):
                        self.expression_lines.append(line(origin[start]))
                    self.boundaries.append((origin[end - 1] + 1, line(origin[start])))
                genshi_line += len(text.splitlines())
            else:
                genshi_line += len(piece.group().splitlines())
                self.directive_lines[genshi_line] = line(piece.start())
                if piece.group(2) == 'python':
                    self.suite_lines.append(line(piece.start(3)))
                self.boundaries.append((piece.end(), line(piece.start())))

    def relabel(self, stream):
        """Put true lines into a freshly parsed stream, for errors and tracebacks."""
        expressions, suites = [], []

        def visit(events):
            for kind, data, _ in events:
                if kind is EXPR:
                    expressions.append(data)
                elif kind is EXEC:
                    suites.append(data)
                elif kind is SUB:
                    directives, substream = data
                    for index, (order, cls, value, namespaces, (path, line, column)) \
                            in enumerate(directives):
                        directives[index] = (order, cls, value, namespaces,
                                             (path, self.directive_lines[line], column))
                    visit(substream)

        visit(stream)
        for code, line in zip(expressions + suites, self.expression_lines + self.suite_lines,
                              strict=True):
            code.code = code.code.replace(co_firstlineno=line)

    def first_rejected(self, source, lookup):
        """Line of the first expression or directive that Genshi rejects.

        Genshi parses front to back and stops at the first problem, so the
        shortest prefix it rejects ends with the culprit.
        """
        def rejected(boundary):
            try:
                NewTextTemplate(source[:boundary[0]], lookup=lookup)
            except TemplateSyntaxError:
                return True
            return False

        index = bisect.bisect_left(self.boundaries, True, key=rejected)
        return self.boundaries[index][1] if index < len(self.boundaries) else -1


class _SeedTemplate(NewTextTemplate):
    """NewTextTemplate that applies the seed rules and knows its true lines."""

    def _parse(self, source, encoding):
        text = source.read()
        if isinstance(text, bytes):  # an {% include %}d file, from Genshi's loader
            text = text.decode(encoding or 'utf-8', 'replace')
        text = preprocess(text)
        layout = _Layout(text)
        for match in _DIRECTIVE_RE.finditer(text):
            if match.group(2) in _NEED_EXPRESSION and not match.group(3):
                # Genshi takes it and fails at render time with an AttributeError.
                raise TemplateSyntaxError(f'{{% {match.group(2)} %}} needs an expression',
                                          self.filepath, text.count('\n', 0, match.start()) + 1)
        try:
            stream = super()._parse(io.StringIO(text), encoding)
        except TemplateSyntaxError as exc:
            raise TemplateSyntaxError(exc.msg, self.filepath,
                                      layout.first_rejected(text, self.lookup)) from exc
        layout.relabel(stream)
        return stream


def _cause(exc):
    text = str(exc)
    if isinstance(exc, UndefinedError):
        undefined = _UNDEFINED.fullmatch(text)
        if undefined:
            variable, member = undefined.groups()
            if variable is not None:
                return f"undefined variable '{variable}'"
            return f"undefined member '{member}'"
    return f'{type(exc).__name__}: {text}'


def _failing_line(exc, filepath):
    """Line of the innermost template expression the exception came through."""
    lines = [line for frame, line in traceback.walk_tb(exc.__traceback__)
             if frame.f_code.co_filename == filepath]
    return lines[-1] if lines else None


def _signature(stat):
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _load(data, path, shown):
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise TemplateError(shown, data.count(b'\n', 0, exc.start) + 1,
                            f'not valid UTF-8 at byte offset {exc.start}') from exc
    try:
        template = _SeedTemplate(text, filepath=path, filename=path)
        template.stream  # compiles the directives: their errors are load errors too
    except TemplateSyntaxError as exc:
        line = exc.lineno if exc.filename == path and exc.lineno > 0 else None
        raise TemplateError(shown, line,
                            'syntax error: ' + _SNIPPET_POSITION.sub('', exc.msg)) from exc
    except Exception as exc:
        raise TemplateError(shown, None, _cause(exc)) from exc
    return template


class TemplateCache:
    """Parsed templates by path, parsed again only when the file changes."""

    def __init__(self):
        self.parse_count = 0
        self._templates = {}  # path -> (file signature, template)

    def render(self, path: str, variables: dict, display_path: str | None = None) -> str:
        """Render the template file at path; errors name display_path (or path)."""
        shown = path if display_path is None else display_path
        template = self._template(path, shown)
        try:
            return template.generate(**variables).render(encoding=None)
        except Exception as exc:
            raise TemplateError(shown, _failing_line(exc, template.filepath),
                                _cause(exc)) from exc

    def _template(self, path, shown):
        cached = self._templates.get(path)
        if cached and cached[0] == _signature(os.stat(path)):
            return cached[1]
        with open(path, 'rb') as file:
            signature = _signature(os.fstat(file.fileno()))
            data = file.read()
        self.parse_count += 1
        template = _load(data, path, shown)
        self._templates[path] = signature, template
        return template
