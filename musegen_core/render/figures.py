"""What every MuseGen figure shares: plotly's "plotly_white" look, as plotly's default template.

Given per figure (`update_layout(template="plotly_white")`), a template is validated again on every figure: 10–20 ms
of CPU holding the interpreter lock, most of a piano roll's cost — sampling the server under 30 sessions found 17%
of its busy time there. Plotly applies its default template unvalidated (it is validated once), so each plotting
module calls `use_musegen_look()` at import and creates its figures without naming a template.
"""

from __future__ import annotations

import plotly.io as pio

TEMPLATE = "plotly_white"


def use_musegen_look() -> None:
    """Make `TEMPLATE` plotly's default template (idempotent; every figure made after this call has it)."""
    pio.templates.default = TEMPLATE
