//go:build faults

package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/accounting/storetest"
	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// The fault suite (issue 15): a cluster as deployed, started for real on 127.0.0.1 — three
// nats-server processes (built from the nats-server module this repository uses) running the
// shipped deploy/nats/nats.conf (TLS for clients and routes, account WASMWIZ with the roles'
// nkeys; only addresses and the store directory changed), R3 streams, two gateways, two
// executors and accounting on PostgreSQL (a fresh schema, reached through a relay the test can
// cut), every role the wasmwiz binary in a process of its own. `wasmwiz load` sends async
// executions at a modest rate with an Idempotency-Key each, retried on the other gateway, and
// records the ids it was given; each fault is injected during such a load (kill -9 is SIGKILL
// to the process), and after each the suite checks that every accepted execution is final, none
// ran twice, usage rows == accepted, and reconcile finds no gap; it prints the table. Meanwhile
// `events tail --follow=false` and `accounting reconcile` run again and again and must read the
// stream to its end every time.
//
//	go test -tags faults -run TestFaults_Cluster -v -timeout 30m ./test
//
// One fault: -run 'TestFaults_Cluster/leader' (executor, follower, leader, accounting, gateway,
// and those of faults_quorum_test.go: quorum, quorum-leader, partition, gateway-partition,
// executor-partition).
// WASMWIZ_FAULTS_RATE (default 20/s) and WASMWIZ_FAULTS_SECONDS (default 30) size each load.

const faultsTenant = "faults"

// natsNode is one nats-server process of the cluster.
type natsNode struct {
	name, conf, dir string
	clientURL       string
	healthURL       string
	p               *proc
}

func (n *natsNode) start(t *testing.T, exe string) {
	t.Helper()
	p := &proc{cmd: exec.Command(exe, "-c", n.conf), done: make(chan struct{})}
	p.cmd.Dir = n.dir // the TLS paths in nats.conf are relative to the working directory
	p.cmd.Env = append(os.Environ(), "NATS_SERVER_NAME="+n.name)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if p.alive() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("output of nats-server %s:\n%s", n.name, lastLines(p.output(), 30))
		}
		keepLog(t, "nats-"+n.name, p)
	})
	n.p = p
}

// healthy: /healthz answers 200 (JetStream on, its streams current).
func (n *natsNode) healthy() error {
	resp, err := http.Get(n.healthURL)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("nats-server %s: /healthz %s", n.name, resp.Status)
	}
	return nil
}

// keepLog writes a process's whole output into $WASMWIZ_FAULTS_LOGDIR, when it is set.
func keepLog(t *testing.T, name string, p *proc) {
	dir := os.Getenv("WASMWIZ_FAULTS_LOGDIR")
	if dir == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Log(err)
		return
	}
	defer f.Close()
	_, _ = f.WriteString(p.output())
}

