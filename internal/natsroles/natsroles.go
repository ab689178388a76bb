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

	"github.com/wasmwiz/wasmwiz/schemas"
)

// Inbox is the inbox prefix of a role whose user has permissions: its replies and JetStream
// deliveries come there, and it may subscribe to nothing else but its own service subjects, so
// none can read another's inbox traffic (the gateway's key lookups, the API's replies).
func Inbox(role string) (string, bool) {
	if _, ok := For(role); !ok {
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

// For is what role's user may do (ok false: the role's user may do everything in WASMWIZ). The
// executor and accounting may publish exactly what their work publishes, subscribe only to
// their inbox and their own service subjects, and change no stream: creating, updating,
// deleting, purging, snapshotting or restoring one (an update could republish the keys bucket
// onto a subject the role reads) is the gateway's and `wasmwiz admin bootstrap`'s; they look
// the streams up. Neither reads or writes the API keys.
//
// The executor's list, by what it does (executor/, internal/streams):
//   - look up every stream but the keys bucket (with a subjects filter, its info lists the keys'
//     hashes) and its tier consumers (streams.Wait, KeyValue, ObjectStore, metrics): $JS.API.INFO,
//     STREAM.INFO.*, CONSUMER.INFO.*.*;
//   - pull its tiers' requests and ack them: CONSUMER.MSG.NEXT.*.* and $JS.ACK.> (tiers are
//     configurable, so their streams are not named: these exclude the events stream, whose only
//     pull consumer is accounting's, and the keys bucket);
//   - read and write the results and result-usage buckets ($KV.<bucket>.>, message get for
//     leader reads, direct get), read the module records (gets only);
//   - read modules and bundles, read and write compiled artifacts, write outputs: the object
//     stores' direct and message gets (object info), an ordered consumer per object read
//     (consumer create and delete, $JS.FC.> flow control), $O.<bucket>.> for the two it writes,
//     and the single message deletes of DeleteObject and PutAside with the consumer that finds
//     them, on those two only;
//   - publish its execution events, history records and dead letters: exactly
//     wasmwiz.events.execution.{completed,failed}.*, wasmwiz.history.*.*, wasmwiz.dlq.exec;
//   - reply to the gateways (executions, compiles, pings) under schemas.ExecutorReplyPrefix,
//     ask the other executors whether they run an execution and answer them on _INBOX_executor.
//
// It gets no allow_responses: it publishes to wasmwiz.executor.v1.running, which it subscribes
// to, so it could send itself a request with any reply subject and then publish there once,
// whatever the lists say. Its replies are on the subjects listed instead.
//
// Accounting looks the streams up (but the keys bucket), makes and reads its own durable consumer on the events
// stream and acks it, and answers the requests to its micro service (usage, reconcile, $SRV)
// through allow_responses: it publishes nothing it subscribes to, and nobody but the gateway and
// operators can send it a request, so a reply subject is always an asker's.
func For(role string) (Permissions, bool) {
	keys := "KV_" + schemas.BucketKeys
	events := schemas.StreamEvents
	switch role {
	case "executor":
		p := Permissions{
			Subscribe: []string{"_INBOX_executor.>", "wasmwiz.executor.v1.>"},
			Publish: []string{
				"$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.CONSUMER.INFO.*.*",
				"$JS.API.CONSUMER.MSG.NEXT.*.*", "$JS.ACK.>", "$JS.FC.>",
				"$KV." + schemas.BucketResults + ".>", "$KV." + schemas.BucketStorage + ".>",
				"$O." + schemas.ObjectCompiled + ".>", "$O." + schemas.ObjectOutputs + ".>",
				schemas.EventSubject(schemas.EventExecutionCompleted, "*"), schemas.EventSubject(schemas.EventExecutionFailed, "*"),
				schemas.HistorySubjectAll, schemas.SubjectDLQ,
				schemas.ExecutorReplyPrefix + ".>", "_INBOX_executor.>", schemas.SubjectExecutorRunning,
			},
			PublishDeny: []string{
				"$JS.API.STREAM.INFO." + keys, "$JS.API.CONSUMER.INFO." + keys + ".*",
				"$JS.API.CONSUMER.MSG.NEXT." + events + ".*", "$JS.API.CONSUMER.MSG.NEXT." + keys + ".*",
				// Acks: $JS.ACK.<stream>.<consumer>.…, or with the server's v2 ack format
				// $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.…
				"$JS.ACK." + events + ".>", "$JS.ACK.*.*." + events + ".>",
				"$JS.ACK." + keys + ".>", "$JS.ACK.*.*." + keys + ".>",
			},
		}
		for _, kv := range []string{schemas.BucketResults, schemas.BucketStorage, schemas.BucketModuleOwner} {
			p.Publish = append(p.Publish, gets("KV_"+kv)...)
		}
		for _, obj := range []string{schemas.ObjectModules, schemas.ObjectBundles, schemas.ObjectCompiled, schemas.ObjectOutputs} {
			s := "OBJ_" + obj
			p.Publish = append(p.Publish, gets(s)...)
			p.Publish = append(p.Publish, "$JS.API.CONSUMER.CREATE."+s+".>", "$JS.API.CONSUMER.DELETE."+s+".*")
		}
		for _, obj := range []string{schemas.ObjectCompiled, schemas.ObjectOutputs} {
			p.Publish = append(p.Publish, "$JS.API.STREAM.MSG.DELETE.OBJ_"+obj)
		}
		return p, true
	case "accounting":
		consumer := events + "." + schemas.ConsumerAccounting
		return Permissions{
			Subscribe: []string{"_INBOX_accounting.>", "wasmwiz.accounting.v1.>", "$SRV.>"},
			Publish: []string{
				"$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.CONSUMER.INFO.*.*",
				"$JS.API.CONSUMER.CREATE." + consumer + ".>",
				"$JS.API.CONSUMER.MSG.NEXT." + consumer,
				"$JS.ACK." + consumer + ".>", "$JS.ACK.*.*." + consumer + ".>",
			},
			PublishDeny: []string{"$JS.API.STREAM.INFO." + keys, "$JS.API.CONSUMER.INFO." + keys + ".*"},
			Responses:   ResponsesFor,
		}, true
	}
	return Permissions{}, false
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
