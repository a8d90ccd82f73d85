"""The umbrella chart lints cleanly, renders objects that Kubernetes 1.30 accepts, and wires its
components together: brokers, etcd, PostgreSQL, producer, sink, API and the topic job."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from urllib.parse import urlsplit

import helm_python as helm
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from chart_support import (
    CHART,
    REPO,
    VALUE_SETS,
    container,
    env,
    fullname,
    option,
    pod_spec,
    service_host,
    values_of,
)

ALL_SETS = pytest.mark.parametrize("value_set", list(VALUE_SETS))
BROKERS = fullname("brokers")
ETCD = fullname("etcd")

# The metric names of the operations contract (broker, sink, producer, API).
CONTRACT_METRICS = {
    "tmq_broker_requests_total",
    "tmq_broker_request_duration_seconds",
    "tmq_broker_bytes_in_total",
    "tmq_broker_bytes_out_total",
    "tmq_broker_messages_in_total",
    "tmq_broker_leader_partitions",
    "tmq_broker_under_replicated_partitions",
    "tmq_broker_isr_shrinks_total",
    "tmq_broker_isr_expands_total",
    "tmq_broker_high_watermark_lag_messages",
    "tmq_broker_fsync_duration_seconds",
    "tmq_broker_connections",
    "tmq_sink_records_consumed_total",
    "tmq_sink_rows_written_total",
    "tmq_sink_dead_letters_total",
    "tmq_sink_batch_duration_seconds",
    "tmq_sink_consumer_lag_messages",
    "tmq_sink_partitions_owned",
    "tmq_producer_records_sent_total",
    "tmq_producer_rows_rejected_total",
    "tmq_producer_send_errors_total",
    "tmq_api_requests_total",
    "tmq_api_request_duration_seconds",
    "tmq_api_database_up",
}


def selects(selector: dict[str, str], workload: dict) -> bool:
    """Whether a label selector matches the pods of ``workload``."""
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(key) == value for key, value in selector.items())


def broker_args(rendering) -> list[str]:
    return container(rendering.get("StatefulSet", BROKERS), "broker")["args"]


class LintTests:
    @ALL_SETS
    def test_strict_lint_finds_nothing(self, value_set):
        """helm lint --strict (warnings count as errors) against Kubernetes 1.30 reports no
        warning or error for the defaults, values-dev.yaml or values-prod.yaml."""
        report = helm.lint(CHART, values_of(value_set), strict=True, kube_version="v1.30.0")
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


class SchemaTests:
    def test_kubernetes_validate_carries_the_1_30_schemas(self):
        """The pinned kubernetes-validate ships Kubernetes 1.30's schemas, so validation below
        uses them and does not fall back to an older version."""
        assert "1.30.0" in kubernetes_validate.utils.all_versions()

    @ALL_SETS
    def test_every_object_is_valid_kubernetes_1_30(self, rendered, value_set):
        """Every rendered object validates against the strict Kubernetes 1.30 schema of its
        kind (unknown fields are errors)."""
        invalid = []
        for obj in rendered[value_set].objects:
            try:
                assert kubernetes_validate.validate(obj, "1.30.0", strict=True) == "1.30"
            except kubernetes_validate.ValidationError as error:
                invalid.append(f"{obj['kind']}/{obj['metadata']['name']}: {error.message}")
        assert invalid == []

    def test_optional_objects_are_valid_kubernetes_1_30(self, render):
        """The objects only optional values bring (Ingress, a PVC-fed producer, an external
        database) validate as well."""
        rendering = render(
            {
                "api": {"ingress": {"enabled": True, "tls": [{"secretName": "t", "hosts": ["h"]}]}},
                "producer": {"csv": {"existingClaim": "captures"}},
                "postgresql": {"enabled": False},
                "externalDatabase": {"dsn": "postgresql://u:p@db:5432/t"},
            }
        )
        for obj in rendering.objects:
            assert kubernetes_validate.validate(obj, "1.30.0", strict=True) == "1.30"


class BrokerTests:
    @ALL_SETS
    def test_each_broker_advertises_its_own_pod_dns_name(self, rendered, value_set):
        """--advertise is $(POD_NAME).<headless service>.<namespace>.svc.cluster.local:9092:
        POD_NAME comes from the downward API, and the headless service is the StatefulSet's,
        selects the broker pods and publishes them before they are ready."""
        rendering = rendered[value_set]
        statefulset = rendering.get("StatefulSet", BROKERS)
        broker = container(statefulset, "broker")
        headless = statefulset["spec"]["serviceName"]
        assert option(broker["args"], "--advertise") == f"$(POD_NAME).{service_host(headless)}:9092"
        field = env(broker)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == "metadata.name"
        service = rendering.get("Service", headless)
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["publishNotReadyAddresses"] is True
        assert selects(service["spec"]["selector"], statefulset)
        assert {"name": "kafka", "port": 9092, "targetPort": "kafka"} in service["spec"]["ports"]

    @ALL_SETS
    def test_broker_ids_come_from_the_pod_ordinal(self, rendered, value_set):
        """Brokers run `tmq broker --id auto`, listening on 0.0.0.0:9092 with metrics and health
        on 0.0.0.0:9100."""
        args = broker_args(rendered[value_set])
        assert args[0] == "broker"
        assert option(args, "--id") == "auto"
        assert option(args, "--listen") == "0.0.0.0:9092"
        assert option(args, "--metrics-listen") == "0.0.0.0:9100"

    @ALL_SETS
    def test_brokers_list_every_etcd_member(self, rendered, value_set):
        """--metadata names each member of the etcd StatefulSet through its headless service, as
        many as the StatefulSet has replicas (3 by default and in prod, 1 in dev)."""
        rendering = rendered[value_set]
        etcd = rendering.get("StatefulSet", ETCD)
        replicas = etcd["spec"]["replicas"]
        headless = etcd["spec"]["serviceName"]
        members = [f"{ETCD}-{i}.{service_host(headless)}:2379" for i in range(replicas)]
        assert option(broker_args(rendering), "--metadata") == "etcd://" + ",".join(members)
        assert replicas == {"default": 3, "dev": 1, "prod": 3}[value_set]
        assert rendering.get("Service", headless)["spec"]["publishNotReadyAddresses"] is True

    @ALL_SETS
    def test_brokers_start_together_with_a_volume_claim_each(self, rendered, value_set):
        """The broker StatefulSet starts its pods in parallel, gives each a PVC from its claim
        templates mounted at --data-dir, and a grace period for a clean shutdown."""
        statefulset = rendered[value_set].get("StatefulSet", BROKERS)
        spec = statefulset["spec"]
        assert spec["podManagementPolicy"] == "Parallel"
        (claim,) = spec["volumeClaimTemplates"]
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        broker = container(statefulset, "broker")
        mounts = {m["name"]: m["mountPath"] for m in broker["volumeMounts"]}
        assert mounts[claim["metadata"]["name"]] == option(broker["args"], "--data-dir")
        assert pod_spec(statefulset)["terminationGracePeriodSeconds"] >= 30

    def test_broker_anti_affinity_is_preferred_by_default_and_required_in_prod(self, rendered):
        """Brokers prefer separate nodes by default and require them with values-prod.yaml; the
        rule is against the broker pods themselves."""
        for value_set, rule in (
            ("default", "preferredDuringSchedulingIgnoredDuringExecution"),
            ("prod", "requiredDuringSchedulingIgnoredDuringExecution"),
        ):
            statefulset = rendered[value_set].get("StatefulSet", BROKERS)
            anti = pod_spec(statefulset)["affinity"]["podAntiAffinity"]
            assert list(anti) == [rule]
            (term,) = anti[rule]
            term = term.get("podAffinityTerm", term)
            assert term["topologyKey"] == "kubernetes.io/hostname"
            assert selects(term["labelSelector"]["matchLabels"], statefulset)

    @ALL_SETS
    def test_clients_bootstrap_from_the_broker_client_service(self, rendered, value_set):
        """Producer, sink and the topic job bootstrap from the brokers' client Service, which
        selects the broker pods on port 9092."""
        rendering = rendered[value_set]
        service = rendering.get("Service", BROKERS)
        assert selects(service["spec"]["selector"], rendering.get("StatefulSet", BROKERS))
        assert [p["port"] for p in service["spec"]["ports"]] == [9092]
        bootstrap = f"{service_host(BROKERS)}:9092"
        for component in ("producer", "sink"):
            args = container(rendering.get("Deployment", fullname(component)), component)["args"]
            assert option(args, "--bootstrap") == bootstrap
        job = rendering.get("Job", fullname("topic"))
        assert env(pod_spec(job)["containers"][0])["BOOTSTRAP"]["value"] == bootstrap

    def test_broker_settings_become_set_options_with_whole_numbers_intact(self, render):
        """brokers.settings reach the broker as --set KEY=VALUE; a large whole number stays an
        integer (YAML numbers reach the templates as floats) and a fraction stays a fraction."""
        settings = {"segment.bytes": 1073741824, "ratio": 0.5, "flush.policy": "interval"}
        args = broker_args(render({"brokers": {"settings": settings}}))
        pairs = [args[i + 1] for i, arg in enumerate(args) if arg == "--set"]
        assert pairs == ["flush.policy=interval", "ratio=0.5", "segment.bytes=1073741824"]

    def test_a_replication_factor_above_the_broker_count_is_refused(self, render):
        """Rendering fails, naming both values, when the topic wants more replicas than there
        are brokers."""
        with pytest.raises(helm.HelmRenderError, match=r"topic\.replicationFactor \(3\)"):
            render({"brokers": {"replicaCount": 2}})


class EtcdTests:
    @ALL_SETS
    def test_initial_cluster_names_every_member_by_its_peer_address(self, rendered, value_set):
        """Each member is named after its pod and advertises its pod DNS name; the initial
        cluster lists all replicas with those names and peer URLs."""
        etcd = rendered[value_set].get("StatefulSet", ETCD)
        headless = etcd["spec"]["serviceName"]
        args = dict(a.split("=", 1) for a in container(etcd, "etcd")["args"])
        peers = [
            f"{ETCD}-{i}=http://{ETCD}-{i}.{service_host(headless)}:2380"
            for i in range(etcd["spec"]["replicas"])
        ]
        assert args["--initial-cluster"] == ",".join(peers)
        assert args["--name"] == "$(POD_NAME)"
        assert (
            args["--initial-advertise-peer-urls"]
            == f"http://$(POD_NAME).{service_host(headless)}:2380"
        )
        assert etcd["spec"]["podManagementPolicy"] == "Parallel"
        assert etcd["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"

    def test_an_even_member_count_is_refused(self, render):
        """Two etcd members would tolerate no more failures than one: rendering fails."""
        with pytest.raises(helm.HelmRenderError, match="must be odd"):
            render({"global": {"etcd": {"replicaCount": 2}}})


class DatabaseTests:
    @ALL_SETS
    def test_sink_and_api_read_the_dsn_from_the_secret(self, rendered, value_set):
        """Sink and API get TMQ_DSN through a secretKeyRef to the rendered Secret's TMQ_DSN key,
        and never on their command lines."""
        rendering = rendered[value_set]
        secret = rendering.get("Secret", fullname("database"))
        for component in ("sink", "api"):
            app = container(rendering.get("Deployment", fullname(component)), component)
            reference = env(app)["TMQ_DSN"]["valueFrom"]["secretKeyRef"]
            assert reference == {"name": fullname("database"), "key": "TMQ_DSN"}
            assert "--dsn" not in app["args"]
        assert "TMQ_DSN" in secret["stringData"]

    def test_the_bundled_postgresql_is_reached_with_its_own_password(self, rendered):
        """The DSN names the PostgreSQL Service, user and database, with the password that the
        PostgreSQL container takes from the same Secret."""
        rendering = rendered["default"]
        data = rendering.get("Secret", fullname("database"))["stringData"]
        dsn = urlsplit(data["TMQ_DSN"])
        assert (dsn.scheme, dsn.hostname, dsn.port) == (
            "postgresql",
            service_host(fullname("postgresql")),
            5432,
        )
        assert (dsn.username, dsn.password, dsn.path) == (
            "tmq",
            data["POSTGRES_PASSWORD"],
            "/telemetry",
        )
        assert len(data["POSTGRES_PASSWORD"]) >= 24
        postgres = container(rendering.get("StatefulSet", fullname("postgresql")), "postgresql")
        reference = env(postgres)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert reference == {"name": fullname("database"), "key": "POSTGRES_PASSWORD"}
        assert postgres["image"].startswith("timescale/timescaledb:")
        assert rendering.get("Service", fullname("postgresql"))["spec"]["ports"][0]["port"] == 5432

    def test_an_external_dsn_replaces_the_bundled_postgresql(self, render):
        """postgresql.enabled=false with externalDatabase.dsn: no PostgreSQL objects, and the
        Secret holds that DSN alone."""
        dsn = "postgresql://tmq:pw@db.example:5432/telemetry?sslmode=require"
        rendering = render({"postgresql": {"enabled": False}, "externalDatabase": {"dsn": dsn}})
        assert fullname("postgresql") not in rendering.names("StatefulSet")
        assert fullname("postgresql") not in rendering.names("Service")
        assert rendering.get("Secret", fullname("database"))["stringData"] == {"TMQ_DSN": dsn}

    def test_an_existing_secret_is_referenced_not_written(self, render):
        """global.database.existingSecret: the chart writes no Secret and the sink and API read
        the DSN key named by global.database.dsnKey from that Secret."""
        rendering = render(
            {
                "postgresql": {"enabled": False},
                "global": {"database": {"existingSecret": "telemetry-db", "dsnKey": "uri"}},
            }
        )
        assert rendering.of_kind("Secret") == []
        for component in ("sink", "api"):
            app = container(rendering.get("Deployment", fullname(component)), component)
            reference = env(app)["TMQ_DSN"]["valueFrom"]["secretKeyRef"]
            assert reference == {"name": "telemetry-db", "key": "uri"}

    def test_no_database_at_all_is_refused(self, render):
        """postgresql.enabled=false without a DSN or an existing Secret fails to render."""
        with pytest.raises(helm.HelmRenderError, match=r"externalDatabase\.dsn"):
            render({"postgresql": {"enabled": False}})


class ProbeTests:
    @ALL_SETS
    def test_every_workload_container_has_readiness_and_liveness_probes(self, rendered, value_set):
        """Each container of every Deployment and StatefulSet has both probes, and every probe
        on a named port names one of the container's ports."""
        for workload in rendered[value_set].workloads():
            for spec in pod_spec(workload)["containers"]:
                where = f"{workload['metadata']['name']}/{spec['name']}"
                ports = {p["name"] for p in spec["ports"]}
                for kind in ("readinessProbe", "livenessProbe"):
                    assert kind in spec, f"{where} has no {kind}"
                    port = spec[kind].get("httpGet", {}).get("port")
                    assert port is None or port in ports, f"{where}: {kind} on {port}"

    @ALL_SETS
    def test_tmq_services_probe_their_health_endpoints(self, rendered, value_set):
        """Broker, producer and sink are probed on 9100 (/readyz, /healthz), the API on 8080."""
        rendering = rendered[value_set]
        expected = {"broker": 9100, "producer": 9100, "sink": 9100, "api": 8080}
        for workload in rendering.workloads():
            for spec in pod_spec(workload)["containers"]:
                if spec["name"] not in expected:
                    continue
                ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
                for kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                    probe = spec[kind]["httpGet"]
                    assert probe["path"] == path
                    assert ports[probe["port"]] == expected[spec["name"]]


