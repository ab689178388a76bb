package gateway

import (
	"context"
	"net/http"
	"time"
)

// HealthStatus is the body of the health endpoints.
type HealthStatus struct {
	Status    string `json:"status" enum:"ok,unavailable"`
	NATS      bool   `json:"nats"`
	Streams   bool   `json:"streams"`
	Keys      bool   `json:"keys"`
	Executors bool   `json:"executors"`
}

type healthOutput struct {
	Status int
	Body   *HealthStatus
}

func (g *Server) health() *HealthStatus {
	if g.nc == nil {
		return &HealthStatus{Status: "unavailable"}
	}
	h := &HealthStatus{
		NATS: g.nc.IsConnected(), Streams: g.streamsOK.Load(), Keys: g.keyring.isSynced(),
		Executors: time.Since(time.Unix(0, g.lastPing.Load())) < 10*time.Second,
	}
	h.Status = "unavailable"
	if g.Ready() {
		h.Status = "ok"
	}
	return h
}

// restHealth is GET /health, or with ready GET /health/ready, which answers 503 until the
// gateway is ready.
func (g *Server) restHealth(ready bool) func(context.Context, *Principal, *struct{}) (*healthOutput, error) {
	return func(context.Context, *Principal, *struct{}) (*healthOutput, error) {
		h := g.health()
		status := http.StatusOK
		if ready && h.Status != "ok" {
			status = http.StatusServiceUnavailable
		}
		return &healthOutput{Status: status, Body: h}, nil
	}
}

// restLive is GET /health/live: the process answers.
func restLive(context.Context, *Principal, *struct{}) (*healthOutput, error) {
	return &healthOutput{Status: http.StatusOK, Body: &HealthStatus{Status: "ok"}}, nil
}
