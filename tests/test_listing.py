"""Selecting a date range's log files under an S3 prefix: the trail layout walked with delimiter
listings (organisation and account trails side by side), other services and digests skipped
and counted, and the same selection from any folder of the layout."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from tattletail.aws import AwsClients
from tattletail.daterange import TimeRange
from tattletail.listing import ListingError, ListingStats, TrailLister, key_selected, select_objects
from tests.conftest import Moto
from tests.trail_support import ORG, accounts, expected_keys, generate, load

BUCKET = "listing-trail"
FIRST, LAST = date(2024, 2, 20), date(2024, 3, 10)
SINCE, UNTIL = date(2024, 2, 27), date(2024, 3, 2)


@pytest.fixture
def trail(moto: Moto) -> list:
    objects = generate(600, 4, FIRST, LAST)
    load(moto, BUCKET, objects)
    return objects


def select(
    moto: Moto, prefix: str, since: date = SINCE, until: date = UNTIL
) -> tuple[set[str], ListingStats]:
    stats = ListingStats()

    async def run() -> set[str]:
        aws = AwsClients(moto.endpoint)
        try:
            s3 = await aws.client("s3")
            refs = await select_objects(
                s3, BUCKET, prefix, TimeRange.parse(since.isoformat(), until.isoformat()), stats
            )
            return {ref.key for ref in refs}
        finally:
            await aws.close()

    return asyncio.run(run()), stats


def test_a_range_selects_every_log_file_dated_in_it_across_accounts_and_regions(
    moto: Moto, trail: list
) -> None:
    selected, stats = select(moto, "AWSLogs/")

    assert selected == expected_keys(trail, SINCE, UNTIL)
    assert len(selected) > 100
    # Each of the 4 accounts' digest folder and the one vpcflowlogs folder: skipped unlisted.
    assert stats.skipped_folders == {"digest": 4, "other_prefix": 1}
    assert stats.skipped_keys == {"outside_layout": 1}  # AWSLogs/README.txt
    # 4 accounts x 3 regions x (27, 28, 29 February; 1, 2 March), plus the Insights region.
    assert stats.units_total == stats.units_done == 4 * 3 * 5 + 5


@pytest.mark.parametrize(
    "prefix",
    [
        "",
        "AWSLogs",
        f"AWSLogs/{ORG}/",
        f"AWSLogs/{ORG}/{accounts(4)[0]}/",
        f"AWSLogs/{accounts(4)[1]}/CloudTrail/",
        f"AWSLogs/{accounts(4)[1]}/CloudTrail/eu-west-1/",
        f"AWSLogs/{accounts(4)[1]}/CloudTrail/eu-west-1/2024/",
        f"AWSLogs/{accounts(4)[1]}/CloudTrail/eu-west-1/2024/02/",
        f"AWSLogs/{accounts(4)[1]}/CloudTrail/eu-west-1/2024/03/02/",
    ],
)
def test_any_folder_of_the_layout_selects_the_same_files_under_it(
    moto: Moto, trail: list, prefix: str
) -> None:
    selected, _ = select(moto, prefix)

    full = prefix if prefix.endswith("/") or not prefix else prefix + "/"
    assert selected == {k for k in expected_keys(trail, SINCE, UNTIL) if k.startswith(full)}
    assert selected


@pytest.mark.parametrize(
    "prefix",
    [f"AWSLogs/{accounts(4)[0]}/vpcflowlogs/", f"AWSLogs/{accounts(4)[1]}/CloudTrail/eu-west-1/x/"],
)
def test_a_folder_outside_the_layout_is_refused_with_the_layout_named(
    moto: Moto, trail: list, prefix: str
) -> None:
    with pytest.raises(ListingError, match="CloudTrail's layout"):
        select(moto, prefix)


def test_a_prefix_with_no_awslogs_folder_under_it_says_what_to_give(
    moto: Moto, trail: list
) -> None:
    with pytest.raises(ListingError, match="no AWSLogs/ folder"):
        select(moto, "elsewhere/")


def test_a_trail_prefix_above_awslogs_is_walked(moto: Moto) -> None:
    objects = generate(60, 2, SINCE, UNTIL)
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    moto.client("s3").create_bucket(Bucket=BUCKET)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for item in objects:
        backend.put_object(BUCKET, "org-trail/" + item.key, b"{}")
    backend.put_object(BUCKET, "other-stuff/AWSLogs/x.json.gz", b"{}")

    selected, stats = select(moto, "")

    assert selected == {"org-trail/" + k for k in expected_keys(objects, SINCE, UNTIL)}
    # other-stuff/ is searched for an AWSLogs folder, whose object is outside the layout, as
    # is org-trail/AWSLogs/README.txt.
    assert stats.skipped_keys["outside_layout"] == 2


def test_listing_a_unit_after_a_key_resumes_in_s3_order(moto: Moto, trail: list) -> None:
    async def run() -> tuple[list[str], list[str]]:
        aws = AwsClients(moto.endpoint)
        try:
            lister = TrailLister(
                await aws.client("s3"),
                BUCKET,
                "AWSLogs/",
                TimeRange.parse("2024-03-01", "2024-03-31"),
            )
            units = {}
            for unit in await lister.units():
                units[unit] = [i.key async for page in lister.pages(unit) for i in page]
            everything = max(units.values(), key=len)
            unit = next(u for u, keys in units.items() if keys is everything)
            rest = [
                i.key async for page in lister.pages(unit, start_after=everything[2]) for i in page
            ]
            return everything, rest
        finally:
            await aws.close()

    everything, rest = asyncio.run(run())

    assert len(everything) > 3 and rest == everything[3:]


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (f"AWSLogs/{accounts(1)[0]}/CloudTrail/us-east-1/2024/03/01/a.json.gz", None),
        (f"AWSLogs/{accounts(1)[0]}/CloudTrail/us-east-1/2024/03/03/a.json.gz", "out_of_range"),
        (f"AWSLogs/{accounts(1)[0]}/CloudTrail/us-east-1/2024/03/01/a.txt", "not_a_log_file"),
        (f"AWSLogs/{accounts(1)[0]}/CloudTrail/us-east-1/2024/03/01/", "folder"),
        (f"AWSLogs/{accounts(1)[0]}/CloudTrail/us-east-1/2024/03/x/a.json.gz", "outside_layout"),
        (f"AWSLogs/{accounts(1)[0]}/CloudTrail-Digest/us-east-1/2024/03/01/d.json.gz", "digest"),
    ],
)
def test_each_listed_key_is_selected_or_skipped_for_a_reason(key: str, reason: str | None) -> None:
    assert key_selected(key, TimeRange.parse("2024-02-27", "2024-03-02")) == reason
