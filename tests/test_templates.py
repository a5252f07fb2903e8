"""Template rendering: the seed spellings, plain-Genshi compatibility, errors, cache."""

import itertools
import os
import random
import re

import pytest
from genshi.template import NewTextTemplate

from heckle_appliance.core.templates import TemplateCache, TemplateError, preprocess

SEED_LETTER = """\
Hello $name, 

    Going to the $activity with you last weekend was an exciting adventure. I hope that we can do it again in the
    future. Please feel free to visit any time you like. My address is $address. Maybe the next time we can venture out
    and partake in eating various {$food}s. I look forward to seeing you again. 

Regards, 
$closing
"""

SEED_LETTER_RENDERED = """\
Hello John, 

    Going to the football game with you last weekend was an exciting adventure. I hope that we can do it again in the
    future. Please feel free to visit any time you like. My address is 123 Any Street. Maybe the next time we can venture out
    and partake in eating various fruits. I look forward to seeing you again. 

Regards, 
Jane
"""

LETTER_VARS = dict(name='John', activity='football game', address='123 Any Street',
                   food='fruit', closing='Jane', a={'b': 'B'})

NODE_VARS = dict(Name='node7', Date='2011-06-01', Server='10.0.0.1', Image='ubuntu',
                 Address='10.0.0.7', Count=0, Disks=['sda', 'sdb'], a='A', b={'c': 'C'})

# A `{$name}` after Genshi's backslash-newline removal: the one spelling whose
# plain-Genshi output the seed rules change on purpose.
BRACED_REFERENCE = re.compile(r'\{\$[A-Za-z_][A-Za-z0-9_.]*\}')


@pytest.fixture
def cache():
    return TemplateCache()


@pytest.fixture
def render(tmp_path, cache):
    """Render source (str or bytes) from a fresh file, as the cache does."""
    count = itertools.count()

    def render(source, variables=LETTER_VARS, display_path=None):
        path = tmp_path / f'template{next(count)}'
        if isinstance(source, bytes):
            path.write_bytes(source)
        else:
            path.write_text(source, encoding='utf-8', newline='')
        return cache.render(str(path), variables, display_path)

    return render


def plain_genshi(source, variables):
    return NewTextTemplate(source).generate(**variables).render(encoding=None)


def test_seed_letter(render):
    assert render(SEED_LETTER) == SEED_LETTER_RENDERED


@pytest.mark.parametrize('source, expected', [
    ('$$', '$'),
    ('$$HOME', '$HOME'),
    ('$$$name', '$John'),
    ('$${x}', '${x}'),
    ('$$$$', '$$'),
    ('echo $(hostname)', 'echo $(hostname)'),
    ('$1 $? $# $@ $* $! $- $0', '$1 $? $# $@ $* $! $- $0'),
    ("awk '{print $2}'", "awk '{print $2}'"),
    ('${food}s', 'fruits'),
    ('{${food}}', '{fruit}'),
    ('$$address.', '$address.'),
    ('$$$address.', '$123 Any Street.'),
    ('$a.b', 'B'),
    ('see $a.b.\nnext', 'see B.\nnext'),
    ('eat {$food}', 'eat fruit'),
    ('eat {$a.b}', 'eat B'),
    ('{$$food}', '{$food}'),
    ('My address is $address.', 'My address is 123 Any Street.'),
    ('$address...', '123 Any Street...'),
    ('$name.$address. {$food}, {${food}}; $$x.', 'John.123 Any Street. fruit, {fruit}; $x.'),
    ('at $address.\\\n', 'at 123 Any Street.'),
    ('{\\\n$food}', 'fruit'),
    ('{% if True %}$name.{% end %}', 'John.'),
])
def test_escaping_and_seed_rules(render, source, expected):
    assert render(source) == expected


