"""Sigma rules as Tattletail rules: a pySigma backend that writes jq for the native fast path.

`tattletail sigma convert` and `tattletail sigma check` (see `tattletail.sigma.cli`) read Sigma
YAML with pySigma, run it through a processing pipeline for CloudTrail's field names
(`pipeline`), convert each rule's condition to jq with `JqBackend` (`backend`, built on the jq
snippets in `jqtext` and the CIDR patterns in `cidr`), flag what converts but will not do what
its author meant (`checks`), and write `[[rule]]` tables (`convert`).

pySigma is an optional dependency (`pip install 'tattletail[sigma]'`): the Lambda function only
ever runs the converted jq, so its image does not carry it.
"""

from __future__ import annotations

import importlib.util


class SigmaUnavailable(RuntimeError):
    """pySigma is not installed."""


def require_pysigma() -> None:
    """Raise SigmaUnavailable, with the command that installs it, when pySigma is missing."""
    if importlib.util.find_spec("sigma") is None:
        raise SigmaUnavailable(
            "tattletail sigma needs pySigma, which is not installed: "
            "pip install 'tattletail[sigma]' (or: pip install 'pysigma>=2,<3')"
        )
