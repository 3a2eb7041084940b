"""Modbus meter profiles: each profile's own examples, round trips, layouts, and bad input."""

from __future__ import annotations

import math
import tomllib
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_protocols.errors import DecodeError
from firmware_protocols.modbus import available_profiles, load_profile
from firmware_protocols.modbus.profile import PROFILE_DIR, MeterProfile, ProfileError, parse_profile
from firmware_protocols.modbus.types import value_construct
from tests.damage import damaged_documents, damaged_texts, parsed_or_refused, toml_values

PROFILES = available_profiles()


def test_the_three_required_profiles_ship():
    assert {"smart_water_meter", "electromagnetic_flow_meter", "pulse_counter"} <= set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_each_profile_decodes_its_own_examples(name):
    document = tomllib.loads((PROFILE_DIR / f"{name}.toml").read_text())
    assert document.get("examples"), f"{name} carries no test vector"
    for example in document["examples"]:
        profile = load_profile(name, example.get("parameters"))
        decoded = profile.decode_bytes(bytes.fromhex("".join(example["registers"].split())))
        for field, expected in example["expect"].items():
            assert decoded[field] == expected, (name, field)


@pytest.mark.parametrize("name", PROFILES)
@given(data=st.data())
def test_encode_then_decode_gives_the_same_reading(name, data):
    profile = load_profile(name, {"litres_per_pulse": 10})
    values: dict[str, object] = {}
    alarm_names: list[str] = []
    never_set: tuple[str, ...] = ()
    for field in profile.fields:
        if field.bits:
            alarm_names.extend(field.bits.values())
            continue
        if field.type == "f32":
            values[field.name] = data.draw(st.integers(-(2**20), 2**20)) / 8  # exactly representable
            continue
        bits = {"u16": 16, "s16": 16, "u32": 32, "s32": 32, "u64": 64}[field.type]
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if field.type.startswith("s") else (0, 2**bits - 1)
        raw = data.draw(st.integers(low, high))
        if field.name == "serial_number":  # an identity: its decimal digits, not a quantity
            values[field.name] = str(raw)
            never_set = ("0", str(high))  # 0 and all ones
            continue
        values[field.name] = raw if field.scale == 1 else float(Decimal(raw) * field.scale)
    values["alarms"] = sorted(data.draw(st.sets(st.sampled_from(alarm_names))) if alarm_names else [])
    decoded = profile.decode_registers(profile.encode(values))
    for key, value in values.items():
        if key == "alarms":
            assert sorted(decoded["alarms"]) == value
        elif key == "serial_number" and value in never_set:
            assert decoded[key] is None  # no serial number (test_a_serial_number_never_set_decodes_to_none…)
        else:
            assert decoded[key] == value


@pytest.mark.parametrize(
    ("word_order", "byte_order", "wire"),
    [
        ("big", "big", "12345678"),
        ("little", "big", "56781234"),
        ("big", "little", "34127856"),
        ("little", "little", "78563412"),
    ],
)
def test_word_and_byte_orders_lay_out_a_u32_as_meters_do(word_order, byte_order, wire):
    layout = value_construct("u32", word_order, byte_order)
    assert layout.build(0x12345678).hex() == wire
    assert layout.parse(bytes.fromhex(wire)) == 0x12345678


@pytest.mark.parametrize("name", PROFILES)
@given(payload=st.binary(max_size=64))
def test_any_register_bytes_decode_or_raise_decode_error(name, payload):
    profile = load_profile(name, {"litres_per_pulse": 1})
    try:
        result = profile.decode_bytes(payload)
    except DecodeError:
        return
    assert len(payload) == 2 * profile.register_total
    assert "alarms" in result


# Values a meter sends for "no value" or at the edges of its types (NaN, the infinities, the largest
# and smallest integers): random bytes almost never hold them, so some fields are set to one.
_EDGES: dict[str, list[float]] = {
    "u16": [0, 0xFFFF],
    "s16": [-(2**15), 2**15 - 1],
    "u32": [0, 2**32 - 1],
    "s32": [-(2**31), 2**31 - 1],
    "u64": [0, 2**64 - 1],
    "f32": [math.inf, -math.inf, math.nan, -0.0, 3.4028234663852886e38, 1e-45],
}


