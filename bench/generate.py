"""Deterministic generator of realistic CloudTrail bundles for the benchmark.

Every record starts as a real CloudTrail record from ``../shared/data/cloudtrail`` (Invictus IR's
attack dataset, the Stratus Red Team detonations and the README sample). A seeded
``random.Random`` then picks templates by a weighted event mix that looks like a production
management trail (mostly read-only noise, a few writes, rare security-relevant calls) and
re-dresses each one: identity, account, region, IDs, times, source IP and user agent; a few event
types get their parameters rewritten so detections have something to find (open security groups,
admin policies, public bucket policies, console logins without MFA) and so record sizes get the
long tail that real trails have (RunInstances responses, policy documents).

Files are gzipped ``{"Records": [...]}`` documents laid out like CloudTrail's own S3 keys::

    OUT/AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/
        <account>_CloudTrail_<region>_YYYYMMDDTHHMMZ_<16 alnum>.json.gz

The same arguments always produce byte-identical files: each file draws from its own
``Random(f"{seed}/file/{index}")``, so files can also be generated in parallel.

Usage::

    python -m bench.generate --files 64 --records 320000 --out /tmp/bundle [--seed 1]
"""

import argparse
import functools
import gzip
import itertools
import multiprocessing
import os
import random
import shutil
import string
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

GENERATOR_VERSION = 1  # bump when the bytes change, so kept --bundle directories regenerate
DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cloudtrail"
# Not *.json: tattletail scan reads every .json/.json.gz file under the directory it is given.
MANIFEST_NAME = "bench-manifest.txt"
DEFAULT_FILES = 64
DEFAULT_RECORDS = 320_000

# Records are re-serialised with these placeholders so one template can be materialised for
# any (account, region) by plain string replacement, ARNs and host names included.
_ACCOUNT_PH = "@@ACCOUNT@@"
_REGION_PH = "@@REGION@@"

# CloudTrail's own key order; the Stratus Red Team exports are key-sorted, which no real file is.
_KEY_ORDER = (
    "eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion",
    "sourceIPAddress", "userAgent", "errorCode", "errorMessage", "requestParameters",
    "responseElements", "additionalEventData", "requestID", "eventID", "readOnly", "resources",
    "eventType", "apiVersion", "managementEvent", "recipientAccountId", "sharedEventID",
    "vpcEndpointId", "vpcEndpointAccountId", "serviceEventDetails", "eventCategory",
    "tlsDetails", "sessionCredentialFromConsole",
)  # fmt: skip

_BASE_TIME = 1717401600  # 2024-06-03T08:00:00Z: a fixed start keeps output reproducible
_FILE_WINDOW_S = 300  # CloudTrail delivers roughly one file per account/region per 5 minutes

# (region, weight): us-east-1 dominates because global services (IAM, sign-in) log there.
_REGIONS = (
    ("us-east-1", 40), ("us-west-2", 18), ("eu-west-1", 14), ("eu-central-1", 10),
    ("us-east-2", 8), ("ap-southeast-2", 5), ("ap-northeast-1", 5),
)  # fmt: skip
# Only us-east-1 files carry these; CloudTrail records global-service calls there.
_GLOBAL_SOURCES = frozenset({
    "iam.amazonaws.com", "signin.amazonaws.com", "organizations.amazonaws.com",
    "route53.amazonaws.com", "account.amazonaws.com", "ce.amazonaws.com",
    "health.amazonaws.com", "notifications.amazonaws.com",
})  # fmt: skip

# Weights (roughly per 100k records) of event names that shape the mix or that the detection
# pack looks for. Every other name gets an even share of its kind's budget in _KIND_BUDGETS,
# scaled by _SERVICE_FACTORS.
_EXPLICIT_WEIGHTS: dict[str, float] = {
    # The bulk of any management trail: role sessions and KMS traffic from services.
    "AssumeRole": 18000, "Decrypt": 10000, "GenerateDataKey": 5000, "Encrypt": 700,
    "GetCallerIdentity": 1200, "DescribeInstances": 2500, "DescribeInstanceStatus": 1500,
    "DescribeInstanceInformation": 2000, "UpdateInstanceInformation": 1500,
    "DescribeSecurityGroups": 1200, "DescribeVolumes": 1000, "DescribeNetworkInterfaces": 900,
    "DescribeRegions": 600, "DescribeLogGroups": 800, "GetParameter": 1500,
    "GetParameters": 600, "GetBucketAcl": 900, "GetBucketLocation": 700, "ListBuckets": 300,
    "GetSecretValue": 400, "ListTagsForResource": 700, "PutInventory": 300,
    "UpdateInstanceAssociationStatus": 300, "ListInstanceAssociations": 500, "GetDocument": 200,
    "LookupEvents": 150, "CreateTags": 150, "CreateNetworkInterface": 60,
    "DeleteNetworkInterface": 60, "CreateLogGroup": 40,
    # Writes that make records long (RunInstances responses, policy documents).
    "RunInstances": 750, "PutBucketPolicy": 60, "CreatePolicy": 50, "PutRolePolicy": 80,
    "CreateRole": 60, "AttachRolePolicy": 60,
    # Rare, security-relevant calls: what detections exist for.
    "ConsoleLogin": 40, "CheckMfa": 10, "CreateUser": 75, "CreateAccessKey": 75,
    "DeleteAccessKey": 20, "AttachUserPolicy": 6, "UpdateAssumeRolePolicy": 6,
    "CreateLoginProfile": 4, "UpdateLoginProfile": 3, "DeleteLoginProfile": 3,
    "DeleteUser": 10, "DeleteRole": 15, "DeleteRolePolicy": 10, "DeletePolicy": 8,
    "StopLogging": 1, "DeleteTrail": 1, "PutEventSelectors": 2, "CreateTrail": 2,
    "StartLogging": 2, "LeaveOrganization": 1, "DeleteFlowLogs": 2, "CreateFlowLogs": 4,
    "DeleteResolverQueryLogConfig": 1, "AuthorizeSecurityGroupIngress": 40,
    "AuthorizeSecurityGroupEgress": 10, "RevokeSecurityGroupIngress": 10,
    "ModifyImageAttribute": 3, "ModifySnapshotAttribute": 4, "ModifyDBSnapshotAttribute": 2,
    "ModifyInstanceAttribute": 8, "GetPasswordData": 3, "EnableSerialConsoleAccess": 0.5,
    "SendSerialConsoleSSHPublicKey": 1, "SendSSHPublicKey": 6, "SendCommand": 20,
    "StartSession": 15, "TerminateSession": 15, "BatchGetSecretValue": 4, "ListSecrets": 60,
    "DeleteSecret": 8, "GetFederationToken": 2, "CreateTrustAnchor": 0.5, "CreateProfile": 0.5,
    "AddPermission20150331v2": 4, "UpdateFunctionCode20150331v2": 15,
    "UpdateFunctionConfiguration20150331v2": 12, "InvokeModel": 8,
    "PutFoundationModelEntitlement": 1, "PutUseCaseForModelAccess": 1,
    "CreateFoundationModelAgreement": 1, "DeleteBucketPolicy": 3, "DeleteBucket": 4,
    "PutBucketLifecycle": 4, "DeleteBucketLifecycle": 2, "DeleteLogGroup": 4,
    "DeleteDBInstance": 2, "DeleteDBSnapshot": 2, "CreateDBSnapshot": 6,
    "DeregisterImage": 6, "DeleteSnapshot": 12, "StopInstances": 20, "TerminateInstances": 30,
    "GetAccountAuthorizationDetails": 3, "ListUsers": 40, "ListAccessKeys": 60,
    "CreateRoute": 8, "CreateInternetGateway": 2, "AttachInternetGateway": 2,
    "CreateVpc": 2, "DeleteVpc": 2,
}  # fmt: skip
_KIND_BUDGETS = {"Describe": 26000, "Get": 11000, "List": 8000, "read": 1200, "write": 3000}
# The attack datasets over-represent some niche services; scale their share of the budgets.
_SERVICE_FACTORS = {
    "rds": 0.4, "rolesanywhere": 0.05, "bedrock": 0.1, "devops-guru": 0.1,
    "notifications": 0.1, "resource-explorer-2": 0.1, "servicecatalog-appregistry": 0.1,
    "ce": 0.3, "account": 0.2, "guardduty": 0.5, "cloudtrail": 0.5, "securityhub": 0.3,
}  # fmt: skip

