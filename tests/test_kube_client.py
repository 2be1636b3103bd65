"""The daemon imports the parts of kubernetes-asyncio it uses, and other code still sees the
whole library (each case in a fresh interpreter: imports are process-wide)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_controller_loads_no_generated_api_or_model() -> None:
    out = run("import sys, node_controller.kube as k\n"
              "mods = [m for m in sys.modules if m.startswith('kubernetes_asyncio')]\n"
              "print(len(mods), any('.models.' in m or '.api.' in m for m in mods),\n"
              "      k.ApiClient.__module__, k.config.load_kube_config.__module__)")
    count, generated, client, loader = out.split()
    assert int(count) < 30 and generated == "False"
    assert client == "kubernetes_asyncio.client.api_client"
    assert loader == "kubernetes_asyncio.config.kube_config"


@pytest.mark.parametrize("name", ["client.CoreV1Api", "client.models.V1Pod",
                                  "watch.Watch", "__version__"])
def test_the_rest_of_the_library_loads_when_asked_for(name: str) -> None:
    out = run("import node_controller.kube, kubernetes_asyncio as k\n"
              f"print(repr(k.{name}))")
    assert out and "Error" not in out


def test_a_library_imported_before_is_used_as_it_is() -> None:
    out = run("import kubernetes_asyncio.client as c, node_controller.kube as k\n"
              "print(k.ApiClient is c.ApiClient, hasattr(c, 'CoreV1Api'),\n"
              "      '__getattr__' in vars(c))")
    assert out == "True True False"


def test_a_missing_name_is_an_attribute_error_after_loading() -> None:
    out = run("import node_controller.kube, kubernetes_asyncio.client as c\n"
              "try:\n    c.NoSuchThing\nexcept AttributeError as e:\n    print('attr', e)\n"
              "print(hasattr(c, 'CoreV1Api'))")
    assert out.splitlines()[0].startswith("attr") and out.splitlines()[-1] == "True"
