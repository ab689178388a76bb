package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	wasmwiz "github.com/wasmwiz/wasmwiz/clients/go"
)

// runFiles are the file flags of `wasmwiz run`: local directories mounted as bundles, local
// files sent inline, output patterns and where to write what comes back.
type runFiles struct {
	mounts, files, outputs repeatFlag
	workdir, outputDir     *string
	stdinFile              *string
}

// repeatFlag is a repeatable string flag, each value kept whole (paths may hold commas).
type repeatFlag []string

func (l *repeatFlag) String() string     { return strings.Join(*l, " ") }
func (l *repeatFlag) Set(s string) error { *l = append(*l, s); return nil }

func addRunFileFlags(fs *flagSet) *runFiles {
	f := &runFiles{}
	fs.Var(&f.mounts, "mount", "LOCAL_DIR:/GUEST/PATH[:rw]: pack a directory as a bundle (uploaded once, by hash) and mount it; read-only unless :rw (repeatable)")
	fs.Var(&f.files, "file", "LOCAL_FILE:/GUEST/PATH: send a small file inline (repeatable)")
	fs.Var(&f.outputs, "output", "a guest path or pattern of files to bring back, e.g. '/out/*' (repeatable)")
	f.workdir = fs.String("workdir", "", "the guest's working directory")
	f.stdinFile = fs.String("stdin-file", "", "a guest path (in a --mount or a --file) read as the guest's stdin instead of --stdin: for input larger than a request carries")
	f.outputDir = fs.String("output-dir", "wasmwiz-outputs", "where output files are written, under their guest paths")
	return f
}

// apply puts the files into req, uploading the mounted directories that the server does not
// have yet.
func (f *runFiles) apply(ctx context.Context, c *client, req *wasmwiz.ExecutionRequest) error {
	for _, m := range f.mounts {
		local, guest, ok := strings.Cut(m, ":")
		if !ok || local == "" || guest == "" {
			return usageError{fmt.Sprintf("--mount wants LOCAL_DIR:/GUEST/PATH[:rw], got %q", m)}
		}
		readOnly := true
		if g, ok := strings.CutSuffix(guest, ":rw"); ok {
			guest, readOnly = g, false
		}
		id, err := uploadDir(ctx, c, local)
		if err != nil {
			return fmt.Errorf("--mount %s: %w", local, err)
		}
		req.Mounts = append(req.Mounts, wasmwiz.Mount{Bundle: id, Path: guest, ReadOnly: &readOnly})
	}
	for _, spec := range f.files {
		local, guest, ok := strings.Cut(spec, ":")
		if !ok || local == "" || guest == "" {
			return usageError{fmt.Sprintf("--file wants LOCAL_FILE:/GUEST/PATH, got %q", spec)}
		}
		b, err := os.ReadFile(local)
		if err != nil {
			return err
		}
		if req.Files == nil {
			req.Files = map[string]wasmwiz.FileContent{}
		}
		req.Files[guest] = wasmwiz.FileContent{Base64: new(base64.StdEncoding.EncodeToString(b))}
	}
	req.Workdir = optional(*f.workdir)
	req.StdinFile = optional(*f.stdinFile)
	req.Outputs = f.outputs
	return nil
}

// uploadDir packs dir as a tar archive and uploads it unless the server has it already; it
// returns the bundle id. The archive is the same for the same files (sorted, owners left out),
// so an unchanged directory is uploaded once.
func uploadDir(ctx context.Context, c *client, dir string) (string, error) {
	archive, err := packDir(dir)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(archive)
	id := "sha256:" + hex.EncodeToString(sum[:])
	_, err = c.api.GetBundleWithResponse(ctx, id)
	var ae *wasmwiz.Error
	switch {
	case err == nil:
		return id, nil
	case !errors.As(err, &ae) || ae.Status != http.StatusNotFound:
		return "", err
	}
	p := startProgress(c.progress, filepath.Base(dir)+" (bundle)", int64(len(archive)), "checking")
	r, err := c.api.UploadBundleWithBodyWithResponse(ctx, &wasmwiz.UploadBundleParams{Name: new(filepath.Base(dir))}, "application/x-tar",
		p.reader(bytes.NewReader(archive)), withContentLength(int64(len(archive))))
	p.end()
	if err != nil {
		return "", err
	}
	b, err := answer(r.JSON201, r.StatusCode())
	if err != nil {
		return "", err
	}
	if b.ID != id {
		return "", fmt.Errorf("the server named the bundle %s, not %s", b.ID, id)
	}
	return id, nil
}

// packDir makes a tar archive of dir's regular files, directories and symbolic links.
func packDir(dir string) ([]byte, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		info, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		link := ""
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return nil, err
			}
		case !info.Mode().IsRegular() && !info.IsDir():
			continue // devices, sockets, FIFOs: not for a bundle
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		h.AccessTime, h.ChangeTime = h.ModTime, h.ModTime
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// save writes the execution's output files under the output directory, at their guest paths,
// and says on w what it wrote and what was cut.
func (f *runFiles) save(ctx context.Context, c *client, ex *wasmwiz.Execution, w io.Writer) error {
	for _, o := range ex.Files {
		p := path.Clean("/" + o.Path)
		local := filepath.Join(*f.outputDir, filepath.FromSlash(p))
		data := []byte(str(o.Text))
		if o.URL != nil { // over 1 MiB: not in the result, downloaded
			var buf bytes.Buffer
			if err := download(&buf)(c.api.DownloadOutput(ctx, ex.ID, o.Path)); err != nil {
				return fmt.Errorf("output %s: %w", o.Path, err)
			}
			data = buf.Bytes()
		} else if o.Base64 != nil {
			b, err := base64.StdEncoding.DecodeString(*o.Base64)
			if err != nil {
				return fmt.Errorf("output %s: %w", o.Path, err)
			}
			data = b
		}
		if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(local, data, 0o644); err != nil {
			return err
		}
		if o.Truncated != nil && *o.Truncated {
			fmt.Fprintf(w, "wasmwiz run: %s: only the first %d of %d bytes came back (the tier's outputs limit)\n", local, len(data), o.Size)
		}
	}
	if ex.FilesTruncated != nil && *ex.FilesTruncated {
		fmt.Fprintf(w, "wasmwiz run: more files matched --output than came back\n")
	}
	return nil
}
