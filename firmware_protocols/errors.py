"""The package's own error: every decoder raises this and nothing else on bad input."""


class DecodeError(ValueError):
    """A frame or register block that cannot be decoded; the message says what and where."""


class KeyMissingError(DecodeError):
    """An encrypted telegram for which no key, or a wrong key, was given; names the meter."""
