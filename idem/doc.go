// Package idem keeps idempotency tokens by business id, in the same
// transaction as the business writes, so that an operation runs once and
// its duplicates replay its result.
//
// A payment service must not charge the same order twice, however often a
// client retries. Before the work, the body claims a token keyed by
// (scope, business id, scene); the work and the token commit together:
//
//	tokens, _ := idem.New(db, "pay-tokens", nil)
//
//	key := idem.Key{Scope: user, ID: orderID, Scene: "pay"}
//	receipt, err := stm.RunValue(ctx, db, func(tx *stm.Tx) ([]byte, error) {
//		prev, replay, err := tokens.Begin(tx, key, idem.Fingerprint(params))
//		if err != nil || replay {
//			return prev, err // ErrMismatch, ErrInProgress, or the first result
//		}
//		receipt := charge(tx, orderID) // table writes, queue entries
//		return receipt, tokens.Finish(tx, key, receipt)
//	})
//
// Once(tx, key) is the plain rule "the second payment of the same order is
// refused" (ErrDuplicate). Forget(tx, key) and Discard(ctx, key) remove a
// token for operators; Lookup(ctx, key) shows one, and Stats counts the
// answers.
//
// # Guarantees
//
//   - The token commits if and only if the business writes commit: a body
//     that fails rolls the claim back, and a retry runs the operation again.
//     With a durable DB (effectqueue.Open before New) the token is written in
//     the same atomic Badger write as the business tables and queue entries.
//   - Concurrent requests with the same key end with exactly one execution:
//     their transactions conflict on the token, one commits, the others rerun
//     and replay its result.
//   - The same key with another fingerprint is ErrMismatch; a key linked to a
//     running outside operation (Link) is ErrInProgress until Settle stores
//     its final result.
//   - A body that commits after Begin without calling Finish leaves a token
//     with an empty result: the operation ran, so it is not run again.
//   - Bad input (an empty or over-long key, a result over MaxResultSize, a
//     fingerprint of the wrong size) is an error and stores nothing.
//
// # Expiry
//
// A token expires Options.TTL (default 24 h) after it was begun; a linked
// token does not expire until it is settled, then lives TTL more. After
// expiry the key is free: a retry runs the operation again. Expiry holds
// from the expiry time on, whether or not the sweeper has removed the token
// yet. Sweep (run it in a goroutine) removes expired tokens in small
// transactions at a bounded rate, finding them through a time-ordered,
// in-memory index of time buckets, never by scanning the table.
//
// # HTTP
//
// Middleware wraps a net/http handler: it reads the Idempotency-Key header,
// fingerprints method, URI and body, runs the handler in a transaction with
// the token (TxFrom gives the handler its Tx), stores the response and
// replays it to retries, and answers 400, 409 and 422 as the IETF draft
// says.
//
// # Outside operations (sagas)
//
// A token can stand for an operation that outlives its transaction, such as
// a saga. The transaction that starts it calls Begin, then Link(tx, key, ref)
// with the operation's id; until the operation ends, Begin answers
// ErrInProgress. The transaction that ends it calls Settle(tx, key, ref,
// result) (for a saga, from its end hook), and from then on Begin replays
// result. Package idem does not import the saga package.
//
// # Caveats
//
//   - Begin, Finish, Once, Forget, Link and Settle are transaction
//     operations: the body that calls them may run several times, and their
//     effects (including Stats) count only for the attempt that ends.
//   - Lookup, Discard, Expire and Sweep run their own transactions: never
//     call them inside a body.
//   - Tokens live in memory (and on disk if durable): a live token costs
//     about 170 to 195 bytes besides its key, result and fingerprint (see
//     TestMemoryPerToken). Swept tokens give their memory back.
//   - A handler behind Middleware is a transaction body: it may be called
//     more than once per request, must not do I/O other than through the Tx,
//     and its response is sent only after the commit.
//   - Expiry is checked against Options.Now, read once per transaction: all
//     the calls of one transaction see the same time. A clock that steps
//     back keeps tokens longer, one that steps forward expires them early.
package idem
