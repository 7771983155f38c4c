"""The PEFT type `GENERATIVE_ADAPTER`.

peft's `register_peft_method` only accepts names that are members of `PeftType`, an ordinary `enum.Enum`
without a public way to add members. We add one member the way `enum` itself stores members
(`_member_map_`, `_value2member_map_`, `_member_names_`), idempotently; the package's `__init__` hands everything
else to peft's own registry. No peft function is replaced.
"""

from __future__ import annotations

import enum

from peft.utils import PeftType

PEFT_TYPE_NAME = "GENERATIVE_ADAPTER"


def extend_enum(enum_cls: type[enum.Enum], name: str) -> enum.Enum:
    """Add member `name` (value == name) to a `str` enum, or return it if it already exists."""
    if name in enum_cls.__members__:
        return enum_cls[name]
    member = str.__new__(enum_cls, name)
    member._name_ = name
    member._value_ = name
    member.__objclass__ = enum_cls
    if hasattr(enum_cls, "_add_member_"):  # Python >= 3.13
        enum_cls._add_member_(name, member)
    else:
        enum_cls._member_map_[name] = member
        type.__setattr__(enum_cls, name, member)
    enum_cls._value2member_map_[name] = member
    if name not in enum_cls._member_names_:
        enum_cls._member_names_.append(name)
    if hasattr(enum_cls, "_sort_order_"):
        member._sort_order_ = len(enum_cls._member_names_) - 1
    return member


GENERATIVE_ADAPTER = extend_enum(PeftType, PEFT_TYPE_NAME)
