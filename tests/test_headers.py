"""Tests for prefork.headers.Headers (lua-http's http.headers in Python)."""

import copy
import io

import pytest

from prefork.headers import NEVER_INDEX_DEFAULTS, Headers


def make() -> Headers:
    """The example from lua-http's documentation."""
    h = Headers()
    h.append(":status", "200")
    h.append("set-cookie", "foo=bar")
    h.append("connection", "close")
    h.append("set-cookie", "baz=qux")
    return h


def check_index(h: Headers) -> None:
    """Every lookup through the index must agree with a linear scan of the fields."""
    fields = list(h.each())
    names = {name for name, _, _ in fields}
    for name in names:
        assert h.get_as_sequence(name) == tuple(v for n, v, _ in fields if n == name)
        assert h.get(name) == next(v for n, v, _ in fields if n == name)
    for name in ("absent", *names):
        assert h.has(name) == (name in names)


# construction


def test_empty():
    h = Headers()
    assert len(h) == 0
    assert h.len() == 0
    assert list(h) == []
    assert h.items() == []
    assert not h.has(":status")
    assert h.get(":status") is None


def test_constructor_pairs_and_triples():
    h = Headers([(":status", "200"), ("Cookie", "a=b", False), (b"X-Bin", b"\xff")])
    assert list(h) == [
        (":status", "200", False),
        ("cookie", "a=b", False),
        ("x-bin", "\xff", False),
    ]
    check_index(h)


def test_constructor_from_headers_keeps_flags():
    h = make()
    h.modifyi(1, "foo=bar", False)
    assert Headers(h) == h
    assert Headers(h) is not h


def test_constructor_from_generator():
    h = Headers((f"x-{i}", str(i)) for i in range(3))
    assert h.items() == [("x-0", "0"), ("x-1", "1"), ("x-2", "2")]


@pytest.mark.parametrize("bad", [("a",), ("a", "b", True, "extra"), ()])
def test_constructor_bad_arity(bad):
    with pytest.raises(ValueError, match="2 or 3"):
        Headers([bad])


@pytest.mark.parametrize("bad", ["ab", b"ab"])
def test_constructor_rejects_string_items(bad):
    # a 2-character string would otherwise unpack into name="a", value="b"
    with pytest.raises(TypeError):
        Headers([bad])


# append


def test_of_lowercase_takes_the_lists_and_indexes_them():
    pairs = [(":method", "GET"), ("accept", "a"), ("cookie", "c"), ("accept", "b")]
    h = Headers.of_lowercase(pairs, [False, False, True, False])
    assert h == Headers([(":method", "GET"), ("accept", "a"), ("cookie", "c"), ("accept", "b")])
    assert h.get_as_sequence("accept") == ("a", "b") and h.get("cookie") == "c"
    h.append("x", "1")  # an ordinary Headers from then on
    assert h.get("x") == "1" and len(h) == 5


def test_append_keeps_order_and_duplicates():
    h = make()
    assert len(h) == 4
    assert h.items() == [
        (":status", "200"),
        ("set-cookie", "foo=bar"),
        ("connection", "close"),
        ("set-cookie", "baz=qux"),
    ]


def test_append_lowercases_name_not_value():
    h = Headers()
    h.append("Content-Type", "Text/HTML")
    assert h.geti(0) == ("content-type", "Text/HTML", False)
    assert h.has("content-type")


def test_append_decodes_bytes_as_latin1():
    h = Headers()
    h.append(b"X-Name", b"caf\xe9")
    h.append(bytearray(b"x-arr"), bytearray(b"\x80"))
    assert h.geti(0) == ("x-name", "caf\u00e9", False)
    assert h.geti(1) == ("x-arr", "\x80", False)
    assert all(type(n) is str and type(v) is str for n, v in h.items())
    assert h.get(b"x-name") == "caf\u00e9"


def test_append_str_subclass_stored_as_plain_str():
    class S(str):
        pass

    h = Headers()
    h.append(S("X-A"), S("v"))
    name, value, _ = h.geti(0)
    assert type(name) is str and type(value) is str
    assert (name, value) == ("x-a", "v")


@pytest.mark.parametrize(
    ("name", "value", "arg"),
    [(1, "v", "name"), (None, "v", "name"), ("n", 1, "value"), ("n", None, "value")],
)
def test_append_type_error_names_argument(name, value, arg):
    h = Headers()
    with pytest.raises(TypeError, match=f"^{arg} must be str or bytes"):
        h.append(name, value)
    assert len(h) == 0
    assert not h.has("n")


def test_append_does_not_validate():
    h = Headers()
    h.append("bad name\r\n", "bad\r\nvalue")
    assert h.items() == [("bad name\r\n", "bad\r\nvalue")]