def _byte_offset(profile: MeterProfile, register: int) -> int:
    """Where ``register`` sits in the bytes of all blocks read one after another."""
    offset = 0
    for block in profile.blocks:
        if block.start <= register < block.start + block.count:
            return 2 * (offset + register - block.start)
        offset += block.count
    raise AssertionError(f"register {register} lies in no block of {profile.name}")


@pytest.mark.parametrize("name", PROFILES)
@given(data=st.data())
def test_register_bytes_of_the_profile_s_length_always_decode_to_every_field(name, data):
    """Random bytes of any length almost never have the profile's length, so the decoder's body went
    unfuzzed: every payload of exactly its length is a reading with every field, finite or None."""
    profile = load_profile(name, {"litres_per_pulse": 1})
    size = 2 * profile.register_total
    payload = bytearray(data.draw(st.binary(min_size=size, max_size=size)))
    for f in profile.fields:
        edge = data.draw(st.none() | st.sampled_from(_EDGES[f.type]))
        if edge is not None:
            encoded = value_construct(f.type, f.word_order, f.byte_order).build(edge)
            start = _byte_offset(profile, f.register)
            payload[start : start + len(encoded)] = encoded
    decoded = profile.decode_bytes(bytes(payload))
    words = [int.from_bytes(payload[i : i + 2], "big") for i in range(0, size, 2)]
    assert profile.decode_registers(words) == decoded
    named = [bit_name for f in profile.fields for bit_name in f.bits.values()]
    assert len(set(decoded["alarms"])) == len(decoded["alarms"]) and set(decoded["alarms"]) <= set(named)
    serial = decoded.pop("serial_number", None)  # an identity: its digits, whatever the register holds
    assert serial is None or (serial.isdigit() and str(int(serial)) == serial)
    values = {f.name: decoded[f.name] for f in profile.fields if not f.bits and f.name != "serial_number"}
    for field, value in values.items():
        assert value is None or (isinstance(value, int | float) and math.isfinite(value)), (field, value)
    if None not in values.values():  # what was decoded, sent again, reads the same
        again = profile.decode_registers(
            profile.encode(decoded | ({} if serial is None else {"serial_number": serial}))
        )
        assert again["alarms"] == decoded["alarms"]
        assert again.get("serial_number") == serial
        for field, value in values.items():
            assert math.isclose(again[field], value, rel_tol=1e-12), (field, again[field], value)


@pytest.mark.parametrize("name", PROFILES)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_profile_file_loads_or_is_a_profile_error(tmp_path, name, data):
    """Fuzz: a shipped profile with a few characters inserted, changed or deleted, loaded with any
    litres_per_pulse a gateway's file could give, is a profile or a ProfileError naming the file."""
    text = data.draw(damaged_texts((PROFILE_DIR / f"{name}.toml").read_text()))
    parameters = data.draw(st.fixed_dictionaries({}, optional={"litres_per_pulse": toml_values}))
    path = tmp_path / "damaged.toml"
    path.write_text(text)
    profile = parsed_or_refused(lambda: load_profile(path, parameters), ProfileError, str(path))
    if profile is not None:
        decoded = profile.decode_bytes(bytes(2 * profile.register_total))
        assert set(decoded) == {"profile", "alarms"} | {f.name for f in profile.fields if not f.bits}


@pytest.mark.parametrize("name", PROFILES)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_profile_with_values_of_the_wrong_kind_is_a_profile_or_a_profile_error(name, data):
    """Fuzz: a shipped profile's values replaced by values of other types (a number where a table or a
    list of tables was due, an empty name) or left out: a profile that decodes, or a ProfileError."""
    document = data.draw(damaged_documents(tomllib.loads((PROFILE_DIR / f"{name}.toml").read_text())))
    try:
        profile = parse_profile(document, "p.toml", {"litres_per_pulse": 1})
        decoded = profile.decode_bytes(bytes(2 * profile.register_total))
    except ProfileError as error:
        assert str(error).startswith("p.toml"), error
        return
    assert set(decoded) == {"profile", "alarms"} | {f.name for f in profile.fields if not f.bits}


