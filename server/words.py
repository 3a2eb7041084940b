"""A person's words in a request (a correction's reason, a dismissal's, an enquiry's note)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

#: At least one word character, so that blanks, marks or invisible characters alone say nothing;
#: no NUL anywhere (PostgreSQL's text cannot hold it).
WORDS_PATTERN = r"^[^\x00]*[^\W_][^\x00]*$"


def words_field(max_length: int, description: str, **kwargs: Any) -> Any:
    """A text field of 3 to ``max_length`` characters held to :data:`WORDS_PATTERN`."""
    return Field(min_length=3, max_length=max_length, pattern=WORDS_PATTERN, description=description, **kwargs)
