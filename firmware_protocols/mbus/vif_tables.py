"""What a VIF means: EN 13757-3:2018 clause 6.4, Tables 10 (primary VIF), 12 (extension FBh),
14 (extension FDh) and 15/16 (combinable, "orthogonal", VIFE).

Each entry gives the quantity (snake_case), the SI unit metering uses, and how to get there from the
raw number: ``value = raw * factor * 10**exponent + offset``. Time units are turned into seconds and
volume flow per minute or per second into per hour through ``factor``; the standard's own exponents
stay in ``exponent``, so a normaliser can divide by a power of ten instead of multiplying by a
fraction. The units the spec does not use are converted the same way, with exact factors: J to Wh
(``1/3600``), MCal to Wh (1163 Wh per Mcal: EN 13757-3 uses the International Table calorie,
1 cal = 4.1868 J, and 4.1868e6 J / 3600 = 1163 Wh exactly), J/h to W (``1/3600``), °F to °C
(``5/9``, offset ``-160/9``, i.e. ``(F - 32) * 5/9``) and a °F difference to K (``5/9``). A
fractional factor or offset is a :class:`~fractions.Fraction`, so the normaliser can work the value
out exactly and round once (see ``normalise.scale``).
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple


class Vif(NamedTuple):
    quantity: str
    unit: str | None
    exponent: int = 0
    factor: int | Fraction = 1
    #: ``number``; ``timepoint`` (date/time types by data size); ``raw`` (manufacturer data, shown
    #: as is); ``integer`` (identifiers, flags and counts: BCD, or binary read unsigned, as types C
    #: and D are, shown as an integer without exponent).
    kind: str = "number"
    offset: int | Fraction = 0


_PER_3600 = Fraction(1, 3600)  # J to Wh, J/h to W
_WH_PER_MCAL = 1163  # 1 Mcal = 10**6 * 4.1868 J (International Table calorie) = 1163 Wh, exactly
_FAHRENHEIT = Fraction(5, 9)  # °F (difference) to K
_FAHRENHEIT_OFFSET = Fraction(-160, 9)  # (F - 32) * 5/9 = F * 5/9 - 160/9
_FT3 = Fraction("0.028316846592")  # m3 per cubic foot (international foot, 0.3048 m), exactly


_SECONDS = (1, 60, 3600, 86400)  # nn = 00 s, 01 min, 10 h, 11 d
_HOURS_UP = (3600, 86400, 2_629_746, 31_556_952)  # nn = 00 h, 01 d, 10 months, 11 years (mean Gregorian)


def _primary() -> dict[int, Vif]:
    """Table 10: the primary VIF (E bit masked off)."""
    table: dict[int, Vif] = {}
    for n in range(8):
        table[0x00 + n] = Vif("energy", "Wh", n - 3)
        table[0x08 + n] = Vif("energy", "Wh", n, _PER_3600)  # 10^n J
        table[0x10 + n] = Vif("volume", "m3", n - 6)
        table[0x18 + n] = Vif("mass", "kg", n - 3)
        table[0x28 + n] = Vif("power", "W", n - 3)
        table[0x30 + n] = Vif("power", "W", n, _PER_3600)  # 10^n J/h
        table[0x38 + n] = Vif("flow", "m3/h", n - 6)
        table[0x40 + n] = Vif("flow", "m3/h", n - 7, 60)  # m3/min
        table[0x48 + n] = Vif("flow", "m3/h", n - 9, 3600)  # m3/s
        table[0x50 + n] = Vif("mass_flow", "kg/h", n - 3)
    for n in range(4):
        table[0x20 + n] = Vif("on_time", "s", 0, _SECONDS[n])
        table[0x24 + n] = Vif("operating_time", "s", 0, _SECONDS[n])
        table[0x58 + n] = Vif("flow_temperature", "degC", n - 3)
        table[0x5C + n] = Vif("return_temperature", "degC", n - 3)
        table[0x60 + n] = Vif("temperature_difference", "K", n - 3)
        table[0x64 + n] = Vif("external_temperature", "degC", n - 3)
        table[0x68 + n] = Vif("pressure", "bar", n - 3)
        table[0x70 + n] = Vif("averaging_duration", "s", 0, _SECONDS[n])
        table[0x74 + n] = Vif("actuality_duration", "s", 0, _SECONDS[n])
    table[0x6C] = Vif("date", None, kind="timepoint")  # type G
    table[0x6D] = Vif("datetime", None, kind="timepoint")  # type F, I (48 bit) or J (24 bit)
    table[0x6E] = Vif("hca_units", None)
    table[0x6F] = Vif("reserved_6f", None)
    table[0x78] = Vif("fabrication_no", None, kind="integer")
    table[0x79] = Vif("enhanced_identification", None, kind="integer")
    table[0x7A] = Vif("bus_address", None, kind="integer")
    table[0x7E] = Vif("any", None)  # readout selection: any VIF
    table[0x7F] = Vif("manufacturer_specific", None, kind="raw")
    return table


def _extension_fb() -> dict[int, Vif]:
    """Table 12: first extension of the primary VIF (after FBh)."""
    table: dict[int, Vif] = {}
    for n in range(2):
        table[0x00 + n] = Vif("energy", "Wh", n + 5)  # 0.1 MWh, 1 MWh
        table[0x02 + n] = Vif("reactive_energy", "varh", n + 3)
        table[0x08 + n] = Vif("energy", "Wh", n + 8, _PER_3600)  # 0.1 GJ, 1 GJ
        table[0x10 + n] = Vif("volume", "m3", n + 2)
        table[0x18 + n] = Vif("mass", "kg", n + 5)  # 100 t, 1000 t
        table[0x1A + n] = Vif("relative_humidity", "%", n - 1)
        table[0x28 + n] = Vif("power", "W", n + 5)  # 0.1 MW, 1 MW
        table[0x30 + n] = Vif("power", "W", n + 8, _PER_3600)  # 0.1 GJ/h, 1 GJ/h
    table[0x2A] = Vif("phase_u_u", "deg", -1)
    table[0x2B] = Vif("phase_u_i", "deg", -1)
    for n in range(4):
        table[0x0C + n] = Vif("energy", "Wh", n - 1, _WH_PER_MCAL)  # 10^(n-1) MCal
        table[0x14 + n] = Vif("reactive_power", "var", n)
        table[0x2C + n] = Vif("frequency", "Hz", n - 3)
        table[0x58 + n] = Vif("flow_temperature", "degC", n - 3, _FAHRENHEIT, offset=_FAHRENHEIT_OFFSET)
        table[0x5C + n] = Vif("return_temperature", "degC", n - 3, _FAHRENHEIT, offset=_FAHRENHEIT_OFFSET)
        table[0x60 + n] = Vif("temperature_difference", "K", n - 3, _FAHRENHEIT)  # °F difference
        table[0x64 + n] = Vif("external_temperature", "degC", n - 3, _FAHRENHEIT, offset=_FAHRENHEIT_OFFSET)
        table[0x70 + n] = Vif("temperature_limit", "degC", n - 3, _FAHRENHEIT, offset=_FAHRENHEIT_OFFSET)
        table[0x74 + n] = Vif("temperature_limit", "degC", n - 3)
    table[0x20] = Vif("volume", "m3", 0, _FT3)  # ft3
    table[0x21] = Vif("volume", "m3", -1, _FT3)  # 0.1 ft3
    for n in range(8):
        table[0x78 + n] = Vif("cumulative_max_power", "W", n - 3)
    return table


def _extension_fd() -> dict[int, Vif]:
    """Table 14: second extension of the primary VIF (after FDh)."""
    table: dict[int, Vif] = {}
    for n in range(4):
        table[0x00 + n] = Vif("credit", "currency", n - 3)
        table[0x04 + n] = Vif("debit", "currency", n - 3)
        table[0x24 + n] = Vif("storage_interval", "s", 0, _SECONDS[n])
        table[0x2C + n] = Vif("duration_since_readout", "s", 0, _SECONDS[n])
        table[0x34 + n] = Vif("tariff_period", "s", 0, _SECONDS[n])
        table[0x68 + n] = Vif("duration_since_cumulation", "s", 0, _HOURS_UP[n])
        table[0x6C + n] = Vif("battery_operating_time", "s", 0, _HOURS_UP[n])
    for n in range(1, 4):
        table[0x30 + n] = Vif("tariff_duration", "s", 0, _SECONDS[n])
    named = {
        0x08: ("access_number", "integer"),
        0x09: ("medium", "integer"),
        0x0A: ("manufacturer", "integer"),
        0x0B: ("parameter_set_id", "integer"),
        0x0C: ("model_version", "integer"),
        0x0D: ("hardware_version", "integer"),
        0x0E: ("firmware_version", "integer"),
        0x0F: ("software_version", "integer"),
        0x10: ("customer_location", "integer"),
        0x11: ("customer", "integer"),
        0x12: ("access_code_user", "integer"),
        0x13: ("access_code_operator", "integer"),
        0x14: ("access_code_system_operator", "integer"),
        0x15: ("access_code_developer", "integer"),
        0x16: ("password", "integer"),
        0x17: ("error_flags", "integer"),
        0x18: ("error_mask", "integer"),
        0x19: ("security_key", "integer"),
        0x1A: ("digital_output", "integer"),
        0x1B: ("digital_input", "integer"),
        0x1C: ("baud_rate", "integer"),
        0x1D: ("response_delay", "integer"),
        0x1E: ("retry", "integer"),
        0x1F: ("remote_control", "integer"),
        0x20: ("first_storage_no", "integer"),
        0x21: ("last_storage_no", "integer"),
        0x22: ("storage_block_size", "integer"),
        0x23: ("descriptor_tariff_subunit", "integer"),
        0x2A: ("operator_specific", "integer"),
        0x2B: ("time_point_second", "integer"),
        0x3A: ("dimensionless", "number"),
        0x3B: ("wmbus_container", "raw"),
        0x60: ("reset_counter", "integer"),
        0x61: ("cumulation_counter", "integer"),
        0x62: ("control_signal", "integer"),
        0x63: ("day_of_week", "integer"),
        0x64: ("week_number", "integer"),
        0x65: ("day_change_time_point", "integer"),
        0x66: ("parameter_activation_state", "integer"),
        0x67: ("special_supplier_info", "integer"),
        0x72: ("daylight_saving", "integer"),
        0x73: ("listening_window", "integer"),
        0x74: ("remaining_battery_days", "integer"),
        0x75: ("meter_stopped_count", "integer"),
        0x76: ("manufacturer_container", "raw"),
    }
    for code, (quantity, kind) in named.items():
        table[code] = Vif(quantity, None, kind=kind)
    table[0x1C] = Vif("baud_rate", "Bd", kind="integer")
    table[0x71] = Vif("rf_level", "dBm")  # a measurement, below zero: type B, not an identifier
    table[0x74] = Vif("remaining_battery_life", "s", 0, 86400)
    table[0x28] = Vif("storage_interval_months", "month", kind="integer")
    table[0x29] = Vif("storage_interval_years", "a", kind="integer")
    table[0x38] = Vif("tariff_period_months", "month", kind="integer")
    table[0x39] = Vif("tariff_period_years", "a", kind="integer")
    table[0x30] = Vif("tariff_start", None, kind="timepoint")
    table[0x70] = Vif("battery_change", None, kind="timepoint")
    for n in range(16):
        table[0x40 + n] = Vif("voltage", "V", n - 9)
        table[0x50 + n] = Vif("current", "A", n - 12)
    return table


PRIMARY: dict[int, Vif] = _primary()
EXTENSION_FB: dict[int, Vif] = _extension_fb()
EXTENSION_FD: dict[int, Vif] = _extension_fd()

VIF_EXTENSION_FB = 0xFB
VIF_EXTENSION_FD = 0xFD
VIF_PLAIN_TEXT = 0x7C
VIF_MANUFACTURER = 0x7F


def lookup(vif: int, true_vif: int | None) -> Vif:
    """The meaning of a VIF (E bit included), with the extension table's code when VIF is FBh/FDh."""
    code = vif & 0x7F
    if code == 0x7B and true_vif is not None:
        return EXTENSION_FB.get(true_vif & 0x7F) or Vif(f"reserved_fb_{true_vif & 0x7F:02x}", None)
    if code == 0x7D and true_vif is not None:
        return EXTENSION_FD.get(true_vif & 0x7F) or Vif(f"reserved_fd_{true_vif & 0x7F:02x}", None)
    entry = PRIMARY.get(code)
    if entry is None:
        return Vif(f"reserved_{code:02x}", None)
    return entry


