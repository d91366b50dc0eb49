"""CloudTrail's S3 key layout: account, region and date from a key, and which keys are skipped.

Generated keys (hypothesis) check the parser against the layout built from its parts, and hostile
keys (unicode digits, `..`, empty components, missing parts) never crash it nor pass for the
layout.
"""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tattletail.trail_keys import TrailKey, parse_key, skip_reason

ORG = "o-a1b2c3d4e5"
ACCOUNT = "123456789012"
NAME = f"{ACCOUNT}_CloudTrail_us-east-1_20240131T2355Z_AbCdEfGhIjKlMnOp.json.gz"


@pytest.mark.parametrize(
    ("key", "org", "prefix"),
    [
        (f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/01/31/{NAME}", None, "AWSLogs/"),
        (f"AWSLogs/{ORG}/{ACCOUNT}/CloudTrail/us-east-1/2024/01/31/{NAME}", ORG, "AWSLogs/"),
        (
            f"trail/x/AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/01/31/{NAME}",
            None,
            "trail/x/AWSLogs/",
        ),
        (
            f"AWSLogs/AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/01/31/{NAME}",
            None,
            "AWSLogs/AWSLogs/",
        ),
    ],
)
def test_account_region_and_date_come_from_the_key(key: str, org: str | None, prefix: str) -> None:
    assert parse_key(key) == TrailKey(
        prefix, org, ACCOUNT, "CloudTrail", "us-east-1", date(2024, 1, 31), NAME
    )
    assert skip_reason(key) is None


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (f"AWSLogs/{ORG}/{ACCOUNT}/CloudTrail-Digest/eu-west-1/2024/01/31/d.json.gz", "digest"),
        (f"AWSLogs/{ACCOUNT}/vpcflowlogs/eu-west-1/2024/01/31/f.log.gz", "other_prefix"),
        (f"AWSLogs/{ORG}/{ACCOUNT}/elasticloadbalancing/eu-west-1/2024/01/31/x.gz", "other_prefix"),
        (f"AWSLogs/{ACCOUNT}/Config/eu-west-1/2024/1/31/ConfigHistory/x.json.gz", "other_prefix"),
        (f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/", "folder"),
        (f"AWSLogs/{ACCOUNT}/CloudTrail-Insight/us-east-1/2024/01/31/i.json.gz", None),
        # Keys in no known layout are read as log files, as before.
        ("logs/export.json.gz", None),
        ("AWSLogs/gone.json.gz", None),
        ("AWSLogs/12345/vpcflowlogs/eu-west-1/2024/01/31/f.log.gz", None),
    ],
)
def test_digests_and_other_services_folders_are_skipped(key: str, reason: str | None) -> None:
    assert skip_reason(key) == reason


def test_insights_files_carry_their_account_and_region() -> None:
    trail = parse_key(f"AWSLogs/{ACCOUNT}/CloudTrail-Insight/ap-south-2/2024/02/29/i.json.gz")
    assert trail is not None and trail.evaluated
    assert (trail.account, trail.region, trail.day) == (ACCOUNT, "ap-south-2", date(2024, 2, 29))


@pytest.mark.parametrize(
    "key",
    [
        f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2023/02/29/{NAME}",  # no such day
        f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/1/31/{NAME}",  # month not 2 digits
        f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/٢٠٢٤/01/31/{NAME}",  # Arabic-Indic digits
        f"AWSLogs/{ACCOUNT}/CloudTrail/US-EAST-1/2024/01/31/{NAME}",
        f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/01/31/sub/{NAME}",
    ],
)
def test_a_cloudtrail_key_with_a_bad_date_part_keeps_its_account_but_has_no_date(key: str) -> None:
    trail = parse_key(key)
    assert trail is not None and trail.account == ACCOUNT
    assert trail.day is None and trail.region is None


@pytest.mark.parametrize(
    "key",
    [
        f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/01/31/..",
        f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/../../../../x.json.gz",
        f"AWSLogs//{ACCOUNT}/CloudTrail/us-east-1/2024/01/31/{NAME}",
        f"AWSLogs/{ACCOUNT}/../CloudTrail/us-east-1/2024/01/31/{NAME}",
        f"AWSLogs/١٢٣٤٥٦٧٨٩٠١٢/CloudTrail/us-east-1/2024/01/31/{NAME}",
        "AWSLogs/CloudTrail/us-east-1/2024/01/31/x.json.gz",
        "AWSLogs",
        "",
    ],
)
def test_hostile_keys_are_not_in_the_layout(key: str) -> None:
    assert parse_key(key) is None


regions = st.from_regex(r"\A[a-z]{2}(-[a-z]{2,9}){1,2}-[0-9]\Z")
accounts = st.from_regex(r"\A[0-9]{12}\Z")
orgs = st.none() | st.from_regex(r"\Ao-[a-z0-9]{10,32}\Z")
names = st.from_regex(r"\A[A-Za-z0-9_.+=-]{1,40}\Z").filter(lambda n: n not in {".", ".."})
prefixes = st.lists(
    st.from_regex(r"\A[A-Za-z0-9 ._-]{1,12}\Z").filter(lambda p: p not in {".", ".."}),
    max_size=3,
)


@given(prefixes, orgs, accounts, regions, st.dates(), names)
def test_a_key_built_from_parts_parses_back_into_them(
    prefix: list[str], org: str | None, account: str, region: str, day: date, name: str
) -> None:
    parts = [*prefix, "AWSLogs", *([org] if org else []), account, "CloudTrail", region]
    key = "/".join([*parts, f"{day.year:04d}", f"{day.month:02d}", f"{day.day:02d}", name])

    trail = parse_key(key)

    assert trail is not None
    assert (trail.org_id, trail.account, trail.region, trail.day, trail.name) == (
        org,
        account,
        region,
        day,
        name,
    )
    # A trail prefix that itself holds an AWSLogs folder is not in `prefix` here.
    assert trail.prefix == "/".join([*prefix, "AWSLogs"]) + "/"
    assert skip_reason(key) is None


@given(st.text(max_size=200))
@example(f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/13/01/x.json.gz")
@example(f"AWSLogs/{ORG}/{ORG}/{ACCOUNT}/CloudTrail/us-east-1/2024/01/01/x")
def test_any_text_parses_or_not_without_error_and_a_parse_is_consistent(key: str) -> None:
    trail = parse_key(key)
    reason = skip_reason(key)
    assert reason in {None, "digest", "folder", "other_prefix"}
    if trail is None:
        return
    parts = key.split("/")
    assert not {"", ".", ".."} & set(parts[parts.index("AWSLogs") :][1:])
    assert trail.account.isascii() and trail.account.isdigit()
    assert (trail.day is None) == (trail.region is None)
    if trail.day is not None:
        assert key.endswith(f"/{trail.day:%Y/%m/%d}/{trail.name}")
        assert f"/{trail.region}/" in key
