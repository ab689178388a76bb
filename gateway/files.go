package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// validateFiles checks the file fields of an execution request (files, mounts, workdir,
// outputs) against the tier and puts them into er. Pure: it runs inside validateRequest.
func validateFiles(t schemas.Tier, req *schemas.ExecutionRequest, er *schemas.ExecRequest) error {
	readOnly, err := validateMounts(req, er)
	if err != nil {
		return err
	}
	if err := validateInlineFiles(t, req, er, readOnly); err != nil {
		return err
	}
	if req.Workdir != "" {
		if msg := schemas.CleanGuestPath(req.Workdir, false); msg != "" {
			return invalidf("workdir: %s", msg)
		}
		if _, isFile := er.Files[req.Workdir]; isFile {
			return invalidf("workdir: %s is a file", req.Workdir)
		}
		er.Workdir = req.Workdir
	}
	if req.StdinFile != "" {
		if msg := schemas.CleanGuestPath(req.StdinFile, false); msg != "" {
			return invalidf("stdin_file: %s", msg)
		}
		if req.Stdin != "" || req.StdinBase64 != "" {
			return invalidf("give stdin_file or stdin (stdin_base64), not both")
		}
		if reservedPath(req.StdinFile) {
			return invalidf("stdin_file: %s is not a file of the request", req.StdinFile)
		}
		er.StdinFile = req.StdinFile
	}
	if len(req.Outputs) > schemas.MaxOutputs {
		return invalidf("at most %d outputs", schemas.MaxOutputs)
	}
	for _, p := range req.Outputs {
		if msg := schemas.CleanGuestPath(p, true); msg != "" {
			return invalidf("outputs: %s", msg)
		}
	}
	er.Outputs = req.Outputs
	if len(er.Outputs) > 0 {
		er.OutputsMax = t.FileLimits().OutputsBytes
	}
	return nil
}

func invalidf(format string, args ...any) error {
	return schemas.Errorf(schemas.CodeInvalid, format, args...)
}

// reservedPath reports whether the guest's file system makes p itself.
func reservedPath(p string) bool {
	return p == "/" || p == "/dev" || strings.HasPrefix(p, "/dev/") || p == "/tmp"
}

// validateMounts checks the mounts (bundle ids, paths, overlaps) into er.Mounts and returns the
// paths mounted read-only.
func validateMounts(req *schemas.ExecutionRequest, er *schemas.ExecRequest) (readOnly []string, err error) {
	if len(req.Mounts) > schemas.MaxMounts {
		return nil, invalidf("at most %d mounts", schemas.MaxMounts)
	}
	var mountPaths []string
	for _, m := range req.Mounts {
		spec := schemas.MountSpec{BundleID: m.Bundle, Path: m.Path, Writable: m.ReadOnly != nil && !*m.ReadOnly}
		if m.Path != "" && !strings.HasPrefix(m.Path, "/") { // preopened under its own name too
			spec.Path, spec.Preopen = "/"+m.Path, m.Path
		}
		if msg := schemas.CleanGuestPath(spec.Path, false); msg != "" {
			return nil, invalidf("mounts: %s", msg)
		}
		if reservedPath(spec.Path) {
			return nil, invalidf("mounts: cannot mount over %s", spec.Path)
		}
		if _, err := schemas.ParseModuleID(m.Bundle); err != nil {
			return nil, schemas.Errorf(schemas.CodeNotFound, "bundle %s not found", truncateID(m.Bundle))
		}
		for _, o := range mountPaths {
			if within(spec.Path, o) || within(o, spec.Path) {
				return nil, invalidf("mounts: %s and %s overlap", o, spec.Path)
			}
		}
		mountPaths = append(mountPaths, spec.Path)
		if !spec.Writable {
			readOnly = append(readOnly, spec.Path)
		}
		er.Mounts = append(er.Mounts, spec)
	}
	return readOnly, nil
}