# Templates plain Genshi renders: boot configs, scripts and the odd corners of
# its syntax. None contains `{$name}`.
PLAIN_TEMPLATES = [
    '#!/bin/sh\n'
    '# installed on $Name at ${Date}\n'
    'export PATH=/sbin:/usr/sbin:$$PATH\n'
    'for i in 1 2 3; do echo "$$i" > /tmp/log.$$$$; done\n'
    "awk -F: '{print $$1}' /etc/passwd | sed 's/$/;/'\n"
    'echo "cost: $$5.00, pid $$$$, status $$?"\n'
    'test -n "$${HOME}" && cd "$${HOME}"\n',

    '#!ipxe\n'
    'dhcp\n'
    'set base http://${Server}/images/${Image}\n'
    'kernel $${base}/vmlinuz console=ttyS0 ip=$Address\n'
    'initrd $${base}/initrd.img\n'
    "echo MAC $${net0/mac} boot ${'%03d' % (Count + 1)}\n"
    'boot || shell\n',

    'DEFAULT linux\n'
    'LABEL linux\n'
    '  KERNEL images/$Image/vmlinuz\n'
    '  APPEND initrd=images/$Image/initrd.img ks=http://$Server/install?n=$Name --\n',

    '{% if Count < 1 %}\\\n'
    'first boot of $Name\n'
    '{% end %}\\\n'
    '{% for disk in Disks %}\n'
    'mkfs /dev/$disk\n'
    '{% end %}\n'
    '{# a comment mentioning $Name. and {$Image} #}\n'
    '\\{% not a directive %}\n'
    "{% choose Image %}{% when 'ubuntu' %}deb{% end %}{% otherwise %}rpm{% end %}{% end %}\n",

    '{% with n = Count + 2 %}n=$n{% end %} {% if Count %}yes{% end %}{% if not Count %}no{% end %}',
    '{% def line(x) %}[$x]{% end %}${line(Name)}${line(Image)}',
    'ends with a dollar $',
    'ends with an escaped dollar $$',
    '$ . $. $$. ${Address}. $Address, $Address; $Address! ($Address)',
    '{ $Name } {} {{}} {$$Name} ${ {"k": Name}["k"] } ${"}"} ${"{"} ${"""}"""}',
    '$b.c ${b.c} $b.c, ${b["c"]}.',
    'joined \\\nlines $Name\\\n{% if True %}x{% end %}\\\\ backslash',
    'windows\r\nline $Name\r\n${Image}\r\n',
    'Gr\u00fc\u00dfe, $Name \u2014 ${Count + 1} \u00e9t\u00e9',
    '',
    '\n\n',
    '{# only a comment #}',
    '$a$a${a}$$a$$$a',
    'empty ${} expression',
    'escaped brace {\\{%$Name} and backslash {\\\\$Name}',
    '$Name.upper is not called but ${Name.upper()} is',
]


@pytest.mark.parametrize('source', PLAIN_TEMPLATES)
def test_plain_genshi_templates_are_unchanged(render, source):
    assert preprocess(source) == source
    assert render(source, NODE_VARS) == plain_genshi(source, NODE_VARS)


def test_random_templates_render_as_plain_genshi(render):
    """Whatever plain Genshi renders, we render the same (bar `{$name}`)."""
    fragments = ['$', '$$', '{', '}', 'a', 'b', '.', 'c', ' ', '\n', '\r\n', '\\', '\\\n',
                 '{%', '%}', '{#', '#}', '${a}', '$a', '$b.c', '{% if a %}', '{% end %}', '${}',
                 '"', "'", '(', ')', '1']
    rng = random.Random(2011)
    compared = 0
    for _ in range(600):
        source = ''.join(rng.choice(fragments) for _ in range(rng.randint(1, 10)))
        if BRACED_REFERENCE.search(source.replace('\\\n', '')):
            continue
        try:
            expected = plain_genshi(source, NODE_VARS)
        except Exception:
            continue
        assert render(source, NODE_VARS) == expected, repr(source)
        compared += 1
    assert compared > 300


@pytest.mark.parametrize('source, expected', [
    ('{% if "$a." == "" %}yes{% end %}no', 'no'),
    ('{% if "{$food}" == "{" + "$" + "food}" %}same{% end %}', 'same'),
    ('{# $address. {$food} #}x', 'x'),
    ('{% for x in ["{$food}", "$a."] %}$x {% end %}', '{$food} $a. '),
])
def test_directives_and_comments_are_not_rewritten(render, source, expected):
    assert preprocess(source) == source
    assert render(source) == expected


def test_rewrites_keep_lines():
    source = 'a $x.\n{$y} $$z.\n{% if "$q." %}\n$w..\n'
    rewritten = preprocess(source)
    assert rewritten == 'a ${x}.\n${y} $$z.\n{% if "$q." %}\n${w}..\n'
    assert rewritten.count('\n') == source.count('\n')


def error(render, source, variables=LETTER_VARS):
    with pytest.raises(TemplateError) as caught:
        render(source, variables, display_path='images/demo/bootconfig')
    return caught.value


def test_undefined_variable_names_variable_path_and_line(render):
    source = ('#!ipxe\n'
              '{% if True %}\n'
              'kernel $name\n'
              '{% end %}\n'
              'initrd $Foo\n')
    exc = error(render, source)
    assert (exc.path, exc.line, exc.cause) == ('images/demo/bootconfig', 5, "undefined variable 'Foo'")
    assert str(exc) == "images/demo/bootconfig, line 5: undefined variable 'Foo'"


