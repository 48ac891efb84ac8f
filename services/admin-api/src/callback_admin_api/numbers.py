"""Customer numbers: parsed and validated with ``phonenumbers``, stored as E.164."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType


class InvalidNumber(ValueError):
    pass


def normalise_customer_number(raw: str, default_country: str, *, refuse_premium: bool) -> str:
    """The number in E.164; a national number is completed with ``default_country``.

    Raises :class:`InvalidNumber` for text that is no phone number, a number that cannot exist,
    or (when ``refuse_premium``) a premium-rate number.
    """
    try:
        number = phonenumbers.parse(raw, default_country)
    except NumberParseException as exc:
        raise InvalidNumber(f"not a phone number {exc}") from None
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise InvalidNumber("this number cannot exist")
    if refuse_premium and phonenumbers.number_type(number) == PhoneNumberType.PREMIUM_RATE:
        raise InvalidNumber("premium-rate numbers are refused")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)
