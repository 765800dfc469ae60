"""Secrets at rest: the webhook secrets a space's admin stores (``integrations.secret``) are encrypted
with Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) before they reach the state database.

The key: ``VIGIL_SECRET_KEY`` (a Fernet key; several separated by commas to rotate: the first encrypts,
any opens) or ``VIGIL_SECRET_KEY_FILE`` (a file holding that). With neither, a single server makes
``$VIGIL_HOME/secret.key`` (mode 0600) once and uses it, so the zero-configuration default keeps working;
scale-out mode (``VIGIL_BROKER_URL``) needs the key given, the same on every replica and worker.
A stored value is ``fernet:<token>``; a value without the prefix is a secret stored before encryption
(the 0006 migration encrypts those). A key that is missing, malformed or does not open the stored
secrets is a one-line error when the server starts."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from vigil.errors import VigilError

PREFIX = "fernet:"
HOW = 'make one with: python3 -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'


class Sealer:
    def __init__(self, keys: list[str], origin: str = "VIGIL_SECRET_KEY") -> None:
        self.origin = origin
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except (ValueError, TypeError):
            raise VigilError(f"{origin} is not a Fernet key (32 url-safe base64-encoded bytes); {HOW}") from None

    def seal(self, plain: str) -> str:
        return PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def open(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored               # stored before secrets were encrypted
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise VigilError(f"the key from {self.origin} does not open the secrets stored in the state database "
                             "(a different key? keep the old one after the new: NEW,OLD)") from None


def sealed(value: str | None) -> bool:
    return bool(value) and str(value).startswith(PREFIX)


def sealer_from_env(env: dict[str, str] | None = None) -> Sealer:
    env = dict(os.environ if env is None else env)
    raw, path = env.get("VIGIL_SECRET_KEY", "").strip(), env.get("VIGIL_SECRET_KEY_FILE", "").strip()
    if raw and path:
        raise VigilError("set VIGIL_SECRET_KEY or VIGIL_SECRET_KEY_FILE, not both")
    origin = "VIGIL_SECRET_KEY"
    if path:
        origin = f"VIGIL_SECRET_KEY_FILE ({path})"
        try:
            raw = Path(path).read_text().strip()
        except OSError as exc:
            raise VigilError(f"cannot read VIGIL_SECRET_KEY_FILE {path}: {exc.strerror or type(exc).__name__}") from None
        if not raw:
            raise VigilError(f"VIGIL_SECRET_KEY_FILE {path} is empty; {HOW}")
    if not raw:
        if env.get("VIGIL_BROKER_URL", "").strip():
            raise VigilError("scale-out mode (VIGIL_BROKER_URL) needs VIGIL_SECRET_KEY or VIGIL_SECRET_KEY_FILE, the "
                             f"same on every server and worker, to encrypt stored secrets; {HOW}")
        home = Path(env.get("VIGIL_HOME") or Path.home() / ".vigil").expanduser()
        key_file = home / "secret.key"
        origin = str(key_file)
        if not key_file.exists():
            home.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(Fernet.generate_key().decode() + "\n")
            except FileExistsError:     # another process made it just now
                pass
        for _ in range(50):
            raw = key_file.read_text().strip()
            if raw:
                break
            time.sleep(0.02)            # being written by that other process
    return Sealer([k.strip() for k in raw.split(",") if k.strip()], origin)
