package executor

import "github.com/wasmwiz/wasmwiz/internal/telemetry"

// tracer makes the executor's spans; each execution continues the trace its request carries.
var tracer = telemetry.Tracer("executor")
