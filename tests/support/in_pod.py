"""Run a pod's Python program outside a pod, as that pod's ServiceAccount: ``python in_pod.py SCRIPT [ARGS]``
or ``python in_pod.py -m MODULE [ARGS]`` or ``python in_pod.py -c CODE [ARGS]``.

In a pod, ``kubernetes.config.load_incluster_config()`` reads the ServiceAccount's token file and the
API server's address (``KUBERNETES_SERVICE_HOST``, https). Here that one function is replaced: it loads
the kubeconfig named by ``KUBECONFIG`` instead, which the test writes with the ServiceAccount's bearer
token for the emulated Kubernetes API (``EmulatedKubernetesAPI.kubeconfig_for``). Nothing else of the
script changes; it runs as ``__main__``.
"""

import os
import runpy
import sys

import kubernetes.config


def load_incluster_config(*_: object, **__: object) -> None:
    kubernetes.config.load_kube_config(config_file=os.environ["KUBECONFIG"])


kubernetes.config.load_incluster_config = load_incluster_config

if __name__ == "__main__":
    if sys.argv[1] == "-c":
        code = sys.argv[2]
        sys.argv = ["-c", *sys.argv[3:]]
        exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})  # noqa: S102 (python -c)
    elif sys.argv[1] == "-m":
        module = sys.argv[2]
        sys.argv = sys.argv[2:]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script = sys.argv[1]
        sys.argv = sys.argv[1:]
        runpy.run_path(script, run_name="__main__")