func kill9(t *testing.T, p *proc) {
	t.Helper()
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

type namedProc struct {
	name string
	p    *proc
}

// faultCluster is the system under test.
type faultCluster struct {
	t         *testing.T // the suite's: processes restarted in a fault's subtest outlive it
	dir       string
	natsBin   string
	nodes     []*natsNode
	natsURL   string
	adminEnv  []string // what the operator tools need: URL, the admin seed, the CA
	sys       *system  // REST through the second gateway (the first is the one killed)
	gateways  []*role
	executors []*role
	exProcs   []*proc // every executor process started, killed ones included: their logs count runs
	allProcs  []namedProc
	acct      *role
	pgRelay   *tcpRelay
	// routeRelays[i][j] carries node i's routes to node j; gatewayRelays[i] the first gateway's
	// connections to node i, executorRelays[i] the second executor's.
	routeRelays    [][]*tcpRelay
	gatewayRelays  []*tcpRelay
	executorRelays []*tcpRelay
	dbURL          string // straight to the schema, for the checks
	key            string
	hello          string
	loop           string
	js             jetstream.JetStream
	started        time.Time
}

func startFaultCluster(t *testing.T) *faultCluster {
	t.Helper()
	dbURL := storetest.NewSchema(t)
	c := &faultCluster{t: t, dir: t.TempDir(), dbURL: dbURL, started: time.Now().UTC().Add(-time.Minute)}

	// nats-server, the version in go.mod, as a program.
	c.natsBin = filepath.Join(c.dir, "nats-server")
	if out, err := exec.Command("go", "build", "-o", c.natsBin, "github.com/nats-io/nats-server/v2").CombinedOutput(); err != nil {
		t.Fatalf("build nats-server: %v\n%s", err, out)
	}
	secrets := filepath.Join(c.dir, "secrets")
	if out, err := exec.Command(bin(), "secrets", "generate", "--dir", secrets).CombinedOutput(); err != nil {
		t.Fatalf("wasmwiz secrets generate: %v\n%s", err, out)
	}
	conf, err := os.ReadFile("../deploy/nats/nats.conf")
	if err != nil {
		t.Fatal(err)
	}
	account, err := os.ReadFile("../deploy/nats/wasmwiz-account.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secrets, "wasmwiz-account.conf"), account, 0o600); err != nil {
		t.Fatal(err)
	}
	type ports struct{ client, cluster, http string }
	var ps []ports
	for range 3 {
		ps = append(ps, ports{freePortOf(t), freePortOf(t), freePortOf(t)})
	}
	// Every route from one node to another goes through a relay of its own (routeRelays[i][j]:
	// node i dialling node j), so that the test can partition a node from the others. A node's
	// advertised route address is one nothing listens on: a node told about another by gossip
	// cannot reach it around the relays (an implicit route is tried once). Clients are not told
	// the servers' addresses either (no_advertise), so that a role reaching NATS through relays
	// (the first gateway) stays behind them when it reconnects.
	c.routeRelays = make([][]*tcpRelay, len(ps))
	for i := range ps {
		c.routeRelays[i] = make([]*tcpRelay, len(ps))
		for j := range ps {
			if i != j {
				c.routeRelays[i][j] = newTCPRelay(t, freeAddr(t), "127.0.0.1:"+ps[j].cluster)
			}
		}
	}
	routeTo := func(i, j int) string {
		if i == j {
			return "nats://127.0.0.1:" + ps[j].cluster
		}
		return "nats://" + c.routeRelays[i][j].addr
	}
	var urls []string
	for i, p := range ps {
		text := string(conf)
		for old, repl := range map[string]string{
			"port: 4222":             "port: " + p.client,
			`http: "127.0.0.1:8222"`: `http: "127.0.0.1:` + p.http + `"`,
			"store_dir: /data":       fmt.Sprintf("store_dir: %q", filepath.Join(c.dir, fmt.Sprintf("data-n%d", i))),
			"port: 6222":             fmt.Sprintf("port: %s\n  advertise: %q\n  no_advertise: true", p.cluster, freeAddr(t)),
			"nats://nats1:6222":      routeTo(i, 0),
			"nats://nats2:6222":      routeTo(i, 1),
			"nats://nats3:6222":      routeTo(i, 2),
		} {
			if !strings.Contains(text, old) {
				t.Fatalf("deploy/nats/nats.conf has no %q any more: update the fault suite", old)
			}
			text = strings.Replace(text, old, repl, 1)
		}
		file := filepath.Join(secrets, fmt.Sprintf("nats-n%d.conf", i))
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		n := &natsNode{name: fmt.Sprintf("n%d", i), conf: file, dir: secrets, clientURL: "nats://127.0.0.1:" + p.client,
			healthURL: "http://127.0.0.1:" + p.http + "/healthz"}
		n.start(t, c.natsBin)
		c.nodes = append(c.nodes, n)
		urls = append(urls, n.clientURL)
	}
	c.natsURL = strings.Join(urls, ",")
	c.waitNATS(t)

	roleEnv := func(role string) []string {
		return []string{"WASMWIZ_NATS_URL=" + c.natsURL, "WASMWIZ_NATS_NKEY=" + filepath.Join(secrets, "nats-"+role+".nk"),
			"WASMWIZ_NATS_TLS_CA=" + filepath.Join(secrets, "nats-ca.pem"), "WASMWIZ_REPLICAS=3"}
	}
	c.adminEnv = roleEnv("admin")
	nc, err := nats.Connect(c.natsURL, nats.RootCAs(filepath.Join(secrets, "nats-ca.pem")), mustNkey(t, filepath.Join(secrets, "nats-admin.nk")),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}

	adminKey := bootstrap(t, c.adminEnv, c.dir)
	// The first gateway and the second executor reach each server through relays of their own
	// (gatewayRelays, executorRelays), to be cut off.
	relayed := func() ([]*tcpRelay, string) {
		var rs []*tcpRelay
		var urls []string
		for _, n := range c.nodes {
			r := newTCPRelay(t, freeAddr(t), strings.TrimPrefix(n.clientURL, "nats://"))
			rs = append(rs, r)
			urls = append(urls, "nats://"+r.addr)
		}
		return rs, strings.Join(urls, ",")
	}
	var gwURLs, exURLs string
	c.gatewayRelays, gwURLs = relayed()
	c.executorRelays, exURLs = relayed()
	for i := range 2 {
		addr := freeAddr(t)
		env := append(roleEnv("gateway"), "WASMWIZ_HTTP_ADDR="+addr)
		if i == 0 {
			env = append(env, "WASMWIZ_NATS_URL="+gwURLs)
		}
		c.gateways = append(c.gateways, startRole(t, "gateway", addr, env, "gateway"))
	}
	for i := range 2 {
		addr := freeAddr(t)
		env := append(roleEnv("executor"),
			"WASMWIZ_CACHE_DIR="+filepath.Join(c.dir, fmt.Sprintf("cache%d", i)), "WASMWIZ_WORKERS=2", "WASMWIZ_METRICS_ADDR="+addr,
			fmt.Sprintf("WASMWIZ_NODE_ID=ex%d", i), "WASMWIZ_LOG_LEVEL=debug")
		if i == 1 {
			env = append(env, "WASMWIZ_NATS_URL="+exURLs)
		}
		c.executors = append(c.executors, startRole(t, "executor", addr, env, "executor"))
		c.exProcs = append(c.exProcs, c.executors[i].p)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	relayAddr := freeAddr(t)
	c.pgRelay = newTCPRelay(t, relayAddr, u.Host)
	u.Host = relayAddr
	addr := freeAddr(t)
	c.acct = startRole(t, "accounting", addr, append(roleEnv("accounting"), "DATABASE_URL="+u.String(), "WASMWIZ_METRICS_ADDR="+addr), "accounting")
	for _, r := range c.roles() {
		waitReady(t, r.opsURL, r.p)
		c.allProcs = append(c.allProcs, namedProc{r.name, r.p})
	}
	c.sys = &system{URL: c.gateways[1].opsURL, NATSURL: c.natsURL, AdminKey: adminKey}
	c.key = c.sys.newTenant(t, faultsTenant, schemas.TierUnlimited)
	c.hello = c.sys.upload(t, c.key, "hello", fixtures.Wasm("hello")).ID
	c.loop = c.sys.upload(t, c.key, "loop", fixtures.Wasm("loop")).ID
	return c
}

func freePortOf(t *testing.T) string {
	a := freeAddr(t)
	return a[strings.LastIndex(a, ":")+1:]
}

func mustNkey(t *testing.T, seed string) nats.Option {
	o, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (c *faultCluster) roles() []*role {
	return append(append(append([]*role{}, c.gateways...), c.executors...), c.acct)
}

// waitNATS waits until every node is up and healthy.
func (c *faultCluster) waitNATS(t *testing.T) {
	t.Helper()
	eventually(t, 2*time.Minute, "a nats-server is not healthy", func() bool {
		for _, n := range c.nodes {
			if !n.p.alive() {
				t.Fatalf("nats-server %s exited: %v\n%s", n.name, n.p.err, lastLines(n.p.output(), 30))
			}
			if n.healthy() != nil {
				return false
			}
		}
		return true
	})
}

// execStreamLeader is the node leading the unlimited tier's execution stream.
func (c *faultCluster) execStreamLeader(t *testing.T) *natsNode {
	t.Helper()
	var leader *natsNode
	natstest.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := c.js.Stream(ctx, schemas.ExecStream(schemas.TierUnlimited))
		if err != nil {
			return fmt.Errorf("execution stream: %w", err)
		}
		info := s.CachedInfo()
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return fmt.Errorf("the execution stream has no leader: %+v", info.Cluster)
		}
		for _, n := range c.nodes {
			if n.name == info.Cluster.Leader {
				leader = n
			}
		}
		if leader == nil {
			return fmt.Errorf("the execution stream's leader %q is not a node of this cluster", info.Cluster.Leader)
		}
		return nil
	})
	return leader
}

