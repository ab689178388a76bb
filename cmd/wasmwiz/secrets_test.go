package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/gateway"
)

func TestSecretsGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	gen := func(extra ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		args := append([]string{"secrets", "generate", "--dir", dir, "--postgres-host", "db:5433"}, extra...)
		if code := run(context.Background(), args, func(string) string { return "" }, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		return out.String()
	}
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	gen()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("dir: %v %v, want 0700", fi.Mode().Perm(), err)
	}
	for _, name := range []string{"postgres-password", "pgpass", "jwt-key.pem"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	pw := read("postgres-password")
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(pw) {
		t.Errorf("password %q", pw)
	}
	if got, want := read("pgpass"), "db:5433:wasmwiz:wasmwiz:"+pw+"\n"; got != want {
		t.Errorf("pgpass %q, want %q", got, want)
	}
	if _, err := gateway.LoadSigner(filepath.Join(dir, "jwt-key.pem"), false); err != nil {
		t.Errorf("jwt key: %v", err)
	}
	jwt := read("jwt-key.pem")

	// Again: nothing is replaced.
	if out := gen(); !strings.Contains(out, "kept") || strings.Contains(out, "wrote") {
		t.Errorf("second run: %s", out)
	}
	if read("postgres-password") != pw || read("jwt-key.pem") != jwt {
		t.Error("second run changed a secret")
	}
	// --force rotates all of them.
	gen("--force")
	if read("postgres-password") == pw || read("jwt-key.pem") == jwt || !strings.Contains(read("pgpass"), read("postgres-password")) {
		t.Error("--force did not rotate the secrets consistently")
	}
}