@pytest.mark.parametrize('source, line, cause', [
    ('a\n$name\n$Foo', 3, "undefined variable 'Foo'"),
    ('a\n{% for x in [1] %}\n\n{% if x %}\n${Foo}{% end %}{% end %}', 5, "undefined variable 'Foo'"),
    ('a\n\n{% for x in Missing %}\n$x{% end %}', 3, "undefined variable 'Missing'"),
    ('a {% if (1 ==\n  Foo) %}\nx{% end %}', 1, "undefined variable 'Foo'"),
    ('{% def show(x) %}[$x $Foo]{% end %}\n\n${show(1)}', 1, "undefined variable 'Foo'"),
    ('x\n\n$a.c.', 3, "undefined member 'c'"),
    ('one\n{% if True %}\nthree\n${1/0}\n{% end %}', 4, 'ZeroDivisionError: division by zero'),
    ('one\n${int("x")}', 2, "ValueError: invalid literal for int() with base 10: 'x'"),
    # {% python %} blocks: Genshi numbers them from the line after the block.
    ('a\n{% python\nx = 1\ny = 1/0\n%}\nend\n', 4, 'ZeroDivisionError: division by zero'),
    ('a\n{% if True %}\n{% python y = Foo %}\n{% end %}\n', 3, "undefined variable 'Foo'"),
])
def test_render_errors_name_line_and_cause(render, source, line, cause):
    exc = error(render, source)
    assert (exc.line, exc.cause) == (line, cause)


@pytest.mark.parametrize('source, line, cause', [
    ('Hello\n\n\n${name.upper(}\n', 4, "syntax error: '(' was never closed"),
    ('x\n{% if True %}\n\n${1 +}\n{% end %}', 4, 'syntax error: invalid syntax'),
    ('x\n{% frobnicate %}\n', 2, 'syntax error: bad directive "frobnicate"'),
    ('x\n{% if x == %}\ny{% end %}', 2,
     'syntax error: invalid syntax in expression "x ==" of "if" directive'),
    ('x\n${name\n', 2, 'syntax error: invalid syntax'),
    # Genshi itself takes these and fails at render with an AttributeError.
    ('a\nb\n{% if %}x{% end %}\n', 3, 'syntax error: {% if %} needs an expression'),
    ('{% for %}\n{% end %}', 1, 'syntax error: {% for %} needs an expression'),
    ('$name.\n{% if True %}{% end %}$a..b', 2, 'syntax error: invalid syntax'),
])
def test_syntax_errors_name_line(render, source, line, cause):
    exc = error(render, source)
    assert (exc.path, exc.line, exc.cause) == ('images/demo/bootconfig', line, cause)
    assert str(exc) == f'images/demo/bootconfig, line {line}: {cause}'


def test_invalid_utf8_names_byte_offset(render):
    exc = error(render, b'ok\nbad \xff here\n')
    assert (exc.line, exc.cause) == (2, 'not valid UTF-8 at byte offset 7')


class Unprintable:
    def __str__(self):
        raise RuntimeError('no text')


def test_error_outside_expressions_has_no_line_and_default_path(tmp_path, cache):
    path = tmp_path / 'bootconfig'
    path.write_text('one\n$name\n')
    with pytest.raises(TemplateError) as caught:
        cache.render(str(path), {'name': Unprintable()})
    assert caught.value.line is None
    assert str(caught.value) == f'{path}: RuntimeError: no text'


def test_include_follows_seed_rules(tmp_path, cache):
    (tmp_path / 'common').write_text('Host $name.\n')
    (tmp_path / 'broken').write_text('one\n${1 +}\n')
    main = tmp_path / 'main'
    main.write_text('{% include common %}eat {$food}\n')
    assert cache.render(str(main), LETTER_VARS) == 'Host John.\neat fruit\n'
    main.write_text('one\n\n{% include broken %}\n')
    with pytest.raises(TemplateError) as caught:
        cache.render(str(main), LETTER_VARS)
    # The included file's line must not be passed off as the includer's.
    assert (caught.value.line, caught.value.cause) == (None, 'syntax error: invalid syntax')


def write(path, text):
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def test_cache_parses_once_and_reloads_on_change(tmp_path, cache):
    path = tmp_path / 'bootconfig'
    write(path, 'kernel $name\n')
    assert cache.render(str(path), LETTER_VARS) == 'kernel John\n'
    assert cache.render(str(path), LETTER_VARS) == 'kernel John\n'
    assert cache.parse_count == 1
    write(path, 'kernel $name.\n')
    assert cache.render(str(path), LETTER_VARS) == 'kernel John.\n'
    assert cache.parse_count == 2


def test_broken_edit_is_not_cached(tmp_path, cache):
    path = tmp_path / 'bootconfig'
    write(path, 'kernel $name\n')
    assert cache.render(str(path), LETTER_VARS) == 'kernel John\n'
    write(path, 'kernel ${name\n')
    for _ in range(2):
        with pytest.raises(TemplateError):
            cache.render(str(path), LETTER_VARS)
    write(path, 'kernel ${name}!\n')
    assert cache.render(str(path), LETTER_VARS) == 'kernel John!\n'
    assert cache.parse_count == 4


def test_missing_file(tmp_path, cache):
    path = tmp_path / 'bootconfig'
    with pytest.raises(FileNotFoundError):
        cache.render(str(path), LETTER_VARS)
    write(path, 'x')
    assert cache.render(str(path), LETTER_VARS) == 'x'
    path.unlink()
    with pytest.raises(FileNotFoundError):
        cache.render(str(path), LETTER_VARS)
