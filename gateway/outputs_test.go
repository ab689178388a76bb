package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/internal/natstest"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// putDownloads stores, as an executor would, the result of an execution of tenant acme whose
// stdout (data) and first output file (data, /out/big.bin) are objects of the outputs store, with
// a second output file carried in the result itself (/out/small.txt); id is the execution's.
func putDownloads(t *testing.T, g *Server, id string, data []byte) {
	t.Helper()
	ctx := context.Background()
	size := int64(len(data))
	for _, name := range []string{schemas.OutputObjectName(id, schemas.StreamStdout), schemas.OutputFileObjectName(id, 0)} {
		if _, err := g.outputs.PutBytes(ctx, name, data); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	r := schemas.Result{ID: id, TenantID: "acme", Status: schemas.StatusSucceeded, CreatedAt: now, FinishedAt: &now,
		Stdout: data[:min(len(data), schemas.InlineOutputMax)], StdoutStored: true, StdoutBytes: size,
		Files: []schemas.OutputFile{{Path: "/out/big.bin", Size: size, Stored: true, Index: 0, Kept: size},
			{Path: "/out/small.txt", Data: []byte("small"), Size: 5}}}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.results.Put(ctx, id, b); err != nil {
		t.Fatal(err)
	}
}

// pattern is size bytes that are not all alike.
func pattern(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func fileURL(id, path string) string {
	return "/v1/executions/" + id + "/files/" + url.PathEscape(path)
}

// getBody sends a GET and reads its body as a client would, stalling after the first MiB
// for stall; err is the error reading the body ended with (nil: the body was whole).
func (tg *testGateway) getBody(t *testing.T, path, key string, stall time.Duration) (resp *http.Response, body []byte, err error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, tg.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err = tg.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err = io.CopyN(&buf, resp.Body, 1<<20); err == nil {
		time.Sleep(stall)
		_, err = io.Copy(&buf, resp.Body)
	} else if err == io.EOF {
		err = nil
	}
	return resp, buf.Bytes(), err
}

// TestDownloadOutput_Whole: a stored output file and a stored stdout (3 MiB, more than the
// gateway reads at a time) download whole, with their Content-Length, Content-Type and file
// headers; a file the result carries too; another tenant's and an expired one are 404s.
func TestDownloadOutput_Whole(t *testing.T) {
	tg := startTestGateway(t, Config{})
	data, id := pattern(3<<20+7), "download-whole-01"
	putDownloads(t, tg.g, id, data)
	for _, path := range []string{fileURL(id, "/out/big.bin"), fileURL(id, "out/big.bin"), "/v1/executions/" + id + "/stdout"} {
		resp, body, err := tg.getBody(t, path, tg.key, 0)
		if resp.StatusCode != 200 || err != nil || !bytes.Equal(body, data) {
			t.Errorf("GET %s: %d, %d bytes (%v), want the %d stored", path, resp.StatusCode, len(body), err, len(data))
		}
		if resp.ContentLength != int64(len(data)) || resp.Header.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("GET %s: Content-Length %d, Content-Type %q", path, resp.ContentLength, resp.Header.Get("Content-Type"))
		}
	}
	resp, _, _ := tg.getBody(t, fileURL(id, "/out/big.bin"), tg.key, 0)
	if resp.Header.Get("Wasmwiz-File-Size") != strconv.Itoa(len(data)) || resp.Header.Get("Wasmwiz-File-Truncated") != "false" {
		t.Errorf("file headers: %v", resp.Header)
	}
	resp, body, err := tg.getBody(t, fileURL(id, "/out/small.txt"), tg.key, 0)
	if resp.StatusCode != 200 || err != nil || string(body) != "small" || resp.ContentLength != 5 || resp.Header.Get("Wasmwiz-File-Size") != "5" {
		t.Errorf("inline file: %d %q (%v), Content-Length %d, %v", resp.StatusCode, body, err, resp.ContentLength, resp.Header)
	}
	// Tenant admin is not acme.
	r, b := tg.do(t, http.MethodGet, fileURL(id, "/out/big.bin"), "Bearer "+tg.adminKey)
	if code := problemCode(t, r, b); r.StatusCode != 404 || code != string(schemas.CodeNotFound) {
		t.Errorf("another tenant's file: %d %s", r.StatusCode, b)
	}
	// The result outlived its stored file.
	if err := tg.g.outputs.Delete(context.Background(), schemas.OutputFileObjectName(id, 0)); err != nil {
		t.Fatal(err)
	}
	r, b = tg.do(t, http.MethodGet, fileURL(id, "/out/big.bin"), "Bearer "+tg.key)
	if code := problemCode(t, r, b); r.StatusCode != 404 || code != string(schemas.CodeNotFound) {
		t.Errorf("expired file: %d %s", r.StatusCode, b)
	}
}

// failingStore is an outputs store whose objects' readers fail with errChunkLost after
// failAfter[name] bytes (the others read as stored).
type failingStore struct {
	jetstream.ObjectStore
	failAfter map[string]int64
}

var errChunkLost = errors.New("chunk lost")

func (s failingStore) Get(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) (jetstream.ObjectResult, error) {
	r, err := s.ObjectStore.Get(ctx, name, opts...)
	if n, ok := s.failAfter[name]; ok && err == nil {
		return &failingResult{ObjectResult: r, left: n}, nil
	}
	return r, err
}

type failingResult struct {
	jetstream.ObjectResult
	left int64
}

func (r *failingResult) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, errChunkLost
	}
	n, err := r.ObjectResult.Read(p[:min(int64(len(p)), r.left)])
	r.left -= int64(n)
	return n, err
}