@pytest.mark.parametrize("name", sorted(NEVER_INDEX_DEFAULTS))
def test_never_index_defaults_true_for_sensitive(name):
    h = Headers()
    h.append(name.upper(), "secret")
    assert h.geti(0) == (name, "secret", True)


def test_never_index_defaults():
    assert {"authorization", "proxy-authorization", "cookie", "set-cookie"} == NEVER_INDEX_DEFAULTS
    h = Headers()
    h.append("content-type", "text/plain")
    h.append(":path", "/")
    h.append("x-secret", "s", True)
    h.append("authorization", "Basic x", False)
    assert [f[2] for f in h] == [False, False, True, False]


# iteration, length


def test_each_and_iter():
    h = make()
    expected = [
        (":status", "200", False),
        ("set-cookie", "foo=bar", True),
        ("connection", "close", False),
        ("set-cookie", "baz=qux", True),
    ]
    assert list(h.each()) == expected
    assert list(h) == expected
    assert len(h) == h.len() == 4


def test_items_is_a_copy():
    h = make()
    items = h.items()
    items.append(("x", "y"))
    items[0] = ("evil", "1")
    assert len(h) == 4
    assert h.geti(0) == (":status", "200", False)


# has / contains


def test_has_and_contains():
    h = make()
    assert h.has("set-cookie")
    assert h.has("Set-Cookie")
    assert h.has(b"connection")
    assert not h.has("cookie")
    assert "connection" in h
    assert "CONNECTION" in h
    assert "content-length" not in h
    assert 42 not in h
    with pytest.raises(TypeError, match=r"^name"):
        h.has(42)  # type: ignore[arg-type]


# delete


def test_delete_removes_all_and_reports():
    h = make()
    assert h.delete("set-cookie") is True
    assert h.items() == [(":status", "200"), ("connection", "close")]
    assert not h.has("set-cookie")
    assert h.get_as_sequence("set-cookie") == ()
    assert h.delete("set-cookie") is False
    assert h.delete("nope") is False
    assert len(h) == 2


def test_delete_then_index_stays_right():
    h = Headers([("a", "1"), ("b", "2"), ("a", "3"), ("c", "4"), ("b", "5"), ("d", "6")])
    assert h.delete("A")
    assert h.items() == [("b", "2"), ("c", "4"), ("b", "5"), ("d", "6")]
    check_index(h)
    assert h.get("d") == "6"
    assert h.get_as_sequence("b") == ("2", "5")
    # positions must have shifted: modifying via upsert hits the right field
    h.upsert("c", "40")
    assert h.geti(1) == ("c", "40", False)
    h.append("a", "7")
    assert h.geti(4) == ("a", "7", False)
    check_index(h)


def test_delete_keeps_flags_aligned():
    h = Headers([("x", "1"), ("cookie", "c"), ("y", "2"), ("set-cookie", "s")])
    h.delete("x")
    assert list(h) == [("cookie", "c", True), ("y", "2", False), ("set-cookie", "s", True)]


# geti


def test_geti_zero_based():
    h = make()
    assert h.geti(0) == (":status", "200", False)
    assert h.geti(3) == ("set-cookie", "baz=qux", True)
    assert h.geti(-1) == ("set-cookie", "baz=qux", True)


@pytest.mark.parametrize("i", [4, 100, -5])
def test_geti_out_of_range(i):
    with pytest.raises(IndexError):
        make().geti(i)


def test_geti_empty():
    with pytest.raises(IndexError):
        Headers().geti(0)


# get_as_sequence, get, get_comma_separated


def test_get_as_sequence():
    h = make()
    assert h.get_as_sequence("set-cookie") == ("foo=bar", "baz=qux")
    assert h.get_as_sequence("SET-COOKIE") == ("foo=bar", "baz=qux")
    assert h.get_as_sequence(":status") == ("200",)
    assert h.get_as_sequence("missing") == ()
    assert isinstance(h.get_as_sequence("missing"), tuple)


def test_get_first_value_or_default():
    h = make()
    assert h.get("set-cookie") == "foo=bar"
    assert h.get(":status") == "200"
    assert h.get("missing") is None
    assert h.get("missing", "dflt") == "dflt"
    h.append("empty", "")
    assert h.get("empty", "dflt") == ""


def test_get_comma_separated():
    h = make()
    assert h.get_comma_separated("set-cookie") == "foo=bar, baz=qux"
    assert h.get_comma_separated("connection") == "close"
    assert h.get_comma_separated("missing") is None
    h.append("empty", "")
    assert h.get_comma_separated("empty") == ""


# modifyi