def test_blocks_out_of_address_order_decode_each_field_from_its_own_registers():
    """Blocks listed 0-1, 10-11, 2-3: each field is read from its own registers, not from where its
    block falls in the registers as read."""
    document = {
        "name": "x",
        "blocks": [{"start": 0, "count": 2}, {"start": 10, "count": 2}, {"start": 2, "count": 2}],
        "fields": [
            {"name": "volume_m3", "register": 2, "type": "u32", "scale": "0.001"},
            {"name": "flow_m3h", "register": 10, "type": "s32", "scale": "0.001"},
            {"name": "battery_percent", "register": 1, "type": "u16"},
        ],
    }
    profile = parse_profile(document, "test.toml", {})
    # as read: registers 0, 1 | 10, 11 | 2, 3
    decoded = profile.decode_registers([0, 80, 0xFFFF, 0xFE0C, 0x0001, 0xE240])
    assert (decoded["volume_m3"], decoded["flow_m3h"], decoded["battery_percent"]) == (123.456, -0.5, 80)
    assert profile.encode(decoded) == [0, 80, 0xFFFF, 0xFE0C, 0x0001, 0xE240]


def test_wrong_register_count_is_a_clear_error():
    profile = load_profile("smart_water_meter")
    with pytest.raises(DecodeError, match="expected 10 registers, got 3"):
        profile.decode_registers([1, 2, 3])


def test_pulse_counter_scale_comes_from_the_meter():
    assert load_profile("pulse_counter", {"litres_per_pulse": 2.5}).decode_registers([0, 1000])["volume_m3"] == 2.5
    with pytest.raises(ProfileError, match="needs a parameter"):
        load_profile("pulse_counter")


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"blocks": [], "fields": []}, "missing field 'name'"),
        ({"name": "x", "blocks": [{"start": 0, "count": 200}], "fields": []}, "count 1..125"),
        (
            {
                "name": "x",
                "blocks": [{"start": 0, "count": 2}],
                "fields": [{"name": "v", "register": 0, "type": "u24"}],
            },
            "type 'u24'",
        ),
        (
            {
                "name": "x",
                "blocks": [{"start": 0, "count": 1}],
                "fields": [{"name": "v", "register": 0, "type": "u32"}],
            },
            "test.toml: field 'v' is on register 1, which no block reads",
        ),
        # found by the document fuzz: each was a TypeError or KeyError, not a ProfileError
        ({"name": "x", "blocks": [1], "fields": []}, r"blocks\[0\]: expected a table, not int"),
        ({"name": "x", "blocks": [{"start": 0, "count": 1}], "fields": [0]}, r"fields\[0\]: expected a table"),
        ({"name": "x", "blocks": [{"start": 0, "count": 1}], "fields": [], "examples": 0}, "examples is a list"),
        (
            {
                "name": "x",
                "blocks": [{"start": 0, "count": 1}],
                "fields": [{"name": " ", "register": 0, "type": "u16"}],
            },
            "a field needs a name",
        ),
        (
            {
                "name": "x",
                "blocks": [{"start": 0, "count": 2}],
                "fields": [{"name": "v", "register": 0, "type": "u16", "scale": "abc"}],
            },
            "not a decimal",
        ),
    ],
)
def test_invalid_profiles_name_the_field(document, complaint):
    with pytest.raises(ProfileError, match=complaint):
        parse_profile(document, "test.toml", {})


