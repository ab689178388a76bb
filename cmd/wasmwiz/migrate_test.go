package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

func TestAccountingMigrate(t *testing.T) {
	var out, errb bytes.Buffer
	noenv := func(string) string { return "" }
	if code := run(context.Background(), []string{"accounting", "migrate"}, noenv, &out, &errb); code != 2 || !strings.Contains(errb.String(), "database URL is required") {
		t.Errorf("without a URL: exit %d, %s", code, errb.String())
	}
	url := os.Getenv("WASMWIZ_TEST_DATABASE_URL")
	if url == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("WASMWIZ_TEST_DATABASE_URL is not set in CI")
		}
		t.Skip("WASMWIZ_TEST_DATABASE_URL not set")
	}
	for range 2 { // idempotent
		out.Reset()
		errb.Reset()
		if code := run(context.Background(), []string{"accounting", "migrate", "--database-url", url}, noenv, &out, &errb); code != 0 {
			t.Fatalf("exit %d: %s", code, errb.String())
		}
		if !strings.Contains(out.String(), "migrations applied") {
			t.Errorf("output %q", out.String())
		}
	}
}