def test_modifyi_changes_value_and_flag():
    h = make()
    h.modifyi(2, "keep-alive")
    assert h.geti(2) == ("connection", "keep-alive", False)
    h.modifyi(1, "new=1", False)
    assert h.geti(1) == ("set-cookie", "new=1", False)
    h.modifyi(1, b"again=2")  # None restores the name's default
    assert h.geti(1) == ("set-cookie", "again=2", True)
    h.modifyi(-1, "last")
    assert h.geti(3) == ("set-cookie", "last", True)
    assert h.get_as_sequence("set-cookie") == ("again=2", "last")
    assert len(h) == 4


def test_modifyi_errors():
    h = make()
    with pytest.raises(IndexError):
        h.modifyi(4, "x")
    with pytest.raises(TypeError, match=r"^value"):
        h.modifyi(0, 200)  # type: ignore[arg-type]
    assert h == make()


# upsert


def test_upsert_appends_when_absent():
    h = make()
    h.upsert("Content-Type", "text/plain")
    assert h.geti(4) == ("content-type", "text/plain", False)
    h.upsert(b"authorization", b"Bearer t")
    assert h.geti(5) == ("authorization", "Bearer t", True)
    check_index(h)


def test_upsert_replaces_single_in_place():
    h = make()
    h.upsert(":status", "404")
    h.upsert("CONNECTION", "keep-alive", True)
    assert h.items()[0] == (":status", "404")
    assert h.geti(2) == ("connection", "keep-alive", True)
    assert len(h) == 4


def test_upsert_multi_valued_raises():
    h = make()
    with pytest.raises(ValueError, match="set-cookie"):
        h.upsert("set-cookie", "x=y")
    assert h == make()


def test_upsert_type_error():
    with pytest.raises(TypeError, match=r"^name"):
        Headers().upsert(1, "x")  # type: ignore[arg-type]


# sort


def test_sort_pseudo_headers_first_then_name_value_flag():
    h = Headers(
        [
            ("b", "2"),
            ("a", "z"),
            (":path", "/"),
            ("a", "y", False),
            ("a", "y", True),
            (":method", "GET"),
            ("0-digit", "x"),  # sorts before ":" in ASCII, must still come after pseudo headers
            (":authority", "h"),
        ]
    )
    h.sort()
    assert list(h) == [
        (":authority", "h", False),
        (":method", "GET", False),
        (":path", "/", False),
        ("0-digit", "x", False),
        ("a", "y", True),
        ("a", "y", False),
        ("a", "z", False),
        ("b", "2", False),
    ]
    check_index(h)
    assert h.get_as_sequence("a") == ("y", "y", "z")
    h.upsert("b", "3")
    assert h.geti(7) == ("b", "3", False)


def test_sort_empty():
    h = Headers()
    h.sort()
    assert len(h) == 0


# clone, equality, repr, dump


def test_clone_is_independent():
    h = make()
    c = h.clone()
    assert c == h and c is not h
    c.append("set-cookie", "c=1")  # must not leak into h's index (shared position lists)
    c.append("x", "1")
    assert not h.has("x")
    assert h.get_as_sequence("set-cookie") == ("foo=bar", "baz=qux")
    c.modifyi(0, "500")
    c.delete("connection")
    c.upsert("x", "2")
    assert h == make()
    check_index(h)
    h.append("set-cookie", "third")
    assert c.get_as_sequence("set-cookie") == ("foo=bar", "baz=qux", "c=1")
    assert copy.copy(h) == h and copy.copy(h) is not h


def test_eq():
    assert make() == make()
    assert Headers() == Headers()
    assert make() != Headers()
    reordered = make()
    reordered.sort()
    assert reordered != make()
    flagged = make()
    flagged.modifyi(1, "foo=bar", False)
    assert flagged != make()
    assert make() != make().items()
    assert make() != "not headers"


def test_unhashable():
    with pytest.raises(TypeError):
        hash(Headers())


def test_repr_round_trips():
    h = Headers([(":status", "200"), ("content-type", "text/plain")])
    assert repr(h) == "Headers([(':status', '200'), ('content-type', 'text/plain')])"
    assert repr(Headers()) == "Headers([])"
    h.append("cookie", "a=b")  # default flag: shown as a pair, value not hidden
    h.append("cookie", "c=d", False)  # non-default flag: shown as a triple
    h.append("x", "y", True)
    assert repr(h).endswith("('cookie', 'a=b'), ('cookie', 'c=d', False), ('x', 'y', True)])")
    assert eval(repr(h), {"Headers": Headers}) == h


def test_dump():
    out = io.StringIO()
    make().dump(out, "> ")
    assert out.getvalue() == (
        "> :status: 200\n> set-cookie: foo=bar\n> connection: close\n> set-cookie: baz=qux\n"
    )


def test_dump_defaults_to_stderr(capsys):
    Headers([("a", "b")]).dump()
    assert capsys.readouterr().err == "a: b\n"
