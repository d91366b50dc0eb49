"""Objects: fetching a log file's bytes (local or S3) and gunzipping them within a size limit."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from pathlib import Path

import pytest

from tattletail.aws import AwsClients
from tattletail.objects import ObjectError, ObjectRef, decompress, fetch, skip_reason
from tests.support import CLOUDTRAIL, REPO, SEED_LOG, Moto, gzipped

MiB = 1024 * 1024
DELIVERED_SAMPLES = sorted((REPO / "config" / "samples").rglob("*.json.gz"))


def error_of(data: bytes, max_bytes: int = 64 * MiB) -> ObjectError:
    with pytest.raises(ObjectError) as caught:
        decompress(data, max_bytes)
    return caught.value


def zeros_bomb(size: int) -> bytes:
    """A small gzip member that inflates to `size` zero bytes, built without holding them."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    parts = [packer.compress(block) for _ in range(size // MiB)]
    return b"".join(parts) + packer.flush()


# -- decompress ------------------------------------------------------------------------------


def test_gzip_is_decompressed_to_the_original_bytes() -> None:
    data = SEED_LOG.read_bytes()
    assert decompress(gzipped(data), MiB) == data


def test_files_as_delivered_by_cloudtrail_decompress_like_gzip_does() -> None:
    assert DELIVERED_SAMPLES
    for path in DELIVERED_SAMPLES:
        payload = path.read_bytes()
        assert decompress(payload, 64 * MiB) == gzip.decompress(payload)


def test_every_member_of_a_multi_member_gzip_is_decompressed() -> None:
    first = sorted((CLOUDTRAIL / "invictus").glob("*.json"))[0].read_bytes()
    second = SEED_LOG.read_bytes()
    assert decompress(gzipped(first) + gzipped(second), 64 * MiB) == first + second


def test_plain_bytes_pass_through_unchanged() -> None:
    data = SEED_LOG.read_bytes()
    assert decompress(data, MiB) == data
    assert decompress(b"", MiB) == b""


def test_zero_padding_after_the_last_member_is_tolerated() -> None:
    assert decompress(gzipped(b"[]") + bytes(512), MiB) == b"[]"


def test_corrupt_deflate_data_is_corrupt_gzip() -> None:
    payload = bytearray(gzipped(SEED_LOG.read_bytes()))
    payload[20:40] = b"\xff" * 20
    assert error_of(bytes(payload)).reason == "corrupt_gzip"


def test_bad_crc_is_corrupt_gzip() -> None:
    payload = bytearray(gzipped(SEED_LOG.read_bytes()))
    payload[-8:-4] = bytes(4)
    assert error_of(bytes(payload)).reason == "corrupt_gzip"


def test_garbage_after_the_last_member_is_corrupt_gzip() -> None:
    assert error_of(gzipped(b"[]") + b"trailing junk").reason == "corrupt_gzip"


@pytest.mark.parametrize("keep", [2, 10, 100, -4], ids=["magic-only", "header", "body", "trailer"])
def test_truncated_gzip_is_corrupt_gzip_saying_it_is_truncated(keep: int) -> None:
    payload = gzipped(SEED_LOG.read_bytes())
    error = error_of(payload[:keep])
    assert error.reason == "corrupt_gzip"
    assert "truncated" in str(error)


def test_truncated_second_member_is_corrupt_gzip() -> None:
    member = gzipped(SEED_LOG.read_bytes())
    assert error_of(member + member[:-20]).reason == "corrupt_gzip"


def test_output_at_the_limit_is_accepted_and_one_byte_more_is_too_large() -> None:
    assert decompress(gzipped(b"a" * 1000), 1000) == b"a" * 1000
    error = error_of(gzipped(b"a" * 1001), 1000)
    assert error.reason == "too_large"
    assert "1000" in str(error)


def test_limit_applies_to_all_members_together() -> None:
    payload = gzipped(b"a" * 600) + gzipped(b"b" * 600)
    assert error_of(payload, 1000).reason == "too_large"