class PersistenceTests:
    @ALL_SETS
    def test_stateful_components_keep_their_data_on_claims(self, rendered, value_set):
        """Brokers, etcd and PostgreSQL each mount a volume claim template, sized by the values
        (smaller in dev than in prod)."""
        rendering = rendered[value_set]
        for component in ("brokers", "etcd", "postgresql"):
            statefulset = rendering.get("StatefulSet", fullname(component))
            (claim,) = statefulset["spec"]["volumeClaimTemplates"]
            mounted = {
                m["name"] for c in pod_spec(statefulset)["containers"] for m in c["volumeMounts"]
            }
            assert claim["metadata"]["name"] in mounted
            assert claim["spec"]["resources"]["requests"]["storage"]

    def test_dev_volumes_are_smaller_than_prod_volumes(self, rendered):
        """values-dev.yaml asks for less broker storage than values-prod.yaml."""

        def size(value_set):
            statefulset = rendered[value_set].get("StatefulSet", BROKERS)
            return statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]

        assert size("dev")["requests"]["storage"] == "2Gi"
        assert size("prod")["requests"]["storage"] == "200Gi"


class DisruptionBudgetTests:
    def test_prod_protects_brokers_and_etcd(self, rendered):
        """values-prod.yaml renders a PodDisruptionBudget allowing one broker and one etcd member
        down at a time, each selecting its own pods."""
        rendering = rendered["prod"]
        for component in ("brokers", "etcd"):
            budget = rendering.get("PodDisruptionBudget", fullname(component))
            assert budget["spec"]["maxUnavailable"] == 1
            statefulset = rendering.get("StatefulSet", fullname(component))
            assert selects(budget["spec"]["selector"]["matchLabels"], statefulset)

    def test_dev_has_no_budgets(self, rendered):
        """values-dev.yaml (one broker, one member) renders no PodDisruptionBudget, which would
        only block node drains."""
        assert rendered["dev"].of_kind("PodDisruptionBudget") == []


