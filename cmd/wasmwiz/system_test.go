package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"
)

// What BeforeServe does (dev saves its client contexts there) is done before the API answers:
// a script that starts dev and waits for /health/ready then finds the contexts. They were saved
// after the API served, and the test harness once used dev before it had saved them.
func TestSystem_BeforeServeRunsBeforeTheAPIAnswers(t *testing.T) {
	var hookURL string
	var answered bool
	sys, err := startSystem(context.Background(), systemConfig{
		DataDir: t.TempDir(), NATSAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Workers: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registry: newRegistry(),
		BeforeServe: func(apiURL, natsURL string) error {
			hookURL = apiURL
			c := &http.Client{Timeout: 300 * time.Millisecond}
			if resp, err := c.Get(apiURL + "/health/ready"); err == nil {
				resp.Body.Close()
				answered = resp.StatusCode == http.StatusOK
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.stop()
	if hookURL != sys.url {
		t.Errorf("BeforeServe was given %q, the API is at %q", hookURL, sys.url)
	}
	if answered {
		t.Error("the API answered ready before BeforeServe returned")
	}
	resp, err := http.Get(sys.url + "/health/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/health/ready %d once started", resp.StatusCode)
	}
}