def _one_block(*fields: dict, **top: object) -> dict:
    return {"name": "x", "blocks": [{"start": 0, "count": 4}], "fields": list(fields), **top}


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        # bits: a negative one failed every poll with a ValueError the poll did not catch; one past
        # the field never fired; a name twice came out twice; a key no number gave a traceback
        (_one_block({"name": "s", "register": 0, "type": "u16", "bits": {"-1": "leak"}}), "bit -1 is outside"),
        (_one_block({"name": "s", "register": 0, "type": "u16", "bits": {"16": "leak"}}), "bit 16 is outside"),
        (_one_block({"name": "s", "register": 0, "type": "f32", "bits": {"0": "leak"}}), "need an integer type"),
        (_one_block({"name": "s", "register": 0, "type": "u16", "bits": {"0": "burst", "1": "burst"}}),
         "alarm 'burst' named twice"),
        (_one_block({"name": "s", "register": 0, "type": "u16", "bits": {"x": "leak"}}), "'x' is no bit number"),
        (_one_block({"name": "s", "register": 0, "type": "u16", "bits": {"0": "leak"}, "scale": "0.1"}), "no scale"),
        # two fields reading each other's halves
        (_one_block({"name": "volume_m3", "register": 0, "type": "u32"}, {"name": "flow_m3h", "register": 1,
                                                                           "type": "u16"}),
         "share register 1"),
        (_one_block({"name": "alarms", "register": 0, "type": "u16"}), "keeps for itself"),
        (_one_block(word_order="middle"), "word_order and byte_order"),
        ({"name": "x", "blocks": [{"start": 65535, "count": 2}], "fields": []}, "within 65536"),
        ({"name": "x", "blocks": [{"start": 0, "count": 4}, {"start": 2, "count": 4}], "fields": []}, "overlap"),
        # a value across two blocks: two requests, torn by an update between them (65.535 -> 65.536 m3
        # read as 131.071), and, blocks out of address order, decoded from registers 1 and 10
        ({"name": "x", "blocks": [{"start": 0, "count": 2}, {"start": 2, "count": 2}],
          "fields": [{"name": "volume_m3", "register": 1, "type": "u32"}]},
         r"test.toml: field 'volume_m3' \(registers 1..2\) spans two blocks"),
        ({"name": "x", "blocks": [{"start": 0, "count": 2}, {"start": 10, "count": 2}, {"start": 2, "count": 2}],
          "fields": [{"name": "volume_m3", "register": 1, "type": "u32"}]},
         "spans two blocks"),
    ],
)  # fmt: skip
def test_a_profile_that_would_misread_or_break_its_polls_is_refused(document, complaint):
    with pytest.raises(ProfileError, match=complaint):
        parse_profile(document, "test.toml", {})


@pytest.mark.parametrize(("litres", "volume"), [(1e-05, 1e-05), (2.5e16, 2.5e16), ("0.1", 0.1)])
def test_a_scale_parameter_is_read_as_a_number_however_it_is_written(litres, volume):
    """The parameter was pasted into the scale as Python writes it: 1e-05 made '1e-05e-3'."""
    profile = load_profile("pulse_counter", {"litres_per_pulse": litres})
    assert profile.decode_registers([0, 1000])["volume_m3"] == pytest.approx(volume)


@pytest.mark.parametrize("litres", [-10, 0, "many"])
def test_a_scale_parameter_that_is_no_positive_number_is_refused(litres):
    with pytest.raises(ProfileError, match="litres_per_pulse"):
        load_profile("pulse_counter", {"litres_per_pulse": litres})


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError, match="smart_water_meter"):
        load_profile("no_such_meter")


F32_PROFILES = [
    name for name in PROFILES if any(f.type == "f32" for f in load_profile(name, {"litres_per_pulse": 1}).fields)
]


@pytest.mark.parametrize("name", F32_PROFILES)
@given(value=st.floats(width=32))
def test_an_f32_register_that_is_not_a_finite_number_has_no_value(name, value):
    """IEEE 754 NaN and infinities are a meter's "no value" (7F80 0000 for an overflowed or unset
    float register): such a field decodes to None, never to a number that is none, and the other
    fields of the block still read."""
    profile = load_profile(name, {"litres_per_pulse": 1})
    for field in profile.fields:
        if field.type != "f32":
            continue
        decoded = profile.decode_registers(profile.encode({field.name: value}))
        if math.isfinite(value):
            assert decoded[field.name] is not None and math.isfinite(decoded[field.name])
        else:
            assert decoded[field.name] is None
        assert all(v is None or not isinstance(v, float) or math.isfinite(v) for v in decoded.values())


