// Package accounting is the WasmWiz role that turns events into usage: it is the only role that
// speaks SQL. A Consumer reads schemas.StreamEvents through the durable pull consumer
// schemas.ConsumerAccounting, writes each batch to a Store in one transaction, acks the batch
// only after the commit, and answers usage and reconcile queries on AccountingSubject(OpUsage)
// and AccountingSubject(OpReconcile) as the NATS micro service "wasmwiz-accounting".
//
// # Exactly once, without a window
//
// JetStream delivers at least once, and an executor may publish the event of one execution more
// than once (a redelivered request, a retried publish with another Nats-Msg-Id). The stream's
// duplicate window removes some of these; the store removes all of them: executions is keyed by
// execution_id and rows are inserted with ON CONFLICT (execution_id) DO NOTHING, in the
// transaction whose commit precedes the ack. A crash between commit and ack redelivers the
// batch, which then inserts nothing.
//
// # Why the daily rollup is kept in the same transaction
//
// usage_daily (per tenant and UTC day) is updated in the same transaction as the raw inserts,
// from the rows that the insert reports as really inserted (RETURNING / rows affected), never
// from the batch as received. So the rollup equals the sum of the raw rows at every commit, with
// no background job that could lag, double-count after a crash, or need its own watermark.
// The alternative, computing usage by query from the raw rows, costs a scan per query that
// grows with a tenant's history; the rollup makes the common query (a month, by day) read at
// most ~31 rows. Its price is one upsert per (tenant, day) per batch, and contention on a hot
// tenant's row for today, which batching amortises: one update per batch, not per event.
// Both stores lock rows in a fixed order (executions by id, rollup by tenant and day), so
// concurrent replicas do not deadlock. Grouping by module or key, and any range that does not
// start and end at UTC midnight, is computed from the raw rows (indexed by tenant and finish
// time).
//
// # What is counted
//
// An execution is accounted on the UTC day of its finished_at. succeeded counts status
// succeeded; timed_out counts timed_out; failed counts failed and killed (a killed execution is
// a failure the caller pays for; the raw row keeps the exact status). wall_ms is the measured
// wall time rounded up to a whole millisecond per execution, memory_mb_ms is the peak memory in
// MiB, rounded up, times that wall_ms; both are integers, so sums are exact and the two stores
// and the rollup agree to the unit. bytes_in is stdin, bytes_out is stdout plus stderr.
// Non-execution events (modules, keys, rate limits) are kept in the events table for audit,
// keyed by event id.
package accounting
