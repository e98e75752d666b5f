"""Create or update Superset's admin from the environment, never from a command line.

Run with Superset's Python, after ``superset db upgrade``; the local Superset (hack/superset.sh)
and the chart's init Job both call it:

    python superset_setup.py needs-init   # exit 0 when `superset init` has not run on this database yet
    python superset_setup.py admin        # create the admin, or reset its password to the given one
    python superset_setup.py ready        # exit 0 once the database is migrated and initialised

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


def needs_init() -> int:
    app = _app()
    with app.app_context():
        from superset import security_manager

        role = security_manager.find_role("Admin")
        # `superset init` gives the Admin role its permissions; before it, there is nothing to log in to.
        return 0 if role is None or not role.permissions else 1


def ready() -> int:
    """For the web pods' init container: wait until the init Job has migrated and initialised
    the metadata database (any error, such as missing tables, counts as not ready)."""
    try:
        return 1 if needs_init() == 0 else 0
    except Exception as exc:  # noqa: BLE001 (an unmigrated database fails in many ways)
        print(f"superset_setup: not ready: {type(exc).__name__}", file=sys.stderr)
        return 1


def ensure_admin() -> int:
    username = os.environ.get("RETAILFLOW_SUPERSET_USERNAME", "admin")
    password = os.environ.get("RETAILFLOW_SUPERSET_PASSWORD", "")
    if not password:
        print("superset_setup: RETAILFLOW_SUPERSET_PASSWORD is not set", file=sys.stderr)
        return 2
    app = _app()
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
    commands = {"needs-init": needs_init, "admin": ensure_admin, "ready": ready}
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python superset_setup.py {{{'|'.join(commands)}}}", file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
