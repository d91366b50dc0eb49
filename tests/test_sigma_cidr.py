"""`|cidr` as a regex (tattletail.sigma.cidr): exactly the texts of the network's addresses,
checked against Python's ipaddress for generated networks and addresses in every text form,
through Python's re and through jq (Oniguruma) alike."""

from __future__ import annotations

import ipaddress
import re

import jq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tattletail.sigma import jqtext
from tattletail.sigma.cidr import network_regex


def texts_of(address: ipaddress.IPv4Address | ipaddress.IPv6Address, case: int) -> set[str]:
    """Ways to write an address: canonical, full, without leading zeros, upper case, with a
    dotted IPv4 tail (IPv6); a leading zero and a trailing newline (IPv4: not addresses)."""
    forms = {str(address)}
    if address.version == 6:
        groups = address.exploded.split(":")
        forms |= {address.exploded, ":".join(g.lstrip("0") or "0" for g in groups)}
        tail = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        forms.add(":".join(groups[:6]) + f":{tail}")
        compressed = ipaddress.IPv6Address(int(address) & ~0xFFFFFFFF).compressed
        if compressed.endswith("::"):
            forms.add(f"{compressed}{tail}")
        if case:
            forms |= {f.upper() for f in forms}
    else:
        forms |= {"0" + str(address), f"{address}\n", str(address).replace(".", ". ", 1)}
    return forms


def expected(text: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if "%" in text or not text.isascii():
        return False
    try:
        return ipaddress.ip_address(text) in network
    except ValueError:
        return False


@st.composite
def networks_and_addresses(draw: st.DrawFn) -> tuple[object, list[object]]:
    bits = draw(st.sampled_from([32, 128]))
    prefix = draw(st.integers(0, bits))
    base = draw(st.integers(0, 2**bits - 1)) >> (bits - prefix) << (bits - prefix)
    network = ipaddress.ip_network((base, prefix))
    inside = [base | draw(st.integers(0, 2 ** (bits - prefix) - 1)) for _ in range(3)]
    near = [
        (base + draw(st.integers(-2, 2))) % 2**bits,
        base ^ (1 << draw(st.integers(0, bits - 1))),
    ]
    anywhere = [draw(st.integers(0, 2**bits - 1)) for _ in range(2)]
    return network, [
        ipaddress.ip_address(a) if bits == 128 else ipaddress.IPv4Address(a)
        for a in inside + near + anywhere
    ]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_and_addresses(), st.integers(0, 1))
def test_the_regex_matches_exactly_the_networks_addresses(
    case: tuple[object, list[object]], upper: int
) -> None:
    network, addresses = case
    pattern = re.compile(r"\A(?:" + network_regex(network) + r")\Z")
    for address in addresses:
        for text in texts_of(address, upper):
            assert (pattern.match(text) is not None) == expected(text, network), (network, text)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks_and_addresses())
def test_jq_reads_the_regex_as_python_does(case: tuple[object, list[object]]) -> None:
    network, addresses = case
    program = jq.compile(f"[.[] | {jqtext.full_match(network_regex(network))}]")
    texts = sorted({t for a in addresses for t in texts_of(a, 1)})
    assert program.input_value(texts).first() == [expected(t, network) for t in texts]
