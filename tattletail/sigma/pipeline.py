"""The processing pipeline every Sigma conversion runs: CloudTrail's field names.

Sigma rules for CloudTrail name the record's own JSON keys (`eventName`, `userIdentity.arn`,
`requestParameters.bucketName`), so nothing a rule spells right is renamed. Before conversion:

- a rule whose `logsource` is not `product: aws` is refused (any `service` is accepted:
  CloudTrail records every AWS API call, whatever service a rule names);
- each field is spelled the way CloudTrail does, ignoring case (`EventName` -> `eventName`,
  `useridentity.ARN` -> `userIdentity.arn`, see tattletail.sigma.fields); keys below the
  service-specific parts of a record (`requestParameters`, ...) are the service's own and kept.
"""

from __future__ import annotations

from sigma.processing.conditions import LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations.base import FieldMappingTransformationBase
from sigma.processing.transformations.failure import RuleFailureTransformation

from tattletail.sigma.fields import canonical_field


class CloudTrailFieldNames(FieldMappingTransformationBase):
    """Spell each field as CloudTrail does (see `canonical_field`)."""

    def apply_field_name(self, field: str | None) -> str | None:
        if field is None:
            return None
        spelled = canonical_field(field)
        return spelled if spelled != field else None


def cloudtrail_pipeline() -> ProcessingPipeline:
    """The pipeline every conversion runs (the backend's own, before any user pipeline)."""
    return ProcessingPipeline(
        name="Tattletail: AWS CloudTrail",
        priority=10,
        items=[
            ProcessingItem(
                identifier="tattletail_aws_only",
                transformation=RuleFailureTransformation(
                    "logsource is not AWS (product: aws): Tattletail reads CloudTrail records only"
                ),
                rule_conditions=[LogsourceCondition(product="aws")],
                rule_condition_negation=True,
            ),
            ProcessingItem(
                identifier="tattletail_cloudtrail_field_names",
                transformation=CloudTrailFieldNames(),
            ),
        ],
    )
