package test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/wasmwiz/wasmwiz/schemas"
)

var updateK8sRules = flag.Bool("update-k8s-rules", false, "rewrite deploy/k8s/overlays/production/prometheusrule.yaml from deploy/prometheus/wasmwiz-rules.yml")

type obj = map[string]any

// get walks a decoded YAML object: get(o, "spec", "template", "spec").
func get(o any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := o.(map[string]any)
			o = m[k]
		case int:
			s, _ := o.([]any)
			if k >= len(s) {
				return nil
			}
			o = s[k]
		}
	}
	return o
}

func str(o any, path ...any) string {
	s, _ := get(o, path...).(string)
	return s
}

func render(t *testing.T, dir string) []obj {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	var out []obj
	for _, r := range rm.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// probe is an HTTP probe of a rendered Deployment: the role it runs and the path it asks.
type probe struct{ role, kind, path string }

// checkWorkloads checks every Deployment and Job of a rendering and returns the probes.
func checkWorkloads(t *testing.T, name string, objs []obj) (probes []probe, args [][]string) {
	t.Helper()
	var pdbs []obj
	for _, o := range objs {
		if o["kind"] == "PodDisruptionBudget" {
			pdbs = append(pdbs, o)
		}
	}
	deployments := 0
	for _, o := range objs {
		kind, oname := str(o, "kind"), str(o, "metadata", "name")
		if kind != "Deployment" && kind != "Job" {
			continue
		}
		where := name + ": " + kind + " " + oname
		pod := get(o, "spec", "template", "spec")
		if get(pod, "securityContext", "runAsNonRoot") != true || str(pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
			t.Errorf("%s: pod securityContext %v, want runAsNonRoot and seccomp RuntimeDefault", where, get(pod, "securityContext"))
		}
		role := str(o, "spec", "template", "metadata", "labels", "app.kubernetes.io/component")
		containers, _ := get(pod, "containers").([]any)
		if len(containers) == 0 {
			t.Errorf("%s: no containers", where)
		}
		for _, c := range containers {
			cname := where + " container " + str(c, "name")
			sc := get(c, "securityContext")
			drop, _ := get(sc, "capabilities", "drop").([]any)
			if get(sc, "allowPrivilegeEscalation") != false || get(sc, "readOnlyRootFilesystem") != true || !slices.Contains(drop, any("ALL")) {
				t.Errorf("%s: securityContext %v, want no privilege escalation, read-only root, drop ALL", cname, sc)
			}
			for _, r := range []string{"requests", "limits"} {
				for _, res := range []string{"cpu", "memory"} {
					if get(c, "resources", r, res) == nil {
						t.Errorf("%s: no resources.%s.%s", cname, r, res)
					}
				}
			}
			var a []string
			for _, x := range get(c, "args").([]any) {
				a = append(a, fmt.Sprint(x))
			}
			args = append(args, a)
			if kind != "Deployment" {
				continue
			}
			checkNATSCredentials(t, cname, role, pod, c)
			ports := map[string]int{}
			for _, p := range get(c, "ports").([]any) {
				ports[str(p, "name")] = get(p, "containerPort").(int)
			}
			for _, pk := range []string{"startupProbe", "readinessProbe", "livenessProbe"} {
				hg := get(c, pk, "httpGet")
				if hg == nil {
					t.Errorf("%s: no %s.httpGet", cname, pk)
					continue
				}
				port, ok := ports[fmt.Sprint(get(hg, "port"))]
				if !ok {
					t.Errorf("%s: %s port %v is not a named container port", cname, pk, get(hg, "port"))
				}
				// The role must listen on that port: --http-addr (gateway) or --metrics-addr.
				listens := false
				for i := 0; i+1 < len(a); i++ {
					if a[i] == "--http-addr" || a[i] == "--metrics-addr" {
						if _, p, _ := net.SplitHostPort(a[i+1]); p == fmt.Sprint(port) {
							listens = true
						}
					}
				}
				if !listens {
					t.Errorf("%s: %s on port %d, but args %v do not listen there", cname, pk, port, a)
				}
				probes = append(probes, probe{role: role, kind: pk, path: str(hg, "path")})
			}
		}
		if kind == "Deployment" {
			deployments++
			labels := get(o, "spec", "template", "metadata", "labels").(map[string]any)
			covered := false
			for _, p := range pdbs {
				sel, _ := get(p, "spec", "selector", "matchLabels").(map[string]any)
				match := len(sel) > 0
				for k, v := range sel {
					match = match && labels[k] == v
				}
				covered = covered || match
			}
			if !covered {
				t.Errorf("%s: no PodDisruptionBudget selects its pods", where)
			}
		}
	}
	if deployments != 3 {
		t.Errorf("%s: %d Deployments, want 3 (gateway, executor, accounting)", name, deployments)
	}
	return probes, args
}

// checkNATSCredentials: a role's container connects to NATS as itself, over TLS: its
// WASMWIZ_NATS_NKEY is its own seed, read from Secret wasmwiz-nats mounted where the variable
// says, beside the CA that WASMWIZ_NATS_TLS_CA (from the ConfigMap) names.
func checkNATSCredentials(t *testing.T, where, role string, pod, c any) {
	t.Helper()
	nkey := ""
	for _, e := range get(c, "env").([]any) {
		if str(e, "name") == "WASMWIZ_NATS_NKEY" {
			nkey = str(e, "value")
		}
	}
	want := "/secrets/nats/nats-" + role + ".nk"
	if nkey != want {
		t.Errorf("%s: WASMWIZ_NATS_NKEY %q, want %s", where, nkey, want)
	}
	mounted := ""
	for _, m := range get(c, "volumeMounts").([]any) {
		if str(m, "mountPath") == "/secrets/nats" {
			mounted = str(m, "name")
		}
	}
	var items []string
	for _, v := range get(pod, "volumes").([]any) {
		if str(v, "name") == mounted && str(v, "secret", "secretName") == "wasmwiz-nats" {
			for _, it := range get(v, "secret", "items").([]any) {
				if str(it, "key") == str(it, "path") {
					items = append(items, str(it, "key"))
				}
			}
		}
	}
	wantItems := []string{"nats-ca.pem", "nats-" + role + ".nk"}
	slices.Sort(items)
	slices.Sort(wantItems)
	if !slices.Equal(items, wantItems) {
		t.Errorf("%s: /secrets/nats holds %v from Secret wasmwiz-nats, want its own seed and the CA", where, items)
	}
}

// checkArgs runs the binary with each argument list plus -h: every subcommand and flag a
// manifest uses must exist (an unknown flag exits 2).
func checkArgs(t *testing.T, where string, args [][]string) {
	t.Helper()
	for _, a := range args {
		cmd := exec.Command(bin(), append(append([]string{}, a...), "-h")...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: wasmwiz %s: %v\n%s", where, strings.Join(a, " "), err, lastLines(string(out), 5))
		}
	}
}

func rulesFile(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("../deploy/prometheus/wasmwiz-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules map[string]any
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	return rules
}

// TestOps_Kubernetes renders deploy/k8s (base and production) with kustomize's Go API and
// checks what operators rely on. The probe paths are checked against running roles in
// TestOps_Consistency (k8sProbes).
func TestOps_Kubernetes(t *testing.T) {
	const ruleFile = "../deploy/k8s/overlays/production/prometheusrule.yaml"
	if *updateK8sRules {
		var buf bytes.Buffer
		buf.WriteString("# Generated from deploy/prometheus/wasmwiz-rules.yml (the rules promtool tests) by\n#   go test ./test -run TestOps_Kubernetes -update-k8s-rules\n# TestOps_Kubernetes fails when the two differ.\n")
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(obj{"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
			"metadata": obj{"name": "wasmwiz"}, "spec": rulesFile(t)}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ruleFile, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := render(t, "../deploy/k8s/base")
	_, args := checkWorkloads(t, "base", base)
	for _, o := range base {
		if str(o, "kind") == "ConfigMap" && strings.HasPrefix(str(o, "metadata", "name"), "wasmwiz-config") {
			if ca := str(o, "data", "WASMWIZ_NATS_TLS_CA"); ca != "/secrets/nats/nats-ca.pem" {
				t.Errorf("wasmwiz-config: WASMWIZ_NATS_TLS_CA %q, want the CA in Secret wasmwiz-nats", ca)
			}
		}
	}
	checkArgs(t, "deploy/k8s/base", args)

	prod := render(t, "../deploy/k8s/overlays/production")
	checkWorkloads(t, "production", prod)
	byKind := map[string][]obj{}
	names := map[string]bool{}
	for _, o := range prod {
		byKind[str(o, "kind")] = append(byKind[str(o, "kind")], o)
		names[str(o, "kind")+"/"+str(o, "metadata", "name")] = true
		if ns := str(o, "metadata", "namespace"); str(o, "kind") != "Namespace" && ns != "wasmwiz" {
			t.Errorf("production: %s %s in namespace %q", str(o, "kind"), str(o, "metadata", "name"), ns)
		}
	}
	for _, kind := range []string{"HorizontalPodAutoscaler", "ScaledObject", "PodMonitor", "PrometheusRule", "NetworkPolicy", "Cluster", "ScheduledBackup", "ObjectStore", "Job"} {
		if len(byKind[kind]) == 0 {
			t.Errorf("production has no %s", kind)
		}
	}
	for _, h := range byKind["HorizontalPodAutoscaler"] {
		if target := "Deployment/" + str(h, "spec", "scaleTargetRef", "name"); !names[target] || !strings.HasSuffix(target, "gateway") {
			t.Errorf("HPA scales %s", target)
		}
	}
	// KEDA: one trigger per tier, on that tier's stream and consumer as schemas names them.
	for _, so := range byKind["ScaledObject"] {
		if target := "Deployment/" + str(so, "spec", "scaleTargetRef", "name"); !names[target] || !strings.HasSuffix(target, "executor") {
			t.Errorf("ScaledObject scales %s", target)
		}
		var got, want []string
		for _, tr := range get(so, "spec", "triggers").([]any) {
			got = append(got, str(tr, "metadata", "stream")+"/"+str(tr, "metadata", "consumer"))
		}
		for tier := range schemas.DefaultTiers() {
			want = append(want, schemas.ExecStream(tier)+"/"+schemas.ExecConsumer(tier))
		}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("KEDA triggers %v, want %v", got, want)
		}
	}
	// PodMonitor ports are container port names.
	portNames := map[string]bool{}
	for _, d := range byKind["Deployment"] {
		for _, c := range get(d, "spec", "template", "spec", "containers").([]any) {
			for _, p := range get(c, "ports").([]any) {
				portNames[str(p, "name")] = true
			}
		}
	}
	for _, pm := range byKind["PodMonitor"] {
		for _, ep := range get(pm, "spec", "podMetricsEndpoints").([]any) {
			if !portNames[str(ep, "port")] {
				t.Errorf("PodMonitor endpoint port %q is no container's", str(ep, "port"))
			}
		}
	}
	// The PrometheusRule is the promtool-tested rules file.
	for _, pr := range byKind["PrometheusRule"] {
		b, _ := yaml.Marshal(get(pr, "spec"))
		var spec map[string]any
		_ = yaml.Unmarshal(b, &spec)
		if !reflect.DeepEqual(spec, rulesFile(t)) {
			t.Errorf("%s differs from deploy/prometheus/wasmwiz-rules.yml: run go test ./test -run TestOps_Kubernetes -update-k8s-rules", ruleFile)
		}
	}
}

// k8sProbes are the probes of the rendered base, for TestOps_Consistency to ask running roles.
func k8sProbes(t *testing.T) []probe {
	probes, _ := checkWorkloads(t, "base", render(t, "../deploy/k8s/base"))
	return probes
}

// checkProbes asks each role of a running system every path Kubernetes would probe it on:
// liveness and startup must answer 200, readiness 200 (the roles are ready).
func checkProbes(t *testing.T, probes []probe, roles []*role) {
	t.Helper()
	if len(probes) == 0 {
		t.Fatal("no probes")
	}
	for _, p := range probes {
		i := slices.IndexFunc(roles, func(r *role) bool { return r.name == p.role })
		if i < 0 {
			t.Errorf("probe for unknown role %q", p.role)
			continue
		}
		resp, err := http.Get(roles[i].opsURL + p.path)
		if err != nil {
			t.Errorf("%s %s %s: %v", p.role, p.kind, p.path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s %s %s: %d, want 200", p.role, p.kind, p.path, resp.StatusCode)
		}
	}
}

// TestOps_Compose checks docker-compose.yml beyond `docker-compose config` (which CI runs):
// WasmWiz services run as non-root on a read-only root with no capabilities, their commands'
// flags exist, Prometheus scrapes the ports they listen on, and every secret file is one
// that `wasmwiz secrets generate` makes.
func TestOps_Compose(t *testing.T) {
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c obj
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	services := get(c, "services").(map[string]any)
	var args [][]string
	listen := map[string]string{} // service -> port
	n := 0
	for name, s := range services {
		if str(s, "image") != "wasmwiz:latest" {
			continue
		}
		n++
		if u := str(s, "user"); u == "" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root") {
			t.Errorf("%s runs as %q", name, u)
		}
		drop, _ := get(s, "cap_drop").([]any)
		if get(s, "read_only") != true || !slices.Contains(drop, any("ALL")) {
			t.Errorf("%s: read_only %v cap_drop %v", name, get(s, "read_only"), drop)
		}
		var a []string
		for _, x := range get(s, "command").([]any) {
			a = append(a, fmt.Sprint(x))
		}
		args = append(args, a)
		// NATS as its own role (admin bootstrap: admin), over TLS, with the secrets it mounts.
		role := a[0]
		secrets, _ := get(s, "secrets").([]any)
		for env, want := range map[string]string{"WASMWIZ_NATS_NKEY": "nats-" + role + ".nk", "WASMWIZ_NATS_TLS_CA": "nats-ca.pem"} {
			if got := str(s, "environment", env); got != "/run/secrets/"+want || !slices.Contains(secrets, any(want)) {
				t.Errorf("%s: %s=%q with secrets %v, want /run/secrets/%s mounted", name, env, got, secrets, want)
			}
		}
		for i := 0; i+1 < len(a); i++ {
			if a[i] == "--http-addr" || a[i] == "--metrics-addr" {
				_, port, _ := net.SplitHostPort(a[i+1])
				listen[name] = port
			}
		}
	}
	if n < 5 {
		t.Errorf("%d WasmWiz services, want bootstrap, gateway, two executors, accounting", n)
	}
	checkArgs(t, "docker-compose.yml", args)
	// Each NATS node mounts the config and what it includes or names beside it, in /etc/nats.
	for _, name := range []string{"nats1", "nats2", "nats3"} {
		var mounts []string
		for _, v := range get(services, name, "volumes").([]any) {
			mounts = append(mounts, fmt.Sprint(v))
		}
		for _, f := range []string{"deploy/nats/nats.conf", "deploy/nats/wasmwiz-account.conf", "secrets/nats-roles.conf", "secrets/nats-tenants.conf",
			"secrets/nats-ca.pem", "secrets/nats-server.pem", "secrets/nats-server-key.pem"} {
			if !slices.Contains(mounts, "./"+f+":/etc/nats/"+filepath.Base(f)+":ro") {
				t.Errorf("%s does not mount %s in /etc/nats: %v", name, f, mounts)
			}
		}
		if str(services, name, "working_dir") != "/etc/nats" {
			t.Errorf("%s: working_dir %q, want /etc/nats (TLS paths in nats.conf are relative)", name, str(services, name, "working_dir"))
		}
	}

	pb, err := os.ReadFile("../deploy/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var prom obj
	if err := yaml.Unmarshal(pb, &prom); err != nil {
		t.Fatal(err)
	}
	scraped := map[string]bool{}
	for _, sc := range get(prom, "scrape_configs").([]any) {
		for _, st := range get(sc, "static_configs").([]any) {
			for _, target := range get(st, "targets").([]any) {
				scraped[fmt.Sprint(target)] = true
				if role := str(st, "labels", "role"); role == "" {
					t.Errorf("prometheus.yml target %v has no role label", target)
				}
			}
		}
	}
	for svc, port := range listen {
		if !scraped[svc+":"+port] {
			t.Errorf("prometheus.yml does not scrape %s:%s", svc, port)
		}
	}
	for target := range scraped {
		host, port, _ := net.SplitHostPort(target)
		if listen[host] != port {
			t.Errorf("prometheus.yml scrapes %s, which listens on %q", target, listen[host])
		}
	}

	// The NATS config the three servers share parses (with the files `wasmwiz secrets generate`
	// makes beside it), with JetStream, TLS for clients and routes, no anonymous user, the
	// WasmWiz account's storage limit (for wasmwiz_jetstream_store_limit_bytes) and the payload
	// results need. startShippedNATS runs it alone; TestSecurity_AnonymousNATS attacks it.
	ns := startShippedNATS(t)
	nopts, err := server.ProcessConfigFile("nats.conf") // (startShippedNATS changed into its dir)
	if err != nil {
		t.Fatal(err)
	}
	if !nopts.JetStream || nopts.ServerName != "nats1" || nopts.MaxPayload < 4<<20 || nopts.NoAuthUser != "" {
		t.Errorf("nats.conf: jetstream %v name %q max payload %d no_auth_user %q",
			nopts.JetStream, nopts.ServerName, nopts.MaxPayload, nopts.NoAuthUser)
	}
	if nopts.Cluster.Port != 6222 || len(nopts.Routes) != 3 || nopts.Cluster.TLSConfig == nil || nopts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert || nopts.TLSConfig == nil {
		t.Errorf("nats.conf: cluster port %d, %d routes, route TLS %v verify %v, client TLS %v",
			nopts.Cluster.Port, len(nopts.Routes), nopts.Cluster.TLSConfig != nil, nopts.Cluster.TLSConfig != nil && nopts.Cluster.TLSConfig.ClientAuth == tls.RequireAndVerifyClientCert, nopts.TLSConfig != nil)
	}
	// Each role's seed is a user of account WASMWIZ, which sees its storage limit, as the
	// collector will (the executor and accounting on their own inbox prefix, as they connect).
	for _, role := range []string{"gateway", "executor", "accounting", "admin"} {
		var opts []nats.Option
		if role == "executor" || role == "accounting" {
			opts = append(opts, nats.CustomInboxPrefix("_INBOX_"+role))
		}
		nc := ns.mustConnect(t, "nats-"+role+".nk", opts...)
		js, _ := jetstream.New(nc.Conn)
		ai, err := js.AccountInfo(context.Background())
		if err != nil || ai.Limits.MaxStore <= 0 {
			t.Errorf("account info as %s: %+v %v, want a file storage limit", role, ai, err)
		}
		cid, _ := nc.GetClientID()
		cz, err := ns.srv.Connz(&server.ConnzOptions{CID: cid, Username: true})
		if err != nil || len(cz.Conns) != 1 || cz.Conns[0].Account != "WASMWIZ" {
			t.Errorf("%s's connection: %+v %v, want one in account WASMWIZ", role, cz.Conns, err)
		}
	}

	dir := t.TempDir()
	gen := exec.Command(bin(), "secrets", "generate", "--dir", dir)
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("secrets generate: %v\n%s", err, out)
	}
	for name, s := range get(c, "secrets").(map[string]any) {
		if _, err := os.Stat(filepath.Join(dir, filepath.Base(str(s, "file")))); err != nil {
			t.Errorf("compose secret %s (%s) is not made by wasmwiz secrets generate", name, str(s, "file"))
		}
	}
}

// TestOps_AlertTests holds every alert to having promtool unit tests both ways: a case where
// it fires and one where it stays silent (CI runs them with promtool test rules).
func TestOps_AlertTests(t *testing.T) {
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	b, err := os.ReadFile("../deploy/prometheus/wasmwiz-rules.test.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tests.RuleFiles, []string{"wasmwiz-rules.yml"}) {
		t.Errorf("rule_files %v", tests.RuleFiles)
	}
	fires, silent := map[string]int{}, map[string]int{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname]++
			} else {
				silent[a.Alertname]++
			}
		}
	}
	n := 0
	for _, g := range get(rulesFile(t), "groups").([]any) {
		for _, r := range get(g, "rules").([]any) {
			name := str(r, "alert")
			if name == "" {
				continue
			}
			n++
			if fires[name] == 0 || silent[name] == 0 {
				t.Errorf("%s: %d firing and %d silent promtool cases, want at least one of each", name, fires[name], silent[name])
			}
			delete(fires, name)
			delete(silent, name)
		}
	}
	for name := range fires {
		t.Errorf("promtool tests for unknown alert %s", name)
	}
	for name := range silent {
		t.Errorf("promtool tests for unknown alert %s", name)
	}
	t.Logf("%d alerts, each tested firing and silent", n)
}

