package schemas_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Every subject is built by one function and read back by its parser: a publisher and a
// consumer cannot disagree on where the tier or the tenant is.
func ExampleParseEventSubject() {
	subject := schemas.EventSubject(schemas.EventExecutionCompleted, "acme")
	eventType, tenant, err := schemas.ParseEventSubject(subject)
	fmt.Println(subject)
	fmt.Println(eventType, tenant, err)

	_, _, err = schemas.ParseEventSubject("wasmwiz.events.execution.completed.ACME")
	fmt.Println(err)
	// Output:
	// wasmwiz.events.execution.completed.acme
	// execution.completed acme <nil>
	// not an event subject: "wasmwiz.events.execution.completed.ACME"
}

// An execution request travels on its tier's work-queue subject; each tier has its own stream
// and durable consumer.
func ExampleExecSubject() {
	fmt.Println(schemas.ExecSubject(schemas.TierFree, "acme"))
	fmt.Println(schemas.ExecStream(schemas.TierFree), schemas.ExecConsumer(schemas.TierFree))
	fmt.Println(schemas.APISubject(schemas.OpExecutionsCreate))
	// Output:
	// wasmwiz.exec.free.acme
	// WASMWIZ_EXEC_FREE exec-free
	// wasmwiz.api.v1.executions.create
}

// A tiers file is laid over the default tiers: it may change one figure of one tier or add a
// tier; the result is checked as a whole.
func ExampleParseTiers() {
	tiers, err := schemas.ParseTiers([]byte(`{
		"free": {"exec_per_minute": 20},
		"team": {"memory_mb": 256, "wall_time_ms": 10000, "module_size": 26214400, "in_flight": 5,
		         "stdin_max": 1048576, "stdout_max": 1048576, "priority": 2}
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	free, team := tiers[schemas.TierFree], tiers["team"]
	fmt.Println(free.ExecPerMinute, free.MemoryMB, free.WallTime)
	fmt.Println(team.MemoryMB, team.WallTime, team.ArgsMax)

	_, err = schemas.ParseTiers([]byte(`{"free": {"memory_mb": 0}}`))
	fmt.Println(err)
	// Output:
	// 20 128 5s
	// 256 10s 256
	// tiers file: tier free: memory_mb must be in 1..4096
}

// One error type crosses every boundary: its code is stable, maps to one HTTP status, and is
// what a client decodes from a problem+json body or a NATS micro error.
func ExampleError() {
	err := fmt.Errorf("get module: %w", schemas.Errorf(schemas.CodeNotFound, "module %s not found", "sha256:ab"))
	e := schemas.AsError(err)
	fmt.Println(e.Code, e.Code.Status() == http.StatusNotFound)
	body, _ := json.Marshal(e)
	fmt.Println(string(body))

	// Anything else is internal, and says nothing more.
	fmt.Println(schemas.AsError(errors.New("pq: connection refused")).Message)
	// Output:
	// not_found true
	// {"code":"not_found","message":"module sha256:ab not found"}
	// internal error
}
