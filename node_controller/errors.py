"""How a bad resource is reported: which object, which field, what is wrong."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True, slots=True)
class ResourceError:
    kind: str
    name: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r}: {self.field}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "field": self.field,
                "message": self.message}


class Invalid(ValueError):
    """Raised while parsing a field; the resource parser adds kind and name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