def test_gzip_bomb_is_too_large_without_inflating_it_in_memory() -> None:
    bomb = zeros_bomb(16 * MiB)
    assert len(bomb) < MiB

    tracemalloc.start()
    try:
        error = error_of(bomb, MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert error.reason == "too_large"
    assert peak < 8 * MiB


# -- fetch (local) ---------------------------------------------------------------------------


async def test_local_file_is_fetched_as_is(tmp_path: Path) -> None:
    path = tmp_path / "log.json.gz"
    path.write_bytes(gzipped(b"[]"))
    assert await fetch(ObjectRef(key=str(path)), None, MiB) == gzipped(b"[]")


async def test_missing_local_file_is_not_found_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json.gz"
    with pytest.raises(ObjectError) as caught:
        await fetch(ObjectRef(key=str(missing)), None, MiB)
    assert caught.value.reason == "not_found"
    assert str(missing) in str(caught.value)


async def test_local_file_over_the_limit_is_too_large(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * 2000)
    with pytest.raises(ObjectError) as caught:
        await fetch(ObjectRef(key=str(path)), None, 1999)
    assert caught.value.reason == "too_large"
    assert await fetch(ObjectRef(key=str(path)), None, 2000) == b" " * 2000


async def test_local_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ObjectError) as caught:
        await fetch(ObjectRef(key=str(tmp_path)), None, MiB)
    assert caught.value.reason == "not_a_file"


# -- fetch (S3, against the moto server) ----------------------------------------------------


async def test_s3_object_is_fetched_missing_key_is_not_found_and_size_is_limited(
    moto: Moto,
) -> None:
    s3_sync = moto.client("s3")
    s3_sync.create_bucket(Bucket="trail")
    payload = gzipped(SEED_LOG.read_bytes())
    s3_sync.put_object(Bucket="trail", Key="AWSLogs/1/CloudTrail/log.json.gz", Body=payload)
    aws = AwsClients(moto.endpoint)
    try:
        s3 = await aws.client("s3")
        ref = ObjectRef(key="AWSLogs/1/CloudTrail/log.json.gz", bucket="trail")
        assert await fetch(ref, s3, MiB) == payload

        with pytest.raises(ObjectError) as too_large:
            await fetch(ref, s3, len(payload) - 1)
        assert too_large.value.reason == "too_large"

        missing = ObjectRef(key="AWSLogs/1/CloudTrail/missing.json.gz", bucket="trail")
        with pytest.raises(ObjectError) as not_found:
            await fetch(missing, s3, MiB)
        assert not_found.value.reason == "not_found"
        assert "s3://trail/AWSLogs/1/CloudTrail/missing.json.gz" in str(not_found.value)
    finally:
        await aws.close()


# -- skip_reason -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2023/07/10/"
        "123456789012_CloudTrail-Digest_us-east-1_trail_us-east-1_20230710T120000Z.json.gz",
        "CloudTrail-Digest/us-east-1/2023/07/10/digest.json.gz",
        "org/AWSLogs/o-abc/123456789012/CloudTrail-Digest/eu-west-1/2023/07/10/d.json.gz",
    ],
)
def test_digest_keys_are_skipped_as_digest(key: str) -> None:
    assert skip_reason(ObjectRef(key=key, bucket="trail")) == "digest"


@pytest.mark.parametrize("key", ["AWSLogs/", "AWSLogs/123456789012/CloudTrail/us-east-1/"])
def test_folder_keys_are_skipped_as_folder(key: str) -> None:
    assert skip_reason(ObjectRef(key=key, bucket="trail")) == "folder"


@pytest.mark.parametrize(
    "key",
    [
        "AWSLogs/123456789012/CloudTrail/us-east-1/2023/07/10/"
        "123456789012_CloudTrail_us-east-1_20230710T1205Z_SjF3IkuNXJkoHyar.json.gz",
        "AWSLogs/123456789012/CloudTrail-DigestArchive/log.json.gz",
        "logs/my-CloudTrail-Digest.json.gz",
    ],
)
def test_log_file_keys_are_not_skipped(key: str) -> None:
    assert skip_reason(ObjectRef(key=key, bucket="trail")) is None


def test_object_ref_uri_names_bucket_and_key_or_the_local_path() -> None:
    assert ObjectRef(key="a/b.json.gz", bucket="trail").uri == "s3://trail/a/b.json.gz"
    assert ObjectRef(key="/tmp/b.json").uri == "/tmp/b.json"