// TestDownloadOutput_StoreFailsMidway: a stored output whose reader fails after its first MiB
// is a 200 whose body ends short of its Content-Length with an error, never a complete-looking
// body; one whose reader fails at once is a 503 problem+json.
func TestDownloadOutput_StoreFailsMidway(t *testing.T) {
	const first, second = "download-midway-01", "download-midway-02"
	fail := map[string]int64{
		schemas.OutputFileObjectName(first, 0): 1 << 20, schemas.OutputObjectName(first, schemas.StreamStdout): 1 << 20,
		schemas.OutputFileObjectName(second, 0): 0,
	}
	tg := startTestGateway(t, Config{}, func(g *Server) { g.outputs = failingStore{ObjectStore: g.outputs, failAfter: fail} })
	data := pattern(3 << 20)
	putDownloads(t, tg.g, first, data)
	for _, path := range []string{fileURL(first, "/out/big.bin"), "/v1/executions/" + first + "/stdout"} {
		resp, body, err := tg.getBody(t, path, tg.key, 0)
		t.Logf("GET %s: %d, Content-Length %d, %d bytes, %v", path, resp.StatusCode, resp.ContentLength, len(body), err)
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
			t.Errorf("GET %s: %d, Content-Length %d: want the download started", path, resp.StatusCode, resp.ContentLength)
		}
		if err == nil || len(body) >= len(data) || !bytes.Equal(body, data[:len(body)]) {
			t.Errorf("GET %s: %d bytes, ended by %v: want fewer than %d and an error", path, len(body), err, len(data))
		}
	}
	putDownloads(t, tg.g, second, data)
	r, b := tg.do(t, http.MethodGet, fileURL(second, "/out/big.bin"), "Bearer "+tg.key)
	if code := problemCode(t, r, b); r.StatusCode != 503 || code != string(schemas.CodeUnavailable) {
		t.Errorf("a store failing at once: %d %s", r.StatusCode, b)
	}
}

// corruptDigest rewrites the object name's metadata with the digest of other bytes, as a store
// that lost or changed a chunk would look to a reader.
func corruptDigest(t *testing.T, tg *testGateway, name string) {
	t.Helper()
	ctx := context.Background()
	js := natstest.JetStream(t, tg.srv)
	obs, err := js.ObjectStore(ctx, schemas.ObjectOutputs)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("other bytes"))
	info.Digest = "SHA-256=" + base64.URLEncoding.EncodeToString(sum[:])
	b, _ := json.Marshal(info)
	m := nats.NewMsg("$O." + schemas.ObjectOutputs + ".M." + base64.URLEncoding.EncodeToString([]byte(name)))
	m.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	m.Data = b
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// TestDownloadOutput_DigestMismatch: nats.go checks an object's digest only after its last
// chunk. A 2 MiB output whose digest does not match is cut short of its Content-Length (before,
// GET /stdout sent all of it as a clean 200, and executions.output its last piece); a 10 KB
// one is a 500 problem+json before any byte.
func TestDownloadOutput_DigestMismatch(t *testing.T) {
	tg := startTestGateway(t, Config{})
	data, id := pattern(2<<20), "download-digest-01"
	putDownloads(t, tg.g, id, data)
	corruptDigest(t, tg, schemas.OutputFileObjectName(id, 0))
	corruptDigest(t, tg, schemas.OutputObjectName(id, schemas.StreamStdout))
	for _, path := range []string{fileURL(id, "/out/big.bin"), "/v1/executions/" + id + "/stdout"} {
		resp, body, err := tg.getBody(t, path, tg.key, 0)
		t.Logf("GET %s: %d, Content-Length %d, %d bytes, %v", path, resp.StatusCode, resp.ContentLength, len(body), err)
		if err == nil || len(body) >= len(data) {
			t.Errorf("GET %s: %d, %d bytes, ended by %v: an object whose digest does not match came back whole", path, resp.StatusCode, len(body), err)
		}
	}
	out, err := tg.g.outputChunk(context.Background(), &Principal{TenantID: "acme"}, &schemas.OutputRequest{ID: id, Stream: schemas.StreamStdout})
	if err == nil {
		t.Errorf("executions.output: %d bytes, EOF %v, no error", len(out.Data), out.EOF)
	}

	small := "download-digest-02"
	putDownloads(t, tg.g, small, pattern(10_000))
	corruptDigest(t, tg, schemas.OutputFileObjectName(small, 0))
	r, b := tg.do(t, http.MethodGet, fileURL(small, "/out/big.bin"), "Bearer "+tg.key)
	if code := problemCode(t, r, b); r.StatusCode != 500 || code != string(schemas.CodeInternal) {
		t.Errorf("a small object whose digest does not match: %d %s", r.StatusCode, b)
	}
}

// TestDownloadOutput_SlowClient: a client that stalls 6 s after the first MiB of a 16 MiB
// output still gets all of it. nats.go reads an object under one deadline, and a context without
// one got JetStream's default 5 s: GET /stdout was cut there.
func TestDownloadOutput_SlowClient(t *testing.T) {
	tg := startTestGateway(t, Config{})
	data, id := pattern(16<<20), "download-slow-01"
	putDownloads(t, tg.g, id, data)
	var wg sync.WaitGroup
	for _, path := range []string{fileURL(id, "/out/big.bin"), "/v1/executions/" + id + "/stdout"} {
		wg.Go(func() {
			resp, body, err := tg.getBody(t, path, tg.key, 6*time.Second)
			if resp.StatusCode != 200 || err != nil || !bytes.Equal(body, data) {
				t.Errorf("GET %s: %d, %d bytes (%v), want the %d stored", path, resp.StatusCode, len(body), err, len(data))
			}
		})
	}
	wg.Wait()
}