# Per-record rates of errors added to principals' calls (services are rarely denied).
_DENY_RATE = 0.008
_THROTTLE_RATE = 0.004  # read-only calls only: throttling is what polling tools hit
_NATIVE_ERROR_RATE = 0.03  # pick a real failed record (NoSuchBucketPolicy...) when one exists
_SERVICE_CALLER_RATE = 0.3  # share of KMS/STS calls made by AWS services themselves
_SERVICE_FRIENDLY = frozenset({"AssumeRole", "Decrypt", "GenerateDataKey", "Encrypt"})
# Shares of the remaining calls by caller type; assumed roles make all the others, as they do
# in any account run by SSO, CI and workloads rather than long-lived users.
_ROOT_SHARE = 0.0008
_FEDERATED_SHARE = 0.008
_IAM_USER_SHARE = 0.2112
_CONSOLE_ROOT_SHARE = 0.04  # of console sign-ins
_KALI_RATE = 0.0001  # offensive-distro user agents, what GuardDuty's PenTest findings key on
# Instance-role credentials replayed from outside the VPC (GuardDuty's
# InstanceCredentialExfiltration): a private caller showing up with a public address.
_EXFIL_RATE = 0.0005

_ALNUM = string.ascii_letters + string.digits
_UPPER_ALNUM = string.ascii_uppercase + string.digits
_B64URL = string.ascii_letters + string.digits + "-_"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_AGENTS = {
    "cli": (
        "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0-1016-aws exe/x86_64.ubuntu.22 prompt/off "
        "command/ec2.describe-instances",
        "aws-cli/2.17.5 Python/3.11.9 Darwin/23.5.0 exe/x86_64 prompt/off "
        "command/s3api.list-buckets",
    ),
    "boto3": (
        "Boto3/1.34.69 md/Botocore#1.34.69 ua/2.0 os/linux#5.10.213-201.855.amzn2.x86_64 "
        "md/arch#x86_64 lang/python#3.12.2 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 "
        "cfg/retry-mode#legacy Botocore/1.34.69",
        "Boto3/1.28.57 md/Botocore#1.31.57 ua/2.0 os/linux#6.1.61-85.141.amzn2023.x86_64 "
        "md/arch#x86_64 lang/python#3.11.6 md/pyimpl#CPython cfg/retry-mode#legacy "
        "Botocore/1.31.57",
    ),
    "terraform": (
        "APN/1.0 HashiCorp/1.0 Terraform/1.7.5 (+https://www.terraform.io) "
        "terraform-provider-aws/5.42.0 (+https://registry.terraform.io/providers/hashicorp/aws) "
        "aws-sdk-go-v2/1.26.0 os/linux lang/go#1.22.1 md/GOOS#linux md/GOARCH#amd64 "
        "api/ec2#1.152.0",
    ),
    "go": (
        "aws-sdk-go/1.50.38 (go1.21.8; linux; amd64) exec-env/AWS_ECS_EC2",
        "aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux md/GOARCH#amd64 "
        "api/ec2#1.171.0 ft/ec2-imds",
    ),
    "java": (
        "aws-sdk-java/2.25.11 Linux/5.10.210-201.852.amzn2.x86_64 "
        "OpenJDK_64-Bit_Server_VM/17.0.10+7-LTS Java/17.0.10 vendor/Amazon.com_Inc. "
        "md/internal io/sync http/Apache cfg/retry-mode/legacy",
    ),
    "console": ("AWS Internal", "console.amazonaws.com"),
    "browser": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/125.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0",
    ),
}
_KALI_AGENT = (
    "aws-cli/1.22.34 Python/3.9.12 Linux/5.16.0-kali7-amd64 botocore/1.24.46 distrib/kali.2022"
)
_SERVICES = (
    "cloudformation.amazonaws.com", "autoscaling.amazonaws.com", "lambda.amazonaws.com",
    "ecs-tasks.amazonaws.com", "config.amazonaws.com", "cloudtrail.amazonaws.com",
    "logs.amazonaws.com", "elasticloadbalancing.amazonaws.com", "sso.amazonaws.com",
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Templates


@dataclass(frozen=True, slots=True)
class Template:
    """A real record, serialised with account and region placeholders."""

    text: str
    name: str
    source: str
    read_only: bool
    identity: str  # "keep" (service events), "console" (sign-in) or "principal"
    service_caller: bool  # sourceIPAddress is an AWS service: keep it and the user agent
    request_id: str  # "uuid", "s3" (16 upper alnum) or "" (no requestID key)


def load_source_records(data_dir: Path = DATA_DIR) -> list[dict[str, Any]]:
    """Return every real record under ``data_dir``, in a stable order."""
    records: list[dict[str, Any]] = []
    for path in [*sorted((data_dir / "invictus").glob("*.json")), data_dir / "seed" / "1.json"]:
        records.extend(orjson.loads(path.read_bytes())["Records"])
    for path in sorted((data_dir / "stratus-red-team").glob("*.json")):
        records.extend(orjson.loads(path.read_bytes()))
    return records


def _canonical(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: record[k] for k in _KEY_ORDER if k in record}
    out.update((k, v) for k, v in record.items() if k not in out)
    return out


def _make_template(record: dict[str, Any]) -> Template:
    identity = record.get("userIdentity") or {}
    account = record.get("recipientAccountId") or identity.get("accountId") or ""
    text = orjson.dumps(_canonical(record)).decode()
    if account:
        text = text.replace(account, _ACCOUNT_PH)
    text = text.replace(record["awsRegion"], _REGION_PH)
    api_call = record.get("eventType") in ("AwsApiCall", "AwsConsoleSignIn")
    if not api_call or identity.get("type") in (None, "AWSService"):
        mode = "keep"  # service events and services' own calls: nobody else makes them
    elif record["eventSource"] == "signin.amazonaws.com":
        mode = "console"
    else:
        mode = "principal"
    source_ip = record.get("sourceIPAddress", "")
    request_id = record.get("requestID")
    return Template(
        text=text,
        name=record["eventName"],
        source=record["eventSource"],
        read_only=bool(record.get("readOnly")),
        identity=mode,
        service_caller=source_ip.endswith("amazonaws.com") or source_ip == "AWS Internal",
        request_id="" if request_id is None else ("uuid" if len(request_id) == 36 else "s3"),
    )


@dataclass(frozen=True, slots=True)
class TemplatePool:
    """Templates by event name: successful calls, and real failures of the same call."""

    ok: dict[str, tuple[Template, ...]]
    failed: dict[str, tuple[Template, ...]]


def build_templates(records: Iterable[dict[str, Any]]) -> TemplatePool:
    """Group records into templates by event name, failed calls apart."""
    ok: dict[str, list[Template]] = defaultdict(list)
    failed: dict[str, list[Template]] = defaultdict(list)
    repaired: dict[str, list[Template]] = defaultdict(list)
    for record in records:
        name = record["eventName"]
        if "errorCode" in record or "errorMessage" in record:
            failed[name].append(_make_template(record))
            stripped = {k: v for k, v in record.items() if k not in ("errorCode", "errorMessage")}
            repaired[name].append(_make_template(stripped))
        else:
            ok[name].append(_make_template(record))
    # Some calls (StopLogging...) were only ever recorded failing; their stripped copies are
    # the only successes there are.
    for name, templates in repaired.items():
        ok.setdefault(name, templates)
    return TemplatePool(
        ok={k: tuple(v) for k, v in ok.items()}, failed={k: tuple(v) for k, v in failed.items()}
    )


@functools.cache
def _template_pool(data_dir: Path) -> TemplatePool:
    return build_templates(load_source_records(data_dir))


@dataclass(frozen=True, slots=True)
class EventTable:
    """Cumulative weights over event names, for ``Random.choices``."""

    names: tuple[str, ...]
    cum: tuple[float, ...]


def _kind(name: str, read_only: bool) -> str:
    for prefix in ("Describe", "Get", "List"):
        if name.startswith(prefix):
            return prefix
    return "read" if read_only else "write"


def build_event_tables(pool: TemplatePool) -> dict[str, EventTable]:
    """Return the event mix for us-east-1 files ("global") and for every other region."""
    names = sorted(pool.ok)
    kinds = {n: _kind(n, pool.ok[n][0].read_only) for n in names}
    per_kind: dict[str, int] = defaultdict(int)
    for n in names:
        if n not in _EXPLICIT_WEIGHTS:
            per_kind[kinds[n]] += 1
    weights = {}
    for n in names:
        source = pool.ok[n][0].source
        weights[n] = _EXPLICIT_WEIGHTS.get(n) or (
            _KIND_BUDGETS[kinds[n]]
            / per_kind[kinds[n]]
            * _SERVICE_FACTORS.get(source.split(".", 1)[0], 1.0)
        )
    # Global-service calls only land in us-east-1 files; weigh them up there so their share of
    # the whole bundle stays what _EXPLICIT_WEIGHTS says.
    boost = sum(w for _, w in _REGIONS) / dict(_REGIONS)["us-east-1"]
    is_global = {n: pool.ok[n][0].source in _GLOBAL_SOURCES for n in names}
    regional = [n for n in names if not is_global[n]]
    return {
        "global": EventTable(
            names=tuple(names),
            cum=tuple(
                itertools.accumulate(weights[n] * (boost if is_global[n] else 1.0) for n in names)
            ),
        ),
        "regional": EventTable(
            names=tuple(regional), cum=tuple(itertools.accumulate(weights[n] for n in regional))
        ),
    }


# --------------------------------------------------------------------------------------------
# Principals


@dataclass(frozen=True, slots=True)
class Principal:
    """Someone or something calling AWS, with the userIdentity docs of its sessions."""

    kind: str
    name: str
    identities: tuple[dict[str, Any], ...]
    ips: tuple[str, ...]
    agents: tuple[str, ...]

    @property
    def arn(self) -> str:
        return self.identities[0]["arn"]


@dataclass(frozen=True, slots=True)
class Account:
    """One AWS account's callers."""

    id: str
    roles: tuple[Principal, ...]
    role_cum: tuple[float, ...]
    users: tuple[Principal, ...]
    federated: tuple[Principal, ...]
    root: Principal
    console: tuple[Principal, ...]  # humans who sign in to the console
    secrets: tuple[str, ...]
    external_account: str  # a partner account for cross-account activity
    vpc_endpoint: str  # interface endpoint private callers reach AWS APIs through


def _rand(rng: random.Random, alphabet: str, k: int) -> str:
    return "".join(rng.choices(alphabet, k=k))


def _hex(rng: random.Random, k: int) -> str:
    return f"{rng.getrandbits(4 * k):0{k}x}"


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _public_ip(rng: random.Random) -> str:
    first = rng.choice((3, 18, 34, 35, 44, 52, 54, 81, 86, 91, 109, 145, 185, 203, 213))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _ct_date(t: int) -> str:
    """CloudTrail's IAM response dates: 'Jun 3, 2024 8:05:12 AM'."""
    g = time.gmtime(t)
    hour = g.tm_hour % 12 or 12
    ampm = "AM" if g.tm_hour < 12 else "PM"
    clock = f"{hour}:{g.tm_min:02d}:{g.tm_sec:02d} {ampm}"
    return f"{_MONTHS[g.tm_mon - 1]} {g.tm_mday}, {g.tm_year} {clock}"


def _session_context(issuer: dict[str, Any], created: int, mfa: bool) -> dict[str, Any]:
    return {
        "sessionIssuer": issuer,
        "webIdFederationData": {},
        "attributes": {"creationDate": _iso(created), "mfaAuthenticated": str(mfa).lower()},
    }


# (role name, weight, session names, agent kinds, caller IP kind)
_ROLES = (
    ("eks-prod-nodegroup-NodeInstanceRole-{alnum}", 25, "instance", ("go",), "private"),
    ("orders-api-lambda-role", 20, ("orders-api",), ("boto3",), "aws"),
    ("DatadogIntegrationRole", 14, ("DatadogAWSIntegration",), ("go",), "aws"),
    ("AWSServiceRoleForConfig", 8, ("AWSConfig-Describe",), ("config.amazonaws.com",), "svc"),
    ("AWSReservedSSO_AdministratorAccess_{hex}", 4, "email", ("console", "cli"), "office"),
    ("AWSReservedSSO_ReadOnlyAccess_{hex}", 8, "email", ("console", "cli"), "office"),
    ("github-actions-deploy", 6, ("GitHubActions",), ("terraform", "cli"), "aws"),
    ("OrganizationAccountAccessRole", 2, ("terraform-admin",), ("terraform",), "office"),
    ("AWSServiceRoleForAmazonGuardDuty", 5, ("GuardDuty",), ("guardduty.amazonaws.com",), "svc"),
    ("ecsTaskExecutionRole", 5, "hex", ("go", "java"), "private"),
    ("backup-runner", 3, ("backup-runner",), ("boto3",), "private"),
)  # fmt: skip
_PEOPLE = ("alice.nguyen", "bob.smith", "carol.diaz", "dmitri.k", "erin.walsh", "farid.h")
_USERS = (
    ("ci-deploy", ("terraform", "cli"), "aws"),
    ("legacy-etl", ("java",), "aws"),
    ("svc-backup", ("boto3",), "private"),
    ("grafana-reader", ("go",), "aws"),
    ("alice.nguyen", ("cli", "console"), "office"),
    ("bob.smith", ("cli", "console"), "office"),
)


def _ips(rng: random.Random, kind: str, office: tuple[str, ...], svc: str) -> tuple[str, ...]:
    if kind == "private":
        return tuple(
            f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            for _ in range(6)
        )
    if kind == "svc":
        return (svc,)
    if kind == "office":
        return office
    return tuple(_public_ip(rng) for _ in range(3))


def _agents(kinds: Iterable[str]) -> tuple[str, ...]:
    return tuple(a for k in kinds for a in _AGENTS.get(k, (k,)))


def build_account(rng: random.Random, account_id: str) -> Account:
    """Invent the roles, users and root of one account."""
    office = tuple(_public_ip(rng) for _ in range(4))
    roles, weights = [], []
    for pattern, weight, sessions, agents, ip_kind in _ROLES:
        name = pattern.format(alnum=_rand(rng, _UPPER_ALNUM, 12), hex=_hex(rng, 16))
        role_id = "AROA" + _rand(rng, _UPPER_ALNUM, 17)
        role_arn = f"arn:aws:iam::{account_id}:role/{name}"
        issuer = {
            "type": "Role",
            "principalId": role_id,
            "arn": role_arn,
            "accountId": account_id,
            "userName": name,
        }
        if sessions == "instance":
            session_names = tuple(f"i-0{_hex(rng, 16)}" for _ in range(8))
        elif sessions == "email":
            session_names = tuple(f"{p}@example.com" for p in _PEOPLE)
        elif sessions == "hex":
            session_names = tuple(_hex(rng, 32) for _ in range(4))
        else:
            session_names = tuple(sessions)
        identities = []
        for session in session_names:
            context = _session_context(
                issuer, _BASE_TIME - rng.randrange(3600), sessions == "email"
            )
            if sessions == "instance":
                context["ec2RoleDelivery"] = "2.0"  # IMDSv2-delivered instance credentials
            identities.append(
                {
                    "type": "AssumedRole",
                    "principalId": f"{role_id}:{session}",
                    "arn": f"arn:aws:sts::{account_id}:assumed-role/{name}/{session}",
                    "accountId": account_id,
                    "accessKeyId": "ASIA" + _rand(rng, _UPPER_ALNUM, 16),
                    "sessionContext": context,
                }
            )
        svc = agents[0] if ip_kind == "svc" else ""
        roles.append(
            Principal(
                "AssumedRole",
                name,
                tuple(identities),
                _ips(rng, ip_kind, office, svc),
                _agents(agents),
            )
        )
        weights.append(weight)
    users = []
    for name, agents, ip_kind in _USERS:
        user_id = "AIDA" + _rand(rng, _UPPER_ALNUM, 17)
        identity = {
            "type": "IAMUser",
            "principalId": user_id,
            "arn": f"arn:aws:iam::{account_id}:user/{name}",
            "accountId": account_id,
            "accessKeyId": "AKIA" + _rand(rng, _UPPER_ALNUM, 16),
            "userName": name,
        }
        users.append(
            Principal("IAMUser", name, (identity,), _ips(rng, ip_kind, office, ""), _agents(agents))
        )
    federated = []
    for name in ("ops-tool", "jenkins"):
        issuer_user = users[0].identities[0]
        identity = {
            "type": "FederatedUser",
            "principalId": f"{account_id}:{name}",
            "arn": f"arn:aws:sts::{account_id}:federated-user/{name}",
            "accountId": account_id,
            "accessKeyId": "ASIA" + _rand(rng, _UPPER_ALNUM, 16),
            "sessionContext": _session_context(
                {
                    "type": "IAMUser",
                    "principalId": issuer_user["principalId"],
                    "arn": issuer_user["arn"],
                    "accountId": account_id,
                    "userName": issuer_user["userName"],
                },
                _BASE_TIME - rng.randrange(3600),
                False,
            ),
        }
        federated.append(
            Principal(
                "FederatedUser",
                name,
                (identity,),
                _ips(rng, "aws", office, ""),
                _agents(("boto3",)),
            )
        )
    root_identity = {
        "type": "Root",
        "principalId": account_id,
        "arn": f"arn:aws:iam::{account_id}:root",
        "accountId": account_id,
        "accessKeyId": "ASIA" + _rand(rng, _UPPER_ALNUM, 16),
        "sessionContext": _session_context({}, _BASE_TIME - rng.randrange(3600), True),
    }
    root = Principal("Root", "root", (root_identity,), office, _agents(("console", "browser")))
    sso = [r for r in roles if r.name.startswith("AWSReservedSSO_")]
    console_users = [u for u in users if "." in u.name]
    return Account(
        id=account_id,
        roles=tuple(roles),
        role_cum=tuple(itertools.accumulate(weights)),
        users=tuple(users),
        federated=tuple(federated),
        root=root,
        console=tuple(console_users + sso),
        secrets=tuple(
            f"arn:aws:secretsmanager:{_REGION_PH}:{account_id}:secret:{n}-{_rand(rng, _ALNUM, 6)}"
            for n in ("prod/orders/db", "prod/payments/stripe", "ci/github-token", "datadog/api")
        ),
        external_account=f"{rng.randrange(10**11, 10**12):012d}",
        vpc_endpoint="vpce-0" + _hex(rng, 16),
    )


def _service_identity(service: str) -> dict[str, Any]:
    return {"type": "AWSService", "invokedBy": service}


_SERVICE_IDENTITIES = tuple(_service_identity(s) for s in _SERVICES)


# --------------------------------------------------------------------------------------------
# Mutators: per-event rewrites. They replace nested values, never edit them in place, because
# the template dicts they start from are shared by every record of a file.

# A mutator may return a replacement record, when a key has to go in at its usual position.
Mutator = Callable[[dict[str, Any], random.Random, Account, int], dict[str, Any] | None]
_MUTATORS: dict[str, Mutator] = {}


def _mutates(*names: str) -> Callable[[Mutator], Mutator]:
    def register(fn: Mutator) -> Mutator:
        for name in names:
            _MUTATORS[name] = fn
        return fn

    return register


def _insert_before(rec: dict[str, Any], anchor: str, items: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``rec`` with ``items`` placed just before ``anchor`` (or at the end)."""
    out: dict[str, Any] = {}
    for key, value in rec.items():
        if key == anchor:
            out.update(items)
        if key not in items:
            out[key] = value
    out.update((k, v) for k, v in items.items() if k not in out)
    return out


def _succeeded(rec: dict[str, Any]) -> bool:
    return "errorCode" not in rec


def _new_user_name(rng: random.Random) -> str:
    first = rng.choice(("svc", "tmp", "ops", "test", "deploy", "backup", "admin", "support"))
    return f"{first}-{_rand(rng, string.ascii_lowercase + string.digits, rng.randrange(4, 10))}"


@_mutates("CreateUser")
def _create_user(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    name = _new_user_name(rng)
    rec["requestParameters"] = {"path": "/", "userName": name}
    if _succeeded(rec):
        rec["responseElements"] = {
            "user": {
                "path": "/",
                "userName": name,
                "userId": "AIDA" + _rand(rng, _UPPER_ALNUM, 17),
                "arn": f"arn:aws:iam::{acct.id}:user/{name}",
                "createDate": _ct_date(t),
            }
        }


@_mutates("CreateAccessKey")
def _create_access_key(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    name = rng.choice(acct.users).name if rng.random() < 0.8 else _new_user_name(rng)
    rec["requestParameters"] = {"userName": name}
    if _succeeded(rec):
        rec["responseElements"] = {
            "accessKey": {
                "accessKeyId": "AKIA" + _rand(rng, _UPPER_ALNUM, 16),
                "status": "Active",
                "userName": name,
                "createDate": _ct_date(t),
            }
        }


@_mutates("ConsoleLogin")
def _console_login(
    rec: dict[str, Any], rng: random.Random, acct: Account, t: int
) -> dict[str, Any] | None:
    is_user = rec["userIdentity"].get("type") in ("IAMUser", "Root")
    # SSO sign-ins do MFA at the identity provider, so CloudTrail records MFAUsed=No for them.
    mfa = "Yes" if is_user and rng.random() < 0.85 else "No"
    rec["additionalEventData"] = {
        "LoginTo": "https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true",
        "MobileVersion": "No",
        "MFAUsed": mfa,
    }
    if rng.random() < 0.07:
        rec["responseElements"] = {"ConsoleLogin": "Failure"}
        return _insert_before(rec, "requestParameters", {"errorMessage": "Failed authentication"})
    rec["responseElements"] = {"ConsoleLogin": "Success"}
    return None


@_mutates("AuthorizeSecurityGroupIngress")
def _sg_ingress(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    port = rng.choice((443, 443, 80, 22, 5432, 3306, 3389, 8080, 6379))
    cidr = "0.0.0.0/0" if rng.random() < 0.12 else f"10.{rng.randrange(256)}.0.0/16"
    group = "sg-0" + _hex(rng, 16)
    rec["requestParameters"] = {
        "groupId": group,
        "ipPermissions": {
            "items": [
                {
                    "ipProtocol": "tcp",
                    "fromPort": port,
                    "toPort": port,
                    "groups": {},
                    "ipRanges": {"items": [{"cidrIp": cidr}]},
                    "ipv6Ranges": {},
                    "prefixListIds": {},
                }
            ]
        },
    }
    if _succeeded(rec):
        request_id = rec.get("requestID") or _uuid(rng)
        rec["responseElements"] = {
            "requestId": request_id,
            "_return": True,
            "securityGroupRuleSet": {
                "items": [
                    {
                        "groupOwnerId": acct.id,
                        "groupId": group,
                        "securityGroupRuleId": "sgr-0" + _hex(rng, 16),
                        "isEgress": False,
                        "ipProtocol": "tcp",
                        "fromPort": port,
                        "toPort": port,
                        "cidrIpv4": cidr,
                    }
                ]
            },
        }


_INSTANCE_TYPES = (
    ("t3.micro", 20), ("t3.large", 15), ("m5.large", 15), ("m6i.xlarge", 15), ("c6g.2xlarge", 10),
    ("r6i.4xlarge", 6), ("m7i.8xlarge", 4), ("c5.large", 13), ("p4d.24xlarge", 1),
    ("g5.12xlarge", 1),
)  # fmt: skip
_INSTANCE_TYPE_CUM = tuple(itertools.accumulate(w for _, w in _INSTANCE_TYPES))


def _tail_count(rng: random.Random, cap: int) -> int:
    """A heavy-tailed count >= 1: most calls are small, a few are huge."""
    return min(cap, int(rng.paretovariate(1.3)))


def _instance(
    rng: random.Random,
    acct: Account,
    region: str,
    itype: str,
    index: int,
    t: int,
    tags: list[dict[str, str]],
) -> dict[str, Any]:
    ip = f"10.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    dns = f"ip-{ip.replace('.', '-')}.{region}.compute.internal"
    subnet, vpc, sg = "subnet-0" + _hex(rng, 16), "vpc-0" + _hex(rng, 16), "sg-0" + _hex(rng, 16)
    groups = {"items": [{"groupId": sg, "groupName": "eks-cluster-sg-prod"}]}
    return {
        "instanceId": "i-0" + _hex(rng, 16), "imageId": "ami-0" + _hex(rng, 16),
        "currentInstanceBootMode": "legacy-bios", "instanceState": {"code": 0, "name": "pending"},
        "privateDnsName": dns, "amiLaunchIndex": index, "productCodes": {},
        "instanceType": itype, "launchTime": t * 1000,
        "placement": {"availabilityZone": region + "abc"[index % 3], "tenancy": "default"},
        "monitoring": {"state": "disabled"}, "subnetId": subnet, "vpcId": vpc,
        "privateIpAddress": ip, "stateReason": {"code": "pending", "message": "pending"},
        "architecture": "x86_64", "rootDeviceType": "ebs", "rootDeviceName": "/dev/xvda",
        "blockDeviceMapping": {}, "virtualizationType": "hvm", "hypervisor": "xen",
        "tagSet": {"items": tags}, "groupSet": groups, "sourceDestCheck": True,
        "networkInterfaceSet": {"items": [{
            "networkInterfaceId": "eni-0" + _hex(rng, 16), "subnetId": subnet, "vpcId": vpc,
            "ownerId": acct.id, "status": "in-use",
            "macAddress": ":".join(_hex(rng, 2) for _ in range(6)),
            "privateIpAddress": ip, "privateDnsName": dns, "sourceDestCheck": True,
            "interfaceType": "interface", "groupSet": groups,
            "attachment": {"attachmentId": "eni-attach-0" + _hex(rng, 16), "deviceIndex": 0,
                           "networkCardIndex": 0, "status": "attaching",
                           "attachTime": t * 1000, "deleteOnTermination": True},
            "privateIpAddressesSet": {"item": [{"privateIpAddress": ip,
                                                "privateDnsName": dns, "primary": True}]},
            "ipv6AddressesSet": {}, "tagSet": {},
        }]},
        "ebsOptimized": False, "enaSupport": True,
        "cpuOptions": {"coreCount": 1, "threadsPerCore": 2},
        "capacityReservationSpecification": {"capacityReservationPreference": "open"},
        "hibernationOptions": {"configured": False}, "enclaveOptions": {"enabled": False},
        "metadataOptions": {"state": "pending", "httpTokens": "required",
                            "httpPutResponseHopLimit": 2, "httpEndpoint": "enabled",
                            "httpProtocolIpv6": "disabled", "instanceMetadataTags": "disabled"},
        "maintenanceOptions": {"autoRecovery": "default"},
        "privateDnsNameOptions": {"hostnameType": "ip-name", "enableResourceNameDnsARecord": False,
                                  "enableResourceNameDnsAAAARecord": False},
    }  # fmt: skip


@_mutates("RunInstances")
def _run_instances(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    region = rec["awsRegion"]
    itype = rng.choices(_INSTANCE_TYPES, cum_weights=_INSTANCE_TYPE_CUM)[0][0]
    count = _tail_count(rng, 20)
    # Karpenter/ASG launches carry a pile of cluster tags: a big part of real record sizes.
    tags = [
        {"key": k, "value": v}
        for k, v in (
            ("karpenter.sh/nodepool", "default"),
            ("eks:cluster-name", "prod"),
            ("kubernetes.io/cluster/prod", "owned"),
            ("karpenter.k8s.aws/ec2nodeclass", "default"),
            ("Name", f"prod-node-{_hex(rng, 6)}"),
            ("team", rng.choice(("platform", "data", "web"))),
            ("cost-center", f"cc-{rng.randrange(1000, 9999)}"),
        )
    ]
    rec["requestParameters"] = {
        "instancesSet": {
            "items": [{"imageId": "ami-0" + _hex(rng, 16), "minCount": count, "maxCount": count}]
        },
        "userData": "<sensitiveDataRemoved>",
        "instanceType": itype,
        "blockDeviceMapping": {},
        "monitoring": {"enabled": False},
        "disableApiTermination": False,
        "disableApiStop": False,
        "clientToken": _uuid(rng),
        "launchTemplate": {"launchTemplateId": "lt-0" + _hex(rng, 16), "version": "3"},
        "tagSpecificationSet": {"items": [{"resourceType": "instance", "tags": tags}]},
        "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 2},
    }
    if _succeeded(rec):
        rec["responseElements"] = {
            "requestId": rec.get("requestID") or _uuid(rng),
            "reservationId": "r-0" + _hex(rng, 16),
            "ownerId": acct.id,
            "groupSet": {},
            "instancesSet": {
                "items": [_instance(rng, acct, region, itype, i, t, tags) for i in range(count)]
            },
        }


@_mutates("DescribeInstances", "DescribeInstanceStatus")
def _describe_instances(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    if rng.random() < 0.6:
        return
    # Node autoscalers poll the instances they launched by ID, in batches of up to hundreds.
    ids = [{"instanceId": "i-0" + _hex(rng, 16)} for _ in range(_tail_count(rng, 200) * 3)]
    params = dict(rec.get("requestParameters") or {})
    params["instancesSet"] = {"items": ids}
    params.pop("filterSet", None)
    rec["requestParameters"] = params


_ACTIONS = (
    "s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject", "kms:Decrypt",
    "kms:GenerateDataKey", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query",
    "sqs:SendMessage", "sqs:ReceiveMessage", "sns:Publish", "logs:CreateLogStream",
    "logs:PutLogEvents", "ssm:GetParameter", "secretsmanager:GetSecretValue",
    "ec2:DescribeInstances", "ecr:GetAuthorizationToken", "ecr:BatchGetImage",
    "lambda:InvokeFunction", "sts:AssumeRole", "cloudwatch:PutMetricData",
)  # fmt: skip


def _policy_document(
    rng: random.Random, acct: Account, region: str, *, admin: bool, public: bool, bucket: str = ""
) -> dict[str, Any]:
    statements = []
    for i in range(_tail_count(rng, 70)):
        actions = sorted(rng.sample(_ACTIONS, rng.randrange(1, 8)))
        service = actions[0].split(":")[0]
        resources = [
            f"arn:aws:s3:::{bucket}/*"
            if bucket
            else f"arn:aws:{service}:{region}:{acct.id}:"
            f"{rng.choice(('table', 'key', 'queue', 'function'))}/"
            f"{rng.choice(('orders', 'payments', 'users', 'audit'))}-{_hex(rng, 8)}"
            for _ in range(rng.randrange(1, 5))
        ]
        stmt: dict[str, Any] = {
            "Sid": f"Stmt{i}{_hex(rng, 8)}",
            "Effect": "Allow",
            "Action": actions,
            "Resource": resources,
        }
        if bucket:
            stmt["Principal"] = {"AWS": f"arn:aws:iam::{acct.id}:root"}
        if rng.random() < 0.3:
            stmt["Condition"] = {"StringEquals": {"aws:PrincipalOrgID": "o-" + _hex(rng, 10)}}
        statements.append(stmt)
    if admin:
        statements.insert(
            rng.randrange(len(statements) + 1), {"Effect": "Allow", "Action": "*", "Resource": "*"}
        )
    if public:
        statements.append(
            {
                "Sid": "PublicRead",
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


@_mutates("PutRolePolicy", "PutUserPolicy", "CreatePolicy")
def _inline_policy(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    doc = _policy_document(rng, acct, rec["awsRegion"], admin=rng.random() < 0.04, public=False)
    params = dict(rec.get("requestParameters") or {})
    params["policyDocument"] = orjson.dumps(doc).decode()
    if rec["eventName"] == "CreatePolicy":
        params["policyName"] = f"{rng.choice(('app', 'ci', 'data', 'ops'))}-{_hex(rng, 8)}"
    else:
        params["policyName"] = rng.choice(("inline", "s3-access", "kms-use", "runtime"))
    rec["requestParameters"] = params


@_mutates("PutBucketPolicy")
def _bucket_policy(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    bucket = f"{rng.choice(('prod', 'staging', 'logs', 'assets'))}-{acct.id}-{_hex(rng, 6)}"
    doc = _policy_document(
        rng, acct, rec["awsRegion"], admin=False, public=rng.random() < 0.05, bucket=bucket
    )
    rec["requestParameters"] = {
        "bucketPolicy": doc,
        "bucketName": bucket,
        "Host": f"{bucket}.s3.amazonaws.com",
        "policy": "",
    }


@_mutates("CreateRole", "UpdateAssumeRolePolicy")
def _trust_policy(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    if rng.random() < 0.1:
        principal: dict[str, Any] = {"AWS": f"arn:aws:iam::{acct.external_account}:root"}
    else:
        principal = {
            "Service": rng.choice(
                ("ec2.amazonaws.com", "lambda.amazonaws.com", "ecs-tasks.amazonaws.com")
            )
        }
    doc = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
    }
    params = dict(rec.get("requestParameters") or {})
    key = "assumeRolePolicyDocument" if rec["eventName"] == "CreateRole" else "policyDocument"
    params[key] = orjson.dumps(doc).decode()
    rec["requestParameters"] = params


_MANAGED_POLICIES = (
    "AmazonSSMManagedInstanceCore", "ReadOnlyAccess", "AmazonS3ReadOnlyAccess",
    "CloudWatchAgentServerPolicy", "AmazonEKSWorkerNodePolicy", "AWSLambdaBasicExecutionRole",
)  # fmt: skip


@_mutates("AttachRolePolicy", "AttachUserPolicy")
def _attach_policy(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    policy = "AdministratorAccess" if rng.random() < 0.05 else rng.choice(_MANAGED_POLICIES)
    params = dict(rec.get("requestParameters") or {})
    params["policyArn"] = f"arn:aws:iam::aws:policy/{policy}"
    rec["requestParameters"] = params


_PARAMETERS = (
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    "/aws/service/eks/optimized-ami/1.29/amazon-linux-2/recommended/image_id",
    "/prod/orders-api/config", "/prod/orders-api/db_password", "/ci/github/deploy_key",
)  # fmt: skip


@_mutates("GetParameter", "GetParameters")
def _get_parameter(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    decrypt = rng.random() < 0.2
    if rec["eventName"] == "GetParameter":
        rec["requestParameters"] = {"name": rng.choice(_PARAMETERS), "withDecryption": decrypt}
    else:
        names = rng.sample(_PARAMETERS, rng.randrange(1, len(_PARAMETERS)))
        rec["requestParameters"] = {"names": names, "withDecryption": decrypt}


@_mutates("GetSecretValue")
def _get_secret(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    secret = rng.choice(acct.secrets).replace(_REGION_PH, rec["awsRegion"])
    rec["requestParameters"] = {"secretId": secret}


@_mutates("AssumeRole")
def _assume_role(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    if rec["userIdentity"].get("type") == "AWSService":
        return
    # A few sessions hop into a partner account: the classic cross-account pivot signal.
    target = acct.external_account if rng.random() < 0.01 else acct.id
    role = rng.choice(acct.roles).name
    params = dict(rec.get("requestParameters") or {})
    params["roleArn"] = f"arn:aws:iam::{target}:role/{role}"
    params["roleSessionName"] = f"session-{_hex(rng, 12)}"
    rec["requestParameters"] = params


@_mutates("ModifySnapshotAttribute", "ModifyImageAttribute")
def _share_attribute(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    # Sharing with "all" makes the snapshot/AMI public; a specific account is the norm.
    item = {"group": "all"} if rng.random() < 0.1 else {"userId": acct.external_account}
    op = "add" if rng.random() < 0.7 else "remove"
    params = dict(rec.get("requestParameters") or {})
    key = "createVolumePermission" if "snapshotId" in params else "launchPermission"
    params[key] = {op: {"items": [item]}}
    rec["requestParameters"] = params


@_mutates("AddPermission20150331v2")
def _lambda_permission(rec: dict[str, Any], rng: random.Random, acct: Account, t: int) -> None:
    principal = rng.choice(
        (
            "*",
            "events.amazonaws.com",
            "s3.amazonaws.com",
            acct.id,
            "apigateway.amazonaws.com",
            "sns.amazonaws.com",
        )
    )
    params = dict(rec.get("requestParameters") or {})
    params["principal"] = principal
    params["statementId"] = f"sid-{_hex(rng, 8)}"
    rec["requestParameters"] = params


# --------------------------------------------------------------------------------------------
# Errors


def _service_prefix(rec: dict[str, Any]) -> str:
    return rec["eventSource"].split(".", 1)[0]


def _action_name(name: str) -> str:
    # Lambda's CloudTrail names carry API versions ("UpdateFunctionCode20150331v2").
    return name.rstrip("v0123456789") if name[-1:].isdigit() else name


def _error_for(
    rec: dict[str, Any], rng: random.Random, arn: str, throttle: bool
) -> tuple[str, str]:
    prefix = _service_prefix(rec)
    if throttle:
        if prefix == "ec2":
            return "Client.RequestLimitExceeded", "Request limit exceeded."
        return "ThrottlingException", "Rate exceeded"
    if prefix == "ec2":
        return "Client.UnauthorizedOperation", (
            "You are not authorized to perform this operation. Encoded authorization failure "
            "message: " + _rand(rng, _B64URL, rng.randrange(800, 1800))
        )
    if prefix == "s3":
        return "AccessDenied", "Access Denied"
    action = f"{prefix}:{_action_name(rec['eventName'])}"
    message = (
        f"User: {arn} is not authorized to perform: {action} on resource: "
        f"arn:aws:{prefix}:{rec['awsRegion']}:{rec['recipientAccountId']}:* because no "
        f"identity-based policy allows the {action} action"
    )
    code = "AccessDenied" if prefix in ("iam", "sts", "organizations") else "AccessDeniedException"
    return code, message


# --------------------------------------------------------------------------------------------
# Bundle planning and file generation


@dataclass(frozen=True, slots=True)
class FilePlan:
    """What one output file holds: its key, its account/region and its slice of records."""

    index: int
    account: str
    region: str
    start: int
    records: int
    relpath: str


@dataclass(slots=True)
class FileStats:
    """What was written for one file."""

    relpath: str
    records: int
    raw_bytes: int
    gz_bytes: int


@dataclass(slots=True)
class BundleStats:
    """Totals over a generated bundle."""

    out: Path
    files: int
    records: int
    raw_bytes: int
    gz_bytes: int
    seconds: float
    paths: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.files} files, {self.records} records, "
            f"{self.raw_bytes / 1e6:.1f} MB uncompressed, {self.gz_bytes / 1e6:.1f} MB gzipped, "
            f"avg {self.raw_bytes / max(self.records, 1):.0f} B/record, "
            f"{self.seconds:.1f}s -> {self.out}"
        )


def _split_records(rng: random.Random, total: int, files: int) -> list[int]:
    """Split ``total`` over ``files`` unevenly, like busy and quiet account/region streams."""
    weights = [rng.lognormvariate(0.0, 0.5) for _ in range(files)]
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    for i in range(total - sum(counts)):
        counts[i % files] += 1
    return counts


def plan_bundle(files: int, records: int, seed: int) -> tuple[list[FilePlan], list[Account]]:
    """Decide every file's key, account, region, time window and record count."""
    if files < 1 or records < files:
        raise ValueError("need at least one file and at least one record per file")
    rng = random.Random(f"{seed}/plan")
    accounts = [build_account(rng, f"{rng.randrange(10**11, 10**12):012d}") for _ in range(4)]
    account_cum = tuple(itertools.accumulate((50, 25, 15, 10)))
    region_cum = tuple(itertools.accumulate(w for _, w in _REGIONS))
    counts = _split_records(rng, records, files)
    plans = []
    for index, count in enumerate(counts):
        account = rng.choices(accounts, cum_weights=account_cum)[0].id
        region = rng.choices(_REGIONS, cum_weights=region_cum)[0][0]
        start = _BASE_TIME + index * _FILE_WINDOW_S
        stamp = time.gmtime(start + _FILE_WINDOW_S)  # named after delivery, at window end
        name = (
            f"{account}_CloudTrail_{region}_{time.strftime('%Y%m%dT%H%MZ', stamp)}_"
            f"{_rand(rng, _ALNUM, 16)}.json.gz"
        )
        relpath = f"AWSLogs/{account}/CloudTrail/{region}/{time.strftime('%Y/%m/%d', stamp)}/{name}"
        plans.append(FilePlan(index, account, region, start, count, relpath))
    return plans, accounts


@dataclass(frozen=True, slots=True)
class _Context:
    seed: int
    pool: TemplatePool
    tables: dict[str, EventTable]
    accounts: dict[str, Account]
    plans: tuple[FilePlan, ...]
    out: Path


_CTX: _Context | None = None


def _init_worker(ctx: _Context) -> None:
    global _CTX
    _CTX = ctx


_TLS = (("TLSv1.3", "TLS_AES_128_GCM_SHA256"), ("TLSv1.2", "ECDHE-RSA-AES128-GCM-SHA256"))


def _tls_details(rng: random.Random, rec: dict[str, Any]) -> dict[str, str]:
    version, suite = _TLS[rng.random() < 0.3]
    prefix = _service_prefix(rec)
    if rec["eventSource"] in _GLOBAL_SOURCES:
        host = f"{prefix}.amazonaws.com"
    else:
        host = f"{prefix}.{rec['awsRegion']}.amazonaws.com"
    return {"tlsVersion": version, "cipherSuite": suite, "clientProvidedHostHeader": host}


def _choose_principal(rng: random.Random, acct: Account, console: bool) -> Principal:
    r = rng.random()
    if console:
        return acct.root if r < _CONSOLE_ROOT_SHARE else rng.choice(acct.console)
    if r < _ROOT_SHARE:
        return acct.root
    if r < _ROOT_SHARE + _FEDERATED_SHARE:
        return rng.choice(acct.federated)
    if r < _ROOT_SHARE + _FEDERATED_SHARE + _IAM_USER_SHARE:
        return rng.choice(acct.users)
    return rng.choices(acct.roles, cum_weights=acct.role_cum)[0]


def build_records(plan: FilePlan, ctx: _Context) -> list[dict[str, Any]]:
    """Return the records of one file, fully determined by the seed and the plan."""
    rng = random.Random(f"{ctx.seed}/file/{plan.index}")
    acct = ctx.accounts[plan.account]
    table = ctx.tables["global" if plan.region == "us-east-1" else "regional"]
    names = rng.choices(table.names, cum_weights=table.cum, k=plan.records)
    materialized: dict[int, dict[str, Any]] = {}
    ok, failed = ctx.pool.ok, ctx.pool.failed
    records = []
    last_t, last_iso = -1, ""
    for j, name in enumerate(names):
        choices = failed.get(name)
        if choices and rng.random() < _NATIVE_ERROR_RATE:
            tmpl = rng.choice(choices)
        else:
            tmpl = rng.choice(ok[name])
        base = materialized.get(id(tmpl))
        if base is None:
            text = tmpl.text.replace(_ACCOUNT_PH, plan.account).replace(_REGION_PH, plan.region)
            base = materialized[id(tmpl)] = orjson.loads(text)
        rec = dict(base)

        t = plan.start + j * _FILE_WINDOW_S // plan.records
        if t != last_t:
            last_t, last_iso = t, _iso(t)
        rec["eventTime"] = last_iso
        rec["eventID"] = _uuid(rng)
        if tmpl.request_id == "uuid":
            rec["requestID"] = _uuid(rng)
        elif tmpl.request_id == "s3":
            rec["requestID"] = _rand(rng, _UPPER_ALNUM, 16)
        if "sharedEventID" in rec:
            rec["sharedEventID"] = _uuid(rng)

        caller: Principal | None = None
        if tmpl.identity != "keep":
            if name in _SERVICE_FRIENDLY and rng.random() < _SERVICE_CALLER_RATE:
                service = rng.choice(_SERVICE_IDENTITIES)
                rec["userIdentity"] = service
                rec["sourceIPAddress"] = rec["userAgent"] = service["invokedBy"]
            else:
                caller = _choose_principal(rng, acct, tmpl.identity == "console")
                identity = rng.choice(caller.identities)
                if tmpl.service_caller:
                    # A service calling on the principal's behalf (KMS Decrypt for Secrets
                    # Manager...): CloudTrail names that service in the identity.
                    identity = {**identity, "invokedBy": rec["sourceIPAddress"]}
                else:
                    ip = rng.choice(caller.ips)
                    if ip.startswith("10.") and rng.random() < _EXFIL_RATE:
                        ip = _public_ip(rng)
                    rec["sourceIPAddress"] = ip
                    if tmpl.identity == "console":
                        rec["userAgent"] = rng.choice(_AGENTS["browser"])
                    elif rng.random() < _KALI_RATE:
                        rec["userAgent"] = _KALI_AGENT
                    else:
                        rec["userAgent"] = rng.choice(caller.agents)
                    if "tlsDetails" not in rec:
                        # Older templates predate tlsDetails; direct API calls carry it today.
                        rec["tlsDetails"] = _tls_details(rng, rec)
                    if rec["sourceIPAddress"].startswith("10.") and "vpcEndpointId" not in rec:
                        # Callers inside a VPC reach the API through an interface endpoint.
                        rec = _insert_before(
                            rec,
                            "eventCategory",
                            {
                                "vpcEndpointId": acct.vpc_endpoint,
                                "vpcEndpointAccountId": acct.id,
                            },
                        )
                rec["userIdentity"] = identity

        mutate = _MUTATORS.get(name)
        if mutate is not None:
            rec = mutate(rec, rng, acct, t) or rec

        if caller is not None and "errorCode" not in rec and tmpl.identity == "principal":
            r = rng.random()
            throttle = tmpl.read_only and _DENY_RATE <= r < _DENY_RATE + _THROTTLE_RATE
            if r < _DENY_RATE or throttle:
                code, message = _error_for(rec, rng, caller.arn, throttle)
                rec = _insert_before(
                    rec, "requestParameters", {"errorCode": code, "errorMessage": message}
                )
                rec["responseElements"] = None
        records.append(rec)
    return records


def _write_file(index: int) -> FileStats:
    ctx = _CTX
    assert ctx is not None, "worker not initialised"
    plan = ctx.plans[index]
    records = build_records(plan, ctx)
    data = orjson.dumps({"Records": records})
    # mtime=0 and no file name in the header: the bytes depend on the records only.
    compressed = gzip.compress(data, compresslevel=6, mtime=0)
    path = ctx.out / plan.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(compressed)
    os.replace(tmp, path)
    return FileStats(plan.relpath, len(records), len(data), len(compressed))


def read_manifest(out: Path) -> dict[str, Any] | None:
    """Return the manifest of a bundle generated into ``out``, if there is one."""
    try:
        return orjson.loads((out / MANIFEST_NAME).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def bundle_params(files: int, records: int, seed: int) -> dict[str, int]:
    """The parameters that fully determine a bundle's bytes."""
    return {"generator": GENERATOR_VERSION, "files": files, "records": records, "seed": seed}


def generate(
    out: Path,
    files: int = DEFAULT_FILES,
    records: int = DEFAULT_RECORDS,
    seed: int = 1,
    jobs: int | None = None,
    data_dir: Path = DATA_DIR,
) -> BundleStats:
    """Generate a bundle into ``out`` and write its manifest; return what was written."""
    started = time.perf_counter()
    out = Path(out)
    logs = out / "AWSLogs"
    if logs.exists():
        if read_manifest(out) is None:
            raise FileExistsError(f"{logs} exists and is not a generated bundle; not touching it")
        # Ours from an earlier run: stale files with other names would otherwise stay behind.
        shutil.rmtree(logs)
        (out / MANIFEST_NAME).unlink()
    out.mkdir(parents=True, exist_ok=True)

    pool = _template_pool(data_dir)
    plans, accounts = plan_bundle(files, records, seed)
    ctx = _Context(
        seed, pool, build_event_tables(pool), {a.id: a for a in accounts}, tuple(plans), out
    )
    jobs = max(1, min(jobs or os.cpu_count() or 1, files))
    if jobs == 1:
        _init_worker(ctx)
        stats = [_write_file(i) for i in range(files)]
    else:
        # fork: workers inherit the parsed templates instead of re-reading them.
        with multiprocessing.get_context("fork").Pool(jobs, _init_worker, (ctx,)) as workers:
            stats = workers.map(_write_file, range(files), chunksize=1)

    result = BundleStats(
        out=out,
        files=files,
        records=sum(s.records for s in stats),
        raw_bytes=sum(s.raw_bytes for s in stats),
        gz_bytes=sum(s.gz_bytes for s in stats),
        seconds=time.perf_counter() - started,
        paths=[s.relpath for s in stats],
    )
    manifest = {
        **bundle_params(files, records, seed),
        "raw_bytes": result.raw_bytes,
        "gz_bytes": result.gz_bytes,
        "paths": result.paths,
    }
    (out / MANIFEST_NAME).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return result


def default_out(files: int, records: int, seed: int) -> Path:
    """Where bundles go unless told otherwise: never inside the repository."""
    return Path(tempfile.gettempdir()) / "tattletail-bench" / f"f{files}-r{records}-s{seed}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.generate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--files", type=int, default=DEFAULT_FILES)
    parser.add_argument("--records", type=int, default=DEFAULT_RECORDS)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="default: $TMPDIR/tattletail-bench/f*-r*-s*")
    parser.add_argument("--jobs", type=int, help="worker processes (default: CPU count)")
    args = parser.parse_args(argv)
    out = args.out or default_out(args.files, args.records, args.seed)
    try:
        stats = generate(out, args.files, args.records, args.seed, args.jobs)
    except (ValueError, FileExistsError) as exc:
        parser.error(str(exc))
    print(stats.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