class ApiTests:
    @ALL_SETS
    def test_ingress_is_off_unless_enabled(self, rendered, value_set):
        """No value set renders an Ingress: the API has no authentication of its own."""
        assert rendered[value_set].of_kind("Ingress") == []

    def test_enabled_ingress_routes_to_the_api_service(self, render):
        """api.ingress.enabled renders an Ingress for each host to the API Service's http port,
        which serves 8080 from the API pods."""
        rendering = render({"api": {"ingress": {"enabled": True, "hosts": ["a.example"]}}})
        (rule,) = rendering.get("Ingress", fullname("api"))["spec"]["rules"]
        assert rule["host"] == "a.example"
        backend = rule["http"]["paths"][0]["backend"]["service"]
        assert backend == {"name": fullname("api"), "port": {"name": "http"}}
        service = rendering.get("Service", fullname("api"))
        assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http"}]
        deployment = rendering.get("Deployment", fullname("api"))
        assert selects(service["spec"]["selector"], deployment)
        assert option(container(deployment, "api")["args"], "--listen") == "0.0.0.0:8080"

    def test_autoscaler_owns_the_api_replica_count(self, rendered):
        """By default an autoscaling/v2 HPA scales the API Deployment, which then sets no
        replica count of its own; values-dev.yaml turns it off for one fixed replica."""
        hpa = rendered["default"].get("HorizontalPodAutoscaler", fullname("api"))
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        assert target == {"apiVersion": "apps/v1", "kind": "Deployment", "name": fullname("api")}
        assert "replicas" not in rendered["default"].get("Deployment", fullname("api"))["spec"]
        assert rendered["dev"].of_kind("HorizontalPodAutoscaler") == []
        assert rendered["dev"].get("Deployment", fullname("api"))["spec"]["replicas"] == 1


