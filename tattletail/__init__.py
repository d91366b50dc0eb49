"""Tattletail: CloudTrail alerting. The pipeline is envelope -> object -> records -> rules ->
alerts -> destinations, one module per stage."""

__version__ = "0.1.0"
