// Package natsroles says what the NATS users of the roles that have permissions (the executor
// and accounting) may do inside the WASMWIZ account: `wasmwiz secrets generate` and dev write
// it into nats-roles.conf, the roles connect with the inbox prefix it names, and the executor's
// and accounting's tests run their role as that user (natstest.RunJetStreamRoles), so that a
// call the role may not make fails there as in a deployment instead of only in end-to-end
// tests.
package natsroles

import (
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/wasmwiz/wasmwiz/internal/streams"
	"github.com/wasmwiz/wasmwiz/schemas"
)

// Inbox is the inbox prefix of a role whose user has permissions: its replies and JetStream
// deliveries come there, and it may subscribe to nothing else but its own service subjects, so
// none can read another's inbox traffic (the gateway's key lookups, the API's replies).
func Inbox(role string) (string, bool) {
	if _, ok := For(role, nil); !ok {
		return "", false
	}
	return "_INBOX_" + role, true
}

// Permissions is what a role's user may do in WASMWIZ: publish to the subjects of Publish but
// none of PublishDeny (which only narrows wildcards of Publish), subscribe to those of
// Subscribe, and, when Responses is set, answer each request it receives once on the request's
// reply subject, for that long.
type Permissions struct {
	Publish, PublishDeny, Subscribe []string
	Responses                       time.Duration
}

// ResponsesFor is how long accounting may answer a usage or reconcile query: longer than the
// longest any asker waits (`wasmwiz accounting reconcile`: a minute).
const ResponsesFor = 10 * time.Minute

// For is what role's user may do when the deployment's tiers are those named (ok false: the
// role's user may do everything in WASMWIZ). The executor and accounting may publish exactly
// what their work publishes, subscribe only to their inbox and their own service subjects, and
// change no stream: creating, updating, deleting, purging, snapshotting or restoring one (an
// update could republish the keys bucket onto a subject the role reads) is the gateway's and
// `wasmwiz admin bootstrap`'s. They look up only the streams and consumers of their
// streams.Lookups, by name: a stream's info with a subjects filter lists its subjects, which
// carry tenant ids, execution ids and the keys' hashes, so the buckets and streams of the
// gateway (keys, tenants, idempotency records, bundle records, key usage, rate limits), and for
// accounting all but the events, stay unlisted. Nor may they list the streams
// (STREAM.LIST/NAMES). Tiers are configurable and a stream name is one subject token, which no
// wildcard can match by its prefix: the tiers' streams, consumers and acks are named one by one,
// so `wasmwiz secrets generate` and dev take the tiers file the roles read.
//
// The executor's list, by what it does (executor/, internal/streams):
//   - look up its streams and its tiers' consumers (streams.Wait, KeyValue, ObjectStore,
//     metrics): $JS.API.INFO, STREAM.INFO.<stream>, CONSUMER.INFO.<tier queue>.<tier consumer>;
//   - pull its tiers' requests and ack them: CONSUMER.MSG.NEXT.<tier queue>.<tier consumer>
//     and $JS.ACK.<tier queue>.<tier consumer>.> (both ack formats);
//   - read and write the results and result-usage buckets ($KV.<bucket>.>, message get for
//     leader reads, direct get), read the module records (gets only);
//   - read modules and bundles, read and write compiled artifacts, write outputs: the object
//     stores' direct and message gets (object info), an ordered consumer per object read
//     (consumer create and delete, $JS.FC.<store>.> flow control), $O.<bucket>.> for the two it
//     writes, and the single message deletes of DeleteObject and PutAside with the consumer
//     that finds them (its pulls), on those two only;
//   - publish its execution events, history records and dead letters: exactly
//     wasmwiz.events.execution.{completed,failed}.*, wasmwiz.history.*.*, wasmwiz.dlq.exec;
//   - reply to the gateways (executions, compiles, pings) under schemas.ExecutorReplyPrefix,
//     ask the other executors whether they run an execution and answer them on _INBOX_executor.
//
// It gets no allow_responses: it publishes to wasmwiz.executor.v1.running, which it subscribes
// to, so it could send itself a request with any reply subject and then publish there once,
// whatever the lists say. Its replies are on the subjects listed instead.
//
// Accounting looks up the events stream and its own durable consumer there, makes, reads and
// acks that consumer, and answers the requests to its micro service (usage, reconcile, $SRV)
// through allow_responses: it publishes nothing it subscribes to, and nobody but the gateway and
// operators can send it a request, so a reply subject is always an asker's.
func For(role string, tiers []string) (Permissions, bool) {
	switch role {
	case "executor":
		l := streams.ExecutorLookups(tiers)
		p := Permissions{
			Subscribe: []string{"_INBOX_executor.>", "wasmwiz.executor.v1.>"},
			Publish: append(lookups(l),
				"$KV."+schemas.BucketResults+".>", "$KV."+schemas.BucketStorage+".>",
				"$O."+schemas.ObjectCompiled+".>", "$O."+schemas.ObjectOutputs+".>",
				schemas.EventSubject(schemas.EventExecutionCompleted, "*"), schemas.EventSubject(schemas.EventExecutionFailed, "*"),
				schemas.HistorySubjectAll, schemas.SubjectDLQ,
				schemas.ExecutorReplyPrefix+".>", "_INBOX_executor.>", schemas.SubjectExecutorRunning,
			),
		}
		for _, tier := range tiers {
			p.Publish = append(p.Publish, pulls(schemas.ExecStream(tier)+"."+schemas.ExecConsumer(tier))...)
		}
		for _, kv := range []string{schemas.BucketResults, schemas.BucketStorage, schemas.BucketModuleOwner} {
			p.Publish = append(p.Publish, gets("KV_"+kv)...)
		}
		for _, obj := range []string{schemas.ObjectModules, schemas.ObjectBundles, schemas.ObjectCompiled, schemas.ObjectOutputs} {
			s := "OBJ_" + obj
			p.Publish = append(p.Publish, gets(s)...)
			p.Publish = append(p.Publish, "$JS.API.CONSUMER.CREATE."+s+".>", "$JS.API.CONSUMER.DELETE."+s+".*",
				"$JS.FC."+s+".>", "$JS.FC.*.*."+s+".>")
		}
		for _, obj := range []string{schemas.ObjectCompiled, schemas.ObjectOutputs} {
			s := "OBJ_" + obj
			p.Publish = append(p.Publish, "$JS.API.STREAM.MSG.DELETE."+s, "$JS.API.CONSUMER.MSG.NEXT."+s+".*")
		}
		return p, true
	case "accounting":
		consumer := schemas.StreamEvents + "." + schemas.ConsumerAccounting
		return Permissions{
			Subscribe: []string{"_INBOX_accounting.>", "wasmwiz.accounting.v1.>", "$SRV.>"},
			Publish: append(lookups(streams.AccountingLookups()),
				append(pulls(consumer), "$JS.API.CONSUMER.INFO."+consumer, "$JS.API.CONSUMER.CREATE."+consumer+".>")...),
			Responses: ResponsesFor,
		}, true
	}
	return Permissions{}, false
}