# --- Combinable (orthogonal) VIFE, Tables 15 and 16 ---------------------------------------------------


class Vife(NamedTuple):
    """A combinable VIFE: a name appended to the quantity, and its effect on unit and value."""

    suffix: str
    unit_suffix: str = ""
    exponent: int = 0  # multiplicative correction factor
    #: What the data field then holds, when no longer a value of the VIF's quantity (Table 15):
    #: ``timepoint`` a date (/time) of what the suffix names (type G or F by the data field's size),
    #: ``duration`` a duration (``factor`` seconds per unit, nn = s, min, h, d), ``count`` a number
    #: of events; empty for a value of the VIF's quantity in its unit.
    value: str = ""
    factor: int = 1


#: Table 16: record error codes (slave to master, E000 xxxx).
RECORD_ERRORS: dict[int, str] = {
    0x00: "no_error",
    0x01: "too_many_difes",
    0x02: "storage_not_implemented",
    0x03: "unit_not_implemented",
    0x04: "tariff_not_implemented",
    0x05: "function_not_implemented",
    0x06: "data_class_not_implemented",
    0x07: "data_size_not_implemented",
    0x0B: "too_many_vifes",
    0x0C: "illegal_vif_group",
    0x0D: "illegal_vif_exponent",
    0x0E: "vif_dif_mismatch",
    0x0F: "unimplemented_action",
    0x15: "no_data_available",
    0x16: "data_overflow",
    0x17: "data_underflow",
    0x18: "data_error",
    0x1C: "premature_end_of_record",
}


