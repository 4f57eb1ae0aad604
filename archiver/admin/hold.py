"""Legal holds, with admin credentials: keep a job, a generation or a point past its lock and its lifecycle.

A legal hold keeps an object version until it is released, whatever its retain-until date
and whatever the lifecycle rule says. The backup key may neither set nor release one (the
generated policy denies `s3:PutObjectLegalHold`; a B2 backup key lacks `writeFileLegalHolds`),
so holding clean data is an action an attacker on the backup machine cannot undo.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..errors import ConfigError


def set_holds(url: str, options: Any, admin_profile: str | None, env: Mapping[str, str],
              versions: Iterable[tuple[str, str | None]], on: bool) -> int:
    """Set (or release) the legal hold of each (key, version) under the repository; returns how many."""
    from ..store import split_bucket_url

    scheme = url.split("://", 1)[0] if "://" in url else "file"
    if scheme not in ("s3", "b2"):
        raise ConfigError("A local repository has no legal holds.")
    bucket, prefix = split_bucket_url(url)
    base = f"{prefix}/" if prefix else ""
    targets = sorted(set(versions), key=lambda v: (v[0], v[1] or ""))
    if scheme == "s3":
        from ..store.s3 import translate
        from .lifecycle import _s3_admin_client

        client = _s3_admin_client(options, admin_profile, env, "genarc hold")
        for key, version_id in targets:
            try:
                client.put_object_legal_hold(Bucket=bucket, Key=base + key, LegalHold={"Status": "ON" if on else "OFF"},
                                             ChecksumAlgorithm="SHA256",
                                             **({"VersionId": version_id} if version_id else {}))
            except Exception as exc:
                raise translate(exc, f"Setting the legal hold of {key}") from exc
        return len(targets)
    from b2sdk.v2 import LegalHold

    from ..store.b2 import make_api, translate as b2_translate

    key_id, app_key = env.get("GENARC_ADMIN_B2_APPLICATION_KEY_ID"), env.get("GENARC_ADMIN_B2_APPLICATION_KEY")
    if not key_id or not app_key:
        raise ConfigError("genarc hold needs GENARC_ADMIN_B2_APPLICATION_KEY_ID and GENARC_ADMIN_B2_APPLICATION_KEY "
                          "(a key with writeFileLegalHolds); the backup key must not be able to do this.")
    api = make_api(key_id, app_key)
    for key, version_id in targets:
        try:
            api.update_file_legal_hold(version_id, base + key, LegalHold.ON if on else LegalHold.OFF)
        except Exception as exc:
            raise b2_translate(exc, f"Setting the legal hold of {key}") from exc
    return len(targets)
