"""Optional bearer-token check, as a multi-user KFP behind an authenticating proxy enforces it.

With ``--token-file`` every request (``/_admin`` included) needs ``authorization: Bearer <token>``
where ``<token>`` equals the file's current content, stripped. The file is re-read on every request
so a rotated token (e.g. a projected service-account token) takes effect at once. Tokens never
appear in error messages or logs.
"""

from __future__ import annotations

import hmac
from pathlib import Path


class TokenCheck:
    """:param token_file: the file holding the expected token, or None for no authentication."""

    def __init__(self, token_file: Path | None) -> None:
        self.token_file = token_file

    @property
    def enabled(self) -> bool:
        return self.token_file is not None

    def problem(self, authorization: str | None) -> str | None:
        """None when the request may pass, else a message saying what to send instead."""
        if self.token_file is None:
            return None
        try:
            expected = self.token_file.read_text().strip()
        except OSError:
            return f"the server's token file {self.token_file} cannot be read; recreate it"
        if not expected:
            return f"the server's token file {self.token_file} is empty; write the expected token into it"
        if not authorization:
            return (
                "request has no 'authorization: Bearer <token>' header; pass existing_token= or "
                "credentials=ServiceAccountTokenVolumeCredentials(path) to kfp.Client"
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "the authorization header must be 'Bearer <token>'"
        if not hmac.compare_digest(token.strip().encode(), expected.encode()):
            return "the bearer token is not valid (it may have been rotated); send the current token"
        return None
