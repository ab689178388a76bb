// Package natsroles says what the NATS users of the roles that have permissions (the executor
// and accounting) may do inside the WASMWIZ account: `wasmwiz secrets generate` and dev write
// it into nats-roles.conf, the roles connect with the inbox prefix it names, and the executor's
// tests connect their nodes as that user, so that a call the role may not make (a purge) fails
// there as in a deployment instead of only in end-to-end tests.
package natsroles

import "github.com/wasmwiz/wasmwiz/schemas"

// Inbox is the inbox prefix of a role whose user has permissions: its replies and JetStream
// deliveries come there, and it may subscribe to nothing else but its own service subjects, so
// none can read another's inbox traffic (the gateway's key lookups, the API's replies).
func Inbox(role string) (string, bool) {
	if _, _, ok := Permissions(role); !ok {
		return "", false
	}
	return "_INBOX_" + role, true
}

// Permissions is what role's user may not publish and what it may subscribe to (ok false: the
// role's user may do everything in WASMWIZ). The executor and accounting subscribe only to
// their inbox and their own service subjects, and may publish anything but what would let them
// read or write the API keys (the keys bucket's subjects and JetStream API) or change any
// stream: creating, updating, deleting, purging, snapshotting or restoring one (an update could
// republish the keys bucket onto a subject the role reads). They look the streams up; the
// gateway and `wasmwiz admin bootstrap` make them. (Deleting single messages stays allowed:
// the executor removes objects that way, streams.DeleteObject.)
func Permissions(role string) (pubDeny, subAllow []string, ok bool) {
	switch role {
	case "executor":
		subAllow = []string{"_INBOX_executor.>", "wasmwiz.executor.v1.>"}
	case "accounting":
		subAllow = []string{"_INBOX_accounting.>", "wasmwiz.accounting.v1.>", "$SRV.>"}
	default:
		return nil, nil, false
	}
	keys := "KV_" + schemas.BucketKeys
	pubDeny = []string{
		"$JS.API.STREAM.CREATE.>", "$JS.API.STREAM.UPDATE.>", "$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.PURGE.>",
		"$JS.API.STREAM.SNAPSHOT.>", "$JS.API.STREAM.RESTORE.>", "$JS.API.ACCOUNT.PURGE.>",
		"$JS.API.STREAM.MSG.GET." + keys, "$JS.API.STREAM.MSG.DELETE." + keys,
		"$JS.API.DIRECT.GET." + keys, "$JS.API.DIRECT.GET." + keys + ".>",
		"$JS.API.CONSUMER.*." + keys, "$JS.API.CONSUMER.*." + keys + ".>", "$JS.API.CONSUMER.*.*." + keys + ".>",
		"$KV." + schemas.BucketKeys + ".>",
	}
	return pubDeny, subAllow, true
}
