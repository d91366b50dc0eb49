"""Sigma's `|cidr` as a regex: the exact set of texts of the addresses in a network.

jq has no IP arithmetic, and Tattletail's rules must run on the native fast path, so a network
becomes a regular expression matching every text of every address in it, and nothing else:

- IPv4: dotted decimal, four octets, no leading zeros (`010.0.0.1` is not an address, as for
  Python's `ipaddress`);
- IPv6: every text form RFC 4291 allows: hex digits in either case, leading zeros, `::` for one
  or more zero groups, and a dotted IPv4 tail (`::ffff:10.0.0.1`); no zone (`%eth0`).

Built per group (hextet or octet): the bits the prefix fixes give the digit each position may
hold, and every way to write the group (with leading zeros left out) is an alternative. The
result uses literals, classes of listed characters, `{1,4}` and groups only, which Oniguruma
and Python read alike.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from typing import Final

_HEX: Final = "0123456789abcdef"
_OCTET: Final = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_HEXTET: Final = "[0-9a-fA-F]{1,4}"


def network_regex(network: IPv4Network | IPv6Network) -> str:
    """A regex matching, as a whole, exactly the texts of the addresses in `network`."""
    if isinstance(network, IPv4Network):
        return _ipv4(int(network.network_address), network.prefixlen)
    return _ipv6(int(network.network_address), network.prefixlen)


def _fixed_range(value: int, fixed_bits: int, width: int) -> tuple[int, int]:
    """The values of a `width`-bit group whose top `fixed_bits` bits are those of `value`."""
    free = width - max(0, min(fixed_bits, width))
    low = (value >> free) << free
    return low, low + (1 << free) - 1


def _octet(low: int, high: int) -> str:
    if (low, high) == (0, 255):
        return _OCTET
    if low == high:
        return str(low)
    return "(?:" + "|".join(str(v) for v in range(high, low - 1, -1)) + ")"


def _ipv4(address: int, prefix: int, bits: int = 32) -> str:
    """Dotted decimal for the low 32 bits of an address whose top `prefix` bits of `bits` are
    fixed (bits = 128 for the IPv4 tail of an IPv6 address)."""
    octets = []
    for n in range(4):
        start = bits - 32 + 8 * n  # the octet's first bit, counted from the address's top
        value = (address >> (bits - start - 8)) & 0xFF
        octets.append(_octet(*_fixed_range(value, prefix - start, 8)))
    return "\\.".join(octets)


def _digit_class(low: int, high: int) -> str:
    chars = "".join(
        _HEX[v] + (_HEX[v].upper() if _HEX[v].isalpha() else "") for v in range(low, high + 1)
    )
    if len(chars) == 1:
        return chars
    if (low, high) == (0, 15):
        return "[0-9a-fA-F]"
    return f"[{chars}]"


def _hextet(value: int, fixed_bits: int) -> str:
    """Every text of a hextet whose top `fixed_bits` bits are those of `value`."""
    if fixed_bits <= 0:
        return _HEXTET
    nibbles = []
    for n in range(4):
        digit = (value >> (12 - 4 * n)) & 0xF
        nibbles.append(_fixed_range(digit, fixed_bits - 4 * n, 4))
    forms = []
    for omitted in range(4):  # leading zero digits left out of the text
        if all(low == 0 for low, _ in nibbles[:omitted]):
            forms.append("".join(_digit_class(*nibble) for nibble in nibbles[omitted:]))
    return forms[0] if len(forms) == 1 else "(?:" + "|".join(forms) + ")"


def _ipv6(address: int, prefix: int) -> str:
    groups = []
    zero_allowed = []
    for n in range(8):
        value = (address >> (112 - 16 * n)) & 0xFFFF
        fixed = prefix - 16 * n
        groups.append(_hextet(value, fixed))
        zero_allowed.append(fixed <= 0 or _fixed_range(value, fixed, 16)[0] == 0)
    tail = _ipv4(address, prefix, bits=128)

    def zeros(first: int, end: int) -> bool:
        return all(zero_allowed[first:end])

    forms = [":".join(groups), ":".join([*groups[:6], tail])]
    # `::` stands for one or more zero groups, between `before` and `after` written groups.
    for before in range(8):
        for after in range(8 - before):
            if zeros(before, 8 - after):
                forms.append(":".join(groups[:before]) + "::" + ":".join(groups[8 - after :]))
    for before in range(6):
        for after in range(6 - before):
            if zeros(before, 6 - after):
                written = [*groups[6 - after : 6], tail]
                forms.append(":".join(groups[:before]) + "::" + ":".join(written))
    return "(?:" + "|".join(forms) + ")"