class DashboardTests:
    def test_dashboard_is_off_by_default(self, rendered):
        """The default values ship no dashboard ConfigMap."""
        assert rendered["default"].of_kind("ConfigMap") == []

    def test_enabled_dashboard_renders_the_json_for_the_grafana_sidecar(self, render):
        """grafana.dashboard.enabled renders a ConfigMap labelled grafana_dashboard: "1" whose
        tmq.json is the valid JSON of dashboards/tmq.json."""
        rendering = render({"grafana": {"dashboard": {"enabled": True}}})
        config_map = rendering.get("ConfigMap", fullname("dashboard"))
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        shipped = json.loads(config_map["data"]["tmq.json"])
        assert shipped == json.loads((CHART / "dashboards" / "tmq.json").read_text())
        assert shipped["uid"] == "tmq-telemetry"

    def test_dashboard_queries_the_telemetry_tables_and_contract_metrics(self):
        """PostgreSQL panels read the telemetry and gpus tables; Prometheus panels use metric
        names of the operations contract, and every contract metric family is charted."""
        dashboard = json.loads((CHART / "dashboards" / "tmq.json").read_text())
        tables, used = set(), set()
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                if "rawSql" in target:
                    tables.update(
                        t for t in ("telemetry", "gpus") if f"FROM {t}" in target["rawSql"]
                    )
                else:
                    used.update(
                        word.removesuffix("_bucket")
                        for word in _identifiers(target["expr"])
                        if word.startswith("tmq_")
                    )
        assert tables == {"telemetry", "gpus"}
        assert used == CONTRACT_METRICS


