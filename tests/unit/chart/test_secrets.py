"""templates/secrets.yaml: every password generated into a Secret (or the user's), none inline."""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from support.helm_render import HELM, NAMESPACE, RELEASE, UMBRELLA, VARIANTS, _sandbox, airflow_extra_env, containers, render

PASSWORD_ENV = re.compile(r"(PASSWORD|PWD|PASS|SECRET|SECRET_KEY|SECRET_ACCESS_KEY|TOKEN)$", re.IGNORECASE)
GENERATED = ["retailflow-mysql", "retailflow-postgresql", "retailflow-lake", "retailflow-airflow-admin",
             "retailflow-airflow-metadata", "retailflow-superset-env", "retailflow-openmetadata"]


def secret_data(doc: dict) -> dict[str, str]:
    data = dict(doc.get("stringData") or {})
    data.update({k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()})
    return data


def password_keys(data: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in data.items() if re.search(r"(?i)(password|secretAccessKey|SECRET_KEY)$", k)}


class TestSecrets:
    def test_all_generated_secrets_exist_by_default(self, defaults):
        assert set(GENERATED) <= defaults.names("Secret")

    def test_generated_passwords_are_long_random_and_distinct(self, defaults):
        seen = []
        for name in GENERATED:
            for key, value in password_keys(secret_data(defaults.get("Secret", name))).items():
                if (name, key) == ("retailflow-openmetadata", "admin-password"):
                    # OpenMetadata's password policy wants a special character: a fixed suffix
                    value = value.removesuffix("-Rf1")
                assert len(value) >= 24 and value.isalnum(), (name, key)
                seen.append(value)
        assert len(seen) == len(set(seen)) >= 10

    def test_each_render_generates_new_passwords(self):
        # Offline there is nothing to look up, so two renders must differ: nothing is a constant.
        first = secret_data(render(values={"jobs": {"ttlSecondsAfterFinished": 1}}).get("Secret", "retailflow-mysql"))
        second = secret_data(render(values={"jobs": {"ttlSecondsAfterFinished": 2}}).get("Secret", "retailflow-mysql"))
        assert first["password"] != second["password"]

    def test_passwords_are_read_back_from_the_cluster(self):
        # lookup is what keeps a password across upgrades; every generated key goes through it.
        text = (UMBRELLA / "templates" / "secrets.yaml").read_text()
        assert 'lookup "v1" "Secret"' in text
        assert text.count("randAlphaNum") == 1, "passwords must be generated only inside retailflow.keep"

    def test_secrets_are_hooks_created_before_airbyte_and_recreated_on_upgrade(self, defaults):
        for name in GENERATED:
            annotations = defaults.get("Secret", name)["metadata"]["annotations"]
            assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
            assert int(annotations["helm.sh/hook-weight"]) < -15

    def test_airflow_metadata_uri_uses_the_airflow_role_password(self, defaults):
        pg = secret_data(defaults.get("Secret", "retailflow-postgresql"))
        uri = secret_data(defaults.get("Secret", "retailflow-airflow-metadata"))["connection"]
        assert uri == f"postgresql://airflow:{pg['airflow-password']}@retailflow-postgresql:5432/airflow?sslmode=disable"

    def test_superset_env_carries_its_role_password(self, defaults):
        pg = secret_data(defaults.get("Secret", "retailflow-postgresql"))
        env = secret_data(defaults.get("Secret", "retailflow-superset-env"))
        assert env["SUPERSET_DATABASE_URI"] == \
            f"postgresql+psycopg2://superset:{pg['superset-password']}@retailflow-postgresql:5432/superset?sslmode=disable"

    def test_airflow_passwords_file_matches_the_admin_password(self, defaults):
        data = secret_data(defaults.get("Secret", "retailflow-airflow-admin"))
        assert json.loads(data["passwords.json"]) == {data["username"]: data["password"]}

    def test_openmetadata_fernet_key_is_32_urlsafe_bytes(self, defaults):
        key = secret_data(defaults.get("Secret", "retailflow-openmetadata"))["fernet-key"]
        assert len(base64.urlsafe_b64decode(key)) == 32 and "+" not in key and "/" not in key

    def test_existing_secrets_replace_generated_ones(self):
        rendered = render(values=VARIANTS["existing-secrets"])
        assert not {"retailflow-mysql", "retailflow-postgresql", "retailflow-lake"} & rendered.names("Secret")
        # nor are the operator's copies written: the chart does not know the user's values (README, Passwords)
        assert not {"retailflow-mysql-app", "retailflow-warehouse"} & rendered.names("Secret")
        refs = {ref["name"] for ref in _secret_refs(rendered.docs)}
        assert {"my-mysql", "my-postgres", "my-lake"} <= refs
        assert not {"retailflow-mysql", "retailflow-postgresql", "retailflow-lake"} & refs
        extra_env = {ref["secretKeyRef"]["name"] for e in airflow_extra_env(rendered) if "valueFrom" in e
                     for ref in [e["valueFrom"]] if "secretKeyRef" in ref}
        assert "my-mysql" in extra_env and "retailflow-mysql" not in extra_env

    @pytest.mark.parametrize("variant", sorted(VARIANTS))
    def test_no_password_is_inline_in_any_workload(self, variant):
        for doc in render(values=VARIANTS[variant]).workloads():
            for container in containers(doc):
                for env in container.get("env", []):
                    if PASSWORD_ENV.search(env["name"]):
                        assert "valueFrom" in env, (doc["metadata"]["name"], env["name"])
                assert not any("password" in str(arg).lower() and "=" in str(arg) and "$" not in str(arg)
                               for arg in [*container.get("command", []), *container.get("args", [])]), container["name"]

    @pytest.mark.parametrize("variant", sorted(VARIANTS))
    def test_no_secret_is_expanded_into_a_command_line(self, variant):
        """A secret in an environment variable must stay there: expanded into a program's arguments (by the
        kubelet's `$(VAR)` or by a shell script of a container or a ConfigMap) it is visible with `ps`."""
        rendered = render(values=VARIANTS[variant])
        secret_vars = secret_env_names(rendered)
        found = []
        for doc in rendered.own_workloads():
            for container in containers(doc):
                where = f"{doc['kind']} {doc['metadata']['name']}/{container['name']}"
                argv = [str(a) for a in [*container.get("command", []), *container.get("args", [])]]
                found += [f"{where}: {leak}" for leak in kubelet_expansion_leaks(argv, secret_vars)]
                if argv[:1] and argv[0].rsplit("/", 1)[-1] in SHELLS and "-c" in argv:
                    script = argv[argv.index("-c") + 1]
                    found += [f"{where}: {leak}" for leak in shell_argv_leaks(script, secret_vars)]
        for doc in rendered.own_of_kind("ConfigMap"):
            for key, text in (doc.get("data") or {}).items():
                if key.endswith(".sh") or re.match(r"#!\S*/(ba|da|a)?sh\b", str(text)):
                    found += [f"ConfigMap {doc['metadata']['name']}/{key}: {leak}"
                              for leak in shell_argv_leaks(str(text), secret_vars)]
        assert not found, "secrets expanded into a program's arguments:\n" + "\n".join(found)

    def test_the_command_line_check_finds_the_known_leaks_and_passes_the_safe_forms(self):
        secret_vars = {"LAKE_SECRET_ACCESS_KEY", "DB_CRED"}
        leaks = [
            'mc alias set lake "$LAKE_ENDPOINT" "$LAKE_ACCESS_KEY_ID" "$LAKE_SECRET_ACCESS_KEY" >/dev/null',
            'mysql -h db -u "$MYSQL_USER" -p"$MYSQL_PASSWORD" shop',
            'mysql -u root -p"$DB_CRED" shop',
            'psql -v ON_ERROR_STOP=1 \\\n  -v name="$name" -v pw="${!var}" <<\'SQL\'\nCREATE ROLE x;\nSQL',
            'psql -v pw="$ROLE_PW" -c "select 1"',
            'for b in $LIST; do curl --password "$API_TOKEN" "$URL/$b"; done',
            'if true; then tool --secret=${LAKE_SECRET_ACCESS_KEY} ; fi',
            'echo hi | tool "$(cat /x)" "$AIRFLOW_PASSWORD"',
        ]
        for script in leaks:
            assert shell_argv_leaks(script, secret_vars), script
        assert kubelet_expansion_leaks(["tool", "--key=$(LAKE_SECRET_ACCESS_KEY)"], secret_vars)
        safe = [
            'export MC_HOST_lake="http://$LAKE_ACCESS_KEY_ID:$LAKE_SECRET_ACCESS_KEY@host:9000"',
            'PGPASSWORD="$DB_CRED" psql -h db -U "$USER" -c "select 1"',
            'ROLE_PASSWORD="${!var}" psql -v name="$name" <<\'SQL\'\n\\getenv pw ROLE_PASSWORD\n'
            'CREATE ROLE :"name" PASSWORD :\'pw\';\nSQL',
            'mysql -h "$MYSQL_HOST" -P "$MYSQL_PORT" -u "$MYSQL_USER" "$MYSQL_DATABASE" < /schema/x.sql',
            'case "$LAKE_SECRET_ACCESS_KEY" in *:*) echo "no colon" >&2; exit 1;; esac',
            '# mc alias set lake "$LAKE_SECRET_ACCESS_KEY" (a comment)',
            ': "${LAKE_SECRET_ACCESS_KEY:?is empty}"',
            'printf \'%s\' "$DB_CRED" > /tmp/pw',
        ]
        for script in safe:
            assert not shell_argv_leaks(script, secret_vars), script
        assert not kubelet_expansion_leaks(["tool", "--host=$(DB_HOST)"], secret_vars)

    def test_values_hold_no_password(self):
        values = yaml.safe_load((UMBRELLA / "values.yaml").read_text())

        def walk(node, path=""):
            if isinstance(node, dict):
                for key, value in node.items():
                    here = f"{path}.{key}"
                    if re.search(r"(?i)(password|_pass|secret_key)$", key) and isinstance(value, str):
                        # Upstream keys that must be set to avoid a default password hold a marker
                        # saying where the real one is (see Airbyte in the chart README).
                        assert value == "" or value.startswith("unused; "), f"{here} holds a value"
                    walk(value, here)
            elif isinstance(node, list):
                for item in node:
                    walk(item, path)

        walk(values)


