package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// The original WasmWiz API: POST /api/execute with multipart fields "wasm" (the module) and
// "input" (stdin), answering {"output": ..., "error": ...}. Kept so its clients keep working.
const (
	compatMaxWasm  = 10 << 20
	compatMaxInput = 1 << 20
)

type compatResponse struct {
	Output *string `json:"output"`
	Error  *string `json:"error"`
}

// compatDoc is the OpenAPI description of POST /api/execute.
func compatDoc() huma.Operation {
	return huma.Operation{
		Tags:        []string{"compat"},
		Summary:     "Run a module (original WasmWiz API)",
		Description: "multipart/form-data with file field `wasm` (≤ 10 MiB) and text field `input` (≤ 1 MiB, stdin). The module is stored as one of the tenant's modules, so the key needs the `modules:write` scope as well as `execute`. Answers {\"output\": stdout, \"error\": null}, or {\"output\": null, \"error\": message} with 400 (not wasm), 401 (no key), 403 (a scope is missing), 413 (too big), 422 (failed or timed out), 429 (rate limited; with Retry-After).",
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{"multipart/form-data": {Schema: &huma.Schema{
			Type: "object", Required: []string{"wasm"},
			Properties: map[string]*huma.Schema{
				"wasm":  {Type: "string", Format: "binary", ContentEncoding: "binary"},
				"input": {Type: "string"},
			},
		}}}},
		Responses: map[string]*huma.Response{
			"200": {Description: "the module exited 0", Content: map[string]*huma.MediaType{"application/json": {Schema: compatSchema()}}},
			"400": {Description: "not WebAssembly or a bad form"},
			"401": {Description: "missing or unknown API key"},
			"403": {Description: "the key lacks the execute or modules:write scope"},
			"408": {Description: "the form did not arrive within 30 s"},
			"429": {Description: "rate limited or too many executions in flight; Retry-After says when to try again"},
			"413": {Description: "module or input too large"},
			"422": {Description: "the module failed, trapped or timed out"},
		},
	}
}

func compatSchema() *huma.Schema {
	return &huma.Schema{Type: "object", Properties: map[string]*huma.Schema{
		"output": {Type: "string", Nullable: true}, "error": {Type: "string", Nullable: true},
	}}
}

// parseCompatForm reads the compat endpoint's multipart form: the wasm file and the input text.
// A non-zero status is the error to answer with. It is pure and fuzzed (FuzzParseCompatForm).
func parseCompatForm(body io.Reader, boundary string) (wasm, input []byte, status int, msg string) {
	const tooLarge = "request is too large: wasm may be 10 MiB and input 1 MiB"
	mr := multipart.NewReader(body, boundary)
	gotWasm := false
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			status, msg := formError(err, tooLarge)
			return nil, nil, status, msg
		}
		var limit int64
		switch part.FormName() {
		case "wasm":
			limit = compatMaxWasm
		case "input":
			limit = compatMaxInput
		default:
			continue
		}
		b, err := io.ReadAll(io.LimitReader(part, limit+1))
		if err != nil {
			status, msg := formError(err, tooLarge)
			return nil, nil, status, msg
		}
		if int64(len(b)) > limit {
			return nil, nil, http.StatusRequestEntityTooLarge, part.FormName() + " is too large: wasm may be 10 MiB and input 1 MiB"
		}
		if part.FormName() == "wasm" {
			wasm, gotWasm = b, true
		} else {
			input = b
		}
	}
	if !gotWasm {
		return nil, nil, http.StatusBadRequest, "missing form field wasm"
	}
	return wasm, input, 0, ""
}

// formError is the answer to an error reading the form: too large, too slow, or malformed.
func formError(err error, tooLarge string) (int, string) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, tooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout, "the request body did not arrive in time"
	}
	return http.StatusBadRequest, "malformed multipart body"
}

func writeCompat(w http.ResponseWriter, status int, output, errMsg *string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(compatResponse{Output: output, Error: errMsg})
}

func compatError(w http.ResponseWriter, status int, msg string) { writeCompat(w, status, nil, &msg) }

// compatBodyTimeout bounds how long reading /api/execute's form may take (and at most the
// server's ReadTimeout); a form that does not arrive in time is a 408.
const compatBodyTimeout = 30 * time.Second

// compatExecute runs the form's module inline. Like module_base64, the module is stored as one
// of the tenant's modules, so the key needs modules:write as well as execute; the rate limit is
// checked before the module is stored or compiled.
func (g *Server) compatExecute(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, release, err := g.admitCaller(ctx, g.opByID["compat-execute"], r.Header.Get("Authorization"))
	if err == nil && !p.can(schemas.ScopeModulesWrite) {
		release()
		err = errInlineNeedsWrite
	}
	if err != nil {
		g.compatFail(ctx, w, err)
		return
	}
	defer release()
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		compatError(w, http.StatusBadRequest, "expected multipart/form-data with fields wasm and input")
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(min(compatBodyTimeout, g.cfg.ReadTimeout)))
	body := http.MaxBytesReader(w, r.Body, compatMaxWasm+compatMaxInput+64<<10)
	wasm, input, status, msg := parseCompatForm(body, params["boundary"])
	_ = rc.SetReadDeadline(time.Time{})
	if status != 0 {
		compatError(w, status, msg)
		return
	}
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		compatError(w, http.StatusBadRequest, "wasm is not a WebAssembly module")
		return
	}
	req := &schemas.ExecutionRequest{Stdin: string(input)}
	if len(input) > 0 && !utf8.Valid(input) {
		req = &schemas.ExecutionRequest{StdinBase64: base64.StdEncoding.EncodeToString(input)}
	}
	out, err := g.execute(ctx, p, req, "", &inlineModule{name: "main.wasm", wasm: wasm})
	if err != nil {
		g.compatFail(ctx, w, err)
		return
	}
	limit, remaining, reset := out.Limit.headers()
	if limit != "" {
		w.Header().Set("RateLimit-Limit", limit)
		w.Header().Set("RateLimit-Remaining", remaining)
		w.Header().Set("RateLimit-Reset", reset)
	}
	e := out.Execution
	switch {
	case out.Accepted:
		compatError(w, http.StatusUnprocessableEntity, "execution did not finish in time: "+e.ID)
	case e.Status == schemas.StatusSucceeded:
		stdout := e.Stdout
		writeCompat(w, http.StatusOK, &stdout, nil)
	default:
		msg := string(e.Status)
		if e.Error != "" {
			msg += ": " + e.Error
		} else if e.ExitCode != nil {
			msg += ": exit code " + strconv.Itoa(*e.ExitCode)
		}
		compatError(w, http.StatusUnprocessableEntity, msg)
	}
}

// restCompat serves POST /api/execute outside Huma's handlers (it answers in its own shape,
// not problem+json) and describes it in the OpenAPI document.
func (g *Server) restCompat(api huma.API, op huma.Operation) {
	api.OpenAPI().AddOperation(&op)
	h := g.instrument(op.Path, http.HandlerFunc(g.compatExecute))
	api.Adapter().Handle(&op, func(ctx huma.Context) {
		r, w := humago.Unwrap(ctx)
		h.ServeHTTP(w, r)
	})
}

// compatFail answers an error in the compat shape, with Retry-After (and the RateLimit headers)
// on a 429 as on REST.
func (g *Server) compatFail(ctx context.Context, w http.ResponseWriter, err error) {
	se := g.publicError(ctx, "compat-execute", err)
	for k, v := range limitHeaders(se, err) {
		w.Header()[k] = v
	}
	compatError(w, se.Code.Status(), se.Message)
}
