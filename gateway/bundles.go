package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/wasmwiz/wasmwiz/bundle"
	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Bundles: tar archives of files that executions mount read-only. Stored like modules:
// content-addressed in an object store (by the SHA-256 of the decompressed archive), owned per
// tenant through a KV record <tenant>.<hex>, so another tenant's bundle is a 404.

// uploadBundle checks an archive (tar, tar.gz or zip) as it streams in, keeps it in a temporary
// file, stores it unless stored already, and records the caller's ownership.
func (g *Server) uploadBundle(ctx context.Context, p *Principal, name string, body io.Reader) (*schemas.Bundle, error) {
	if err := validModuleName(name); err != nil {
		return nil, err
	}
	lim := p.Tier.FileLimits()
	r, err := bundle.Open(body, lim.MaxArchiveBytes(), lim.BundleFiles)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	tmp, err := os.CreateTemp("", "wasmwiz-bundle-*.tar")
	if err != nil {
		return nil, unavailable("bundle upload", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	idx, err := bundle.Scan(r, bundle.Limits{MaxEntries: lim.BundleFiles, MaxBytes: lim.BundleBytes}, io.MultiWriter(tmp, h))
	if err != nil {
		return nil, err
	}
	if len(idx.Entries) == 0 {
		return nil, schemas.Errorf(schemas.CodeInvalid, "bundle: the archive is empty")
	}
	stored, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, unavailable("bundle upload", err)
	}
	digest := hex.EncodeToString(h.Sum(nil))
	refKey := schemas.ModuleRefKey(p.TenantID, digest)
	if e, err := g.bundleRefs.Get(ctx, refKey); err == nil {
		var b schemas.Bundle
		if json.Unmarshal(e.Value(), &b) == nil {
			return &b, nil
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, unavailable("bundle store", err)
	}
	if err := g.quotaFits(ctx, p, storedBundles, stored); err != nil { // storage.go
		return nil, err
	}
	// Stored whether or not another tenant has the same bundle (aside when the store has it),
	// so that the upload's time does not tell (issue 12, upload timing; as storeModule).
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, unavailable("bundle upload", err)
	}
	if err := streams.PutOrAside(ctx, g.js, schemas.ObjectBundles, g.bundles, schemas.BundleObjectName(digest), tmp); err != nil {
		return nil, unavailable("bundle store", err)
	}
	b := &schemas.Bundle{
		ID: schemas.ModuleID(digest), Name: name, Files: idx.Files, Entries: len(idx.Entries),
		Size: idx.Bytes, Stored: stored, CreatedAt: time.Now().UTC(), TenantID: p.TenantID,
	}
	rec, _ := json.Marshal(b)
	if _, err := g.bundleRefs.Create(ctx, refKey, rec); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) { // uploaded twice at once: the first one stands
			if e, err := g.bundleRefs.Get(ctx, refKey); err == nil && json.Unmarshal(e.Value(), b) == nil {
				return b, nil
			}
		}
		return nil, unavailable("bundle store", err)
	}
	if err := g.withinQuota(ctx, p, storedBundles, refKey, stored); err != nil {
		g.deleteBundleIfUnreferenced(context.WithoutCancel(ctx), digest)
		return nil, err
	}
	return b, nil
}

func (g *Server) getBundle(ctx context.Context, p *Principal, id string) (*schemas.Bundle, error) {
	notFound := schemas.Errorf(schemas.CodeNotFound, "bundle %s not found", truncateID(id))
	digest, err := schemas.ParseModuleID(id)
	if err != nil {
		return nil, notFound
	}
	e, err := g.bundleRefs.Get(ctx, schemas.ModuleRefKey(p.TenantID, digest))
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, notFound
		}
		return nil, unavailable("bundle store", err)
	}
	var b schemas.Bundle
	if err := json.Unmarshal(e.Value(), &b); err != nil {
		return nil, unavailable("bundle store", err)
	}
	return &b, nil
}

func (g *Server) listBundles(ctx context.Context, p *Principal) (*schemas.BundleList, error) {
	out := &schemas.BundleList{Bundles: []schemas.Bundle{}}
	lister, err := g.bundleRefs.ListKeysFiltered(ctx, p.TenantID+".*")
	if err != nil {
		return nil, unavailable("bundle store", err)
	}
	for k := range lister.Keys() {
		e, err := g.bundleRefs.Get(ctx, k)
		if err != nil {
			continue // deleted meanwhile
		}
		var b schemas.Bundle
		if json.Unmarshal(e.Value(), &b) == nil {
			out.Bundles = append(out.Bundles, b)
		}
	}
	return out, nil
}

func (g *Server) deleteBundle(ctx context.Context, p *Principal, id string) error {
	b, err := g.getBundle(ctx, p, id)
	if err != nil {
		return err
	}
	digest, _ := schemas.ParseModuleID(b.ID)
	if err := g.bundleRefs.Purge(ctx, schemas.ModuleRefKey(p.TenantID, digest)); err != nil {
		return unavailable("bundle store", err)
	}
	g.deleteBundleIfUnreferenced(ctx, digest)
	return nil
}

// deleteBundleIfUnreferenced deletes a bundle's object unless a tenant still owns it.
func (g *Server) deleteBundleIfUnreferenced(ctx context.Context, digest string) {
	lister, err := g.bundleRefs.ListKeysFiltered(ctx, "*."+digest)
	if err != nil {
		return
	}
	for range lister.Keys() {
		_ = lister.Stop()
		return // someone still owns it
	}
	if err := g.bundles.Delete(ctx, schemas.BundleObjectName(digest)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		g.log.Warn("delete bundle object", "bundle_id", schemas.ModuleID(digest), "err", err)
	}
}

// bundleUploadInput streams the body: Resolve hands the handler the request's body reader, so
// an archive of hundreds of MiB is checked and spooled to disk, never held in memory.
type bundleUploadInput struct {
	Name string `query:"name" maxLength:"128" doc:"a name for the bundle"`
	body io.Reader
}

func (in *bundleUploadInput) Resolve(ctx huma.Context) []error {
	in.body = ctx.BodyReader()
	return nil
}

type bundleOutput struct {
	Body *schemas.Bundle
}

type bundleListOutput struct {
	Body *schemas.BundleList
}

type bundleIDInput struct {
	ID string `path:"id" doc:"bundle id, sha256:<hex>"`
}

func (g *Server) restUploadBundle(ctx context.Context, p *Principal, in *bundleUploadInput) (*bundleOutput, error) {
	body := in.body
	if body == nil {
		body = http.NoBody
	}
	b, err := g.uploadBundle(ctx, p, in.Name, body)
	return &bundleOutput{Body: b}, err
}

// microUploadBundle is bundles.upload: the body is the archive, its name a header.
func (g *Server) microUploadBundle(ctx context.Context, p *Principal, req micro.Request) (any, error) {
	return g.uploadBundle(ctx, p, req.Headers().Get(schemas.HeaderBundleName), bytes.NewReader(req.Data()))
}

func (g *Server) restListBundles(ctx context.Context, p *Principal, _ *struct{}) (*bundleListOutput, error) {
	l, err := g.listBundles(ctx, p)
	return &bundleListOutput{Body: l}, err
}

func (g *Server) restGetBundle(ctx context.Context, p *Principal, in *bundleIDInput) (*bundleOutput, error) {
	b, err := g.getBundle(ctx, p, in.ID)
	return &bundleOutput{Body: b}, err
}

func (g *Server) restDeleteBundle(ctx context.Context, p *Principal, in *bundleIDInput) (*struct{}, error) {
	return nil, g.deleteBundle(ctx, p, in.ID)
}
