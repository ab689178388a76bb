package test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/wasmwiz/wasmwiz/internal/fixtures"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// chromiumPath finds Debian's chromium (or another Chrome). Outside CI a machine without one
// skips the console test; in CI (CI=true) it fails, so the test can never silently not run.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on PATH: CI must install Debian's chromium (.ci/run does)")
	}
	t.Skip("no chromium on PATH (apt-get install chromium); in CI this fails")
	return ""
}

// screenshotDir is where the console test writes its screenshots: WASMWIZ_SCREENSHOTS_DIR
// (CI sets it, and keeps them as artifacts), else a temporary directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("WASMWIZ_SCREENSHOTS_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestDev_Console drives the web console in headless Chromium against a real wasmwiz dev:
// sign in with an API key, upload a module by dropping it, run it with stdin, args and env,
// find the run in the history, create a key (shown once, and working), read the usage chart
// and live events. The page must log no error: a Content-Security-Policy violation (an inline
// script or style, a foreign origin, an HTML sink without Trusted Types) fails the test.
func TestDev_Console(t *testing.T) {
	chrome := chromiumPath(t)
	shots := screenshotDir(t)
	s := startDev(t, t.TempDir())

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox cannot start
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx)
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	var mu sync.Mutex
	var pageErrors []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			pageErrors = append(pageErrors, fmt.Sprintf("exception: %s at %s:%d", msg, d.URL, d.LineNumber))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				pageErrors = append(pageErrors, "console.error: "+strings.Join(parts, " "))
			}
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError {
				pageErrors = append(pageErrors, fmt.Sprintf("log (%s): %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	errorsSoFar := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(pageErrors)
	}
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return chromedp.Void{}, err
			}
			return chromedp.Void{}, os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		}
	}
	fail := func(step string, err error) {
		t.Helper()
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
		t.Fatalf("%s: %v\npage errors: %v\nbody: %.3000s", step, err, errorsSoFar(), html)
	}
	do := func(step string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			fail(step, err)
		}
	}
	get := func(step string, a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(ctx, a)
		if err != nil {
			fail(step, err)
		}
		return v
	}
	until := func(js string) chromedp.Action[chromedp.Void] {
		p := chromedp.Poll[bool](js, chromedp.WithPollingTimeout(60*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := p(ctx, tg)
			return chromedp.Void{}, err
		}
	}
	textIs := func(sel, want string) chromedp.Action[chromedp.Void] {
		return until(fmt.Sprintf(`document.querySelector(%q) !== null && document.querySelector(%q).textContent === %q`, sel, sel, want))
	}
	textHas := func(sel, want string) chromedp.Action[chromedp.Void] {
		return until(fmt.Sprintf(`document.querySelector(%q) !== null && document.querySelector(%q).textContent.includes(%q)`, sel, sel, want))
	}
	eval := func(js string) chromedp.Action[chromedp.Void] {
		e := chromedp.Evaluate[bool](js)
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := e(ctx, tg)
			return chromedp.Void{}, err
		}
	}
	storedKey := chromedp.Evaluate[string](`sessionStorage.getItem("wasmwiz.key") || ""`)

	// A wrong key is refused; the dev key signs in.
	do("open the console",
		chromedp.Navigate(s.URL+"/console"),
		chromedp.WaitVisible(chromedp.ID("key")),
		chromedp.SendKeys(chromedp.ID("key"), "ww_not_a_key"),
		chromedp.Click(chromedp.ID("signin")),
		textIs("#signin-error", "That key was not accepted."),
		eval(`(document.getElementById("key").value = "") === ""`),
		chromedp.SendKeys(chromedp.ID("key"), s.DevKey),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("app")),
	)
	if stored := get("read session storage", storedKey); stored != s.DevKey {
		t.Errorf("sessionStorage holds %q, want the key signed in with", stored)
	}

	// Upload by drag and drop: a drop event carrying the module as a File, as a browser makes
	// it when a file is dropped.
	drop := fmt.Sprintf(`(() => {
		const bytes = Uint8Array.from(atob(%q), c => c.charCodeAt(0));
		const dt = new DataTransfer();
		dt.items.add(new File([bytes], "echo.wasm", {type: "application/wasm"}));
		const zone = document.getElementById("drop");
		zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
		zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
		return true;
	})()`, base64.StdEncoding.EncodeToString(fixtures.Wasm("echo")))
	do("drop a module", eval(drop), textHas("#upload-status", "Uploaded echo: sha256:"), shot("console-upload"))

	do("run it",
		chromedp.SendKeys(chromedp.ID("stdin"), "hello from chromium"),
		chromedp.SendKeys(chromedp.ID("args"), "one\ntwo"),
		chromedp.SendKeys(chromedp.ID("env"), "GREETING=hi"),
		chromedp.Click(chromedp.ID("run")),
		textIs("#result-stdout", "hello from chromium"),
		textIs("#result-status", "succeeded"),
		textIs("#result-exit", "0"),
		shot("console-run"),
	)
	execID := get("result id", chromedp.TextContent(chromedp.ID("result-id")))
	duration := get("result duration", chromedp.TextContent(chromedp.ID("result-duration")))
	memory := get("result memory", chromedp.TextContent(chromedp.ID("result-memory")))
	if !schemas.ValidExecutionID(execID) || !strings.HasSuffix(duration, " ms") || !strings.Contains(memory, "B") {
		t.Errorf("result: id %q, duration %q, memory %q", execID, duration, memory)
	}

	do("history",
		chromedp.Click(chromedp.ID("tab-history")),
		chromedp.WaitVisible(chromedp.CSS("#history tbody tr")),
	)
	if first := get("newest row", chromedp.Evaluate[string](`document.querySelector("#history tbody tr").dataset.id`)); first != execID {
		t.Errorf("newest execution in the history is %q, want %q", first, execID)
	}
	do("open it",
		chromedp.Click(chromedp.CSS("#history tbody tr")),
		chromedp.WaitVisible(chromedp.ID("history-detail")),
		textHas("#detail-json", `"stdout": "hello from chromium"`),
		shot("console-history"),
	)

	do("create a key",
		chromedp.Click(chromedp.ID("tab-keys")),
		chromedp.WaitVisible(chromedp.CSS("#keys tbody tr")),
		chromedp.SendKeys(chromedp.ID("key-name"), "from-chromium"),
		chromedp.Click(chromedp.CSS(`#key-scopes input[value="execute"]`)),
		chromedp.Click(chromedp.ID("key-create")),
		chromedp.WaitVisible(chromedp.ID("new-key-box")),
		textHas("#keys tbody", "from-chromium"),
		shot("console-keys"),
	)
	newKey := get("the new key", chromedp.TextContent(chromedp.ID("new-key")))
	// The key shown once works, with the one scope asked for.
	if r := s.do(t, http.MethodGet, "/v1/executions", newKey, "", nil); r.Status != 200 {
		t.Errorf("the console's new key lists executions: %d %s", r.Status, r.Body)
	}
	if r := s.do(t, http.MethodGet, "/v1/modules", newKey, "", nil); r.Status != 403 {
		t.Errorf("the console's execute-only key lists modules: %d", r.Status)
	}
	do("hide the key", chromedp.Click(chromedp.ID("new-key-hide")), chromedp.WaitNotVisible(chromedp.ID("new-key-box")))
	if shown := get("the key after Done", chromedp.TextContent(chromedp.ID("new-key"))); shown != "" {
		t.Errorf("the new key is still in the page after Done")
	}

	// Rotate the new key (a new one, shown once; the old one in its grace) and revoke the
	// rotated one; the dialogs asking to confirm are answered yes.
	rowOf := func(name string) string {
		return fmt.Sprintf(`[...document.querySelectorAll("#keys tbody tr")].find(r => r.children[1].textContent === %q)`, name)
	}
	do("rotate and revoke",
		eval(`(window.confirm = () => true) !== null`),
		eval(rowOf("from-chromium")+`.querySelector("button.rotate").click() === undefined`),
		chromedp.WaitVisible(chromedp.ID("new-key-box")),
		until(`document.getElementById("new-key").textContent.startsWith("ww_") && document.getElementById("new-key").textContent !== `+fmt.Sprintf("%q", newKey)),
		until(`[...document.querySelectorAll("#keys tbody tr")].filter(r => r.children[1].textContent === "from-chromium").length === 2`),
	)
	rotated := get("the rotated key", chromedp.TextContent(chromedp.ID("new-key")))
	if r := s.do(t, http.MethodGet, "/v1/executions", rotated, "", nil); r.Status != 200 {
		t.Errorf("the rotated key lists executions: %d %s", r.Status, r.Body)
	}
	do("revoke the rotated key",
		eval(`[...document.querySelectorAll("#keys tbody tr")].filter(r => r.children[1].textContent === "from-chromium" && !r.children[5].textContent.includes("rotated"))[0].querySelector("button.revoke").click() === undefined`),
		until(`[...document.querySelectorAll("#keys tbody tr")].filter(r => r.children[1].textContent === "from-chromium").length === 1`),
	)
	if r := s.do(t, http.MethodGet, "/v1/executions", rotated, "", nil); r.Status != 401 {
		t.Errorf("the revoked key still works: %d", r.Status)
	}

	// Live events: an execution started elsewhere shows up.
	do("live events",
		chromedp.Click(chromedp.ID("tab-events")),
		chromedp.Click(chromedp.ID("events-toggle")),
		textIs("#events-state", "live"),
	)
	var ml schemas.ModuleList
	s.do(t, http.MethodGet, "/v1/modules", s.DevKey, "", nil).decode(t, &ml)
	e := s.run(t, s.DevKey, schemas.ExecutionRequest{ModuleID: ml.Modules[0].ID, Stdin: "seen live"})
	do("the event arrives", textHas("#events", e.ID), shot("console-events"))

	// Usage by day: accounting stores the two executions within moments.
	do("usage",
		chromedp.Click(chromedp.ID("events-toggle")),
		until(`(async () => {
			document.getElementById("tab-usage").click();
			await new Promise(r => setTimeout(r, 500));
			const today = new Date().toISOString().slice(0, 10);
			const bar = document.querySelector('#usage-chart rect[data-day="' + today + '"]');
			return bar !== null && Number(bar.dataset.executions) >= 2;
		})()`),
		shot("console-usage"),
	)

	do("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("signin-view")))
	if stored := get("session storage after sign out", storedKey); stored != "" {
		t.Errorf("after sign out sessionStorage still holds a key")
	}
	consoleErrors := errorsSoFar()

	// /docs shows the narrative overview (the OpenAPI description) offline, from the binary.
	do("docs overview",
		chromedp.Navigate(s.URL+"/docs"),
		until(`document.body.innerText.includes("Idempotency-Key: <anything unique>")`),
		shot("docs-overview"),
	)

	var real []string
	for _, e := range consoleErrors {
		// The wrong key's 401 is logged by Chromium as a failed resource load; nothing else may be.
		if strings.Contains(e, "401 (Unauthorized)") {
			continue
		}
		real = append(real, e)
	}
	if len(real) > 0 {
		t.Errorf("the console logged errors:\n%s", strings.Join(real, "\n"))
	}
	t.Logf("screenshots in %s", shots)
}
