package test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
)

// catalogued is one row of docs/metrics.md.
type catalogued struct {
	name, typ string
	labels    []string // sorted
	roles     []string
}

func readCatalogue(t *testing.T) map[string]catalogued {
	t.Helper()
	b, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `(wasmwiz_[a-z0-9_]+)` \\| (counter|gauge|histogram|summary) \\|([^|]*)\\|([^|]+)\\| [^|]+ \\|$")
	out := map[string]catalogued{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `wasmwiz_") {
			continue
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("docs/metrics.md: malformed row %q", line)
			continue
		}
		c := catalogued{name: m[1], typ: m[2]}
		for _, l := range strings.Split(m[3], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				c.labels = append(c.labels, l)
			}
		}
		sort.Strings(c.labels)
		for _, r := range strings.Split(m[4], ",") {
			c.roles = append(c.roles, strings.TrimSpace(r))
		}
		if _, dup := out[c.name]; dup {
			t.Errorf("docs/metrics.md: %s twice", c.name)
		}
		out[c.name] = c
	}
	if len(out) == 0 {
		t.Fatal("docs/metrics.md: no metrics")
	}
	return out
}

// checkScrape compares one role's scrape with the catalogue both ways.
func checkScrape(t *testing.T, role string, f families, cat map[string]catalogued) {
	t.Helper()
	for _, c := range cat {
		if role != "dev" && !slices.Contains(c.roles, role) {
			continue
		}
		mf, ok := f[c.name]
		if !ok {
			t.Errorf("%s: catalogued metric %s is not exported", role, c.name)
			continue
		}
		if got := strings.ToLower(mf.GetType().String()); got != c.typ {
			t.Errorf("%s: %s is a %s, catalogued as a %s", role, c.name, got, c.typ)
		}
		if got := f.labelNames(c.name); !slices.Equal(got, c.labels) && !(len(got) == 0 && len(c.labels) == 0) {
			t.Errorf("%s: %s has labels %v, catalogued %v", role, c.name, got, c.labels)
		}
	}
	for name := range f {
		if !strings.HasPrefix(name, "wasmwiz_") {
			continue
		}
		for _, l := range f.labelNames(name) {
			if l == "tenant" || strings.HasSuffix(l, "_id") || l == "module" || l == "key" || l == "execution" {
				t.Errorf("%s: %s has label %q: ids are unbounded and never labels", role, name, l)
			}
		}
		c, ok := cat[name]
		switch {
		case !ok:
			t.Errorf("%s exports %s (%s), which docs/metrics.md does not list", role, name, f[name].GetType())
		case role != "dev" && !slices.Contains(c.roles, role):
			t.Errorf("%s exports %s, which docs/metrics.md lists only for %v", role, name, c.roles)
		}
	}
}

// queries are the PromQL expressions of the alert rules and the dashboards, by file.
func queries(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	rules, _ := filepath.Glob("../deploy/prometheus/*-rules.yml")
	if len(rules) == 0 {
		t.Fatal("no rule files in deploy/prometheus")
	}
	for _, p := range rules {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var rf struct {
			Groups []struct {
				Rules []struct{ Expr string }
			}
		}
		if err := yaml.Unmarshal(b, &rf); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				out[p] = append(out[p], r.Expr)
			}
		}
	}
	dashboards, _ := filepath.Glob("../deploy/grafana/dashboards/*.json")
	for _, p := range dashboards {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var d any
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					if s, ok := x.(string); ok && (k == "expr" || k == "query") {
						out[p] = append(out[p], s)
					}
					walk(x)
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			}
		}
		walk(d)
	}
	return out
}

var (
	selectorRE = regexp.MustCompile(`\b(wasmwiz_[a-z0-9_]+)(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
)

// checkQueries fails for a metric named in an alert rule or dashboard that is not catalogued,
// not seen in the scrapes, or selected by a label it does not have, or by a stream, consumer,
// or other enumerable label value no role produced.
func checkQueries(t *testing.T, cat map[string]catalogued, scrapes []families) {
	t.Helper()
	seenValues := map[string]map[string]bool{} // metric/label -> values
	seen := map[string]bool{}
	for _, f := range scrapes {
		for name, mf := range f {
			seen[name] = true
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					k := name + "/" + l.GetName()
					if seenValues[k] == nil {
						seenValues[k] = map[string]bool{}
					}
					seenValues[k][l.GetValue()] = true
				}
			}
		}
	}
	enumerable := map[string]bool{"stream": true, "consumer": true, "state": true, "cache": true, "table": true, "reason": false}
	n := 0
	for file, exprs := range queries(t) {
		file = strings.TrimPrefix(file, "../")
		if len(exprs) == 0 {
			t.Errorf("%s: no queries found", file)
		}
		for _, expr := range exprs {
			for _, m := range selectorRE.FindAllStringSubmatch(expr, -1) {
				name := m[1]
				base := name
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(name, suf); ok && cat[b].typ == "histogram" {
						base = b
					}
				}
				n++
				c, ok := cat[base]
				if !ok {
					t.Errorf("%s: %s is not in docs/metrics.md", file, name)
					continue
				}
				if !seen[base] {
					t.Errorf("%s: %s was not exported by any role", file, name)
				}
				for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
					label, op, value := mm[1], mm[2], mm[3]
					if label == "le" && c.typ == "histogram" {
						continue
					}
					if !slices.Contains(c.labels, label) {
						t.Errorf("%s: %s has no label %q (catalogued: %v)", file, name, label, c.labels)
						continue
					}
					if !enumerable[label] {
						continue
					}
					vals := seenValues[base+"/"+label]
					switch op {
					case "=":
						if !vals[value] {
							t.Errorf("%s: %s{%s=%q}: no role produced that value (seen %v)", file, name, label, value, sortedKeys(vals))
						}
					case "=~":
						re := regexp.MustCompile("^(?:" + value + ")$")
						if !slices.ContainsFunc(sortedKeys(vals), re.MatchString) {
							t.Errorf("%s: %s{%s=~%q}: matches none of %v", file, name, label, value, sortedKeys(vals))
						}
					}
				}
			}
		}
	}
	t.Logf("%d metric references in rules and dashboards checked", n)
}

