package gateway

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/wasmwiz/wasmwiz/internal/history"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// recordQueued writes the history record of an execution just published (internal/history), in
// the background, with the tenant's other records of the moment (history.Batches): the caller
// does not wait for it. An execution whose record is lost is still listed once its executor
// records its end.
func (g *Server) recordQueued(ctx context.Context, er *schemas.ExecRequest) {
	s := &schemas.ExecutionSummary{
		ID: er.ExecutionID, Status: schemas.StatusQueued, ModuleID: er.ModuleID, ModuleName: er.ModuleName,
		KeyID: er.KeyID, CreatedAt: er.CreatedAt,
	}
	p := g.historyBatches.Record(g.js, er.TenantID, s)
	ctx = context.WithoutCancel(ctx)
	g.inflight.Go(func() {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := p.Wait(hctx); err != nil {
			g.log.Warn("record execution history", "execution_id", er.ExecutionID, "tenant_id", er.TenantID, "err", err)
		}
	})
}

// listExecutions answers a page of the caller's executions, newest first.
func (g *Server) listExecutions(ctx context.Context, p *Principal, req *schemas.ExecutionListRequest) (*schemas.ExecutionList, error) {
	q, err := history.ParseQuery(req)
	if err != nil {
		return nil, schemas.Errorf(schemas.CodeInvalid, "%s", err.Error())
	}
	l, err := g.history.List(ctx, p.TenantID, q)
	if err != nil {
		return nil, unavailable("execution history", err)
	}
	return l, nil
}

type executionListInput struct {
	Status   string `query:"status" maxLength:"128" doc:"only executions in these states, comma-separated (queued, running, succeeded, failed, timed_out, killed)" example:"failed,timed_out"`
	ModuleID string `query:"module_id" maxLength:"80" doc:"only executions of this module (sha256:<hex>)"`
	From     string `query:"from" maxLength:"64" doc:"only executions created at or after this time (RFC 3339)" example:"2026-12-01T00:00:00Z"`
	To       string `query:"to" maxLength:"64" doc:"only executions created before this time (RFC 3339)"`
	Limit    int    `query:"limit" doc:"at most this many (1-100; default 20)"`
	Cursor   string `query:"cursor" maxLength:"128" doc:"next_cursor of the previous page"`
}

type executionListOutput struct {
	Body *schemas.ExecutionList
}

// restListExecutions is GET /v1/executions.
func (g *Server) restListExecutions(ctx context.Context, p *Principal, in *executionListInput) (*executionListOutput, error) {
	l, err := g.listExecutions(ctx, p, &schemas.ExecutionListRequest{
		Status: in.Status, ModuleID: in.ModuleID, From: in.From, To: in.To, Limit: in.Limit, Cursor: in.Cursor,
	})
	return &executionListOutput{Body: l}, err
}

// microListExecutions is executions.list over direct NATS: the body holds the REST query's
// fields (an empty body lists the newest 20).
func (g *Server) microListExecutions(ctx context.Context, p *Principal, req micro.Request) (any, error) {
	var body schemas.ExecutionListRequest
	if len(req.Data()) > 0 {
		if err := decodeJSON(req.Data(), &body); err != nil {
			return nil, err
		}
	}
	return g.listExecutions(ctx, p, &body)
}
