"""CloudTrail's record schema, as Sigma field names see it.

`canonical_field` spells a field the way CloudTrail does (case ignored: JSON keys are
case-sensitive, so `EventName` would never match), keeping free-form keys as written;
`known_field` says whether a record can hold a field at all (`sigma check` warns about the
others, such as `status`); `walks_arrays` says which fields a dotted name reaches through arrays
(see docs/sigma.md, "Field names"). No pySigma here: the jq writer and the checks share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

# Anything below this key is the service's own (free-form JSON).
FREE_FORM: Final = "*"

_SESSION_ISSUER = dict.fromkeys(("type", "principalId", "arn", "accountId", "userName"))
_USER_IDENTITY: dict[str, Any] = {
    **dict.fromkeys(
        (
            "type",
            "principalId",
            "arn",
            "accountId",
            "accessKeyId",
            "userName",
            "invokedBy",
            "identityProvider",
            "credentialId",
        )
    ),
    "sessionContext": {
        "attributes": dict.fromkeys(("creationDate", "mfaAuthenticated")),
        "sessionIssuer": _SESSION_ISSUER,
        "webIdFederationData": {"federatedProvider": None, "attributes": FREE_FORM},
        "sourceIdentity": None,
        "ec2RoleDelivery": None,
        "ec2IssuedInVPC": None,
        "assumedRoot": None,
    },
    "onBehalfOf": dict.fromkeys(("userId", "identityStoreArn")),
    "inScopeOf": dict.fromkeys(("sourceArn", "sourceAccount", "issuerType", "credentialsIssuedTo")),
}

# The CloudTrail record, as documented ("CloudTrail record contents") and as the real logs in
# ../shared/data write it: None is a scalar, a dict an object with known keys.
CLOUDTRAIL_RECORD: Final[Mapping[str, Any]] = {
    **dict.fromkeys(
        (
            "eventVersion",
            "eventTime",
            "eventSource",
            "eventName",
            "awsRegion",
            "sourceIPAddress",
            "userAgent",
            "errorCode",
            "errorMessage",
            "requestID",
            "eventID",
            "eventType",
            "apiVersion",
            "managementEvent",
            "readOnly",
            "recipientAccountId",
            "sharedEventID",
            "vpcEndpointId",
            "vpcEndpointAccountId",
            "eventCategory",
            "sessionCredentialFromConsole",
        )
    ),
    "userIdentity": _USER_IDENTITY,
    "tlsDetails": dict.fromkeys(("tlsVersion", "cipherSuite", "clientProvidedHostHeader")),
    "resources": dict.fromkeys(("ARN", "accountId", "type")),
    "addendum": dict.fromkeys(("reason", "updatedFields", "originalRequestID", "originalEventID")),
    **dict.fromkeys(
        (
            "requestParameters",
            "responseElements",
            "additionalEventData",
            "serviceEventDetails",
            "edgeDeviceDetails",
            "insightDetails",
        ),
        FREE_FORM,
    ),
}

# Objects every record holds as objects: a dotted name does not walk arrays inside them, so the
# index reads `userIdentity.type` as one path (see tattletail.rule_index.INDEX_PATHS).
FIXED_OBJECTS: Final = frozenset({"userIdentity", "tlsDetails"})


def split_field(name: str) -> tuple[str, ...]:
    """A Sigma field name as the keys it walks: `userIdentity.arn` -> ("userIdentity", "arn")."""
    return tuple(name.split("."))


def canonical_field(name: str) -> str:
    """`name` with every key CloudTrail defines spelled as CloudTrail does (case ignored);
    free-form keys and keys CloudTrail does not know are kept as written."""
    keys = list(split_field(name))
    schema: Any = CLOUDTRAIL_RECORD
    for position, key in enumerate(keys):
        if not isinstance(schema, Mapping):
            break
        spelled = _lookup(schema, key)
        if spelled is None:
            break
        keys[position] = spelled
        schema = schema[spelled]
    return ".".join(keys)


def known_field(path: tuple[str, ...]) -> bool:
    """Whether a CloudTrail record can hold this path (free-form parts hold anything)."""
    schema: Any = CLOUDTRAIL_RECORD
    for key in path:
        if schema == FREE_FORM:
            return True
        if not isinstance(schema, Mapping) or key not in schema:
            return False
        schema = schema[key]
    return True


def walks_arrays(path: tuple[str, ...]) -> bool:
    """Whether a dotted name walks through arrays on its way (every element), as it does in
    the service-specific parts of a record; not inside userIdentity and tlsDetails."""
    return path[0] not in FIXED_OBJECTS


def _lookup(schema: Mapping[str, Any], key: str) -> str | None:
    if key in schema:
        return key
    folded = key.casefold()
    matches = [known for known in schema if known.casefold() == folded]
    return matches[0] if len(matches) == 1 else None