def test_a_profile_whose_own_example_does_not_hold_is_refused_when_it_loads(tmp_path):
    """A utility's own profile with the wrong word order loaded, and its meters' registers were read
    wrong; its [[examples]] said so, but only the shipped profiles' examples were ever run."""
    shipped = (PROFILE_DIR / "smart_water_meter.toml").read_text()
    assert 'word_order = "big"' in shipped
    swapped = tmp_path / "acme.toml"
    swapped.write_text(shipped.replace('word_order = "big"', 'word_order = "little"', 1))
    with pytest.raises(ProfileError, match=r"examples\[0\]: volume_m3 decodes as .*, the example says 123.456"):
        load_profile(swapped)
    (tmp_path / "same.toml").write_text(shipped)
    assert load_profile(tmp_path / "same.toml").name == "smart_water_meter"


@pytest.mark.parametrize(
    ("example", "complaint"),
    [
        ('registers = "0000"\nparameters = 3\n', r"examples\[0\]: an example's parameters are a table"),
        ('registers = "0000"\nexpect = [1]\n', r"examples\[0\]: an example gives 'registers' \(hex\) and 'expect'"),
    ],
)
def test_an_example_whose_parts_are_not_tables_is_a_profile_error(tmp_path, example, complaint):
    """Each was an AttributeError out of load_profile (and a traceback out of `gateway check`)."""
    profile = tmp_path / "odd.toml"
    profile.write_text(
        'name = "odd"\n[[blocks]]\nstart = 0\ncount = 1\n[[fields]]\nname = "volume_m3"\nregister = 0\ntype = "u16"\n'
        f"[[examples]]\n{example}"
    )
    with pytest.raises(ProfileError, match=complaint):
        load_profile(profile)


_VOLUME = {"name": "volume_m3", "register": 0, "type": "u32", "scale": "0.001"}


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        # each typo was dropped and the default used: 123.456 m3 low word first, read high word
        # first and unscaled, was published as 3,795,845,121 m3
        (_one_block(_VOLUME, wordorder="little"), r"test.toml: unknown key 'wordorder'"),
        (_one_block({**_VOLUME, "word-order": "little"}), r"fields\[0\] \('volume_m3'\): unknown key 'word-order'"),
        (_one_block({"name": "volume_m3", "register": 0, "type": "u32", "scale_factor": "0.001"}),
         r"fields\[0\] \('volume_m3'\): unknown key 'scale_factor'"),
        ({"name": "x", "blocks": [{"start": 0, "count": 2, "function": "holding"}], "fields": [_VOLUME]},
         r"blocks\[0\]: unknown key 'function'"),
        (_one_block(_VOLUME, examples=[{"registers": "0001e240", "expected": {"volume_m3": 1}}]),
         r"examples\[0\]: unknown key 'expected'"),
        # a profile with no volume: every poll failed, the profile check said ok
        (_one_block({"name": "volume", "register": 0, "type": "u32"}), "needs a field named 'volume_m3'"),
    ],
)  # fmt: skip
def test_a_key_a_profile_does_not_know_is_refused_not_ignored(document, complaint):
    with pytest.raises(ProfileError, match=complaint):
        parse_profile(document, "test.toml", {})


def test_the_reviewers_typo_profile_is_refused_when_it_loads(tmp_path):
    profile = tmp_path / "typo.toml"
    profile.write_text(
        'name = "typo_meter"\nwordorder = "little"\n[[blocks]]\nstart = 0\ncount = 2\n'
        '[[fields]]\nname = "volume_m3"\nregister = 0\ntype = "u32"\nscale_factor = "0.001"\n'
    )
    with pytest.raises(ProfileError, match=f"{profile}: unknown key 'wordorder'"):
        load_profile(profile)


# ---- the serial number field ----------------------------------------------------------------------


def _serial_profile(value_type: str, word_order: str = "big", **extra: object) -> MeterProfile:
    count = {"u16": 1, "u32": 2, "u64": 4}.get(value_type, 2)
    document = {
        "name": "with_serial",
        "word_order": word_order,
        "blocks": [{"start": 0, "count": 2 + count}],
        "fields": [
            {"name": "volume_m3", "register": 0, "type": "u32", "scale": "0.001"},
            {"name": "serial_number", "register": 2, "type": value_type, **extra},
        ],
    }
    return parse_profile(document, "with_serial.toml", {})


SERIAL_TYPES = st.sampled_from(["u16", "u32", "u64"])