// lookups are the subjects that look up l's streams and consumers: account info, each
// stream's info, each tier consumer's info.
func lookups(l streams.Lookups) []string {
	subjects := []string{"$JS.API.INFO"}
	for _, s := range l.Streams {
		subjects = append(subjects, "$JS.API.STREAM.INFO."+s)
	}
	for _, tier := range l.Tiers {
		subjects = append(subjects, "$JS.API.CONSUMER.INFO."+schemas.ExecStream(tier)+"."+schemas.ExecConsumer(tier))
	}
	return subjects
}

// pulls are the subjects that pull from consumer (<stream>.<consumer>) and ack what it
// delivers: $JS.ACK.<stream>.<consumer>.…, or with the server's v2 ack format
// $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.…
func pulls(consumer string) []string {
	return []string{"$JS.API.CONSUMER.MSG.NEXT." + consumer, "$JS.ACK." + consumer + ".>", "$JS.ACK.*.*." + consumer + ".>"}
}

// gets are the subjects that read one message of stream: message get (answered by the leader),
// direct get (any replica) and direct get by subject.
func gets(stream string) []string {
	return []string{"$JS.API.STREAM.MSG.GET." + stream, "$JS.API.DIRECT.GET." + stream, "$JS.API.DIRECT.GET." + stream + ".>"}
}

// Server is p as an embedded server's user permissions.
func (p Permissions) Server() *server.Permissions {
	sp := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: p.Publish, Deny: p.PublishDeny},
		Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
	}
	if p.Responses > 0 {
		sp.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: p.Responses}
	}
	return sp
}
