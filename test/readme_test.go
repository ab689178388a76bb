package test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
)

// readmeBlocks are the ```sh blocks of the README's section under the heading line heading, up
// to the next "## " heading.
func readmeBlocks(t *testing.T, heading string) []string {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(readme), "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q", heading)
	}
	section := string(readme)[i+len(heading)+2:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var blocks []string
	for {
		start := strings.Index(section, "```sh\n")
		if start < 0 {
			break
		}
		end := strings.Index(section[start+6:], "```")
		if end < 0 {
			t.Fatalf("an sh block of the README's %q does not end", heading)
		}
		blocks = append(blocks, section[start+6:start+6+end])
		section = section[start+6+end+3:]
	}
	if len(blocks) == 0 {
		t.Fatalf("no sh block in the README's %q", heading)
	}
	return blocks
}

// TestDev_READMECommands runs the README's command blocks as a person copies them, with bash -e,
// from a directory laid out as a clone's root (wasmwiz-data of a real wasmwiz dev started there
// with its contexts saved, internal/fixtures/wasm), with wasmwiz on PATH: "The API in five curl
// lines", the history line after it, "The CLI" and the events and reconcile lines of "Usage,
// events and audit". Apart from: the API URL is the one dev printed (the README's
// http://127.0.0.1:8080 is dev's default), the Go guest is built into this directory (build.sh's
// argument) rather than into the source tree, and the endless `curl -sN …/v1/events` is left
// out. It checks what the comments say.
func TestDev_READMECommands(t *testing.T) {
	for _, tool := range []string{"curl", "jq", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("no %s on PATH", tool)
			}
			t.Skipf("no %s on PATH", tool)
		}
	}
	root := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "config")
	env := []string{"WASMWIZ_CONFIG_DIR=" + cfg}
	s := startDevEnv(t, filepath.Join(root, "wasmwiz-data"), append(env, "WASMWIZ_SAVE_CONTEXT=true")...)
	fixtures, err := filepath.Abs("../internal/fixtures/wasm")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "internal", "fixtures"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fixtures, filepath.Join(root, "internal", "fixtures", "wasm")); err != nil {
		t.Fatal(err)
	}
	goGuest, err := filepath.Abs("../examples/guests/go/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "examples", "guests", "go"), 0o755); err != nil {
		t.Fatal(err)
	}

	run := func(name, script string) string {
		t.Helper()
		cmd := exec.Command("bash", "--norc", "--noprofile", "-e", "-o", "pipefail", "-c", script)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), append(env, "PATH="+filepath.Dir(bin())+string(os.PathListSeparator)+os.Getenv("PATH"))...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("the README's %s: %v\n--- script\n%s\n--- stdout\n%s\n--- stderr\n%s", name, err, script, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	contains := func(name, out string, want ...string) {
		t.Helper()
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("the README's %s: %q missing from its output:\n%s", name, w, out)
			}
		}
	}

	curlBlocks := readmeBlocks(t, "## The API in five curl lines")
	if len(curlBlocks) < 2 { // then the Go client example: TestDev_Clients runs it
		t.Fatalf("the README's curl section has %d sh blocks, want the five lines and the history line first", len(curlBlocks))
	}
	curl := curlBlocks[0]
	if !strings.Contains(curl, "U=http://127.0.0.1:8080") {
		t.Fatalf("the curl block no longer sets U=http://127.0.0.1:8080:\n%s", curl)
	}
	curl = strings.Replace(curl, "U=http://127.0.0.1:8080", "U="+s.URL, 1)
	// Then the async execution's id, and the history line after the block.
	script := curl + "\necho \"ID=$ID\"\n" + curlBlocks[1]
	out := run("curl lines", script)
	contains("curl lines", out, `"name":"echo"`, `"status":"succeeded"`, `"stdout":"hi"`, `"stdout":"later"`,
		`{"output":"hi","error":null}`, `{"executions":[]}`)

	cli := readmeBlocks(t, "### The CLI")[0]
	const build = "sh examples/guests/go/build.sh"
	if !strings.Contains(cli, build+" ") {
		t.Fatalf("the CLI block no longer runs %s:\n%s", build, cli)
	}
	cli = strings.Replace(cli, build+" ", "sh "+goGuest+" "+filepath.Join(root, "examples", "guests", "go")+" ", 1)
	out = run("CLI block", cli)
	contains("CLI block", out, "hi", "hello, --verbose and x!", "NAME", "greet-go.wasm", "STATUS       succeeded",
		"--- stdout\nlater", "ID  STATUS", "TENANT", "dev-admin")

	var usage []string
	for _, line := range strings.Split(readmeBlocks(t, "## Usage, events and audit")[0], "\n") {
		if !strings.HasPrefix(line, `curl -sN "$U/v1/events"`) { // Server-Sent Events: never ends
			usage = append(usage, line)
		}
	}
	// reconcile exits 1 while accounting has not stored every execution yet: wait for that first.
	natstest.CheckFor(t, 60*time.Second, 200*time.Millisecond, func() error {
		if out, errOut, code := cliIn(t, root, env, "accounting", "reconcile", "--context", "dev-admin", "--results=false"); code != 0 {
			return fmt.Errorf("reconcile: exit %d\n%s%s", code, out, errOut)
		}
		return nil
	})
	out = run("usage and events lines", "U="+s.URL+"; KEY=$(cat wasmwiz-data/dev-api-key)\n"+strings.Join(usage, "\n"))
	contains("usage and events lines", out, `"group_by":"day"`, `"type":"execution.completed"`, "missing      0", "result       ok")
}