def env_value(rendered, kind: str, name: str, var: str) -> str:
    """The value a workload's container gets in ``var``: literal, or from a rendered Secret."""
    for container in containers(rendered.get(kind, name)):
        for env in container.get("env", []):
            if env["name"] == var:
                if "value" in env:
                    return env["value"]
                ref = env["valueFrom"]["secretKeyRef"]
                return secret_data(rendered.get("Secret", ref["name"]))[ref["key"]]
    raise AssertionError(f"{kind} {name} has no variable {var}")


def pipeline_credentials(rendered, section: str) -> tuple[str, str]:
    """(user name, password) the RetailPipeline's spec.<section>.credentialsSecretRef gives the operator."""
    spec = yaml.safe_load(rendered.get("ConfigMap", "retailflow-pipeline")["data"]["retailpipeline.yaml"])["spec"]
    ref = spec[section]["credentialsSecretRef"]
    data = secret_data(rendered.get("Secret", ref["name"]))
    return data[ref["usernameKey"]], data[ref["passwordKey"]]


#: What Helm's lookup finds on an upgrade: the servers' Secrets with the values they were initialised with,
#: and stale copies of the operator's (a copy must follow the servers', never keep its own).
CLUSTER = {
    "retailflow-mysql": {"username": "retail", "password": "app-pw-on-the-server", "root-password": "root-pw"},
    "retailflow-mysql-app": {"username": "retail", "password": "stale-copy"},
    "retailflow-postgresql": {"postgres-password": "pg-super", **{f"{r}-username": r for r in
                              ("warehouse", "airflow", "superset", "airbyte", "openmetadata")},
                              **{f"{r}-password": f"{r}-pw-on-the-server" for r in
                                 ("warehouse", "airflow", "superset", "airbyte", "openmetadata")}},
    "retailflow-warehouse": {"username": "warehouse", "password": "stale-copy"},
}