// TestOps_Consistency runs the split roles and dev mode, drives real traffic through both, and
// holds the metrics catalogue, the alert rules and the dashboards to what the processes export.
func TestOps_Consistency(t *testing.T) {
	cat := readCatalogue(t)
	var scrapes []families

	srv := natstest.RunJetStream(t)
	split := startSplit(t, srv.ClientURL(), 1, 1)
	driveTraffic(t, split.system)
	waitAccounted(t, split.accounting.opsURL, 5)
	for _, r := range split.roles() {
		f := scrape(t, r.opsURL)
		checkScrape(t, r.name, f, cat)
		scrapes = append(scrapes, f)
	}
	checkProbes(t, k8sProbes(t), split.roles())

	dev := startDev(t, t.TempDir())
	driveTraffic(t, dev)
	waitAccounted(t, dev.URL, 5)
	f := scrape(t, dev.URL)
	checkScrape(t, "dev", f, cat)
	scrapes = append(scrapes, f)

	checkQueries(t, cat, scrapes)
	checkSyntax(t)
	t.Logf("catalogue: %d metrics", len(cat))
}

// checkSyntax has promtool parse every dashboard query (as recording rules; Grafana's
// $__rate_interval becomes 5m). promtool is required in CI (.ci/run installs it).
func checkSyntax(t *testing.T) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool not found (CI installs Debian's prometheus package)")
		}
		t.Log("promtool not found: dashboard query syntax not checked")
		return
	}
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for file, exprs := range queries(t) {
		if !strings.HasSuffix(file, ".json") {
			continue
		}
		for i, e := range exprs {
			rules = append(rules, rule{Record: fmt.Sprintf("dashboard:%s:%d", strings.TrimSuffix(filepath.Base(file), ".json"), i), Expr: strings.ReplaceAll(e, "$__rate_interval", "5m")})
		}
	}
	b, _ := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboards", "rules": rules}}})
	path := filepath.Join(t.TempDir(), "dashboards.yml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("dashboard queries do not parse: %v\n%s", err, out)
	}
}
