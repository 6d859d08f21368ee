// Package natssink is the mover's sink for NATS JetStream: each entry is
// published as one message to a stream, in commit order per subject. It is
// the transactional-outbox ("local message table") pattern: the message is
// written in the business transaction's queue, and published once that
// commits.
//
//	sink, _ := natssink.New(&natssink.Options{URL: "nats://127.0.0.1:4222", Stream: "PURCHASES"})
//	_ = sink.Check(ctx)                 // says clearly what is wrong
//	m, _ := mover.New(q, map[string]mover.Sink{"nats": sink}, nil)
//	...
//	q.Enqueue(tx, natssink.Publish("purchases.alice", body, nil))
//
// # Exactly once, in order
//
// The ordering key of an entry is its subject: entries on one subject are
// published one at a time, in commit order.
//
//   - Every message carries Nats-Msg-Id = the entry's operation id, so a
//     retry within the stream's duplicate window is not stored twice.
//   - Every publish on a subject also carries
//     Nats-Expected-Last-Subject-Sequence = the stream sequence of the last
//     message the sink knows on that subject (read from the stream the first
//     time). The server refuses the publish if another message landed on
//     the subject since, so a retry after the window, or the replay of an
//     entry pending at a crash, cannot store a duplicate either: the sink
//     then reads what landed, and finds its own message (headers Zest-Writer
//     = the queue's id and Zest-Seq = the entry's sequence number).
//   - If the subject holds a message of another writer that this sink did
//     not know of, the publish is refused and the entry dead-lettered with
//     the reason (class "conflict"): one writer per subject, as with object
//     keys. The sink then re-reads the subject, so later entries go on.
//
// # Pipelined publishes
//
// The sink is a mover.BatchSink: the mover hands it the head entries of
// several subjects at once (Options.BatchSize of package mover, one entry
// per subject), and it publishes them all before it waits for their acks,
// each with its own id and chain exactly as above. Round trips overlap, so
// 16 lanes keep up to 256 publishes in flight, while per-subject order
// stays one message at a time.
//
// # Configuration
//
// Options, or the environment: ZEST_NATS_URL, ZEST_NATS_STREAM,
// ZEST_NATS_USER and ZEST_NATS_PASSWORD, ZEST_NATS_TOKEN, ZEST_NATS_CREDS (a
// credentials file), ZEST_NATS_CA (a CA file for TLS), ZEST_NATS_CREATE_STREAM
// and ZEST_NATS_DUPLICATE_WINDOW. Credentials are never logged.
//
// # Caveats
//
//   - The subject of an entry is its ordering key. Entries that must keep
//     their order relative to each other need the same subject.
//   - A stream whose limits drop messages (MaxMsgsPerSubject, MaxAge) may
//     drop the message the chain expects; the sink notices (the subject's
//     last message is older than it knew), re-reads it and publishes.
//   - While the connection is down, publishes fail at once (no client-side
//     buffer) and the mover retries them with backoff.
package natssink