// cli runs a wasmwiz operator command against the cluster: its exit code and output.
func (c *faultCluster) cli(args ...string) (int, string, string) {
	cmd := exec.Command(bin(), args...)
	cmd.Env = append(os.Environ(), c.adminEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	if err != nil {
		return -1, "", err.Error()
	}
	return 0, stdout.String(), stderr.String()
}

// toolRuns counts the operator tools' runs during load: reads that reached the end.
type toolRuns struct {
	mu                     sync.Mutex
	tail, tailOK           int
	reconcile, reconcileOK int
	failures               []string
}

// exercise runs events tail and (unless !reconcile) reconcile, in turn, n times each.
func (c *faultCluster) exercise(tr *toolRuns, n int, reconcile bool) {
	for range n {
		code, out, errOut := c.cli("events", "tail", "--follow=false", "--type", "execution.*")
		ok := code == 0 && strings.Count(out, "\n") > 0
		tr.mu.Lock()
		tr.tail++
		if ok {
			tr.tailOK++
		} else {
			tr.failures = append(tr.failures, fmt.Sprintf("events tail: exit %d, %d lines: %s", code, strings.Count(out, "\n"), lastLines(errOut, 3)))
		}
		tr.mu.Unlock()
		if !reconcile {
			continue
		}
		// During load some events are not stored yet: a gap (1) is an answer; 2 is "could not read".
		code, _, errOut = c.cli("accounting", "reconcile", "--from", c.started.Format(time.RFC3339), "--json")
		tr.mu.Lock()
		tr.reconcile++
		if code == 0 || code == reconcileGapCode {
			tr.reconcileOK++
		} else {
			tr.failures = append(tr.failures, fmt.Sprintf("reconcile: exit %d: %s", code, lastLines(errOut, 3)))
		}
		tr.mu.Unlock()
	}
}

const reconcileGapCode = 1

// loadRun is one `wasmwiz load` process.
type loadRun struct {
	record string
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan error
}

func (c *faultCluster) startLoad(t *testing.T, name string, rate float64, d time.Duration) *loadRun {
	t.Helper()
	l := &loadRun{record: filepath.Join(c.dir, name+".jsonl"), done: make(chan error, 1)}
	l.cmd = exec.Command(bin(), "load", "--url", c.gateways[0].opsURL+","+c.gateways[1].opsURL, "--key", c.key,
		"--module", c.hello, "--async", "--idempotency-keys", "--record", l.record, "--json",
		"--rate", fmt.Sprint(rate), "--duration", d.String(), "--concurrency", "128",
		"--timeout-ms", "10000", "--deadline", "30s", "--attempt-timeout", "15s", "--wait", "3m")
	l.cmd.Stdout, l.cmd.Stderr = &l.stdout, &l.stderr
	if err := l.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { l.done <- l.cmd.Wait() }()
	t.Cleanup(func() {
		if l.cmd.ProcessState == nil {
			_ = l.cmd.Process.Kill()
		}
	})
	return l
}

// accepted reads the record so far.
func (l *loadRun) accepted(t *testing.T) []acceptedRecord {
	t.Helper()
	f, err := os.Open(l.record)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []acceptedRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r acceptedRecord
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

type acceptedRecord struct {
	ID         string    `json:"id"`
	Attempts   int       `json:"attempts"`
	SentAt     time.Time `json:"sent_at"`
	AcceptedAt time.Time `json:"accepted_at"`
}

func (l *loadRun) wait(t *testing.T) *loadReport {
	t.Helper()
	select {
	case err := <-l.done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) { // exit 1 reports failed requests: counted below
			t.Fatalf("wasmwiz load: %v\n%s", err, l.stderr.String())
		}
	case <-time.After(6 * time.Minute):
		t.Fatalf("wasmwiz load did not finish\n%s", l.stderr.String())
	}
	var rep loadReport
	if err := json.Unmarshal(l.stdout.Bytes(), &rep); err != nil {
		t.Fatalf("load report: %v\n%s\n%s", err, l.stdout.String(), l.stderr.String())
	}
	return &rep
}

// faultRow is one line of the table.
type faultRow struct {
	fault                               string
	accepted, completed, lost, ranTwice int
	usageRows                           int
	reconcile                           string
	clientErrors                        string
	recovery                            time.Duration
	recoveryWhat                        string
}

// disruption is how long after at clients were still riding out the fault: the last accepted
// request that needed a retry or waited more than a second for its 202.
func disruption(recs []acceptedRecord, at time.Time) time.Duration {
	var last time.Time
	for _, r := range recs {
		if r.SentAt.Before(at.Add(-30*time.Second)) || (r.Attempts <= 1 && r.AcceptedAt.Sub(r.SentAt) <= time.Second) {
			continue
		}
		if r.AcceptedAt.After(last) {
			last = r.AcceptedAt
		}
	}
	if last.Before(at) {
		return 0
	}
	return last.Sub(at)
}

// runsPerExecution counts "execution finished" log lines per execution id over every executor
// process started (a guest that ran to its end, on whichever node).
func (c *faultCluster) runsPerExecution() map[string]int {
	runs := map[string]int{}
	for _, p := range c.exProcs {
		for _, line := range strings.Split(p.output(), "\n") {
			if !strings.Contains(line, `"execution finished"`) {
				continue
			}
			var l struct {
				ID string `json:"execution_id"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.ID != "" {
				runs[l.ID]++
			}
		}
	}
	return runs
}

// check waits for every accepted execution to be final and stored, and fills the row.
// allow says which final client errors the fault may cause (nil: none).
func (c *faultCluster) check(t *testing.T, row *faultRow, ids []string, rep *loadReport, allow func(outcome string) bool) {
	t.Helper()
	row.accepted = len(ids)
	// Every accepted execution final (through the gateway that is not killed).
	final := map[string]bool{}
	deadline := time.Now().Add(2 * time.Minute)
	for _, id := range ids {
		for !final[id] && time.Now().Before(deadline) {
			r := c.sys.do(t, http.MethodGet, "/v1/executions/"+id, c.key, "", nil)
			var e schemas.Execution
			if r.Status == 200 && json.Unmarshal(r.Body, &e) == nil && e.Status.Final() {
				final[id] = true
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	row.completed = len(final)
	row.lost = row.accepted - row.completed
	runs := c.runsPerExecution()
	for _, id := range ids {
		switch {
		case runs[id] > 1:
			row.ranTwice++
			t.Errorf("%s ran %d times", id, runs[id])
		case runs[id] == 0 && final[id]:
			t.Errorf("%s is final but no executor logged its run", id)
		}
	}
	// Usage: one row per accepted execution, waited for.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, distinct int
	for end := time.Now().Add(3 * time.Minute); ; {
		if err := conn.QueryRow(ctx, `SELECT count(*), count(DISTINCT execution_id) FROM executions WHERE execution_id = ANY($1)`, ids).Scan(&rows, &distinct); err != nil {
			t.Fatal(err)
		}
		if rows >= len(ids) || time.Now().After(end) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	row.usageRows = rows
	if rows != distinct {
		t.Errorf("%d usage rows for %d executions", rows, distinct)
	}
	code, out, errOut := c.cli("accounting", "reconcile", "--from", c.started.Format(time.RFC3339), "--settle", "0s", "--json")
	var rr struct {
		Missing, Duplicates, Unexpected, Unpublished []string
	}
	if err := json.Unmarshal([]byte(out), &rr); err != nil {
		row.reconcile = fmt.Sprintf("exit %d", code)
		t.Errorf("reconcile: exit %d: %v\n%s", code, err, errOut)
	} else {
		row.reconcile = fmt.Sprintf("%d/%d", len(rr.Missing), len(rr.Duplicates))
		if code != 0 {
			t.Errorf("reconcile: exit %d: %s", code, out)
		}
	}
	retried := int64(0)
	for _, n := range rep.Retried {
		retried += n
	}
	row.clientErrors = fmt.Sprintf("%d (retried %d)", rep.Errors, retried)
	if len(rep.Retried) > 0 {
		row.clientErrors = fmt.Sprintf("%d (retried %s)", rep.Errors, compactCounts(rep.Retried))
	}
	var failed []string
	for k, n := range rep.Outcomes {
		if !strings.HasPrefix(k, "200") {
			row.clientErrors += fmt.Sprintf(", failed %s×%d", k, n)
			if allow == nil || !allow(k) {
				failed = append(failed, k)
			}
		}
	}
	if row.lost != 0 || row.usageRows != row.accepted || len(failed) > 0 {
		t.Errorf("%s: accepted %d, completed %d, usage rows %d, client errors %d (outcomes %v)",
			row.fault, row.accepted, row.completed, row.usageRows, rep.Errors, rep.Outcomes)
	}
}

func compactCounts(m map[string]int64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s×%d", strings.TrimPrefix(k, "error:"), v))
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

func printFaultTable(t *testing.T, rows []*faultRow) {
	var b strings.Builder
	fmt.Fprintf(&b, "\n| fault | accepted | completed | lost | ran twice | usage rows | reconcile missing/dup | client errors | recovery |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %s | %s | %.1f s (%s) |\n", r.fault, r.accepted, r.completed, r.lost,
			r.ranTwice, r.usageRows, r.reconcile, r.clientErrors, r.recovery.Seconds(), r.recoveryWhat)
	}
	t.Log(b.String())
}

func TestFaults_Cluster(t *testing.T) {
	rate, seconds := 20.0, 30
	if v := os.Getenv("WASMWIZ_FAULTS_RATE"); v != "" {
		fmt.Sscan(v, &rate)
	}
	if v := os.Getenv("WASMWIZ_FAULTS_SECONDS"); v != "" {
		fmt.Sscan(v, &seconds)
	}
	began := time.Now()
	c := startFaultCluster(t)
	t.Logf("cluster up in %v: 3 nats-servers (R3), 2 gateways, 2 executors, accounting on PostgreSQL", time.Since(began).Round(time.Second))
	var rows []*faultRow
	tools := &toolRuns{}
	defer func() {
		for i, np := range c.allProcs {
			keepLog(t, fmt.Sprintf("%s-%d", np.name, i), np.p)
		}
		printFaultTable(t, rows)
		t.Logf("during load: events tail %d/%d, reconcile %d/%d read to the end; suite %v",
			tools.tailOK, tools.tail, tools.reconcileOK, tools.reconcile, time.Since(began).Round(time.Second))
		for _, f := range tools.failures {
			t.Errorf("operator tool failed during load: %s", f)
		}
	}()

	var phaseAllow func(t *testing.T, name, fault string, strict bool, allow func(string) bool, inject func(t *testing.T, l *loadRun) (extra []string, recovery time.Duration, what string)) *faultRow
	// phase runs a load, injects the fault once the load is under way, and checks.
	// strict: clients must not even see an error they could retry (a NATS node's death is the
	// cluster's to ride out, within the requests' 10 s and more).
	phase := func(t *testing.T, name, fault string, strict bool, inject func(t *testing.T, l *loadRun) (extra []string, recovery time.Duration, what string)) *faultRow {
		return phaseAllow(t, name, fault, strict, nil, inject)
	}
	phaseAllow = func(t *testing.T, name, fault string, strict bool, allow func(string) bool, inject func(t *testing.T, l *loadRun) (extra []string, recovery time.Duration, what string)) *faultRow {
		d := time.Duration(seconds) * time.Second
		if allow != nil { // the no-quorum and partition faults last 15 s: the load outlasts them
			d = max(d, 35*time.Second)
		}
		l := c.startLoad(t, name, rate, d)
		eventually(t, time.Minute, "the load has not got going", func() bool { return len(l.accepted(t)) >= int(rate*5) })
		var toolsDone sync.WaitGroup
		// Reconcile reads accounting's rows too: not while accounting is the fault.
		toolsDone.Go(func() { c.exercise(tools, 5, name != "accounting") })
		extra, recovery, what := inject(t, l)
		rep := l.wait(t)
		toolsDone.Wait()
		recs := l.accepted(t)
		ids := extra
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		row := &faultRow{fault: fault, recovery: recovery, recoveryWhat: what}
		rows = append(rows, row)
		c.check(t, row, ids, rep, allow)
		if strict && len(rep.Retried) > 0 {
			t.Errorf("%s: clients saw %v (and retried): want no error at all", fault, rep.Retried)
		}
		for _, r := range c.roles() {
			if !r.p.alive() {
				t.Errorf("%s %s is not running after the fault: %v\n%s", r.name, r.opsURL, r.p.err, lastLines(r.p.output(), 20))
			}
		}
		t.Logf("%s: load %+v", fault, rep)
		return row
	}

	t.Run("executor", func(t *testing.T) {
		phase(t, "executor", "executor kill -9 during an 8 s guest", true, func(t *testing.T, l *loadRun) ([]string, time.Duration, string) {
			const run = 8 * time.Second
			r, e := c.sys.execute(t, c.key, schemas.ExecutionRequest{ModuleID: c.loop, TimeoutMS: run.Milliseconds(), Async: true})
			if r.Status != http.StatusAccepted {
				t.Fatalf("long guest: %d %s", r.Status, r.Body)
			}
			kv, err := c.js.KeyValue(context.Background(), schemas.BucketResults)
			if err != nil {
				t.Fatal(err)
			}
			result := func() *schemas.Result { return storedResult(kv, e.ID) }
			var on string
			eventually(t, time.Minute, "the long guest never ran", func() bool {
				if res := result(); res != nil && res.Status == schemas.StatusRunning {
					on = res.NodeID
				}
				return on != ""
			})
			i := slices.Index([]string{"ex0", "ex1"}, on)
			if i < 0 {
				t.Fatalf("running on %q", on)
			}
			time.Sleep(time.Second) // mid-run
			kill9(t, c.executors[i].p)
			killed := time.Now()
			var final *schemas.Result
			eventually(t, 2*time.Minute, "the long guest never finished after its executor was killed", func() bool {
				final = result()
				return final != nil && final.Status.Final()
			})
			after := final.FinishedAt.Sub(killed)
			if final.NodeID == on {
				t.Errorf("the long guest finished on the killed node %s", on)
			}
			if after > 10*time.Second+run {
				t.Errorf("the long guest finished %v after the kill, want within 10 s + its %v", after, run)
			}
			c.executors[i].restart(c.t)
			c.exProcs = append(c.exProcs, c.executors[i].p)
			c.allProcs = append(c.allProcs, namedProc{"executor", c.executors[i].p})
			waitReady(t, c.executors[i].opsURL, c.executors[i].p)
			return []string{e.ID}, after, "the killed node's 8 s guest final, from the kill"
		})
	})

	natsKill := func(t *testing.T, l *loadRun, leader bool) ([]string, time.Duration, string) {
		lead := c.execStreamLeader(t)
		victim := lead
		if !leader {
			for _, n := range c.nodes {
				if n != lead {
					victim = n
					break
				}
			}
		}
		kill9(t, victim.p)
		killed := time.Now()
		var elected time.Duration
		if leader {
			natstest.CheckFor(t, time.Minute, 100*time.Millisecond, func() error {
				if l := c.execStreamLeader(t); l == victim {
					return fmt.Errorf("%s still leads the execution stream", l.name)
				}
				return nil
			})
			elected = time.Since(killed)
		}
		time.Sleep(10 * time.Second) // down for a while under load
		victim.start(c.t, c.natsBin)
		c.waitNATS(t)
		back := time.Since(killed)
		d := disruption(l.accepted(t), killed)
		t.Logf("nats-server %s (exec stream leader: %v) killed; new leader after %v; back and healthy after %v; clients disrupted for %v",
			victim.name, leader, elected.Round(time.Millisecond), back.Round(time.Millisecond), d.Round(time.Millisecond))
		return nil, d, "client disruption, from the kill"
	}
	t.Run("follower", func(t *testing.T) {
		phase(t, "follower", "NATS follower kill -9 (10 s down)", true, func(t *testing.T, l *loadRun) ([]string, time.Duration, string) {
			return natsKill(t, l, false)
		})
	})
	t.Run("leader", func(t *testing.T) {
		phase(t, "leader", "exec stream leader kill -9 (10 s down)", true, func(t *testing.T, l *loadRun) ([]string, time.Duration, string) {
			return natsKill(t, l, true)
		})
	})
	t.Run("accounting", func(t *testing.T) {
		phase(t, "accounting", "accounting kill -9, PostgreSQL unreachable 15 s", true, func(t *testing.T, l *loadRun) ([]string, time.Duration, string) {
			c.pgRelay.cut()
			kill9(t, c.acct.p)
			c.acct.restart(c.t) // starts without its database, and must stay up
			c.allProcs = append(c.allProcs, namedProc{"accounting", c.acct.p})
			time.Sleep(15 * time.Second)
			if !c.acct.p.alive() {
				t.Fatalf("accounting exited while PostgreSQL was unreachable: %v\n%s", c.acct.p.err, lastLines(c.acct.p.output(), 20))
			}
			if err := c.pgRelay.open(); err != nil {
				t.Fatal(err)
			}
			back := time.Now()
			waitReady(t, c.acct.opsURL, c.acct.p)
			return nil, time.Since(back), "accounting ready, from PostgreSQL back"
		})
	})
	t.Run("gateway", func(t *testing.T) {
		phase(t, "gateway", "gateway kill -9 (10 s down), clients retry on the other", false, func(t *testing.T, l *loadRun) ([]string, time.Duration, string) {
			g := c.gateways[0]
			kill9(t, g.p)
			killed := time.Now()
			time.Sleep(10 * time.Second)
			g.restart(c.t)
			c.allProcs = append(c.allProcs, namedProc{"gateway", g.p})
			waitReady(t, g.opsURL, g.p)
			return nil, disruption(l.accepted(t), killed), "client disruption, from the kill"
		})
	})
	// No quorum and partitions (faults_quorum_test.go). While the cluster cannot store, the
	// answer is a 503 with Retry-After (the load retries it on the other gateway until its 30 s
	// deadline, and only a 503 may be its final answer); nothing accepted is lost.
	only503 := func(k string) bool { return k == "503" }
	quorumPhase := func(t *testing.T, name, fault string, inject func(t *testing.T) (end time.Time, what string)) {
		var probe *probeSummary
		row := phaseAllow(t, name, fault, false, only503, func(t *testing.T, l *loadRun) ([]string, time.Duration, string) {
			pr := c.startProber(t, name)
			end, what := inject(t)
			served := c.waitServed(t)
			servedAfter := time.Since(end)
			time.Sleep(2 * time.Second)
			probe = pr.finish(t)
			d := disruption(l.accepted(t), end)
			t.Logf("%s: both gateways accept again %v after the fault ended; %s", fault, servedAfter.Round(time.Millisecond), probe)
			if !probe.first503.IsZero() {
				t.Logf("%s: 503s to probes sent from %v to %v from the fault's end", fault,
					probe.first503.Sub(end).Round(time.Millisecond), probe.last503.Sub(end).Round(time.Millisecond))
			}
			return append(served, probe.accepted...), max(d, servedAfter), what
		})
		ran := c.refusedRan(t, probe.refused)
		row.clientErrors += fmt.Sprintf("; %s; refused yet ran %d", probe, len(ran))
		for _, b := range probe.bad {
			t.Errorf("%s: %s", fault, b)
		}
		for _, r := range ran {
			t.Errorf("%s: refused with a 503 yet ran: %s", fault, r)
		}
	}
	const down = 15 * time.Second
	// downTogether kills victims at once (kill -9), keeps them down for down, starts them again
	// and waits for the cluster to be healthy; it returns when they were started again.
	downTogether := func(t *testing.T, lead *natsNode, victims []*natsNode) (time.Time, string) {
		for _, v := range victims {
			kill9(t, v.p)
		}
		time.Sleep(down)
		for _, v := range victims {
			v.start(c.t, c.natsBin)
		}
		end := time.Now()
		c.waitNATS(t)
		var names []string
		for _, v := range victims {
			if v == lead {
				names = append(names, v.name+" (leader)")
			} else {
				names = append(names, v.name)
			}
		}
		t.Logf("nats-servers %s back and healthy %v after their restart", strings.Join(names, " and "), time.Since(end).Round(time.Millisecond))
		return end, "client disruption and both gateways serving, from the restart"
	}
	t.Run("quorum", func(t *testing.T) {
		quorumPhase(t, "quorum", "two NATS servers kill -9 at once (15 s down)", func(t *testing.T) (time.Time, string) {
			lead := c.execStreamLeader(t)
			var victims []*natsNode
			for _, n := range c.nodes {
				if n != lead {
					victims = append(victims, n)
				}
			}
			return downTogether(t, lead, victims)
		})
	})
	t.Run("partition", func(t *testing.T) {
		quorumPhase(t, "partition", "exec stream leader's routes partitioned (15 s)", func(t *testing.T) (time.Time, string) {
			v := c.execStreamLeader(t)
			c.partitionNode(c.nodeIndex(v), true)
			time.Sleep(down)
			c.partitionNode(c.nodeIndex(v), false)
			end := time.Now()
			c.waitNATS(t)
			t.Logf("nats-server %s partitioned from the others for %v; healthy %v after the heal", v.name, down, time.Since(end).Round(time.Millisecond))
			return end, "client disruption and both gateways serving, from the heal"
		})
	})
	t.Run("quorum-leader", func(t *testing.T) {
		quorumPhase(t, "quorum-leader", "exec stream leader and a follower kill -9 at once (15 s down)", func(t *testing.T) (time.Time, string) {
			lead := c.execStreamLeader(t)
			victims := []*natsNode{lead}
			for _, n := range c.nodes {
				if n != lead && len(victims) < 2 {
					victims = append(victims, n)
				}
			}
			return downTogether(t, lead, victims)
		})
	})
	cutOff := func(rs []*tcpRelay) time.Time {
		for _, r := range rs {
			r.blackhole()
		}
		time.Sleep(down)
		for _, r := range rs {
			r.heal()
		}
		return time.Now()
	}
	t.Run("gateway-partition", func(t *testing.T) {
		quorumPhase(t, "gateway-partition", "gateway cut off from NATS (15 s)", func(t *testing.T) (time.Time, string) {
			return cutOff(c.gatewayRelays), "client disruption and both gateways serving, from the heal"
		})
	})
	t.Run("executor-partition", func(t *testing.T) {
		quorumPhase(t, "executor-partition", "executor cut off from NATS (15 s)", func(t *testing.T) (time.Time, string) {
			end := cutOff(c.executorRelays)
			waitReady(t, c.executors[1].opsURL, c.executors[1].p)
			return end, "client disruption and both gateways serving, from the heal"
		})
	})
}
