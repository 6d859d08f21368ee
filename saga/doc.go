// Package saga runs business operations that call several outside systems
// and change local state, where a later step can fail and the earlier ones
// must be undone: flows of named local and remote steps over an explicit
// state struct, with compensation in reverse order, bounded persisted
// retries, a pivot, and manual resolution of what cannot finish by itself.
//
//	type Order struct{ SKU string; Qty, Price int; PriceRef string }
//
//	flow, _ := saga.Define("order", 1,
//		saga.Step[Order]{Name: "price", Call: setPrice, CallUndo: restorePrice, Query: priceLanded},
//		saga.Step[Order]{Name: "stock", Call: takeStock, CallUndo: returnStock},
//		saga.Local("product", updateProduct, nil), // a transaction body
//	)
//	r, _ := saga.New(db, q, nil)
//	flow.Register(r, nil)
//	m, _ := mover.New(q, map[string]mover.Sink{saga.Kind: r.Sink()}, nil)
//	go m.Run(ctx)
//	go r.Run(ctx) // fires retries
//
//	err := db.Run(ctx, func(tx *stm.Tx) error {
//		return flow.Start(tx, "order-42", Order{SKU: "potion", Qty: 1, Price: 90})
//	})
//
// This is Zeze's rule for a transaction that needs an unsafe call —
// proc1, rpc, then proc2 or proc1_undo, scheduled outside the transaction —
// and compensating transactions in general, without a server, without a
// second store and without replaying user code.
//
// # How it works
//
// A saga is one record in a durable table (table.NewDurable), keyed by its
// id. The record holds the flow's name and version, the cursor (the step
// being done or undone), what happened to each step, the encoded state, the
// retry state (attempts, next retry, last error, whether the last outcome
// was ambiguous), and a history.
//
// Local steps run inside a transaction: Start runs the leading ones in the
// caller's transaction; later ones run in the transaction that records the
// result of the remote step before them. Each runs in a savepoint, so an
// error rolls back only its own writes. Its writes, the new cursor and the
// dispatch of the next remote step commit together, in one Badger write:
// a local step runs exactly once.
//
// A remote step is dispatched by enqueueing an entry of Kind "saga.call"
// with ordering key "saga/<id>" and a token, in the same transaction. The
// application's mover hands it to the runner's Sink, which reads the saga,
// drops the entry if the saga no longer waits for that token (a duplicate,
// a replay), makes one attempt outside any transaction, and records the
// outcome in a transaction of its own, which also runs the next local steps
// and dispatches the next call. A failure that will be retried is recorded
// with its backoff (next retry time, attempts, error) and the entry is
// acked; Runner.Run fires the retry when it is due by dispatching a new
// entry, and after a restart it re-arms the timers from the records.
//
// Why a mover Sink and not a dispatcher of our own: a queue has one
// consumer cursor, and an application's mover already consumes the queue
// (it dead-letters kinds it has no sink for), so a second reader would
// fight it. The mover's per-key lanes give, for the saga id as key, one
// attempt in flight per saga and per-saga order, with parallelism across
// sagas; its lease and MayHaveLanded flag tell the sink about an attempt cut
// short by a crash. Its own retry and backoff are not used for step
// failures: they are bounded by one global policy, counted per entry and
// end in dead letters, while a saga's retries follow the step's policy, are
// persisted with the saga, and end in compensation or Stuck. A failed
// attempt therefore frees the mover's worker and lane at once; only a
// failure to record an outcome (the DB stopped) is left to the mover's
// retries.
//
// # Guarantees
//
//   - Start is idempotent by id: a second start returns ErrDuplicate with
//     the existing status (a *DuplicateError), even from concurrent
//     transactions, whatever the flow.
//   - A local step runs exactly once, atomically with the saga's progress.
//   - At most one attempt of one saga is in flight at a time, in order.
//   - Each remote operation has an OpID ("<flow>/<id>/<step>/do" or
//     ".../undo") that is the same across retries, restarts and crash replays.
//   - Retries are bounded (Retry.MaxAttempts), capped exponential with
//     jitter, and persisted: a restart does not reset them.
//   - Errors are permanent (mover.Permanent, or a step's Classify),
//     retryable, or ambiguous (timeouts, Ambiguous): after an ambiguous
//     failure or a crash during a call, the next attempt asks the step's
//     Query, if any, and otherwise calls again with the same OpID.
//   - A forward step that fails permanently or exhausts its attempts starts
//     compensation: the failed step (it may have landed) and the steps done
//     before it are undone in reverse order. A step that never ran, or has no
//     undo, is passed over (null compensation). A late success of an
//     abandoned step is covered because its undo runs anyway.
//   - After a Pivot step has succeeded, the saga never compensates: later
//     failures retry and then leave it Stuck.
//   - An undo that fails permanently or exhausts its attempts, a failure
//     after the pivot, an OnEnd that fails, and a saga whose recorded steps
//     match no registered version of its flow leave the saga Stuck with the
//     reason, counted, reported to Options.OnStuck, listed by ListStuck. An
//     operator resolves it with Retry, Skip or Abort; the resolution is in
//     the history with who and why.
//   - OnEnd runs inside the transaction that ends the saga (Done,
//     Compensated, Aborted), so a token or a result written there commits
//     atomically with the end.
//
// # What the remote side must provide
//
// Calls are at least once: a crash between the call and the record of its
// outcome repeats it. The remote side must apply one OpID once (an
// idempotency key, sent as a header), or the step must have a Query that
// tells whether an OpID landed. An undo must succeed when the forward
// operation never happened, and should leave a tombstone so that a forward
// request with that OpID arriving late (a request that outlived its
// timeout) is refused.
//
// # Remote calls inside a transaction
//
// A body may run several times and may roll back, so it must not change
// anything outside (stm's rule). A call that changes nothing and is safe to
// repeat (a read: a price, a profile) may run in a body; its answer is
// simply read again on a rerun. To avoid calling again on each rerun of one
// Run, keep the answer in a Memo created outside the body:
//
//	var m saga.Memo
//	err := db.Run(ctx, func(tx *stm.Tx) error {
//		price, err := saga.Remember(&m, "price:potion", func() (int, error) { return prices.Get(ctx, "potion") })
//		...
//	})
//
// A call that changes something belongs in a remote step.
//
// # Caveats
//
//   - Run a mover with the runner's Sink registered under Kind, and
//     Runner.Run; without Run, retries wait. Mover options bound parallelism
//     (Concurrency) across sagas.
//   - An attempt cut short by a crash is not counted: Call.Attempt can
//     repeat, and MayHaveLanded is set.
//   - A local step's error is final: before the pivot it compensates at once
//     (it was decided on a consistent snapshot), after the pivot it is stuck.
//     A panic in a leading local step run by Start propagates to the caller,
//     rolling back the caller's transaction; elsewhere a panic in user code
//     is recorded as the step's failure (a permanent one for remote calls).
//   - A remote step may change the state; the change is kept only when the
//     call (or its Query) succeeds.
//   - The state is encoded with msgpack and must round-trip: exported
//     fields of plain types. It is limited to Options.MaxStateSize; the
//     history to Options.MaxHistory events.
//   - Records of ended sagas are kept (they make Start idempotent); nothing
//     expires them yet.
//   - Counters are updated by hooks after each commit and may trail what a
//     transaction sees by a moment.
//   - If the mover dead-letters a "saga.call" entry (it could not record an
//     outcome MaxAttempts times), the saga waits; replay the dead letter.
package saga
