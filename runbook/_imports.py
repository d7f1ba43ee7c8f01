"""Import-time costs the runbook does not pay.

jsonschema (imported by nbformat, papermill and nbconvert) checks the "iri" and "iri-reference" formats with
``rfc3987_syntax``, which builds a Lark grammar when it is imported: about 3 s of every run (python-jsonschema
issue 1392). No schema the runbook validates (its record schema, nbformat's notebook schemas) declares those
formats, and neither passes a format checker, so the checker is left out: :func:`skip_iri_grammar` makes
that import fail the way a missing optional package does, which jsonschema handles by not registering it.
"""
from __future__ import annotations

import sys


def skip_iri_grammar() -> None:
    """Call before jsonschema is first imported in this process (a no-op after)."""
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]
