package natstest

import (
	"errors"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/wasmwiz/wasmwiz/internal/natsroles"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// RunJetStreamRoles starts a server as RunJetStream does whose anonymous connections are an
// admin that may do anything (the test's own, standing for the gateway), and which has a user
// for each of roles (password: its name) with the permissions nats-roles.conf gives it
// (natsroles.For) for the default tiers: the role's code under test may do only what it may in a
// deployment.
func RunJetStreamRoles(tb testing.TB, roles ...string) *server.Server {
	tb.Helper()
	users := []*server.User{{Username: "admin", Password: "admin"}}
	tierNames := make([]string, 0, len(schemas.DefaultTiers()))
	for name := range schemas.DefaultTiers() {
		tierNames = append(tierNames, name)
	}
	for _, role := range roles {
		p, ok := natsroles.For(role, tierNames)
		if !ok {
			tb.Fatalf("natstest: role %s has no permissions", role)
		}
		users = append(users, &server.User{Username: role, Password: role, Permissions: p.Server()})
	}
	return RunJetStreamWith(tb, func(o *server.Options) {
		o.Users = users
		o.NoAuthUser = "admin"
	})
}

// ConnectRole connects to s (RunJetStreamRoles) as role does: its user, its inbox prefix. A
// publish or subscription the user is refused fails tb when the test ends: the server answers
// it only with an asynchronous permissions violation, which the role's code may not notice (a
// lost reply or ack) or only wait out (a JetStream request), so the test must.
func ConnectRole(tb testing.TB, s *server.Server, role string, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	inbox, ok := natsroles.Inbox(role)
	if !ok {
		tb.Fatalf("natstest: role %s has no permissions", role)
	}
	var (
		mu      sync.Mutex
		refused []string
	)
	nc := Connect(tb, s, append([]nats.Option{nats.UserInfo(role, role), nats.CustomInboxPrefix(inbox),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				mu.Lock()
				refused = append(refused, err.Error())
				mu.Unlock()
			}
		})}, opts...)...)
	tb.Cleanup(func() {
		nc.Close()
		mu.Lock()
		defer mu.Unlock()
		if len(refused) > 0 {
			tb.Errorf("natstest: the %s's NATS user was refused %d time(s), first: %s", role, len(refused), refused[0])
		}
	})
	return nc
}