def _identifiers(expr: str) -> list[str]:
    """The identifier-like words of a PromQL expression."""
    return "".join(c if c.isalnum() or c == "_" else " " for c in expr).split()


class TopicJobTests:
    @ALL_SETS
    def test_job_creates_the_topic_the_producer_and_sink_use(self, rendered, value_set):
        """A post-install/post-upgrade hook Job runs `tmq topics create` with the topic's
        partitions and replication factor; its topic is the producer's and the sink's."""
        rendering = rendered[value_set]
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        values.update(values_of(value_set) or {})
        job = rendering.get("Job", fullname("topic"))
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
        (create,) = pod_spec(job)["containers"]
        script = create["args"][0]
        topic = values["topic"]
        assert (
            f'tmq topics create "$TOPIC" --partitions {topic["partitions"]} '
            f"--replication-factor {topic['replicationFactor']}"
        ) in script
        name = env(create)["TOPIC"]["value"]
        assert name == "gpu-telemetry"
        for component in ("producer", "sink"):
            args = container(rendering.get("Deployment", fullname(component)), component)["args"]
            assert option(args, "--topic") == name

    def _run(self, rendering, tmp_path, create_status: int) -> tuple[int, str, list[str]]:
        """Run the job's script under /bin/sh with a stand-in `tmq` that logs its arguments,
        exits ``create_status`` for `topics create` and lists the topic for `topics list`."""
        (create,) = pod_spec(rendering.get("Job", fullname("topic")))["containers"]
        calls = tmp_path / "calls"
        fake = tmp_path / "tmq"
        fake.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$*" >> {calls}\n'
            f'if [ "$2" = create ]; then echo TOPIC_ALREADY_EXISTS >&2; exit {create_status}; fi\n'
            'echo other-topic; echo "$TOPIC"\n'
        )
        fake.chmod(0o755)
        environment = {name: entry["value"] for name, entry in env(create).items()}
        environment["PATH"] = f"{tmp_path}{os.pathsep}{os.environ['PATH']}"
        done = subprocess.run(
            [*create["command"], *create["args"]],
            env=environment,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.returncode, done.stdout, calls.read_text().splitlines()

    def test_an_existing_topic_counts_as_created(self, rendered, tmp_path):
        """When `tmq topics create` fails because the topic exists, the script finds it in
        `tmq topics list` and succeeds (upgrades and reruns are idempotent)."""
        status, out, calls = self._run(rendered["default"], tmp_path, create_status=1)
        bootstrap = f"--bootstrap {service_host(BROKERS)}:9092"
        assert status == 0
        assert "topic gpu-telemetry already exists" in out
        assert calls == [
            f"topics create gpu-telemetry --partitions 6 --replication-factor 3 {bootstrap}",
            f"topics list {bootstrap}",
        ]

    def test_a_created_topic_ends_the_job_with_its_configs(self, rendered, tmp_path):
        """A successful create ends the script at once; topic.config entries reach tmq as
        --set KEY=VALUE arguments."""
        status, _, calls = self._run(rendered["prod"], tmp_path, create_status=0)
        assert status == 0
        (call,) = calls
        assert call.startswith("topics create gpu-telemetry --partitions 12 --replication-factor 3")
        assert "--set retention.ms=604800000" in call


class ProducerAndSinkTests:
    @ALL_SETS
    def test_producer_replays_the_packaged_capture_by_default(self, rendered, value_set):
        """Without a claim an init container copies the packaged DCGM capture into the emptyDir
        the producer replays in a loop from /data."""
        deployment = rendered[value_set].get("Deployment", fullname("producer"))
        spec = pod_spec(deployment)
        (init,) = spec["initContainers"]
        assert "dcgm_metrics_20250718_134233.csv" in init["command"][-1]
        args = container(deployment, "producer")["args"]
        assert option(args, "--csv") == "/data/dcgm_metrics_20250718_134233.csv"
        assert "--loop" in args
        assert option(args, "--metrics-listen") == "0.0.0.0:9100"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["csv"] == {"name": "csv", "emptyDir": {}}

    def test_producer_reads_a_claim_when_given_one(self, render):
        """producer.csv.existingClaim mounts that claim at /data instead, with no init copy."""
        rendering = render({"producer": {"csv": {"existingClaim": "captures", "file": "a.csv"}}})
        deployment = rendering.get("Deployment", fullname("producer"))
        spec = pod_spec(deployment)
        assert "initContainers" not in spec
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["csv"]["persistentVolumeClaim"]["claimName"] == "captures"
        assert option(container(deployment, "producer")["args"], "--csv") == "/data/a.csv"

    @ALL_SETS
    def test_sink_consumes_as_a_group_and_names_itself_after_its_pod(self, rendered, value_set):
        """The sink consumes the topic in its group with metrics on 9100, and its instance id
        is the pod name."""
        deployment = rendered[value_set].get("Deployment", fullname("sink"))
        sink = container(deployment, "sink")
        assert sink["args"][0] == "sink"
        assert option(sink["args"], "--group") == "tmq-sink"
        assert option(sink["args"], "--metrics-listen") == "0.0.0.0:9100"
        assert env(sink)["TMQ_INSTANCE_ID"]["value"] == "$(POD_NAME)"


class PodSecurityTests:
    @ALL_SETS
    def test_every_pod_runs_as_a_non_root_user(self, rendered, value_set):
        """Every pod, the topic job's included, runs as a non-root uid without privilege
        escalation, and no pod gets service links (TMQ_* look-alike variables) or an API
        token."""
        rendering = rendered[value_set]
        pods = [*rendering.workloads(), *rendering.of_kind("Job")]
        for workload in pods:
            spec = pod_spec(workload)
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["runAsUser"] > 0
            assert spec["enableServiceLinks"] is False
            assert spec["automountServiceAccountToken"] is False
            for item in spec["containers"] + spec.get("initContainers", []):
                assert item["securityContext"]["allowPrivilegeEscalation"] is False


class ImageTests:
    def test_default_tag_is_the_tmq_release(self, rendered):
        """Every subchart shares the umbrella's appVersion, which is tmq's version in
        pyproject.toml, and every tmq container runs tmq:<that version>."""
        version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
        for chart_file in [CHART / "Chart.yaml", *(CHART / "charts").glob("*/Chart.yaml")]:
            assert yaml.safe_load(chart_file.read_text())["appVersion"] == version
        images = {
            c["image"]
            for w in rendered["default"].workloads()
            for c in pod_spec(w)["containers"]
            if c["name"] in ("broker", "producer", "sink", "api")
        }
        assert images == {f"tmq:{version}"}

    def test_global_image_applies_to_every_tmq_container(self, render):
        """global.image.repository and tag set the image of every tmq container and init
        container, the topic job's included; etcd and PostgreSQL keep theirs."""
        rendering = render({"global": {"image": {"repository": "r.example/tmq", "tag": "9.9"}}})
        images = set()
        for workload in [*rendering.workloads(), *rendering.of_kind("Job")]:
            spec = pod_spec(workload)
            images.update(c["image"] for c in spec["containers"] + spec.get("initContainers", []))
        assert {i for i in images if "tmq" in i} == {"r.example/tmq:9.9"}
        assert len(images) == 3


class NotesTests:
    def test_notes_explain_access_and_warn_about_plaintext(self, rendered):
        """NOTES.txt tells how to reach the API and Swagger UI and the metrics, and that broker
        and API are plaintext without authentication."""
        notes = rendered["default"].notes
        assert f"port-forward svc/{fullname('api')} 8080:8080" in notes
        assert "/swagger/index.html" in notes
        assert "/metrics" in notes
        assert "plaintext" in notes
        assert "no authentication" in notes