// TestOps_NATSHelmValues renders deploy/k8s/nats/values.yaml's server settings the way the NATS
// chart does (config.merge and config.cluster.merge as JSON, "$include" keys as include
// directives, relative to /etc/nats-config) into a directory laid out like the pod's, with
// Secret nats-auth's files in nats-auth/, and runs nats-server on it: every connection
// authenticates (an anonymous one is refused), clients and routes need TLS, the roles are in
// WASMWIZ with its storage limit, and a tenant's account reaches the API only.
func TestOps_NATSHelmValues(t *testing.T) {
	b, err := os.ReadFile("../deploy/k8s/nats/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v obj
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	secrets := filepath.Join(root, "nats-auth")
	for _, args := range [][]string{{"secrets", "generate", "--dir", secrets}, {"secrets", "nats-tenant", "--dir", secrets, "acme"}} {
		if out, err := exec.Command(bin(), args...).CombinedOutput(); err != nil {
			t.Fatalf("wasmwiz %v: %v\n%s", args, err, out)
		}
	}
	acct, err := os.ReadFile("../deploy/nats/wasmwiz-account.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secrets, "wasmwiz-account.conf"), acct, 0o600); err != nil {
		t.Fatal(err)
	}
	// The Secret is mounted at /etc/nats-auth.
	var mounts, vols []string
	for _, m := range get(v, "container", "merge", "volumeMounts").([]any) {
		mounts = append(mounts, str(m, "name")+"@"+str(m, "mountPath"))
	}
	for _, vol := range get(v, "podTemplate", "merge", "spec", "volumes").([]any) {
		vols = append(vols, str(vol, "name")+"="+str(vol, "secret", "secretName"))
	}
	if !slices.Contains(mounts, "nats-auth@/etc/nats-auth") || !slices.Contains(vols, "nats-auth=nats-auth") {
		t.Errorf("values mount %v from %v, want Secret nats-auth at /etc/nats-auth", mounts, vols)
	}

	var conf strings.Builder
	var emit func(m map[string]any)
	emit = func(m map[string]any) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if strings.HasSuffix(k, "$include") {
				fmt.Fprintf(&conf, "include %q\n", m[k])
				continue
			}
			if sub, ok := m[k].(map[string]any); ok {
				fmt.Fprintf(&conf, "%q {\n", k)
				emit(sub)
				conf.WriteString("}\n")
				continue
			}
			j, _ := json.Marshal(m[k])
			fmt.Fprintf(&conf, "%q: %s\n", k, j)
		}
	}
	merge := get(v, "config", "merge").(map[string]any)
	emit(merge)
	fmt.Fprintf(&conf, "cluster {\n  name: wasmwiz\n  port: -1\n")
	emit(get(v, "config", "cluster", "merge").(map[string]any))
	conf.WriteString("}\njetstream {\n  max_file_store: 20GB\n}\n")
	text := strings.ReplaceAll(conf.String(), "/etc/nats-auth/", secrets+"/")
	if err := os.MkdirAll(filepath.Join(root, "nats-config"), 0o700); err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(root, "nats-config", "nats.conf")
	if err := os.WriteFile(confFile, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(confFile)
	if err != nil {
		t.Fatalf("values as nats.conf: %v\n%s", err, text)
	}
	if opts.NoAuthUser != "" || opts.TLSConfig == nil || opts.Cluster.TLSConfig == nil || opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("values: no_auth_user %q, client TLS %v, route TLS %v (must verify)", opts.NoAuthUser, opts.TLSConfig != nil, opts.Cluster.TLSConfig)
	}
	opts.Cluster = server.ClusterOpts{}
	opts.Host, opts.Port, opts.StoreDir, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, filepath.Join(root, "data"), true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server on the Helm values is not ready")
	}
	n := &shippedNATS{srv: srv, dir: secrets, url: srv.ClientURL()}
	if c, err := n.connect(""); err == nil {
		c.Close()
		t.Error("an anonymous client connected")
	}
	gw := n.mustConnect(t, "nats-gateway.nk")
	js, _ := jetstream.New(gw.Conn)
	if ai, err := js.AccountInfo(context.Background()); err != nil || ai.Limits.MaxStore <= 0 {
		t.Errorf("the gateway's account: %+v %v, want WASMWIZ with a file storage limit", ai, err)
	}
	acme := n.mustConnect(t, "nats-tenant-acme.nk")
	if err := acme.Publish(schemas.ExecSubject("free", "acme"), nil); err != nil {
		t.Fatal(err)
	}
	acme.refused(t, "publish", schemas.ExecSubject("free", "acme"))
}
