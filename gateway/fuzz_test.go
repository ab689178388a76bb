package gateway

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"strings"
	"testing"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// FuzzValidateRequest feeds execution request bodies, as REST and NATS receive them, through
// decoding and validation: never a panic, and whatever is accepted stays within the tier.
func FuzzValidateRequest(f *testing.F) {
	for _, seed := range []string{
		`{"module_id":"sha256:0000000000000000000000000000000000000000000000000000000000000000","stdin":"hi"}`,
		`{"module_base64":"AGFzbQEAAAA=","stdin_base64":"AAEC","args":["a","b"],"env":{"K":"V"},"timeout_ms":100,"memory_mb":16,"async":true}`,
		`{"module_id":"x","timeout_ms":-1}`, `{"env":{"A=B":"c"}}`, `{"args":["\u0000"]}`, `[]`, `{"memory_mb":1e99}`,
	} {
		f.Add([]byte(seed))
	}
	tier := schemas.DefaultTiers()[schemas.TierFree]
	p := &Principal{TenantID: "acme", KeyID: "key_1", Tier: tier}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req schemas.ExecutionRequest
		if json.Unmarshal(body, &req) != nil {
			return
		}
		er, err := validateRequest(p, &req, false)
		if err != nil {
			if se := schemas.AsError(err); se.Code == schemas.CodeInternal || se.Message == "" {
				t.Fatalf("validation error without a code or message: %v", err)
			}
			return
		}
		if er.TimeoutMS <= 0 || er.TimeoutMS > tier.WallTime.Milliseconds() || er.MemoryMB <= 0 || er.MemoryMB > tier.MemoryMB || len(er.Stdin) > tier.StdinMax ||
			len(er.Args) > tier.ArgsMax || len(er.Env) > tier.EnvMax {
			t.Fatalf("accepted beyond the tier: %+v", er)
		}
		_ = requestHash(&req)
	})
}

// FuzzParseCompatForm feeds multipart bodies to the compat endpoint's parser.
func FuzzParseCompatForm(f *testing.F) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("wasm", "main.wasm")
	_, _ = fw.Write([]byte("\x00asm\x01\x00\x00\x00"))
	_ = mw.WriteField("input", "hello")
	_ = mw.Close()
	f.Add(buf.Bytes(), mw.Boundary())
	f.Add([]byte("--x\r\nContent-Disposition: form-data; name=\"wasm\"\r\n\r\nabc\r\n--x--\r\n"), "x")
	f.Add([]byte("garbage"), "b")
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		if boundary == "" || len(boundary) > 70 || strings.ContainsAny(boundary, "\r\n") {
			return
		}
		wasm, input, status, msg := parseCompatForm(bytes.NewReader(body), boundary)
		if status == 0 && (len(wasm) > compatMaxWasm || len(input) > compatMaxInput) {
			t.Fatalf("accepted oversized parts: %d %d", len(wasm), len(input))
		}
		if status != 0 && msg == "" {
			t.Fatal("error without a message")
		}
	})
}

// TestValidateRequest_StdinTooLargeNamesStdinFile: stdin over the tier's stdin_max is a 413 that
// says how to give a guest more input (zstd -c of 1.5 MB piped to wasmwiz run got only "stdin is
// 1500000 bytes; the pro tier allows 1048576").
func TestValidateRequest_StdinTooLargeNamesStdinFile(t *testing.T) {
	tier := schemas.DefaultTiers()[schemas.TierPro]
	p := &Principal{TenantID: "acme", KeyID: "key_1", Tier: tier}
	req := schemas.ExecutionRequest{ModuleID: "sha256:" + strings.Repeat("0", 64), Stdin: strings.Repeat("x", tier.StdinMax+1)}
	_, err := validateRequest(p, &req, false)
	se := schemas.AsError(err)
	if se == nil || se.Code != schemas.CodeTooLarge || !strings.Contains(se.Message, "stdin_file") || !strings.Contains(se.Message, "1048577 bytes") {
		t.Fatalf("stdin over stdin_max: %v, want too_large naming stdin_file", err)
	}
}
