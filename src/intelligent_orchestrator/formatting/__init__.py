"""Channel formatting: a deliverable as a blog post, social post, thread, e-mail or report.

Also the files each variant is published as, and checks of a variant's limits (which apply
to a person's edit too). Pure: no network, no model calls; only ``render_artifacts`` writes.
"""

from ._channels import format_variant, variant_problems
from ._edit import EDITABLE_FIELDS, apply_edit
from ._model import CHANNEL_LIMITS, ChannelFamily, Content, Metadata, channel_family
from ._render import render_artifacts

__all__ = [
    "CHANNEL_LIMITS",
    "EDITABLE_FIELDS",
    "ChannelFamily",
    "Content",
    "Metadata",
    "apply_edit",
    "channel_family",
    "format_variant",
    "render_artifacts",
    "variant_problems",
]
