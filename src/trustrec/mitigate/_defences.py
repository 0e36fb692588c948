"""Re-export shim: the fake-user detector lives in :mod:`trustrec.mitigate.defences.detection`."""

from trustrec.mitigate.defences.detection import (
    FakeUserDetector,
    FakeUserDetectorConfig,
    detection_scores,
    user_profile_features,
)

__all__ = ["FakeUserDetector", "FakeUserDetectorConfig", "detection_scores", "user_profile_features"]
