"""Webhook secrets are encrypted at rest (Fernet, key from VIGIL_SECRET_KEY / VIGIL_SECRET_KEY_FILE, or a
key file a single server makes itself); the migration encrypts secrets stored before; a missing, malformed
or wrong key is one line when the server starts."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.config import Config
from cryptography.fernet import Fernet
from e2e.kit import vigil_cli
from sqlalchemy import create_engine, text

from vigil.errors import VigilError
from vigil.model import AgentSpace
from vigil.store.crypto import sealer_from_env
from vigil.store.state import MIGRATIONS, StateStore

SECRET = "whsec-do-not-leak-0123456789"


def _raw(url: str) -> str:
    eng = create_engine(url)
    with eng.connect() as c:
        value = c.execute(text("SELECT secret FROM integrations")).scalar_one()
    eng.dispose()
    return value


def test_a_stored_secret_is_encrypted_and_opens_with_the_key(database_url, monkeypatch, tmp_path):
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("VIGIL_SECRET_KEY", key)
    st = StateStore(database_url)
    st.put_space(AgentSpace(id="shop", name="shop"))
    st.put_integration("shop", "generic", {}, SECRET)
    raw = _raw(database_url)
    assert raw.startswith("fernet:") and SECRET not in raw
    assert Fernet(key.encode()).decrypt(raw.removeprefix("fernet:").encode()).decode() == SECRET
    assert st.get_integration("shop", "generic") == ({}, SECRET)
    st.close()
    # a rotated key: the new one first, the old one after it still opens what the old one sealed
    monkeypatch.setenv("VIGIL_SECRET_KEY", f"{Fernet.generate_key().decode()},{key}")
    st = StateStore(database_url)
    assert st.get_integration("shop", "generic") == ({}, SECRET)
    st.close()
    # another key does not open it: one line, and the secret is not in it
    monkeypatch.setenv("VIGIL_SECRET_KEY", Fernet.generate_key().decode())
    st = StateStore(database_url)
    with pytest.raises(VigilError) as exc:
        st.check_secret_key()
    assert "does not open" in str(exc.value) and "\n" not in str(exc.value) and SECRET not in str(exc.value)
    st.close()


def test_the_migration_encrypts_secrets_stored_before(database_url, monkeypatch):
    eng = create_engine(database_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005_scaleout")
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO spaces (id, name, description, config, created_at) "
                          "VALUES ('shop', 'shop', '', '{}', CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO integrations (space_id, kind, config, secret, updated_at) "
                          "VALUES ('shop', 'generic', '{}', :s, CURRENT_TIMESTAMP)"), {"s": SECRET})
    eng.dispose()
    assert _raw(database_url) == SECRET                 # in clear, as it was stored before
    monkeypatch.setenv("VIGIL_SECRET_KEY", Fernet.generate_key().decode())
    st = StateStore(database_url)                       # migrates to head
    raw = _raw(database_url)
    assert raw.startswith("fernet:") and SECRET not in raw
    assert st.get_integration("shop", "generic") == ({}, SECRET)
    st.close()


def test_without_a_key_a_single_server_makes_its_own_key_file(vigil_home, monkeypatch):
    monkeypatch.delenv("VIGIL_SECRET_KEY", raising=False)
    monkeypatch.delenv("VIGIL_SECRET_KEY_FILE", raising=False)
    monkeypatch.delenv("VIGIL_BROKER_URL", raising=False)
    url = f"sqlite:///{vigil_home / 'state.db'}"
    st = StateStore(url)
    st.put_space(AgentSpace(id="shop", name="shop"))
    st.put_integration("shop", "generic", {}, SECRET)
    key_file = vigil_home / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert _raw(url).startswith("fernet:")
    st.close()
    st = StateStore(url)
    assert st.get_integration("shop", "generic") == ({}, SECRET)
    st.close()


def test_serve_with_a_missing_malformed_or_wrong_key_is_one_line(tmp_path):
    home = tmp_path / "home"
    key = Fernet.generate_key().decode()
    base = {"VIGIL_SECRET_KEY": key, "VIGIL_BROKER_URL": ""}
    assert vigil_cli("space", "create", "shop", home=home, env=base).returncode == 0
    env_st = {"VIGIL_HOME": str(home)}
    mp = pytest.MonkeyPatch()
    try:
        for k, v in {**env_st, **base}.items():
            mp.setenv(k, v)
        mp.delenv("VIGIL_DATABASE_URL", raising=False)
        st = StateStore(f"sqlite:///{home / 'state.db'}")
        st.put_integration("shop", "generic", {}, SECRET)
        st.close()
    finally:
        mp.undo()
    cases = {
        "does not open": {"VIGIL_SECRET_KEY": Fernet.generate_key().decode()},
        "is not a Fernet key": {"VIGIL_SECRET_KEY": "not-a-key"},
        "cannot read VIGIL_SECRET_KEY_FILE": {"VIGIL_SECRET_KEY": "", "VIGIL_SECRET_KEY_FILE": str(tmp_path / "nope")},
    }
    for expect, env in cases.items():
        p = vigil_cli("serve", "--port", "1", home=home, env={**base, **env})
        assert p.returncode == 2, (expect, p.stderr)
        assert expect in p.stderr and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert SECRET not in p.stderr and key not in p.stderr
    (tmp_path / "key").write_text(key + "\n")
    sealer = sealer_from_env({"VIGIL_SECRET_KEY_FILE": str(tmp_path / "key")})
    assert sealer.open(_raw(f"sqlite:///{home / 'state.db'}")) == SECRET


def test_scale_out_needs_the_key_given():
    with pytest.raises(VigilError) as exc:
        sealer_from_env({"VIGIL_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//", "VIGIL_HOME": "/nonexistent"})
    assert "VIGIL_SECRET_KEY" in str(exc.value) and "\n" not in str(exc.value)
