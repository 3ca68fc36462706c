"""Typed generator parameters: coercion from strings and JSON, ranges, choices, lists, schema, ``--set`` parsing."""

from __future__ import annotations

import json

import pytest

from streamrt.errors import ParamError
from streamrt.params import Param, ParamSet, parse_assignments


def make_set() -> ParamSet:
    return ParamSet((
        Param("prompt", str, "a cat", "What to draw."),
        Param("steps", int, 2, "Steps.", minimum=1, maximum=50),
        Param("strength", float, 0.5, "Strength.", minimum=0.0, maximum=1.0),
        Param("ssf", bool, False, "Filter."),
        Param("mode", str, "self", "Guidance.", choices=("none", "full", "self")),
        Param("t_index_list", list, None, "Indices.", optional=True, minimum=0, maximum=49),
        Param("weights", list, [1.0], "Weights.", item_type=float),
        Param("width", int, None, "Width.", live=False, optional=True, minimum=8),
        Param("buffer", int, 1, "Frames per slot.", live=False),
    ))  # fmt: skip


# ---------------------------------------------------------------------- coercion
@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("steps", "3", 3),
        ("steps", " 4 ", 4),
        ("steps", 5, 5),
        ("steps", 6.0, 6),
        ("strength", "0.25", 0.25),
        ("strength", 1, 1.0),
        ("prompt", "a dog, in snow", "a dog, in snow"),
        ("ssf", "true", True),
        ("ssf", "Yes", True),
        ("ssf", "on", True),
        ("ssf", "1", True),
        ("ssf", "false", False),
        ("ssf", "off", False),
        ("ssf", "0", False),
        ("ssf", True, True),
        ("ssf", 0, False),
        ("t_index_list", "10,20,30", [10, 20, 30]),
        ("t_index_list", " 10 , 20 ", [10, 20]),
        ("t_index_list", "[5, 7]", [5, 7]),
        ("t_index_list", [1, 2], [1, 2]),
        ("t_index_list", None, None),
        ("weights", "0.5,1.5", [0.5, 1.5]),
        ("weights", [1, 2], [1.0, 2.0]),
        ("mode", "full", "full"),
        ("width", None, None),
        ("width", "64", 64),
    ],
)
def test_coerce(name, raw, expected):
    out = make_set().get(name).coerce(raw)
    assert out == expected
    assert type(out) is type(expected)
    if isinstance(expected, list):
        assert [type(x) for x in out] == [type(x) for x in expected]


@pytest.mark.parametrize(
    ("name", "raw", "fragment"),
    [
        ("steps", "three", "expects an integer"),
        ("steps", "2.5", "expects an integer"),
        ("steps", 2.5, "expects an integer"),
        ("steps", True, "expects an integer"),
        ("strength", "strong", "expects a number"),
        ("strength", False, "expects a number"),
        ("ssf", "maybe", "expects true or false"),
        ("ssf", 2, "expects true or false"),
        ("prompt", 5, "expects text"),
        ("prompt", None, "needs a value"),
        ("t_index_list", "1,x", "comma-separated list of int"),
        ("t_index_list", [1.5], "comma-separated list of int"),
        ("t_index_list", "[1, ", "comma-separated list of int"),
    ],
)
def test_coerce_rejects_wrong_types(name, raw, fragment):
    with pytest.raises(ParamError, match=fragment) as info:
        make_set().get(name).coerce(raw)
    assert repr(name) in str(info.value)


@pytest.mark.parametrize(
    ("name", "raw", "fragment"),
    [
        ("steps", "0", ">= 1"),
        ("steps", 51, "<= 50"),
        ("strength", "-0.1", ">= 0.0"),
        ("strength", 1.01, "<= 1.0"),
        ("t_index_list", "10,60", "<= 49"),
        ("t_index_list", [-1], ">= 0"),
        ("width", 4, ">= 8"),
    ],
)
def test_ranges(name, raw, fragment):
    with pytest.raises(ParamError, match=fragment):
        make_set().get(name).coerce(raw)


def test_range_bounds_are_inclusive():
    p = make_set().get("strength")
    assert p.coerce("0") == 0.0
    assert p.coerce("1") == 1.0


@pytest.mark.parametrize("raw", ["nan", float("nan")])
def test_nan_is_not_inside_a_range(raw):
    # NaN compares False with everything, so a plain ``v < minimum`` check lets it through.
    p = make_set().get("strength")
    with pytest.raises(ParamError, match="strength"):
        p.coerce(raw)


def test_choices():
    p = make_set().get("mode")
    assert p.coerce("none") == "none"
    with pytest.raises(ParamError, match="must be one of none, full, self") as info:
        p.coerce("half")
    assert "'half'" in str(info.value)


def test_list_items_checked_against_choices():
    p = Param("levels", list, [0], choices=(0, 1, 2))
    assert p.coerce("0,2") == [0, 2]
    with pytest.raises(ParamError, match="must be one of"):
        p.coerce("1,3")


