"""Generated worlds beside the pipeline: archives with ground truth, and the evaluation harness.

The pipeline never imports this package; the CLI, the demo, tests and benchmarks do. The
generator is split by concern: ``categories`` (test-domain categories), ``responses`` (HTTP
responses and the generic parts every page shares), ``families`` (blockpage families),
``benign`` (benign kinds), ``variants`` (families and benign habits templates cannot group),
``world`` (countries, vantage points, domains), ``archive`` (measurements and archive
writing) and ``signatures`` (the world's signature files and the
artefact check). ``from quackae import synth; synth.write_archive(...)`` reaches the public API.
"""

from quackae.synth.archive import (
    FORMATS,
    MECHANISMS,
    SCANS,
    V1_CONTROL,
    SynthResult,
    write_archive,
)
from quackae.synth.benign import (
    BANNER_KINDS,
    BENIGN_KINDS,
    BENIGN_PAGES,
    BENIGN_PATTERNS,
    DEFAULT_FALSE_POSITIVE_KINDS,
    DOMAIN_KINDS,
    HOST_KINDS,
    benign_http,
)
from quackae.synth.families import (
    DEFAULT_FINGERPRINTED,
    FAMILIES,
    FAMILY_MECHANISMS,
    VENDORS,
    Family,
    family_page,
)
from quackae.synth.responses import raw_http
from quackae.synth.signatures import (
    GENERIC_FEATURES,
    SKELETON_TOKENS,
    artefact_rates,
    page_features,
    parse_fingerprinted,
    sample_pages,
    write_signatures,
)
from quackae.synth.variants import (
    HABITS,
    VARIANT_BENIGN_PATTERNS,
    VARIANT_FAMILIES,
    VARIANT_KINDS,
    variant_benign,
    variant_page,
)
from quackae.synth.world import COUNTRIES, build_world

__all__ = [
    "BANNER_KINDS",
    "BENIGN_KINDS",
    "BENIGN_PAGES",
    "BENIGN_PATTERNS",
    "COUNTRIES",
    "DEFAULT_FALSE_POSITIVE_KINDS",
    "DEFAULT_FINGERPRINTED",
    "DOMAIN_KINDS",
    "FAMILIES",
    "FAMILY_MECHANISMS",
    "FORMATS",
    "GENERIC_FEATURES",
    "HABITS",
    "HOST_KINDS",
    "MECHANISMS",
    "SCANS",
    "SKELETON_TOKENS",
    "V1_CONTROL",
    "VARIANT_BENIGN_PATTERNS",
    "VARIANT_FAMILIES",
    "VARIANT_KINDS",
    "VENDORS",
    "Family",
    "SynthResult",
    "artefact_rates",
    "benign_http",
    "build_world",
    "family_page",
    "page_features",
    "parse_fingerprinted",
    "raw_http",
    "sample_pages",
    "variant_benign",
    "variant_page",
    "write_archive",
    "write_signatures",
]
