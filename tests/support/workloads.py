"""Run the release's own containers, from their rendered manifests, as local processes.

A container of ours (a Job's, an init container, a Deployment's; not the upstream charts') runs with
what its pod would give it, so that a wrong variable name, a Secret key that does not exist, a file
mounted where the code does not look, or a command the image does not have fails here as it would in
the cluster:

- **Command:** the container's ``command`` + ``args``, run as given. The program is looked up on the
  image's ``PATH``, which ``image-paths.yaml`` (next to the Dockerfiles) maps to local folders: the
  project environments for the images built here, the Superset and OpenMetadata environments for the
  upstream images our scripts run in, the machine's ``mysql`` client for ``mysql:8.4``. An image with
  no local stand-in (``minio/mc``) raises ``NotRunnable``.
- **Environment:** only what the pod has (plus ``HOME``, ``LANG``, ``LC_ALL``, ``TMPDIR`` and ``TZ`` of the
  test process, which a process needs to start; and ``XDG_RUNTIME_DIR``, a folder of the container's own
  under the runner's root: a pod's runtime files are its own, but ``HOME`` here is the test user's, shared
  by every process, and gunicorn's control socket, ``$XDG_RUNTIME_DIR/gunicorn.ctl`` or else
  ``~/.gunicorn/gunicorn.ctl``, would be one for every Superset run side by side, each taking it over from
  the one before): the image's ``ENV`` (parsed from its Dockerfile), then the container's ``envFrom`` and
  ``env`` in order, with ``$(VAR)`` expanded as the kubelet does.
  ``secretKeyRef`` and ``secretRef`` are read from the emulated Kubernetes API (where the test created
  the Secrets: for the ones the chart generates at install, with exactly the keys the rendered
  ``secrets.yaml`` has; see ``create_release_secrets``); ``configMapKeyRef`` and ``configMapRef`` from
  the rendered ConfigMaps. A missing key or object that is not ``optional`` raises ``MissingKey``,
  naming the container and the key, with the kubelet's message (``couldn't find key K in Secret
  NS/NAME``). ``fieldRef`` gives the namespace and the pod name.
- **Files:** every ``configMap``, ``secret`` and ``emptyDir`` volume is materialised under a temporary
  root, at ``<root>/<workload>/volumes/<volume>`` (``items`` and ``defaultMode`` honoured; shared by
  the pod's containers, as an ``emptyDir`` is); ``subPath`` and other volume types are refused.
- **Who reads them:** the processes run as the test's user, but the runner models the container's
  identity (``runAsUser``/``runAsGroup``/``fsGroup``/``supplementalGroups`` over the image's ``USER``)
  and the kubelet's ownership of ConfigMap and Secret files, and raises ``Unreadable`` for a mounted
  file its user could not read.
- **Paths: a rewrite, not a chroot.** The code would look at the absolute mount paths and image paths;
  here every occurrence of a mount path or an image path (``image-paths.yaml``'s ``paths``) in the
  command, the args, the environment's values and the text of the materialised files is replaced by
  its local folder, longest path first. Code installed in the image (not mounted) is not rewritten:
  an absolute image path hard-coded there is not found, which is a finding.
- **Services: a rewrite too.** ``Peers`` maps a Service name (also ``<name>.<namespace>.svc…``) and
  port to a local peer: ``name:port`` becomes ``127.0.0.1:<peer port>`` and ``scheme://name``
  ``scheme://127.0.0.1``, in the same places; a bare name becomes ``127.0.0.1`` only where it is an
  environment value, or an element of a comma-separated one, or the ``host`` field of a JSON object
  value (an Airflow connection, whose ``port`` is then mapped too), or in a file the value of a YAML key
  named ``host`` or ``…Host`` (elsewhere in a file a bare word such as ``authProvider: openmetadata``
  is not a host). A bare port variable (``X_PORT``) is mapped when its sibling ``X_HOST`` names a
  mapped Service. A listening address ``0.0.0.0:<containerPort>`` becomes
  ``127.0.0.1:<given port>``. A Service served by one of our own containers, started later
  (Superset's, after its init containers), gets its local port bound at once and held
  (``Peers.hold``): the container is handed that listening socket by systemd socket activation
  (``LISTEN_FDS``, which gunicorn takes), so no other program can take the port in between.
- **``readOnlyRootFilesystem``:** the process runs in a private mount namespace (``unshare``, as root)
  where ``/`` is read-only except the pod's writable ``emptyDir`` volumes (``read_only_root.sh``); a
  volume at ``/tmp`` becomes ``TMPDIR``. Without root this is left out.
- **ServiceAccount:** with an emulated API that enforces RBAC, a pod with ``serviceAccountName`` gets a
  kubeconfig with that ServiceAccount's token (``KUBECONFIG``), and Python programs are started through
  ``in_pod.py``, whose ``load_incluster_config`` reads it, as a pod reads its token file.

What this cannot show: kubelet semantics (restart policies, backoff, init-container ordering beyond
"run them in order", permissions of the image's own files; the user a process runs as is modelled
for mounted files only; a read-only root covers the machine's whole filesystem, not an image's),
probes, resource requests and limits, image pulls and the images' real contents beyond the table
(a build is not run), DNS, and every upstream chart's own containers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from support.helm_render import NAMESPACE, REPO, Rendered, pod_spec
from support.ports import listening_socket, socket_activation

IMAGE_PATHS = REPO / "image-paths.yaml"
IN_POD = Path(__file__).with_name("in_pod.py")
READ_ONLY_ROOT = Path(__file__).with_name("read_only_root.sh")
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Variables of the test process a local process needs to run at all (no cluster value), and the
#: machine's proxy and package-index settings: Superset's drivers init container installs from a
#: registry, which a pod reaches through the cluster's egress and a process here through these.
PASS_THROUGH = ("HOME", "LANG", "LC_ALL", "TMPDIR", "TZ",
                "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
                "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


class MissingKey(Exception):
    """A reference to a Secret or ConfigMap key that does not exist (the kubelet's CreateContainerConfigError)."""


class Unreadable(Exception):
    """A mounted file the container's user cannot read, given how the kubelet owns and modes volume files."""


class NotRunnable(Exception):
    """The container's image has no local stand-in (see image-paths.yaml)."""


def image_table() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(IMAGE_PATHS.read_text())["images"]


def image_entry(image: str) -> dict[str, Any]:
    """The table's entry for an image reference (``repo[:tag]``, any registry prefix of ours)."""
    repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    table = image_table()
    for name in sorted(table, key=len, reverse=True):
        if repository == name or repository.endswith("/" + name):
            return table[name]
    raise NotRunnable(f"image {image}: not in {IMAGE_PATHS.name}; add what it has there")


def dockerfile_env(entry: dict[str, Any]) -> dict[str, str]:
    """The ENV of the Dockerfile's final stage (``${ARG}`` references left as they are)."""
    if "dockerfile" not in entry:
        return {}
    text = (REPO / entry["dockerfile"]).read_text().replace("\\\n", " ")
    stages = re.split(r"(?im)^FROM\s", text)
    env: dict[str, str] = {}
    for line in stages[-1].splitlines():
        match = re.match(r"(?i)^\s*ENV\s+(.*)$", line)
        if match:
            for token in shlex.split(match.group(1)):
                key, sep, value = token.partition("=")
                if sep:
                    env[key] = value
    return env


@dataclass
class Peer:
    """A local stand-in or real server answering for a Service: ``ports`` maps Service port -> local port."""

    ports: dict[int, int]
    host: str = "127.0.0.1"
    what: str = ""


@dataclass
class Peers:
    """Service name -> local peer."""

    services: dict[str, Peer] = field(default_factory=dict)
    #: local port -> its listening socket, held from ``hold`` until the container serving it starts
    held: dict[int, socket.socket] = field(default_factory=dict)

    def add(self, service: str, port: int, local_port: int, what: str) -> None:
        peer = self.services.setdefault(service, Peer(ports={}, what=what))
        peer.ports[port] = local_port

    def hold(self, service: str, port: int, what: str) -> int:
        """A Service that one of our containers serves, started later (``Workloads.start`` with ``listen``
        mapping its port here): its local port is bound now and held until then. Returns that port."""
        sock = listening_socket()
        local_port = sock.getsockname()[1]
        self.held[local_port] = sock
        self.add(service, port, local_port, what)
        return local_port

    def close(self) -> None:
        """Let go of the ports held for containers that were never started."""
        for sock in self.held.values():
            sock.close()
        self.held.clear()

    def rewrite(self, text: str, namespace: str = NAMESPACE, *, whole_value: bool = False) -> str:
        """``name[.ns[.svc[.cluster.local]]]:port`` and ``scheme://name`` anywhere; a bare ``name`` only as a
        whole value or an element of a comma-separated value (``whole_value``: environment values)."""
        for name in sorted(self.services, key=len, reverse=True):
            peer = self.services[name]
            host = rf"{re.escape(name)}(?:\.{re.escape(namespace)}(?:\.svc(?:\.cluster\.local)?)?)?"

            def sub(match: re.Match[str], peer: Peer = peer) -> str:
                port = int(match.group(1))
                return f"{peer.host}:{peer.ports.get(port, port)}"

            text = re.sub(rf"(?<![\w.-]){host}:(\d+)(?![\w-])", sub, text)
            text = re.sub(rf"(?<=://){host}(?![\w.:-])", peer.host, text)
            if whole_value:
                text = ",".join(peer.host if re.fullmatch(host, part.strip()) else part for part in text.split(","))
            else:  # YAML in a file: the value of a `host` key
                text = re.sub(rf"(?m)^(\s*(?:-\s+)?\w*[hH]ost:\s*[\"']?){host}(?=[\"']?\s*(?:#.*)?$)",
                              lambda m, peer=peer: m.group(1) + peer.host, text)
        return text


@dataclass
class Run:
    """A finished container: its process result, and what it was given (for assertions and messages)."""

    container: str
    argv: list[str]
    env: dict[str, str]
    returncode: int
    output: str

    def check(self) -> Run:
        assert self.returncode == 0, f"{self.container} exited {self.returncode}; output:\n{self.output[-6000:]}"
        return self


class Workloads:
    """The rendered release's own containers, runnable here (see the module docstring)."""

    def __init__(self, release: Rendered, peers: Peers, kube: Any, root: Path | None = None,
                 namespace: str = NAMESPACE) -> None:
        self.release, self.peers, self.kube, self.namespace = release, peers, kube, namespace
        self.root = Path(root or tempfile.mkdtemp(prefix="retailflow-workloads-"))

    def add_pod(self, kind: str, name: str, pod: dict[str, Any]) -> None:
        """A workload the release renders only in part (an upstream chart's pod carrying our values), given
        as its pod spec: from then on it runs like a rendered one."""
        self.release = Rendered(docs=[*self.release.docs, {"kind": kind, "metadata": {"name": name},
                                                           "spec": {"template": {"spec": pod}}}],
                                stand_ins=self.release.stand_ins)

    # -- what the pod has ------------------------------------------------------------------------

    def workload(self, kind: str, name: str) -> dict[str, Any]:
        return self.release.get(kind, name)

    def container(self, kind: str, name: str, container: str) -> dict[str, Any]:
        spec = pod_spec(self.workload(kind, name))
        for item in [*spec.get("initContainers", []), *spec["containers"]]:
            if item["name"] == container:
                return item
        raise AssertionError(f"{kind} {name} has no container {container}")

    def _secret(self, name: str) -> dict[str, str] | None:
        resp = self.kube.request("GET", f"/api/v1/namespaces/{self.namespace}/secrets/{name}")
        if resp.status_code == 404:
            return None
        assert resp.status_code == 200, resp.text
        return {k: base64.b64decode(v).decode() for k, v in (resp.json().get("data") or {}).items()}

    def _configmap(self, name: str) -> dict[str, str] | None:
        found = [d for d in self.release.of_kind("ConfigMap") if d["metadata"]["name"] == name]
        return dict(found[0].get("data") or {}) if found else None

    def _lookup(self, who: str, kind: str, ref: dict[str, Any]) -> str | None:
        data = self._secret(ref["name"]) if kind == "Secret" else self._configmap(ref["name"])
        optional = bool(ref.get("optional"))
        if data is None:
            if optional:
                return None
            raise MissingKey(f"container {who}: {kind.lower()} \"{ref['name']}\" not found "
                             f"(key {ref['key']!r}; the kubelet: CreateContainerConfigError)")
        if ref["key"] not in data:
            if optional:
                return None
            raise MissingKey(f"container {who}: couldn't find key {ref['key']} in {kind} "
                             f"{self.namespace}/{ref['name']} (the kubelet: CreateContainerConfigError)")
        return data[ref["key"]]

    def _mounts(self, kind: str, name: str, container: dict[str, Any]) -> dict[str, Path]:
        """Materialise the container's volumes; mount path -> local folder."""
        spec = pod_spec(self.workload(kind, name))
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        who = f"{name}/{container['name']}"
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts", []):
            if mount.get("subPath"):
                raise NotImplementedError(f"{who}: subPath mounts are not materialised")
            volume = volumes[mount["name"]]
            local = self.root / name / "volumes" / mount["name"]
            mounts[mount["mountPath"].rstrip("/") or "/"] = local
            if local.exists():  # shared by the pod's containers (emptyDir), written once
                continue
            local.mkdir(parents=True)
            if "emptyDir" in volume:
                continue
            if "configMap" in volume:
                ref, data = volume["configMap"], self._configmap(volume["configMap"]["name"])
                what = "ConfigMap"
            elif "secret" in volume:
                ref, data = volume["secret"], self._secret(volume["secret"]["secretName"])
                ref = {**ref, "name": ref["secretName"]}
                what = "Secret"
            else:
                raise NotImplementedError(f"{who}: volume {mount['name']} is neither configMap, secret nor emptyDir")
            if data is None:
                if ref.get("optional"):
                    continue
                raise MissingKey(f"container {who}: {what.lower()} \"{ref['name']}\" not found (volume {mount['name']})")
            items = ref.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["key"] not in data:
                    raise MissingKey(f"container {who}: couldn't find key {item['key']} in {what} "
                                     f"{self.namespace}/{ref['name']} (volume {mount['name']})")
                target = local / item["path"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(data[item["key"]])
                target.chmod(item.get("mode", ref.get("defaultMode", 0o644)))
        return mounts

    def _identity(self, kind: str, name: str, container: dict[str, Any], entry: dict[str, Any]) -> tuple[int | None, set[int]]:
        """The user and groups the container runs as: its securityContext over the pod's over the image's
        USER (``image-paths.yaml``'s ``user``/``group``; None when the table does not know it)."""
        pod = pod_spec(self.workload(kind, name)).get("securityContext") or {}
        own = container.get("securityContext") or {}
        uid = own.get("runAsUser", pod.get("runAsUser", entry.get("user")))
        if uid is None:
            return None, set()
        default_group = entry.get("group", 0) if uid == entry.get("user") else 0
        gid = own.get("runAsGroup", pod.get("runAsGroup", default_group))
        groups = {gid, *pod.get("supplementalGroups", [])}
        if pod.get("fsGroup") is not None:
            groups.add(pod["fsGroup"])
        return uid, groups

    def _check_readable(self, kind: str, name: str, container: dict[str, Any], entry: dict[str, Any]) -> None:
        """Every file of a mounted ConfigMap or Secret must be readable by the container's user. The kubelet
        writes them owned by root:root with the item's mode or ``defaultMode`` (0644), or, with the pod's
        ``fsGroup``, group-owned by it with 0440 added (``pkg/volume/volume_linux.go``,
        ``SetVolumeOwnership``; kubernetes/kubernetes#57923). Only the identity is modelled, not run:
        the processes here run as the test's user."""
        uid, groups = self._identity(kind, name, container, entry)
        if not uid:  # root, or unknown
            return
        spec = pod_spec(self.workload(kind, name))
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            source = volumes[mount["name"]].get("configMap") or volumes[mount["name"]].get("secret")
            if source is None:
                continue
            local = self.root / name / "volumes" / mount["name"]
            modes = {i["path"]: i["mode"] for i in source.get("items") or [] if "mode" in i}
            for path in (p for p in local.rglob("*") if p.is_file()):
                relative = str(path.relative_to(local))
                mode = modes.get(relative, source.get("defaultMode", 0o644))
                group = 0
                if fs_group is not None:
                    mode, group = mode | 0o440, fs_group
                readable = mode & 0o040 if group in groups else mode & 0o004
                if not readable:
                    raise Unreadable(
                        f"container {name}/{container['name']}: cannot read {mount['mountPath']}/{relative}: the kubelet "
                        f"mounts it as root:{group} mode {mode:04o} and the container runs as uid {uid}, groups "
                        f"{sorted(groups)} (give the pod an fsGroup, or the file a mode its user can read)")

    def _path_map(self, entry: dict[str, Any], mounts: dict[str, Path]) -> list[tuple[str, str]]:
        pairs = {**{k.rstrip("/"): str(REPO / v) for k, v in (entry.get("paths") or {}).items()},
                 **{k: str(v) for k, v in mounts.items()}}
        return sorted(pairs.items(), key=lambda kv: len(kv[0]), reverse=True)

    @staticmethod
    def _rewrite_paths(text: str, pairs: list[tuple[str, str]]) -> str:
        """One pass over all paths, longest first, so a replacement is never rewritten again (a pod that
        mounts an emptyDir at /tmp, whose local folder is under /tmp too)."""
        if not pairs:
            return text
        table = dict(pairs)
        pattern = "|".join(re.escape(image_path) for image_path, _ in pairs)
        return re.sub(rf"(?<![\w./-])({pattern})(?=/|\b|$)", lambda m: table[m.group(1)], text)

    def _rewrite(self, text: str, pairs: list[tuple[str, str]], listen: dict[int, int], *,
                 whole_value: bool = False) -> str:
        for port, local_port in listen.items():
            text = re.sub(rf"(?:0\.0\.0\.0|\[::\])?:{port}\b", f"127.0.0.1:{local_port}", text)
        # Services first: the local folders that replace paths hold workload names (such as a Service's)
        return self._rewrite_paths(self.peers.rewrite(text, self.namespace, whole_value=whole_value), pairs)

    def _rewrite_value(self, value: str, pairs: list[tuple[str, str]]) -> str:
        """An environment value; a JSON object (an Airflow connection) has its ``host`` and ``port`` fields mapped."""
        if value.lstrip().startswith("{"):
            try:
                data = json.loads(value)
            except ValueError:
                data = None
            if isinstance(data, dict):
                peer = self.peers.services.get(str(data.get("host", "")).split(".")[0])
                if peer is not None:
                    data["host"] = peer.host
                    if isinstance(data.get("port"), int):
                        data["port"] = peer.ports.get(data["port"], data["port"])
                return self._rewrite(json.dumps(data), pairs, {})
        return self._rewrite(value, pairs, {}, whole_value=True)

    def create(self, kind: str, name: str) -> dict[str, Any]:
        """Create a rendered release resource in the emulated API, as Helm would, its Service names mapped
        like a mounted file's (a RetailPipeline's hosts and URLs). Only RetailPipelines are supported."""
        assert kind == "RetailPipeline", kind
        body = yaml.safe_load(self.peers.rewrite(yaml.safe_dump(self.release.get(kind, name)), self.namespace))
        return self.kube.apply_rp(body)

    def local_path(self, kind: str, name: str, container: str, path: str) -> Path:
        """Where an absolute path of the container (a mount or an image path) is here."""
        spec = self.container(kind, name, container)
        pairs = self._path_map(image_entry(spec["image"]), self._mounts(kind, name, spec))
        return Path(self._rewrite_paths(path, pairs))

    # -- running -----------------------------------------------------------------------------------

    def prepare(self, kind: str, name: str, container_name: str, *, listen: dict[int, int] | None = None,
                extra_env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str], Path]:
        """argv, environment and working directory of the container as a local process."""
        container = self.container(kind, name, container_name)
        who = f"{name}/{container_name}"
        entry = image_entry(container["image"])
        if entry.get("missing"):
            raise NotRunnable(f"container {who}: {entry['missing']}")
        listen = listen or {}
        mounts = self._mounts(kind, name, container)
        self._check_readable(kind, name, container, entry)
        pairs = self._path_map(entry, mounts)
        for local in mounts.values():  # the scripts and files the pod would read, paths and Services rewritten
            for path in local.rglob("*"):
                if path.is_file():
                    try:
                        text = path.read_text()
                    except UnicodeDecodeError:
                        continue
                    rewritten = self._rewrite(text, pairs, {})
                    if rewritten != text:
                        mode = path.stat().st_mode
                        path.chmod(mode | 0o200)
                        path.write_text(rewritten)
                        path.chmod(mode)

        env: dict[str, str] = {k: os.environ[k] for k in PASS_THROUGH if k in os.environ}
        bins = [str(REPO / b) for b in entry.get("bin") or []]
        env["PATH"] = ":".join([*bins, SYSTEM_PATH])
        for key, value in dockerfile_env(entry).items():  # ENV PATH=/app/.venv/bin:$PATH and the like
            value = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), value)
            env[key] = self._rewrite(value, pairs, {})
        env["PATH"] = ":".join([*bins, *(p for p in env["PATH"].split(":") if p not in bins)])
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                data = self._configmap(source["configMapRef"]["name"])
                what = "configmap"
            else:
                data = self._secret(source["secretRef"]["name"])
                what = "secret"
            ref = source.get("configMapRef") or source.get("secretRef")
            if data is None:
                if ref.get("optional"):
                    continue
                raise MissingKey(f"container {who}: {what} \"{ref['name']}\" not found (envFrom)")
            env |= {source.get("prefix", "") + k: v for k, v in data.items()}
        raw: dict[str, str] = {}
        for item in container.get("env", []):
            if "value" in item:
                value: str | None = re.sub(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                           lambda m: env.get(m.group(1), m.group(0)), str(item["value"]))
            else:
                source = item["valueFrom"]
                if "secretKeyRef" in source:
                    value = self._lookup(who, "Secret", source["secretKeyRef"])
                elif "configMapKeyRef" in source:
                    value = self._lookup(who, "ConfigMap", source["configMapKeyRef"])
                elif "fieldRef" in source:
                    field_path = source["fieldRef"]["fieldPath"]
                    value = {"metadata.namespace": self.namespace, "metadata.name": f"{name}-local",
                             "spec.serviceAccountName": pod_spec(self.workload(kind, name)).get("serviceAccountName", "default"),
                             }.get(field_path)
                    if value is None:
                        raise NotImplementedError(f"{who}: fieldRef {field_path}")
                else:
                    raise NotImplementedError(f"{who}: valueFrom {source}")
                if value is None:  # optional and absent: the variable is not set
                    continue
            raw[item["name"]] = str(value)
            env[item["name"]] = self._rewrite_value(str(value), pairs)
        for key, value in list(raw.items()):  # X_PORT next to an X_HOST naming a mapped Service
            if key.endswith("_PORT") and value.isdigit():
                host = raw.get(key[: -len("_PORT")] + "_HOST", "").split(".")[0]
                peer = self.peers.services.get(host)
                if peer and int(value) in peer.ports:
                    env[key] = str(peer.ports[int(value)])
        # the container's own runtime folder (see the module's docstring), named short: a Unix socket's path
        # (gunicorn's control socket in it) holds at most 107 bytes, and a root may be a deep pytest folder
        runtime = self.root / "run" / hashlib.sha256(f"{name}/{container_name}".encode()).hexdigest()[:12]
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        env |= extra_env or {}

        argv = [self._rewrite(str(a), pairs, listen) for a in [*container.get("command", []), *container.get("args", [])]]
        if not argv:
            raise NotImplementedError(f"{who}: no command; the image's entry point is not run here")
        program = shutil.which(argv[0], path=env["PATH"])
        if program is None:
            raise NotRunnable(f"container {who}: {argv[0]!r} is not on the image's PATH ({env['PATH']})")
        argv[0] = program
        account = pod_spec(self.workload(kind, name)).get("serviceAccountName")
        if account and getattr(self.kube, "rbac", None) is not None:
            env["KUBECONFIG"] = self.kube.kubeconfig_for(self.namespace, account)
            if Path(program).name.startswith("python"):
                argv.insert(1, str(IN_POD))
        if "/tmp" in mounts:  # the pod's /tmp is a volume: temporary files go there
            env["TMPDIR"] = str(mounts["/tmp"])
        security = container.get("securityContext") or {}
        if security.get("readOnlyRootFilesystem") and os.geteuid() == 0:
            volumes = {v["name"]: v for v in pod_spec(self.workload(kind, name)).get("volumes", [])}
            writable = [str(mounts[m["mountPath"].rstrip("/") or "/"]) for m in container.get("volumeMounts", [])
                        if "emptyDir" in volumes[m["name"]] and not m.get("readOnly")]
            if "/tmp" not in mounts:  # no writable temporary folder, as in the pod
                env.pop("TMPDIR", None)
            argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", str(READ_ONLY_ROOT),
                    *writable, "--", *argv]
        workdir = entry.get("workdir")
        cwd = Path(self._rewrite_paths(workdir, pairs)) if workdir else self.root / name
        cwd.mkdir(parents=True, exist_ok=True)
        return argv, env, cwd

    def run(self, kind: str, name: str, container: str, *, timeout: float = 300, **kwargs: Any) -> Run:
        argv, env, cwd = self.prepare(kind, name, container, **kwargs)
        proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
        return Run(f"{name}/{container}", argv, env, proc.returncode, proc.stdout + proc.stderr)

    def start(self, kind: str, name: str, container: str, log: Path, **kwargs: Any) -> subprocess.Popen:
        """A long-running container (a Deployment's), in its own session; its output goes to ``log``. A port
        held for it (``Peers.hold``, given in ``listen``) is handed over as its listening socket."""
        argv, env, cwd = self.prepare(kind, name, container, **kwargs)
        held = [self.peers.held.pop(port) for port in (kwargs.get("listen") or {}).values() if port in self.peers.held]
        if len(held) > 1:
            raise NotImplementedError(f"{name}/{container}: one held port per container")
        if held:
            argv = socket_activation(argv, held[0])
        try:
            return subprocess.Popen(argv, env=env, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                    start_new_session=True, pass_fds=tuple(sock.fileno() for sock in held))
        finally:
            for sock in held:  # the container has its own copy
                sock.close()


def create_release_secrets(kube: Any, release: Rendered, values: dict[str, dict[str, str]],
                           namespace: str = NAMESPACE) -> None:
    """Create the Secrets the chart generates at install, in the emulated API, with exactly the rendered
    keys: ``values[secret][key]`` replaces a generated value (a local peer's credential); a key the
    render does not have is an error, so a test can never supply a key the chart does not generate."""
    rendered = {d["metadata"]["name"]: d for d in release.of_kind("Secret")}
    unknown = set(values) - set(rendered)
    assert not unknown, f"the release renders no Secret {sorted(unknown)}"
    for name, doc in rendered.items():
        data = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
        data |= {k: str(v) for k, v in (doc.get("stringData") or {}).items()}
        extra = set(values.get(name, {})) - set(data)
        assert not extra, f"Secret {name} as rendered has no key(s) {sorted(extra)}; it has {sorted(data)}"
        data |= values.get(name, {})
        kube.create_secret(namespace, name, data, labels=doc["metadata"].get("labels") or {})
