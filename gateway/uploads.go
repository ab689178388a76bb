package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// moduleSource is an upload's bytes: in memory (a NATS request, an inline module) or spooled to
// a temporary file (a REST upload), with their SHA-256. Inspection, storing and the quota all
// read it through r, so a REST upload is never held whole in the gateway's memory.
type moduleSource struct {
	r      io.ReaderAt
	size   int64
	digest string // sha256, hex
}

func bytesSource(b []byte) *moduleSource {
	sum := sha256.Sum256(b)
	return &moduleSource{r: bytes.NewReader(b), size: int64(len(b)), digest: hex.EncodeToString(sum[:])}
}

// uploadReadTimeout bounds how long a REST upload's body may take to arrive.
const uploadReadTimeout = 2 * time.Minute

// spool copies body into a temporary file, hashing it, and refuses (413) a body over limit
// bytes as soon as it reads one byte more. The caller calls done to remove the file.
func spool(body io.Reader, limit int64, tier string) (src *moduleSource, done func(), err error) {
	f, err := os.CreateTemp("", "wasmwiz-upload-*.wasm")
	if err != nil {
		return nil, nil, fmt.Errorf("spool upload: %w", err)
	}
	done = func() { f.Close(); os.Remove(f.Name()) }
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, limit+1))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe) || n > limit:
		done()
		return nil, nil, schemas.Errorf(schemas.CodeTooLarge, "module is over the %s tier's %d bytes", tier, limit)
	case err != nil:
		done()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, nil, schemas.Errorf(schemas.CodeTimeout, "the upload did not arrive within %v", uploadReadTimeout)
		}
		return nil, nil, schemas.Errorf(schemas.CodeBadRequest, "the upload could not be read: the connection failed")
	}
	return &moduleSource{r: f, size: n, digest: hex.EncodeToString(h.Sum(nil))}, done, nil
}

// Uploads cost executors compile time, so they are limited before anything compiles:
//   - an inline module (module_base64) is compiled only for an execution the rate limit admitted
//     (see Server.execute);
//   - each tier has its own upload rate (uploads_per_minute; admitUpload), counted exactly across
//     gateways as executions are (a JetStream stream per tier whose per-subject cap is the limit);
//   - a tenant has at most compiles_in_flight compiles at once, across gateways (acquireCompile:
//     one message per compile in a stream with that per-subject cap, deleted when it ends);
//   - stored modules count against the tier's module_bytes quota (storage.go).
// A module a tenant already has costs nothing and is answered before any of these.

// take publishes one message to tenant's subject of a tier's counter stream. It reports the
// message's sequence, or 0 when the stream refused it (the tenant is at the cap).
func (l *Limiter) take(ctx context.Context, tier, win, tenant string) (uint64, error) {
	ack, err := l.js.Publish(ctx, schemas.RateLimitSubject(tier, win, tenant), nil)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum messages per subject") {
			return 0, nil
		}
		return 0, err
	}
	return ack.Sequence, nil
}

// admitUpload counts one upload against the tier's uploads_per_minute, or refuses it (429).
func (g *Server) admitUpload(ctx context.Context, p *Principal) error {
	if p.Tier.UploadsPerMinute <= 0 {
		return nil
	}
	seq, err := g.limiter.take(ctx, p.Tier.Name, schemas.WindowUpload, p.TenantID)
	if err != nil {
		g.metrics.rateLimitErrors.Inc()
		return errLimiterUnavailable
	}
	if seq != 0 {
		return nil
	}
	retry := time.Minute
	if oldest, err := g.limiter.oldest(ctx, p.Tier.Name, schemas.WindowUpload, p.TenantID); err == nil {
		retry = max(time.Until(oldest.Add(time.Minute)), time.Second)
	}
	msg := fmt.Sprintf("upload rate limit reached: the %s tier allows %d uploads per minute; retry in %ds", p.Tier.Name, p.Tier.UploadsPerMinute, seconds(retry))
	g.rejected(ctx, p, "uploads_per_minute", msg)
	return &limitedError{err: &schemas.Error{Code: schemas.CodeRateLimited, Message: msg, RetryAfter: seconds(retry)}}
}

// acquireCompile takes one of the tenant's compile slots, or refuses (429) when all are taken;
// release gives it back.
func (g *Server) acquireCompile(ctx context.Context, p *Principal) (release func(), err error) {
	seq, err := g.limiter.take(ctx, p.Tier.Name, schemas.WindowCompiling, p.TenantID)
	if err != nil {
		g.metrics.rateLimitErrors.Inc()
		return nil, errLimiterUnavailable
	}
	if seq == 0 {
		msg := fmt.Sprintf("too many uploads compiling: the %s tier allows %d at once; retry when one finishes", p.Tier.Name, p.Tier.CompileSlots())
		g.rejected(ctx, p, "compiles_in_flight", msg)
		return nil, &limitedError{err: &schemas.Error{Code: schemas.CodeRateLimited, Message: msg, RetryAfter: 1}}
	}
	return func() { g.limiter.release(context.WithoutCancel(ctx), p.Tier.Name, schemas.WindowCompiling, seq) }, nil
}

// uploadREST spools a REST upload's body, bounded by the tier's module size, then stores it.
func (g *Server) uploadREST(ctx context.Context, p *Principal, name string, body io.Reader, wait bool) (*schemas.Module, error) {
	if body == nil {
		body = bytes.NewReader(nil)
	}
	if err := validModuleName(name); err != nil { // before reading the body
		return nil, err
	}
	src, done, err := spool(body, p.Tier.ModuleSize, p.Tier.Name)
	if err != nil {
		return nil, err
	}
	defer done()
	return g.storeModule(ctx, p, name, src, wait)
}
