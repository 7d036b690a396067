"""API tokens: hashed at rest, verified, re-read when the file changes, revoked."""

from __future__ import annotations

import stat

import orjson
import pytest
from typer.testing import CliRunner

from choreo.cli import app
from events.errors import ChoreoError
from events.settings import Settings
from projections.tokens import (
    SESSION_KEY_FILE,
    ApiSettings,
    Principal,
    TokenFile,
    TokenStore,
    new_token,
)


def test_a_token_is_stored_only_as_its_hash(tmp_path):
    file = TokenFile(tmp_path / "tokens.json")
    token, record = file.create("ann", "operator")
    text = file.path.read_text()
    assert token.startswith(f"choreo_{record.id}_")
    assert token not in text
    assert token.split("_", 2)[2] not in text
    assert orjson.loads(text)["tokens"][0]["hash"].startswith("$argon2id$")
    assert stat.S_IMODE(file.path.stat().st_mode) == 0o600


def test_the_store_verifies_and_follows_the_file(tmp_path):
    file = TokenFile(tmp_path / "tokens.json")
    configured_token, configured = new_token("env", "viewer")
    store = TokenStore([configured], file)
    assert store.authenticate(configured_token) == Principal(
        token_id=configured.id, name="env", role="viewer"
    )
    token, record = file.create("ann", "operator")
    assert store.authenticate(token) is not None  # the new file is read at once
    assert store.authenticate(token) is not None  # and the verified token remembered
    for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"), "choreo_x", "", "Bearer x"):
        assert store.authenticate(wrong) is None
    file.revoke(record.id)
    assert store.authenticate(token) is None
    assert store.principal(record.id) is None
    with pytest.raises(ChoreoError, match="no token"):
        file.revoke(record.id)


def test_roles_rank():
    operator = Principal(token_id="a", name="a", role="operator")
    viewer = Principal(token_id="v", name="v", role="viewer")
    assert operator.may("viewer")
    assert operator.may("operator")
    assert viewer.may("viewer")
    assert not viewer.may("operator")


def test_cli_creates_lists_and_revokes(tmp_path):
    env = {"CHOREO_API_TOKENS_FILE": str(tmp_path / "t.json")}
    runner = CliRunner()
    created = runner.invoke(
        app, ["tokens", "create", "--role", "operator", "--name", "local"], env=env
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[0]
    assert token.startswith("choreo_")
    again = runner.invoke(
        app,
        ["tokens", "create", "--role", "operator", "--name", "local", "--unless-exists"],
        env=env,
    )
    assert again.exit_code == 0
    assert "choreo_" not in again.stdout
    listed = runner.invoke(app, ["tokens", "list", "--json"], env=env)
    records = orjson.loads(listed.stdout)
    assert [(r["name"], r["role"]) for r in records] == [("local", "operator")]
    assert "hash" not in records[0]
    assert token not in listed.stdout
    assert runner.invoke(app, ["tokens", "revoke", records[0]["id"]], env=env).exit_code == 0
    assert orjson.loads(runner.invoke(app, ["tokens", "list", "--json"], env=env).stdout) == []
    bad = runner.invoke(app, ["tokens", "create", "--role", "admin"], env=env)
    assert bad.exit_code != 0


def test_the_session_key_is_kept_in_the_state_dir_unless_configured(tmp_path, monkeypatch):
    # A key drawn per API start signed every console user out at each restart.
    monkeypatch.delenv("CHOREO_API_SESSION_SECRET", raising=False)
    settings = Settings(state_dir=tmp_path)
    first = ApiSettings().session_key(settings)
    assert ApiSettings().session_key(settings) == first  # the next start's
    assert len(first) == 64
    assert stat.S_IMODE((tmp_path / SESSION_KEY_FILE).stat().st_mode) == 0o600
    assert ApiSettings().session_key(Settings(state_dir=tmp_path / "other")) != first
    configured = ApiSettings(session_secret="from-the-environment")
    assert configured.session_key(settings) == "from-the-environment"


def test_cli_scopes_an_operator_to_saga_types(tmp_path):
    env = {"CHOREO_API_TOKENS_FILE": str(tmp_path / "t.json"), "COLUMNS": "120"}
    runner = CliRunner()
    args = ["tokens", "create", "--role", "operator", "--name", "ann"]
    created = runner.invoke(app, [*args, "--saga-type", "return", "--saga-type", "return"], env=env)
    assert created.exit_code == 0, created.output
    assert "answering return sagas only" in created.stderr
    records = orjson.loads(runner.invoke(app, ["tokens", "list", "--json"], env=env).stdout)
    assert records[0]["saga_types"] == ["return"]
    assert "return" in runner.invoke(app, ["tokens", "list"], env=env).stdout
    unknown = runner.invoke(app, [*args, "--saga-type", "trip"], env=env)
    assert unknown.exit_code == 1
    assert "no saga type trip; known: order, return" in unknown.output
    viewer = runner.invoke(
        app, ["tokens", "create", "--role", "viewer", "--saga-type", "order"], env=env
    )
    assert viewer.exit_code == 1
    assert "a viewer answers nothing" in viewer.output


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"{not json", "not a token file: "),
        (b"[]", 'not a token file: expected {"tokens": [...]}'),
        (b'{"tokens": {}}', 'not a token file: expected {"tokens": [...]}'),
        (b'{"tokens": [{"id": "x", "name": "n", "role": "viewer"}]}', "token record 0: hash: "),
    ],
)
def test_a_token_file_of_another_shape_says_why(tmp_path, content: bytes, said: str):
    path = tmp_path / "tokens.json"
    path.write_bytes(content)
    with pytest.raises(ChoreoError, match="^" + str(path).replace(".", r"\.")) as raised:
        TokenFile(path).read()
    assert said in str(raised.value)
    # The CLI prints it as an error line, no traceback.
    env = {"COLUMNS": "200", "CHOREO_API_TOKENS_FILE": str(path)}
    result = CliRunner().invoke(app, ["tokens", "list"], env=env)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # an exit, not an error raised through
    assert said in result.output
