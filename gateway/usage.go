package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// accountingTimeout bounds a usage query to the accounting role.
const accountingTimeout = 15 * time.Second

type usageInput struct {
	From    string `query:"from" doc:"start of the range, inclusive: an RFC 3339 time, or a date YYYY-MM-DD meaning its UTC midnight; default: UTC midnight 30 days before to"`
	To      string `query:"to" doc:"end of the range, exclusive: an RFC 3339 time or a date YYYY-MM-DD (its UTC midnight); default: now"`
	GroupBy string `query:"group_by" enum:"day,module,key" default:"day" doc:"rows per UTC day (of each execution's finish), per module id, or per API key id"`
	Tenant  string `query:"tenant" doc:"admins only: whose usage; default the caller's tenant"`
}

type usageOutput struct {
	Body *schemas.UsageResponse
}

// microUsage is the direct NATS twin of GET /v1/usage: the body is a schemas.UsageRequest
// (tenant_id only for admins; an empty body takes the defaults).
func (g *Server) microUsage(ctx context.Context, p *Principal, req micro.Request) (any, error) {
	var body schemas.UsageRequest
	if len(bytes.TrimSpace(req.Data())) > 0 {
		if err := decodeJSON(req.Data(), &body); err != nil {
			return nil, err
		}
	}
	return g.usage(ctx, p, body)
}

func usageRequest(in *usageInput) (schemas.UsageRequest, error) {
	req := schemas.UsageRequest{TenantID: in.Tenant, GroupBy: in.GroupBy}
	var err error
	if req.From, err = parseTimeParam("from", in.From); err != nil {
		return req, err
	}
	if req.To, err = parseTimeParam("to", in.To); err != nil {
		return req, err
	}
	return req, nil
}

// parseTimeParam reads an RFC 3339 time or a date (its UTC midnight); empty is the zero time.
func parseTimeParam(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, schemas.Errorf(schemas.CodeInvalid, "%s must be an RFC 3339 time (2006-01-02T15:04:05Z) or a date (2006-01-02)", name)
}

// scopeTenant decides whose usage and events p may read: its own tenant's with the usage:read
// scope, or any tenant's for an admin.
func (g *Server) scopeTenant(ctx context.Context, p *Principal, requested string) (string, error) {
	if err := p.require(schemas.ScopeUsageRead); err != nil {
		return "", err
	}
	if requested == "" || requested == p.TenantID {
		return p.TenantID, nil
	}
	if !p.Admin {
		return "", schemas.Errorf(schemas.CodeForbidden, "only an admin key may read another tenant's data")
	}
	if _, err := g.admin().GetTenant(ctx, requested); err != nil {
		return "", err
	}
	return requested, nil
}

// usage asks accounting for p's usage (or, for an admin, req.TenantID's) over NATS.
func (g *Server) usage(ctx context.Context, p *Principal, req schemas.UsageRequest) (*schemas.UsageResponse, error) {
	tenant, err := g.scopeTenant(ctx, p, req.TenantID)
	if err != nil {
		return nil, err
	}
	req.TenantID = tenant
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, accountingTimeout)
	defer cancel()
	msg, err := g.nc.RequestWithContext(rctx, schemas.AccountingSubject(schemas.OpUsage), body)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, unavailable("accounting", errors.New("no accounting replica answers usage queries"))
		}
		return nil, unavailable("accounting", err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		var se schemas.Error
		if json.Unmarshal(msg.Data, &se) == nil {
			switch se.Code {
			case schemas.CodeInvalid, schemas.CodeForbidden, schemas.CodeNotFound:
				return nil, &se
			}
		}
		return nil, unavailable("accounting", fmt.Errorf("usage query answered %s: %s", code, msg.Header.Get(micro.ErrorHeader)))
	}
	var out schemas.UsageResponse
	if err := json.Unmarshal(msg.Data, &out); err != nil {
		return nil, fmt.Errorf("decode usage answer: %w", err)
	}
	return &out, nil
}

func (g *Server) restUsage(ctx context.Context, p *Principal, in *usageInput) (*usageOutput, error) {
	req, err := usageRequest(in)
	if err != nil {
		return nil, err
	}
	out, err := g.usage(ctx, p, req)
	return &usageOutput{Body: out}, err
}
