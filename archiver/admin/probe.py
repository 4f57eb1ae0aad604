"""The delete probe: the one delete genarc sends with the backup key, and what its answer means.

``genarc doctor`` asks whether the backup key can delete by sending DeleteObject for a
random key under a job's prefix that was never written. No data can be touched by it:
the key does not exist. S3 answers 204 when the key may delete (on a versioned bucket
this leaves a delete marker on a name nothing else uses, under the job's prefix, where
the job's lifecycle rule removes it) and AccessDenied when it may not. It lives in the admin package, apart from the client Store, which has no delete.
"""

from __future__ import annotations

import secrets
from typing import Any


def s3_delete_probe(client: Any, bucket: str, prefix: str) -> bool:
    """True when the key can delete; raises PermissionDenied (it cannot) or another StoreError (inconclusive)."""
    from ..store.s3 import translate

    key = f"{prefix}genarc-delete-probe-{secrets.token_hex(12)}"
    try:
        client.delete_object(Bucket=bucket, Key=key)  # a key that was never written: nothing to lose
    except Exception as exc:
        raise translate(exc, "delete probe") from exc
    return True
