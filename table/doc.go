// Package table gives typed, transactional tables on top of package stm: a
// Table[K, V] maps keys to values, and every method takes the *stm.Tx of the
// body it runs in.
//
//	bags, _ := table.New[string, Bag](db, "bags") // Bag holds a map: it has Clone()
//	err := db.Run(ctx, func(tx *stm.Tx) error {
//		bag, _ := bags.Get(tx, "alice") // a private copy
//		bag.Items["potion"]--
//		bags.Put(tx, "alice", bag)
//		return nil
//	})
//
// # Guarantees
//
//   - Serializable with the rest of the transaction, including the key set:
//     Len and Scan conflict with any insert or delete they did not see,
//     even after the transaction's own writes (no phantoms, no write skew
//     through "if Len < N { Put }").
//   - Inserts of different keys do not conflict with each other, unless
//     they fall in the same one of 128 key-set stripes and commit at the
//     same moment (then one reruns). A Get of an absent key is invalidated by
//     an insert of a key of its stripe.
//   - Values are private copies (see Table). Value types holding references
//     must implement Clone, or New refuses them.
//   - Memory follows the live keys: a Get of an absent key creates nothing,
//     and the records of deleted keys are reclaimed (the index is rebuilt
//     once they outnumber the live ones), so Len of an emptied table is
//     fast again. The exception is the dense layout (below).
//   - Integer keys that are small and close together (ids handed out in
//     order: below twice the number of records when first written) are kept
//     in place, in chunks of 512 records found through a small directory:
//     a lookup reads one cache line, without hashing. Other keys (sparse
//     player ids, negative numbers, strings) go to a hash index whose slots
//     keep each key's hash, so a probe reads no other record.
//   - Durable tables (NewDurable) commit in the same atomic write as the
//     effect queue's entries, under the queue's key prefix, and are loaded
//     on open. NewDurable refuses a value type that msgpack would not give
//     back as written (an unexported field, an interface).
//
// # Caveats
//
//   - Methods panic with an error wrapping stm.ErrWrongDB when given a Tx of
//     another DB, and with stm.ErrTxDone after the body returned.
//   - Scan visits keys in no particular order.
//   - A rebuild of the index can make a transaction that read a reclaimed
//     record rerun once.
//   - Records of the dense layout are not reclaimed: a table that once held
//     keys 0..N-1 keeps their chunks (about 64 bytes a key for 8-byte keys
//     and values) after the keys are deleted, and Len and Scan walk them.
//   - Tables made with New live in memory only.
package table
