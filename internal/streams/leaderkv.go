package streams

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaderReads returns kv with Get served by the bucket's stream leader instead of by direct get.
//
// A KV bucket allows direct gets, which any replica answers, and a follower can answer from
// before it applied a write the leader has already acknowledged (nats-server #4710): a client
// could be told "202 Accepted" and then "404 not found" for the same execution. Reads that must
// see every acknowledged write — results, module ownership, keys — go to the leader on a
// replicated bucket. With one replica there is no follower, so kv is returned as it is.
func LeaderReads(js jetstream.JetStream, kv jetstream.KeyValue, replicas int) jetstream.KeyValue {
	if replicas <= 1 {
		return kv
	}
	return &leaderKV{KeyValue: kv, nc: js.Conn()}
}

type leaderKV struct {
	jetstream.KeyValue
	nc *nats.Conn
}

// Get reads the last message on the key's subject with the stream's (non-direct) message API,
// which only the leader answers.
func (l *leaderKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if !validKey(key) {
		return nil, jetstream.ErrInvalidKey
	}
	bucket := l.Bucket()
	req, err := json.Marshal(map[string]string{"last_by_subj": "$KV." + bucket + "." + key})
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	msg, err := l.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_"+bucket, req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Sequence uint64    `json:"seq"`
			Header   []byte    `json:"hdrs"`
			Data     []byte    `json:"data"`
			Time     time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("kv %s: leader get: %w", bucket, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound) {
			return nil, jetstream.ErrKeyNotFound
		}
		// As the client library's own calls do: an *APIError (a stream electing its leader
		// answers 503 "temporarily unavailable"), so callers can tell "not now" from "no".
		return nil, fmt.Errorf("kv %s: leader get: %w", bucket, &jetstream.APIError{
			Code: resp.Error.Code, ErrorCode: jetstream.ErrorCode(resp.Error.ErrCode), Description: resp.Error.Description})
	}
	if resp.Message == nil {
		return nil, jetstream.ErrInvalidJetStreamResponse
	}
	op := jetstream.KeyValuePut
	if len(resp.Message.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(resp.Message.Header)
		if err != nil {
			return nil, err
		}
		switch h.Get("KV-Operation") {
		case "DEL", "PURGE":
			// A deleted key reads as missing, as with KeyValue.Get.
			return nil, jetstream.ErrKeyNotFound
		}
	}
	return &leaderEntry{bucket: bucket, key: key, value: resp.Message.Data, revision: resp.Message.Sequence, created: resp.Message.Time, op: op}, nil
}

// validKey is the KV key grammar: tokens of [-/_=.a-zA-Z0-9], no empty token, no leading or
// trailing dot.
func validKey(key string) bool {
	if key == "" || key[0] == '.' || key[len(key)-1] == '.' {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '/', c == '_', c == '=':
		case c == '.':
			if key[i-1] == '.' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

type leaderEntry struct {
	bucket, key string
	value       []byte
	revision    uint64
	created     time.Time
	op          jetstream.KeyValueOp
}

func (e *leaderEntry) Bucket() string                  { return e.bucket }
func (e *leaderEntry) Key() string                     { return e.key }
func (e *leaderEntry) Value() []byte                   { return e.value }
func (e *leaderEntry) Revision() uint64                { return e.revision }
func (e *leaderEntry) Created() time.Time              { return e.created }
func (e *leaderEntry) Delta() uint64                   { return 0 }
func (e *leaderEntry) Operation() jetstream.KeyValueOp { return e.op }
