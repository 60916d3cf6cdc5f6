"""Unit names used by OME-XML, ImageJ and NGFF, converted to the micrometres and seconds srscope uses."""

from __future__ import annotations

from srscope.runtime.io.image import ImageIOError

_LENGTH_UM = {
    # OME-XML symbols
    "pm": 1e-6, "Å": 1e-4, "nm": 1e-3, "µm": 1.0, "μm": 1.0, "um": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6,
    # ImageJ spellings
    "micron": 1.0, "microns": 1.0, "\\u00B5m": 1.0, "pixel": None, "pixels": None, "": None,
    # NGFF (UDUNITS-2) names
    "angstrom": 1e-4, "picometer": 1e-6, "nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3,
    "centimeter": 1e4, "meter": 1e6,
}

_TIME_S = {
    "ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "µs": 1e-6, "us": 1e-6, "ns": 1e-9,
    "millisecond": 1e-3, "second": 1.0, "minute": 60.0, "hour": 3600.0, "microsecond": 1e-6,
    "nanosecond": 1e-9,
}

#: The units srscope writes into NGFF axes metadata.
NGFF_SPACE_UNIT = "micrometer"
NGFF_TIME_UNIT = "second"


def length_to_um(value: float, unit: str | None, *, default_unit: str = "µm") -> float | None:
    """Convert a length to micrometres; ``None`` when the unit says the file is uncalibrated (pixels)."""
    key = (unit if unit is not None else default_unit).strip()
    if key not in _LENGTH_UM:
        key = key.lower()
    if key not in _LENGTH_UM:
        raise ImageIOError(f"unknown length unit {unit!r}")
    factor = _LENGTH_UM[key]
    return None if factor is None else float(value) * factor


def time_to_s(value: float, unit: str | None, *, default_unit: str = "s") -> float:
    """Convert a time interval to seconds."""
    key = (unit if unit is not None else default_unit).strip()
    if key not in _TIME_S:
        key = key.lower()
    if key not in _TIME_S:
        raise ImageIOError(f"unknown time unit {unit!r}")
    return float(value) * _TIME_S[key]