def upgrade_secrets(tmp_path) -> dict[str, dict[str, str]]:
    """templates/secrets.yaml as `helm upgrade` renders it with CLUSTER in the release namespace: in a copy
    of the chart, retailflow.keep's lookup reads CLUSTER instead (``helm template`` answers every lookup
    with nothing, and no API server here serves Secrets to Helm)."""
    chart = tmp_path / "retailflow"
    shutil.copytree(_sandbox() / "retailflow", chart)
    template = chart / "templates" / "secrets.yaml"
    cluster = {f"{NAMESPACE}/{name}": {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
               for name, data in CLUSTER.items()}
    lookup = '{{- $s := lookup "v1" "Secret" .ns .name -}}'
    assert template.read_text().count(lookup) == 1
    template.write_text(template.read_text().replace(
        lookup, "{{- $s := get (fromJson `%s`) (printf \"%%s/%%s\" .ns .name) -}}" % json.dumps(cluster)))
    proc = subprocess.run([HELM, "template", RELEASE, str(chart), "--namespace", NAMESPACE, "--is-upgrade",
                           "--show-only", "templates/secrets.yaml"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return {d["metadata"]["name"]: secret_data(d) for d in yaml.safe_load_all(proc.stdout)
            if d and d["metadata"].get("namespace") == NAMESPACE}


class TestTheOperatorsCopies:
    """retailflow-mysql-app and retailflow-warehouse: the MySQL application user and the warehouse role the
    RetailPipeline hands to Airbyte, apart from the servers' Secrets (root, postgres, every other role)."""

    def test_they_hold_what_the_servers_are_initialised_with(self, defaults):
        mysql = ("StatefulSet", "retailflow-mysql")
        assert pipeline_credentials(defaults, "mysql") == (env_value(defaults, *mysql, "MYSQL_USER"),
                                                           env_value(defaults, *mysql, "MYSQL_PASSWORD"))
        # PostgreSQL's init script creates one role per database, named after it, with RETAILFLOW_PW_<ROLE>
        # (tests/unit/chart/test_datastores.py)
        assert pipeline_credentials(defaults, "warehouse") == (
            "warehouse", env_value(defaults, "StatefulSet", "retailflow-postgresql", "RETAILFLOW_PW_WAREHOUSE"))
        assert {"retailflow-mysql-app", "retailflow-warehouse"} == {
            yaml.safe_load(defaults.get("ConfigMap", "retailflow-pipeline")["data"]["retailpipeline.yaml"])
            ["spec"][s]["credentialsSecretRef"]["name"] for s in ("mysql", "warehouse")}

    def test_they_hold_only_that_user(self, defaults):
        assert set(secret_data(defaults.get("Secret", "retailflow-mysql-app"))) == {"username", "password"}
        assert set(secret_data(defaults.get("Secret", "retailflow-warehouse"))) == {"username", "password"}

    def test_an_upgrade_copies_the_servers_values_not_a_stale_copy(self, tmp_path):
        secrets = upgrade_secrets(tmp_path)
        assert secrets["retailflow-mysql"]["password"] == "app-pw-on-the-server"  # kept, as every password
        assert secrets["retailflow-mysql-app"] == {"username": "retail", "password": "app-pw-on-the-server"}
        assert secrets["retailflow-warehouse"] == {"username": "warehouse", "password": "warehouse-pw-on-the-server"}


def _secret_refs(docs):
    def walk(node):
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                yield node["secretKeyRef"]
            if isinstance(node.get("secretRef"), dict):
                yield node["secretRef"]
            if "secret" in node and isinstance(node["secret"], dict) and "secretName" in node["secret"]:
                yield {"name": node["secret"]["secretName"]}
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    for doc in docs:
        yield from walk(doc)


#: Names of variables that hold a secret, whatever their source (a password, a secret key, a token).
SECRET_NAME = re.compile(r"(?i)(PASSWORD|PASSWD|(^|_)PASS(_|$)|_PWD$|(^|_)PW(_|$)|SECRET|TOKEN|FERNET|PRIVATE|API_?KEY)")
#: Secret keys (secretKeyRef.key) that hold a secret rather than a name (a username, an access key id).
SECRET_KEY = re.compile(r"(?i)(password|secret|token|fernet|private|(^|-)key$|passwords\.json)")
#: Arguments that name what follows as a password: `pw=$X` (psql -v), `--password=$X`, `--token "$X"`.
PASSWORD_OPTION = re.compile(r"(?i)^(-{0,2}(pw|pass|passwd|password|secret|token)[\w-]*)(=|$)")
SHELLS = {"sh", "bash", "ash", "dash"}
#: Shell builtins and keywords: their arguments are never a process's argv.
BUILTINS = {"export", "local", "readonly", "declare", "typeset", "set", "unset", "echo", "printf", "test", "[",
            "[[", "read", ":", "true", "false", "shift", "return", "exit", "cd", "case", "esac", "for", "select",
            "done", "fi", "}", "wait", "trap", "break", "continue"}
KEYWORDS = {"do", "then", "else", "elif", "if", "while", "until", "!", "{", "time"}
EXPANSION = re.compile(r"\$(?:\{(!?)([A-Za-z_]\w*)|([A-Za-z_]\w*))")


def secret_env_names(rendered) -> set[str]:
    """Every environment variable of the release's containers whose value is a secret: by its name, or
    by the Secret key it is read from."""
    names = set()
    for doc in rendered.own_workloads():
        for container in containers(doc):
            for env in container.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if SECRET_NAME.search(env["name"]) or (ref and SECRET_KEY.search(ref["key"])):
                    names.add(env["name"])
    return names


def _is_secret(name: str, secret_vars: set[str]) -> bool:
    return name in secret_vars or bool(SECRET_NAME.search(name))


def kubelet_expansion_leaks(argv: list[str], secret_vars: set[str]) -> list[str]:
    """`$(VAR)` in a container's command or args: the kubelet puts the value into the process's argv."""
    return [f"$({name}) in {arg!r}" for arg in argv
            for name in re.findall(r"(?<!\$)\$\(([A-Za-z_]\w*)\)", arg) if _is_secret(name, secret_vars)]


def _logical_lines(script: str) -> list[str]:
    """The script's command lines: here-document bodies (stdin, not argv) and comments dropped,
    continuation lines joined."""
    lines, heredoc = [], None
    for line in script.replace("\\\n", " ").splitlines():
        if heredoc is not None:
            if line.strip() == heredoc:
                heredoc = None
            continue
        if line.lstrip().startswith("#"):
            continue
        marker = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
        if marker:
            heredoc = marker.group(1)
        lines.append(line)
    return lines


def shell_argv_leaks(script: str, secret_vars: set[str]) -> list[str]:
    """Arguments of the external commands of a shell script that expand a secret: a secret variable
    (``secret_vars`` or a secret-looking name), an indirect expansion ``${!name}`` (its target is not
    known here), or anything after a password option (``pw=``, ``--password``). Assignments before a
    command (its environment), redirections and builtins (``export``, ``printf``) are not argv."""
    found = []
    for line in _logical_lines(script):
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
        lexer.whitespace_split = True
        lexer.commenters = ""
        try:
            tokens = list(lexer)
        except ValueError:  # unbalanced quotes: a construct this reader does not follow
            tokens = line.split()
        commands, current = [], []
        for token in tokens:
            if token and set(token) <= set(";&|()"):
                commands.append(current)
                current = []
            else:
                current.append(token)
        commands.append(current)
        for words in commands:
            while words and words[0] in KEYWORDS:
                words = words[1:]
            while words and re.match(r"^[A-Za-z_]\w*=", words[0]):  # NAME=value cmd: its environment
                words = words[1:]
            if not words or words[0] in BUILTINS:
                continue
            args, skip, previous = [], False, ""
            for word in words[1:]:
                if skip:
                    skip = False
                elif set(word) <= set("<>&0123456789") and word.strip("0123456789&"):
                    skip = True  # a redirection's target is not an argument
                else:
                    args.append(word)
            for word in args:
                for indirect, braced, plain in EXPANSION.findall(word):
                    name = braced or plain
                    option = PASSWORD_OPTION.match(word) or PASSWORD_OPTION.match(previous)
                    if indirect or _is_secret(name, secret_vars) or option:
                        found.append(f"{words[0]} gets {word!r} in its argv ({line.strip()[:160]})")
                        break
                previous = word
    return found
