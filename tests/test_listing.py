"""Selecting a date range's log files under an S3 prefix: the trail layout walked with delimiter
listings (organisation and account trails side by side), other services and digests skipped
and counted, and the same selection from any folder of the layout."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from tattletail.daterange import TimeRange
from tattletail.listing import ListingError, ListingStats, TrailLister, key_selected, select_objects
from tests.support import Moto
from tests.trail_support import ORG, accounts, expected_keys, generate, load, s3_on_one_loop

BUCKET = "listing-trail"
OTHER_BUCKET = "listing-trail-prefixed"
FIRST, LAST = date(2024, 2, 20), date(2024, 3, 10)
SINCE, UNTIL = date(2024, 2, 27), date(2024, 3, 2)


@pytest.fixture(scope="module")
def moto_module(moto_server: Moto) -> Moto:
    """One bucket for the whole module (loading it is the slow part), on a reset server."""
    moto_server.reset()
    return moto_server


@pytest.fixture(scope="module")
def s3(moto_module: Moto) -> Iterator[tuple[asyncio.Runner, Any]]:
    with s3_on_one_loop(moto_module) as pair:
        yield pair


@pytest.fixture(scope="module")
def trail(moto_module: Moto) -> list:
    objects = generate(600, 4, FIRST, LAST)
    load(moto_module, BUCKET, objects)
    return objects


def select(
    s3: tuple[asyncio.Runner, Any],
    prefix: str,
    since: date = SINCE,
    until: date = UNTIL,
    bucket: str = BUCKET,
) -> tuple[set[str], ListingStats]:
    runner, client = s3
    stats = ListingStats()
    time_range = TimeRange.parse(since.isoformat(), until.isoformat())
    refs = runner.run(select_objects(client, bucket, prefix, time_range, stats))
    return {ref.key for ref in refs}, stats


def test_a_range_selects_every_log_file_dated_in_it_across_accounts_and_regions(
    s3: Any, trail: list
) -> None:
    selected, stats = select(s3, "AWSLogs/")

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
        "AWSLogs",
        f"AWSLogs/{ORG}/{accounts(4)[0]}/",
        f"AWSLogs/{accounts(4)[1]}/CloudTrail/",
        f"AWSLogs/{accounts(4)[1]}/CloudTrail/eu-west-1/2024/",
        f"AWSLogs/{accounts(4)[1]}/CloudTrail/eu-west-1/2024/03/02/",
    ],
)
def test_any_folder_of_the_layout_selects_the_same_files_under_it(
    s3: Any, trail: list, prefix: str
) -> None:
    selected, _ = select(s3, prefix)

    full = prefix if prefix.endswith("/") or not prefix else prefix + "/"
    assert selected == {k for k in expected_keys(trail, SINCE, UNTIL) if k.startswith(full)}
    assert selected


@pytest.mark.parametrize(
    "prefix",
    [f"AWSLogs/{accounts(4)[0]}/vpcflowlogs/", f"AWSLogs/{accounts(4)[1]}/CloudTrail/eu-west-1/x/"],
)
def test_a_folder_outside_the_layout_is_refused_with_the_layout_named(
    s3: Any, trail: list, prefix: str
) -> None:
    with pytest.raises(ListingError, match="CloudTrail's layout"):
        select(s3, prefix)


def test_a_prefix_with_no_awslogs_folder_under_it_says_what_to_give(s3: Any, trail: list) -> None:
    with pytest.raises(ListingError, match="no AWSLogs/ folder"):
        select(s3, "elsewhere/")


def test_a_trail_prefix_above_awslogs_is_walked(moto_module: Moto, s3: Any) -> None:
    objects = generate(60, 2, SINCE, UNTIL)
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    moto_module.client("s3").create_bucket(Bucket=OTHER_BUCKET)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for item in objects:
        backend.put_object(OTHER_BUCKET, "org-trail/" + item.key, b"{}")
    backend.put_object(OTHER_BUCKET, "other-stuff/AWSLogs/x.json.gz", b"{}")

    selected, stats = select(s3, "", bucket=OTHER_BUCKET)

    assert selected == {"org-trail/" + k for k in expected_keys(objects, SINCE, UNTIL)}
    # other-stuff/ is searched for an AWSLogs folder, whose object is outside the layout, as
    # is org-trail/AWSLogs/README.txt.
    assert stats.skipped_keys["outside_layout"] == 2


def test_listing_a_unit_after_a_key_resumes_in_s3_order(s3: Any, trail: list) -> None:
    runner, client = s3
    lister = TrailLister(client, BUCKET, "AWSLogs/", TimeRange.parse("2024-03-01", "2024-03-31"))

    async def keys(unit: str, after: str | None = None) -> list[str]:
        return [item.key async for page in lister.pages(unit, after) for item in page]

    units = {unit: runner.run(keys(unit)) for unit in runner.run(lister.units())}
    unit, everything = max(units.items(), key=lambda item: len(item[1]))
    rest = runner.run(keys(unit, everything[2]))

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