// validateInlineFiles checks the inline files (paths, encoding, the tier's bytes) into
// er.Files; none may sit inside a read-only mount or inside another file.
func validateInlineFiles(t schemas.Tier, req *schemas.ExecutionRequest, er *schemas.ExecRequest, readOnly []string) error {
	lim := t.FileLimits()
	if len(req.Files) > schemas.MaxInlineFiles {
		return invalidf("at most %d inline files", schemas.MaxInlineFiles)
	}
	var total int64
	for _, p := range slices.Sorted(maps.Keys(req.Files)) {
		c := req.Files[p]
		if msg := schemas.CleanGuestPath(p, false); msg != "" {
			return invalidf("files: %s", msg)
		}
		if reservedPath(p) {
			return invalidf("files: cannot write %s", p)
		}
		for _, m := range readOnly {
			if within(p, m) {
				return invalidf("files: %s is inside the bundle mounted read-only at %s", p, m)
			}
		}
		var data []byte
		switch {
		case c.Text != "" && c.Base64 != "":
			return invalidf("files: %s: give text or base64, not both", p)
		case c.Base64 != "":
			if int64(base64.StdEncoding.DecodedLen(len(c.Base64))) > lim.InlineFilesBytes+3 {
				return schemas.Errorf(schemas.CodeTooLarge, "inline files are over the %s tier's %d bytes", t.Name, lim.InlineFilesBytes)
			}
			b, err := base64.StdEncoding.DecodeString(c.Base64)
			if err != nil {
				return invalidf("files: %s: base64 is not valid", p)
			}
			data = b
		default:
			data = []byte(c.Text)
		}
		if total += int64(len(data)); total > lim.InlineFilesBytes {
			return schemas.Errorf(schemas.CodeTooLarge, "inline files are over the %s tier's %d bytes", t.Name, lim.InlineFilesBytes)
		}
		if er.Files == nil {
			er.Files = map[string][]byte{}
		}
		er.Files[p] = data
	}
	for p := range er.Files { // a file may not sit where another file is a directory
		for q := range er.Files {
			if within(q, p) && q != p {
				return invalidf("files: %s is inside %s, which is a file", q, p)
			}
		}
	}
	return nil
}

// within reports whether path p is dir or inside it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

// resolveMounts checks that every mounted bundle is the caller's.
func (g *Server) resolveMounts(ctx context.Context, p *Principal, er *schemas.ExecRequest) error {
	for _, m := range er.Mounts {
		if _, err := g.getBundle(ctx, p, m.BundleID); err != nil {
			return err
		}
	}
	return nil
}

// getOutputFile returns one output file of an execution, as its result holds it.
func (g *Server) getOutputFile(ctx context.Context, p *Principal, id, path string) (*schemas.OutputFile, error) {
	notFound := schemas.Errorf(schemas.CodeNotFound, "execution %s has no output file %s", truncateID(id), truncateID(path))
	r, err := g.ownResult(ctx, p, id, notFound)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	for i := range r.Files {
		if r.Files[i].Path == path {
			return &r.Files[i], nil
		}
	}
	return nil, notFound
}

type outputFileInput struct {
	ID   string `path:"id" doc:"execution id"`
	Path string `path:"path" doc:"the file's guest path, URL-encoded as one segment (%2Fout%2Fa.wav); the leading slash may be left out"`
}

type outputFileOutput struct {
	ContentType string `header:"Content-Type"`
	Size        int64  `header:"Wasmwiz-File-Size" doc:"the file's whole size"`
	Truncated   bool   `header:"Wasmwiz-File-Truncated" doc:"true when only the first bytes are returned"`
	Body        func(huma.Context)
}

// restOutputFile is GET /v1/executions/{id}/files/{path}: the file's bytes, streamed from the
// outputs store when it is stored there (outputs.go).
func (g *Server) restOutputFile(ctx context.Context, p *Principal, in *outputFileInput) (*outputFileOutput, error) {
	f, err := g.getOutputFile(ctx, p, in.ID, in.Path)
	if err != nil {
		return nil, err
	}
	what := "output file " + f.Path + " of execution " + in.ID
	rc, size := io.ReadCloser(io.NopCloser(bytes.NewReader(f.Data))), int64(len(f.Data))
	if f.Stored { // over 1 MiB: in the outputs store (at most the tier's outputs_bytes)
		if rc, size, err = g.openOutput(ctx, schemas.OutputFileObjectName(in.ID, f.Index), what); err != nil {
			return nil, err
		}
	}
	d, err := startDownload(rc, size)
	if err != nil {
		return nil, err
	}
	return &outputFileOutput{ContentType: "application/octet-stream", Size: f.Size, Truncated: f.Truncated,
		Body: func(hctx huma.Context) { g.serveDownload(ctx, hctx, d, what) }}, nil
}