def _combinable() -> dict[int, Vife]:
    table: dict[int, Vife] = {}
    # Table 16: E000 0000 is "no error", the value is valid: the quantity keeps its name, so a volume
    # marked so is still the meter's volume (meters do it: libmbus's abb_delta marks its energy
    # records). The codes 01h to 1Fh mark the value bad (or absent): their suffix renames the
    # quantity, so no reader takes it for a valid value of the VIF's quantity.
    table[0x00] = Vife("")
    for code in range(0x01, 0x20):
        table[code] = Vife("error_" + RECORD_ERRORS.get(code, f"reserved_{code:02x}"))
    per = {
        0x20: ("per_second", "/s"),
        0x21: ("per_minute", "/min"),
        0x22: ("per_hour", "/h"),
        0x23: ("per_day", "/d"),
        0x24: ("per_week", "/week"),
        0x25: ("per_month", "/month"),
        0x26: ("per_year", "/a"),
        0x27: ("per_revolution", "/rev"),
        0x28: ("per_input_pulse_0", "/pulse"),
        0x29: ("per_input_pulse_1", "/pulse"),
        0x2A: ("per_output_pulse_0", "/pulse"),
        0x2B: ("per_output_pulse_1", "/pulse"),
        0x2C: ("per_litre", "/l"),
        0x2D: ("per_m3", "/m3"),
        0x2E: ("per_kg", "/kg"),
        0x2F: ("per_kelvin", "/K"),
        0x30: ("per_kwh", "/kWh"),
        0x31: ("per_gj", "/GJ"),
        0x32: ("per_kw", "/kW"),
        0x33: ("per_kelvin_litre", "/(K*l)"),
        0x34: ("per_volt", "/V"),
        0x35: ("per_ampere", "/A"),
        0x36: ("times_second", "*s"),
        0x37: ("times_second_per_volt", "*s/V"),
        0x38: ("times_second_per_ampere", "*s/A"),
    }
    for code, (suffix, unit_suffix) in per.items():
        table[code] = Vife(suffix, unit_suffix)
    table[0x39] = Vife("start", value="timepoint")  # E011 1001 start date(/time) of
    table[0x3A] = Vife("uncorrected")
    table[0x3B] = Vife("forward")  # accumulation only of positive contributions
    table[0x3C] = Vife("backward")  # accumulation of the absolute value of negative contributions
    table[0x3D] = Vife("non_metric")
    table[0x3E] = Vife("at_base_conditions")
    table[0x3F] = Vife("obis")
    for u, limit in ((0, "lower"), (1, "upper")):
        base = 0x40 | (u << 3)
        table[base] = Vife(f"{limit}_limit")  # E100 u000 limit value
        table[base | 1] = Vife(f"{limit}_limit_exceeds", value="count")  # E100 u001 number of exceeds
        for f, which in ((0, "first"), (1, "last")):
            for b, edge in ((0, "begin"), (1, "end")):
                # E100 uf1b date (/time) of begin/end of first/last lower/upper limit exceed
                table[base | 2 | (f << 2) | b] = Vife(f"{which}_{edge}_{limit}_limit_exceed", value="timepoint")
        for f, which in ((0, "first"), (1, "last")):
            for n in range(4):  # E101 ufnn duration of limit exceed
                table[0x50 | (u << 3) | (f << 2) | n] = Vife(
                    f"{which}_{limit}_limit_exceed_duration", value="duration", factor=_SECONDS[n]
                )
    for f, which in ((0, "first"), (1, "last")):
        for n in range(4):  # E110 0fnn duration of
            table[0x60 | (f << 2) | n] = Vife(f"{which}_duration", value="duration", factor=_SECONDS[n])
        for b, edge in ((0, "begin"), (1, "end")):  # E110 1f1b date (/time) of
            table[0x6A | (f << 2) | b] = Vife(f"{which}_{edge}", value="timepoint")
    for u, limit in ((0, "lower"), (1, "upper")):
        table[0x68 | (u << 2)] = Vife(f"value_during_{limit}_limit_exceed")
        table[0x69 | (u << 2)] = Vife(f"reserved_{0x69 | (u << 2):02x}")
    for n in range(8):
        table[0x70 + n] = Vife("", exponent=n - 6)  # multiplicative correction factor 10^(nnn-6)
    for n in range(4):
        table[0x78 + n] = Vife("additive_correction")  # 10^(nn-3) of the VIF's unit
    table[0x7C] = Vife("extension")
    table[0x7D] = Vife("", exponent=3)  # multiplicative correction factor 10^3
    table[0x7E] = Vife("future_value")
    table[0x7F] = Vife("manufacturer_specific")
    for code in range(0x80):
        table.setdefault(code, Vife(f"reserved_{code:02x}"))
    return table


COMBINABLE: dict[int, Vife] = _combinable()
