"""Where the workflows' bot JWT comes from: the token given, or the ingestion bot's, read as the
basic-auth admin (as the chart's ingestion Job does), against the OpenMetadata stand-in (in-process,
loopback; not OpenMetadata, see its docstring)."""

from __future__ import annotations

import pytest

from retailflow_pipeline import governance
from support.openmetadata_standin import OpenMetadataStandIn


@pytest.fixture
def standin():
    with OpenMetadataStandIn() as server:
        yield server


def test_a_given_token_is_used_without_asking_the_server(standin):
    env = {"RETAILFLOW_OPENMETADATA_URL": standin.url, "RETAILFLOW_OPENMETADATA_TOKEN": "given.jwt",
           "RETAILFLOW_OPENMETADATA_ADMIN_PASSWORD": standin.admin_password}
    assert governance.bot_token(env) == "given.jwt"
    assert standin.requests == []


def test_the_admin_password_gets_the_ingestion_bots_jwt(standin):
    env = {"RETAILFLOW_OPENMETADATA_URL": standin.url.removesuffix("/api"),
           "RETAILFLOW_OPENMETADATA_ADMIN_PASSWORD": standin.admin_password}
    assert governance.bot_token(env) == standin.bot_jwt
    assert [(r.method, r.path, r.status) for r in standin.requests] == [
        ("POST", "/api/v1/users/login", 200), ("GET", "/api/v1/users/name/ingestion-bot", 200)]
    # the password went base64-encoded, and no record keeps it
    assert standin.requests[0].body["password"] == "<redacted>"
    assert governance.workflow_env(env, governance.bot_token(env))["OPENMETADATA_JWT_TOKEN"] == standin.bot_jwt


def test_a_wrong_admin_password_is_a_clear_error(standin):
    env = {"RETAILFLOW_OPENMETADATA_URL": standin.url, "RETAILFLOW_OPENMETADATA_ADMIN_PASSWORD": "not-it"}
    with pytest.raises(ValueError, match="admin login was refused.*HTTP 401"):
        governance.bot_token(env)


def test_a_server_that_does_not_answer_is_a_clear_error():
    env = {"RETAILFLOW_OPENMETADATA_URL": "http://127.0.0.1:9", "RETAILFLOW_OPENMETADATA_ADMIN_PASSWORD": "x"}
    with pytest.raises(ValueError, match="does not answer"):
        governance.bot_token(env, timeout=5)