@given(SERIAL_TYPES, st.sampled_from(["big", "little"]), st.data())
def test_a_serial_number_round_trips_as_its_decimal_digits(value_type: str, word_order: str, data) -> None:
    """Any serial number the register holds comes back as its digits, whichever word order; the
    builder (the simulators' side) writes the number the digits say."""
    bits = {"u16": 16, "u32": 32, "u64": 64}[value_type]
    number = data.draw(st.integers(1, 2**bits - 2))  # (0 and all ones: never set, the test below)
    profile = _serial_profile(value_type, word_order)
    words = profile.encode({"volume_m3": 1.5, "serial_number": str(number)})
    decoded = profile.decode_registers(words)
    assert decoded["serial_number"] == str(number)
    assert decoded["volume_m3"] == 1.5
    serial_words = words[2:]
    if word_order == "little":
        serial_words = serial_words[::-1]
    assert int.from_bytes(b"".join(w.to_bytes(2, "big") for w in serial_words), "big") == number


@given(SERIAL_TYPES, st.integers(min_value=0))
def test_a_serial_number_too_big_for_its_register_is_refused_in_words(value_type: str, number: int) -> None:
    bits = {"u16": 16, "u32": 32, "u64": 64}[value_type]
    profile = _serial_profile(value_type)
    if 0 < number < 2**bits - 1:
        assert profile.decode_registers(profile.encode({"serial_number": str(number)}))["serial_number"] == str(number)
    elif number < 2**bits:
        assert profile.decode_registers(profile.encode({"serial_number": str(number)}))["serial_number"] is None
    else:
        with pytest.raises(ValueError, match=f"does not fit a {value_type} register"):
            profile.encode({"serial_number": str(number)})


@given(SERIAL_TYPES, st.sampled_from(["big", "little"]), st.booleans())
def test_a_serial_number_never_set_decodes_to_none_not_to_a_number(
    value_type: str, word_order: str, all_ones: bool
) -> None:
    """A serial number register that reads 0 (registers start at 0) or all ones (erased flash) was
    never set: no meter's label carries it, and every such meter answers with it. It decodes to None,
    no serial number, as an unset float register does; before, to "0", taken as the meter's identity
    (gateway.modbus_identity). One above 0 or below all ones is a serial number as any other."""
    bits = {"u16": 16, "u32": 32, "u64": 64}[value_type]
    unset = 2**bits - 1 if all_ones else 0
    near = 2**bits - 2 if all_ones else 1
    profile = _serial_profile(value_type, word_order)
    decoded = profile.decode_registers(profile.encode({"volume_m3": 1.5, "serial_number": str(unset)}))
    assert decoded["serial_number"] is None and decoded["volume_m3"] == 1.5
    assert profile.decode_registers(profile.encode({"serial_number": str(near)}))["serial_number"] == str(near)


@pytest.mark.parametrize(
    ("value_type", "extra"),
    [("f32", {}), ("s32", {}), ("u32", {"scale": "0.1"}), ("u16", {"bits": {"0": "leak"}})],
)
def test_a_serial_number_field_is_an_unsigned_integer_without_scale_or_bits(value_type: str, extra: dict) -> None:
    with pytest.raises(ProfileError, match="'serial_number' is the meter's serial number: an unsigned integer"):
        _serial_profile(value_type, **extra)


def test_the_shipped_meters_read_their_serial_number_in_their_one_request() -> None:
    """The smart water meter and the mag meter read their serial number in the block that holds
    their register: a poll stays one request. The pulse counter is a counter: it has none."""
    for name, register in (("smart_water_meter", 8), ("electromagnetic_flow_meter", 4107)):
        profile = load_profile(name)
        assert len(profile.blocks) == 1
        field = profile.serial_field
        assert field is not None and field.register == register and field.type == "u32"
    assert load_profile("pulse_counter", {"litres_per_pulse": 1}).serial_field is None


def test_an_example_s_serial_number_is_checked_when_the_profile_loads(tmp_path) -> None:
    """A profile whose example says another serial number than its registers give is refused."""
    text = (
        (PROFILE_DIR / "smart_water_meter.toml")
        .read_text()
        .replace('serial_number = "40012345"', 'serial_number = "40012346"')
    )
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match="serial_number decodes as '40012345', the example says '40012346'"):
        load_profile(path)
