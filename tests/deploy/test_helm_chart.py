"""The Helm chart (deploy/helm/consent-gateway), checked without helm.

No package registry this machine reaches ships the helm binary, so the templates are
read as YAML once each `{{ ... }}` action is replaced: a line holding only actions
(control flow, a block `include`/`toYaml`) is dropped, and an action inside a line
becomes the placeholder `__tplN__`, N indexing the action's text. What a field is set
from is then checked by the action behind its placeholder. The chart's config block is
loaded with the gateway's own config loader, and the command lines the Deployment and
the migration Job run are parsed by the gateway's own CLI parser.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import commands
from gateway.config.schema import StoreBackend
from gateway.errors import ConfigError
from tests.deploy.deploy_harness import (
    DEPLOY,
    TEST_ADMIN_TOKEN,
    TEST_COOKIE_KEY,
    TEST_DSN,
    load_deploy_config,
)

CHART = DEPLOY / "helm" / "consent-gateway"
TEMPLATES = CHART / "templates"
VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
CONFIG: dict[str, Any] = VALUES["config"]

ACTION = re.compile(r"\{\{.*?\}\}", re.DOTALL)
MARK = re.compile(r"\x00(\d+)\x00")
PLACEHOLDER = re.compile(r"__tpl(\d+)__")


@dataclass(frozen=True, slots=True)
class Template:
    """A template file read as YAML: its documents and the actions behind placeholders."""

    docs: list[dict[str, Any]]
    actions: list[str]

    def source(self, value: object) -> str:
        """The expression a field whose whole value is one placeholder is rendered from."""
        m = PLACEHOLDER.fullmatch(str(value))
        assert m, f"{value!r} is not rendered from one template action"
        return expression(self.actions[int(m.group(1))])

    def sources_in(self, value: object) -> list[str]:
        """The expressions of every placeholder in a string value."""
        return [expression(self.actions[int(n)]) for n in PLACEHOLDER.findall(str(value))]

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]


def expression(action: str) -> str:
    """`{{- .Values.x | quote }}` -> `.Values.x | quote`."""
    return action.removeprefix("{{").removesuffix("}}").strip("-").strip()


def substitute(text: str) -> tuple[str, list[str]]:
    """`text` with its template actions dropped or replaced by placeholders."""
    actions: list[str] = []

    def mark(m: re.Match[str]) -> str:
        actions.append(m.group(0))
        return f"\x00{len(actions) - 1}\x00"

    lines = []
    for line in ACTION.sub(mark, text).splitlines():
        if MARK.search(line) and not MARK.sub("", line).strip():
            continue
        lines.append(MARK.sub(lambda m: f"__tpl{m.group(1)}__", line))
    return "\n".join(lines) + "\n", actions


def read_template(name: str) -> Template:
    text, actions = substitute((TEMPLATES / name).read_text())
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    return Template(docs, actions)


def define_body(name: str) -> str:
    """The body of `{{- define "name" -}}` in _helpers.tpl."""
    text = (TEMPLATES / "_helpers.tpl").read_text()
    m = re.search(
        r'\{\{-? define "' + re.escape(name) + r'" -?\}\}(.*?)\{\{-? end \}\}(?:\n\n|\n?\Z)',
        text,
        re.DOTALL,
    )
    assert m, f"_helpers.tpl defines no {name}"
    return m.group(1)


YAML_TEMPLATES = sorted(p.name for p in TEMPLATES.glob("*.yaml"))


# -- the substitution itself ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "actions"),
    [
        ("a: {{ .Values.x }}\n", "a: __tpl0__\n", ["{{ .Values.x }}"]),
        ('a: "{{ .A }}:{{ .B }}"\n', 'a: "__tpl0__:__tpl1__"\n', ["{{ .A }}", "{{ .B }}"]),
        ("{{- if .X }}\na: 1\n{{- end }}\n", "a: 1\n", ["{{- if .X }}", "{{- end }}"]),
        ('b:\n  {{- include "l" . | nindent 2 }}\n', "b:\n", ['{{- include "l" . | nindent 2 }}']),
        ("{{/* one\ntwo */}}\nc: 2\n", "c: 2\n", ["{{/* one\ntwo */}}"]),
    ],
)
def test_substitute(text: str, expected: str, actions: list[str]) -> None:
    assert substitute(text) == (expected, actions)


# -- every template ------------------------------------------------------------------


def test_the_chart_has_its_files() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "consent-gateway"
    # The default image tag: the gateway's own version.
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    for name in ("values.yaml", "README.md", "templates/NOTES.txt", "templates/_helpers.tpl"):
        assert (CHART / name).is_file(), name


@pytest.mark.parametrize("name", YAML_TEMPLATES)
def test_template_parses_into_named_resources(name: str) -> None:
    template = read_template(name)
    assert template.docs, f"{name} holds no resource"
    for doc in template.docs:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), name
        # Named after the release, so two releases in one namespace do not collide.
        resource = doc["metadata"]["name"]
        assert template.sources_in(resource)[:1] == ['include "consent-gateway.fullname" .']
        assert str(resource).startswith("__tpl"), name


@pytest.mark.parametrize("name", [*YAML_TEMPLATES, "_helpers.tpl", "NOTES.txt"])
def test_block_includes_are_indented_where_they_stand(name: str) -> None:
    # `{{- include ... | nindent N }}` alone on a line must indent by its own column,
    # or the rendered YAML nests the block under the wrong key.
    for line in (TEMPLATES / name).read_text().splitlines():
        m = re.fullmatch(r"( *)\{\{-? .*\| nindent (\d+) \}\}", line)
        if m:
            assert len(m.group(1)) == int(m.group(2)), f"{name}: {line.strip()}"


def _values_paths() -> list[tuple[str, str]]:
    used = []
    for path in sorted(TEMPLATES.iterdir()):
        for m in re.finditer(r"\.Values((?:\.[A-Za-z_]\w*)+)", path.read_text()):
            used.append((path.name, m.group(1).lstrip(".")))
    return sorted(set(used))


@pytest.mark.parametrize(("name", "dotted"), _values_paths())
def test_every_value_a_template_reads_is_in_values_yaml(name: str, dotted: str) -> None:
    node: Any = VALUES
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"{name}: .Values.{dotted}"
        node = node[part]


# -- the Deployment ------------------------------------------------------------------


DEPLOYMENT = read_template("deployment.yaml")
POD = DEPLOYMENT.kind("Deployment")[0]["spec"]["template"]["spec"]
CONTAINER = POD["containers"][0]


def test_deployment_probes_the_ops_listener() -> None:
    assert CONTAINER["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
    assert CONTAINER["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}


def test_container_ports_are_the_configured_listeners() -> None:
    ports = {p["name"]: DEPLOYMENT.source(p["containerPort"]) for p in CONTAINER["ports"]}
    assert ports == {
        "http": ".Values.config.server.port",
        "ops": ".Values.config.server.admin_port",
    }
    # Probes reach the ops port only if the gateway serves it on every interface.
    assert CONFIG["server"]["admin_host"] == "0.0.0.0"
    assert CONFIG["server"]["host"] == "0.0.0.0"
    assert isinstance(CONFIG["server"]["admin_port"], int)


def test_deployment_runs_serve_on_the_mounted_config() -> None:
    args = commands._parser().parse_args(CONTAINER["command"][1:])
    assert CONTAINER["command"][0] == "consent-gateway"
    assert args.func.__name__ == "_cmd_serve"
    mounts = {m["name"]: m for m in CONTAINER["volumeMounts"]}
    assert mounts["config"]["mountPath"] == args.config
    assert mounts["config"]["subPath"] == "config.yaml"


def test_deployment_runs_non_root_on_a_read_only_root() -> None:
    text = (TEMPLATES / "deployment.yaml").read_text()
    assert "toYaml .Values.securityContext | nindent 12" in text
    assert "toYaml .Values.podSecurityContext | nindent 8" in text
    assert "toYaml .Values.resources | nindent 12" in text
    assert VALUES["podSecurityContext"]["runAsNonRoot"] is True
    assert VALUES["podSecurityContext"]["runAsUser"] == 10001  # the Dockerfile's user
    assert VALUES["securityContext"]["readOnlyRootFilesystem"] is True
    assert VALUES["securityContext"]["allowPrivilegeEscalation"] is False
    assert VALUES["resources"]["requests"]["cpu"]  # the HPA's utilisation is of this


def test_the_writable_paths_are_empty_dirs() -> None:
    mounts = {m["name"]: m["mountPath"] for m in CONTAINER["volumeMounts"]}
    volumes = {v["name"]: v for v in POD["volumes"]}
    assert DEPLOYMENT.source(mounts["data"]) == ".Values.config.data_dir"
    assert CONFIG["data_dir"].startswith("/")  # not under the config's folder
    assert "emptyDir" in volumes["data"]
    assert mounts["tmp"] == "/tmp" and "emptyDir" in volumes["tmp"]


def test_deployment_and_job_take_the_secrets_from_the_helper() -> None:
    for name, indent in (("deployment.yaml", 12), ("migrate-job.yaml", 12)):
        text = (TEMPLATES / name).read_text()
        assert re.search(
            r"\n( +)env:\n\1  \{\{- include \"consent-gateway.secretEnv\" \. \| nindent "
            + str(indent)
            + r" \}\}\n",
            text,
        ), name


def test_secret_env_names_the_configured_variables_and_the_secret_refs() -> None:
    text, actions = substitute(define_body("consent-gateway.secretEnv"))
    env = Template(yaml.safe_load(text), actions)
    refs = [
        (
            env.source(e["name"]),
            env.source(e["valueFrom"]["secretKeyRef"]["name"]),
            env.source(e["valueFrom"]["secretKeyRef"]["key"]),
        )
        for e in env.docs
    ]
    assert refs == [
        (".secret_env", "$ref.existingSecret", "$ref.key"),
        (
            ".Values.config.admin.token_env",
            ".Values.secrets.adminToken.existingSecret",
            ".Values.secrets.adminToken.key",
        ),
        (
            ".Values.config.store.postgres_dsn_env",
            ".Values.secrets.postgresDsn.existingSecret",
            ".Values.secrets.postgresDsn.key",
        ),
    ]
    assert "range .Values.config.cookie.keys" in " ".join(actions)
    assert "index $.Values.secrets.cookieKeys .id" in " ".join(actions)


def test_values_name_a_secret_for_every_cookie_key_and_hold_no_secret() -> None:
    secrets = VALUES["secrets"]
    assert {k["id"] for k in CONFIG["cookie"]["keys"]} == set(secrets["cookieKeys"])
    refs = [*secrets["cookieKeys"].values(), secrets["adminToken"], secrets["postgresDsn"]]
    for ref in refs:
        assert set(ref) == {"existingSecret", "key"}


# -- the chart's config, read by the gateway -------------------------------------------


def _env() -> dict[str, str]:
    env = {k["secret_env"]: TEST_COOKIE_KEY for k in CONFIG["cookie"]["keys"]}
    env[CONFIG["admin"]["token_env"]] = TEST_ADMIN_TOKEN
    env[CONFIG["store"]["postgres_dsn_env"]] = TEST_DSN
    env["CONSENT_GATEWAY_IMAGE"] = "1"  # the Dockerfile sets it
    return env


def test_the_config_loads_with_the_gateway_loader(tmp_path: Path) -> None:
    cfg = load_deploy_config(CONFIG, _env(), tmp_path / "config.yaml")
    assert cfg.store.backend is StoreBackend.POSTGRES
    assert cfg.store.postgres_dsn == TEST_DSN
    assert cfg.store.migrate_on_start is False  # the migration Job migrates
    assert [k.id for k in cfg.cookie.keys] == ["k1"]
    assert cfg.cookie.dev_key is False
    assert cfg.admin.token == TEST_ADMIN_TOKEN
    assert cfg.server.workers == 1
    assert cfg.data_dir == Path(CONFIG["data_dir"])
    assert CONFIG["decision_log"]["backend"] == "postgres"
    assert cfg.decision_log.postgres_dsn == TEST_DSN  # the same secret, the same database
    # Kubernetes kills the pod after its grace period: the drain (not ready while the
    # balancer notices, then the answers in flight) must end before it, with room to
    # hand the last records to the log.
    drain = cfg.server.drain_delay + cfg.server.shutdown_timeout
    assert drain + 5 <= VALUES["terminationGracePeriodSeconds"]


@pytest.mark.parametrize(
    ("unset", "problem"),
    [
        (CONFIG["cookie"]["keys"][0]["secret_env"], "cookie: no signing key"),
        (
            CONFIG["store"]["postgres_dsn_env"],
            "backend postgres needs a DSN in environment variable "
            + CONFIG["store"]["postgres_dsn_env"],
        ),
    ],
)
def test_the_config_refuses_to_load_without_a_referenced_secret(
    unset: str, problem: str, tmp_path: Path
) -> None:
    env = _env()
    del env[unset]
    with pytest.raises(ConfigError) as e:
        load_deploy_config(CONFIG, env, tmp_path / "config.yaml")
    assert problem in str(e.value)


def test_without_the_admin_token_the_admin_page_is_off(tmp_path: Path) -> None:
    env = _env()
    del env[CONFIG["admin"]["token_env"]]
    assert load_deploy_config(CONFIG, env, tmp_path / "config.yaml").admin.token is None


def test_configmap_holds_the_config_and_the_site_rules() -> None:
    template = read_template("configmap.yaml")
    config, rules = template.kind("ConfigMap")
    assert set(config["data"]) == {"config.yaml"}
    # The rules' ConfigMap (and its mount) exists only with site rules: the loader
    # refuses a rules folder without *.yaml.
    assert str(rules["metadata"]["name"]).endswith("-rules")
    assert rules["data"] is None
    assert "if trim (include" in (TEMPLATES / "configmap.yaml").read_text()
    text = (TEMPLATES / "configmap.yaml").read_text()
    assert 'config.yaml: |\n    {{- include "consent-gateway.config" . | nindent 4 }}' in text
    helpers = (TEMPLATES / "_helpers.tpl").read_text()
    assert '.Files.Glob "rules/*.yaml"' in helpers
    assert "range $name, $text := .Values.siteRules" in helpers
    assert (CHART / "rules" / "README.md").is_file()


# -- Services, HPA, PDB, Ingress -----------------------------------------------------------


def test_services_target_the_container_ports() -> None:
    services = {s["metadata"]["name"]: s for s in read_template("service.yaml").kind("Service")}
    assert len(services) == 2
    names = {p["name"] for p in CONTAINER["ports"]}
    targets = sorted(p["targetPort"] for s in services.values() for p in s["spec"]["ports"])
    assert targets == sorted(names) == ["http", "ops"]
    (ops,) = (s for s in services.values() if s["spec"]["ports"][0]["targetPort"] == "ops")
    assert ops["spec"]["type"] == "ClusterIP"  # never a LoadBalancer, whatever values say


def test_selectors_are_the_gateway_pods_and_never_the_migration_job() -> None:
    for name in ("deployment.yaml", "service.yaml", "pdb.yaml"):
        assert 'include "consent-gateway.selectorLabels"' in (TEMPLATES / name).read_text()
    job = read_template("migrate-job.yaml")
    (job_doc,) = job.kind("Job")
    labels = job_doc["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"].endswith("-migrate")


def test_hpa_scales_the_deployment_on_cpu() -> None:
    (hpa,) = read_template("hpa.yaml").kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert VALUES["autoscaling"]["minReplicas"] >= 2  # a fleet, and the PDB can be met


def test_pdb_keeps_a_replica() -> None:
    (pdb,) = read_template("pdb.yaml").kind("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert VALUES["podDisruptionBudget"]["minAvailable"] < VALUES["autoscaling"]["minReplicas"]


def test_ingress_is_off_by_default_and_reaches_the_public_port_only() -> None:
    assert VALUES["ingress"]["enabled"] is False
    text = (TEMPLATES / "ingress.yaml").read_text()
    assert text.startswith("{{- if .Values.ingress.enabled }}")
    (ingress,) = read_template("ingress.yaml").kind("Ingress")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"]["port"] == {"name": "http"}


# -- the migration Job ---------------------------------------------------------------------


def test_migration_job_is_a_hook_running_migrate() -> None:
    job = read_template("migrate-job.yaml")
    (doc,) = job.kind("Job")
    (config,) = job.kind("ConfigMap")
    for resource in (doc, config):
        assert resource["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    weight = "helm.sh/hook-weight"
    # The hook's ConfigMap exists before the Job that mounts it.
    assert int(config["metadata"]["annotations"][weight]) < int(
        doc["metadata"]["annotations"][weight]
    )
    container = doc["spec"]["template"]["spec"]["containers"][0]
    args = commands._parser().parse_args(container["command"][1:])
    assert args.func.__name__ == "_cmd_migrate"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["config"] == args.config
    assert doc["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # The Job mounts the hook's ConfigMap, not the release's (not there yet on install).
    volumes = {v["name"]: v for v in doc["spec"]["template"]["spec"]["volumes"]}
    mounted = volumes["config"]["configMap"]["name"]
    assert PLACEHOLDER.sub("N", mounted) == PLACEHOLDER.sub("N", config["metadata"]["name"])
    assert job.sources_in(mounted) == job.sources_in(config["metadata"]["name"])


# -- with helm, where it is installed ------------------------------------------------------

HELM = shutil.which("helm")
needs_helm = pytest.mark.skipif(HELM is None, reason="helm is not installed")


def _helm(*args: str) -> str:
    assert HELM is not None
    done = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_helm
def test_helm_lint() -> None:
    _helm("lint", "--strict", str(CHART))


@needs_helm
def test_helm_template_renders_the_fleet(tmp_path: Path) -> None:
    rule = "vendor: site-test\nname: Site test\n"
    text = _helm("template", "cg", str(CHART), "--set-string", f"siteRules.site\\.yaml={rule}")
    docs = [d for d in yaml.safe_load_all(text) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        ["ConfigMap"] * 3
        + ["Deployment", "HorizontalPodAutoscaler", "Job", "PodDisruptionBudget"]
        + ["Service"] * 2
    )
    (deployment,) = (d for d in docs if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["containerPort"] for p in container["ports"]} == {
        CONFIG["server"]["port"],
        CONFIG["server"]["admin_port"],
    }
    assert [e["name"] for e in container["env"]] == [
        "CONSENT_GATEWAY_COOKIE_KEY",
        "CONSENT_GATEWAY_ADMIN_TOKEN",
        "CONSENT_GATEWAY_PG_DSN",
    ]
    maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    assert maps["cg-consent-gateway-rules"] == {"site.yaml": rule}
    rendered = yaml.safe_load(maps["cg-consent-gateway-config"]["config.yaml"])
    assert rendered["rules"]["paths"] == ["/app/rules", "/etc/consent-gateway/rules"]
    assert maps["cg-consent-gateway-migrate"] == maps["cg-consent-gateway-config"]
    env = {e["name"]: TEST_DSN for e in container["env"]}
    env["CONSENT_GATEWAY_COOKIE_KEY"] = TEST_COOKIE_KEY
    load_deploy_config(rendered, env, tmp_path / "config.yaml")
