"""Prepare Superset's metadata database and its admin, with the admin from the environment,
never from a command line.

Run with Superset's Python; the local Superset (hack/superset.sh), the `setup` init container of
the chart's Superset pods and the dashboard tests all call it:

    python superset_setup.py setup        # `superset db upgrade`, `superset init` and `admin`, in one process
    python superset_setup.py admin        # create the admin, or reset its password to the given one

``setup`` does in one Superset start what the three CLI calls do in three (each start imports all
of Superset: seconds on an idle machine, a minute on a busy one). In the cluster every Superset pod
runs it before it serves; on PostgreSQL the pods take turns through an advisory lock, so two pods
of one rollout never migrate at once.

The admin comes from ``RETAILFLOW_SUPERSET_USERNAME`` and ``RETAILFLOW_SUPERSET_PASSWORD`` (in the
cluster, the chart's admin Secret): ``superset fab create-admin --password …`` would put the
password in the process list, where every user of the machine can read it.
"""

from __future__ import annotations

import os
import sys


def _app():
    from superset.app import create_app

    return create_app()


#: The PostgreSQL advisory lock key that serialises `setup` between pods ("RFSS" in ASCII).
SETUP_LOCK_KEY = 0x52465353


def setup() -> int:
    app = _app()
    with app.app_context():
        from superset import db

        with db.engine.connect() as lock:
            if db.engine.dialect.name == "postgresql":
                from sqlalchemy import text

                print("superset_setup: waiting for the setup lock", flush=True)
                lock.execute(text("select pg_advisory_lock(:key)"), {"key": SETUP_LOCK_KEY})
            _setup(app)
            return ensure_admin(app)


def _setup(app) -> None:
    with app.app_context():
        from flask_migrate import upgrade

        from superset import appbuilder, db, security_manager

        print("superset_setup: migrating the metadata database", flush=True)
        upgrade()  # the migrations directory Superset registered with Flask-Migrate
        print("superset_setup: syncing roles and permissions", flush=True)
        appbuilder.add_permissions(update_perms=True)
        security_manager.sync_role_definitions()
        db.session.commit()


def ensure_admin(app=None) -> int:
    username = os.environ.get("RETAILFLOW_SUPERSET_USERNAME", "admin")
    password = os.environ.get("RETAILFLOW_SUPERSET_PASSWORD", "")
    if not password:
        print("superset_setup: RETAILFLOW_SUPERSET_PASSWORD is not set", file=sys.stderr)
        return 2
    app = app or _app()
    with app.app_context():
        from superset import db, security_manager

        role = security_manager.find_role("Admin")
        if role is None:
            print("superset_setup: no Admin role: run `superset init` first", file=sys.stderr)
            return 1
        user = security_manager.find_user(username=username)
        if user is None:
            user = security_manager.add_user(
                username, "RetailFlow", "Admin", f"{username}@retailflow.local", role, password=password,
            )
            if not user:
                print(f"superset_setup: could not create the admin {username!r}", file=sys.stderr)
                return 1
            print(f"superset_setup: admin {username!r} created")
        else:
            security_manager.reset_password(user.id, password)
            if role not in user.roles:
                user.roles.append(role)
            user.active = True
            db.session.commit()
            print(f"superset_setup: admin {username!r} up to date")
    return 0


def main(argv: list[str]) -> int:
    commands = {"setup": setup, "admin": ensure_admin}
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python superset_setup.py {{{'|'.join(commands)}}}", file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