def test_empty_list_string():
    assert make_set().get("t_index_list").coerce("") == []


# ---------------------------------------------------------------------- ParamSet
def test_defaults_and_resolve():
    ps = make_set()
    d = ps.defaults()
    assert d["steps"] == 2 and d["prompt"] == "a cat" and d["t_index_list"] is None
    values = ps.resolve({"steps": "4", "ssf": "yes"})
    assert values == {**d, "steps": 4, "ssf": True}
    assert ps.resolve(None) == d


def test_validate_from_json():
    raw = json.loads(
        '{"prompt": "neon", "steps": 3, "strength": 0.75, "ssf": true, "t_index_list": [10, 20], "width": null}'
    )
    assert make_set().validate(raw) == {
        "prompt": "neon",
        "steps": 3,
        "strength": 0.75,
        "ssf": True,
        "t_index_list": [10, 20],
        "width": None,
    }


def test_validate_only_returns_given_names():
    assert make_set().validate({"steps": "3"}) == {"steps": 3}


def test_unknown_name_lists_known_ones():
    ps = make_set()
    with pytest.raises(ParamError) as info:
        ps.validate({"stepz": 3})
    msg = str(info.value)
    assert "'stepz'" in msg
    for p in ps:
        assert p.name in msg
    with pytest.raises(ParamError, match="known parameters: none"):
        ParamSet().get("x")


def test_unknown_name_rejected_by_resolve():
    with pytest.raises(ParamError, match="unknown parameter 'nope'"):
        make_set().resolve({"nope": 1})


def test_contains_and_iter():
    ps = make_set()
    assert "steps" in ps and "nope" not in ps
    assert [p.name for p in ps][:2] == ["prompt", "steps"]


def test_live_only_rejects_non_live():
    ps = make_set()
    assert ps.validate({"steps": 3}, live_only=True) == {"steps": 3}
    for name in ("width", "buffer"):
        with pytest.raises(ParamError, match="cannot change during a stream") as info:
            ps.validate({name: 64}, live_only=True)
        assert repr(name) in str(info.value)
    # at prepare time (not live) they are fine
    assert ps.validate({"width": 64, "buffer": 2}) == {"width": 64, "buffer": 2}


def test_live_only_still_rejects_unknown():
    with pytest.raises(ParamError, match="unknown parameter"):
        make_set().validate({"nope": 1}, live_only=True)


def test_duplicate_names_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        ParamSet((Param("a", int, 1), Param("a", int, 2)))


# ---------------------------------------------------------------------- JSON schema
def test_json_schema_shape():
    schema = make_set().json_schema()
    json.dumps(schema)  # serialisable
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert list(props) == [p.name for p in make_set()]

    assert props["prompt"] == {
        "type": "string",
        "default": "a cat",
        "description": "What to draw.",
        "x-live": True,
    }
    assert props["steps"]["type"] == "integer"
    assert props["steps"]["minimum"] == 1 and props["steps"]["maximum"] == 50
    assert props["strength"]["type"] == "number"
    assert props["ssf"]["type"] == "boolean"
    assert props["mode"]["enum"] == ["none", "full", "self"]
    assert "enum" not in props["steps"] and "minimum" not in props["prompt"]
    assert props["weights"]["type"] == "array" and props["weights"]["items"] == {"type": "number"}
    assert props["t_index_list"]["anyOf"] == [
        {"type": "array", "items": {"type": "integer"}},
        {"type": "null"},
    ]
    assert props["t_index_list"]["default"] is None
    assert props["width"]["anyOf"] == [{"type": "integer"}, {"type": "null"}]
    assert props["width"]["x-live"] is False and props["buffer"]["x-live"] is False


def test_describe_type():
    ps = make_set()
    assert ps.get("steps").describe_type() == "an integer"
    assert ps.get("mode").describe_type() == "one of none, full, self"
    assert ps.get("weights").describe_type() == "a comma-separated list of float"


# ---------------------------------------------------------------------- --set KEY=VALUE
def test_parse_assignments():
    assert parse_assignments(["steps=3", "prompt=a cat, at night", " seed =7", "expr=a=b", "empty="]) == {
        "steps": "3",
        "prompt": "a cat, at night",
        "seed": "7",
        "expr": "a=b",
        "empty": "",
    }
    assert parse_assignments([]) == {}


@pytest.mark.parametrize("item", ["steps", "=3", " =3", ""])
def test_parse_assignments_rejects(item):
    with pytest.raises(ParamError, match="KEY=VALUE"):
        parse_assignments([item])


def test_assignments_then_validate():
    raw = parse_assignments(["steps=4", "ssf=on", "t_index_list=10,20"])
    assert make_set().validate(raw) == {"steps": 4, "ssf": True, "t_index_list": [10, 20]}
