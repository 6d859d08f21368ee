// Package admin is Zest's operator console, embedded: an http.Handler that an
// application mounts on its own mux, serving a JSON API and one HTML page
// (from embed.FS, vanilla JavaScript, no build step) over its effect queues,
// movers, engine statistics, and the sections other packages add (stuck
// sagas, idempotency tokens).
//
//	h := admin.Handler(&admin.Options{
//		RootPath:  "/admin",
//		DB:        db,
//		Queues:    map[string]*effectqueue.Queue{"main": q},
//		Movers:    map[string]*mover.Mover{"main": m},
//		Authorize: func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+token },
//	})
//	mux.Handle("/admin/", h)
//
// The command zest (cmd/zest) is a client of the same API.
//
// # The API
//
// Under RootPath/api/:
//
//	GET  overview                          everything the page shows, in one answer
//	GET  queues, queues/{q}                summary: head, depth, oldest age, dead letters, lanes, mover
//	GET  queues/{q}/entries?after&limit&key   pending entries, paged
//	GET  queues/{q}/entries/{seq}          one entry with its payload (?encoding=hex|base64)
//	GET  queues/{q}/dead?after&limit&key   dead letters, paged
//	GET  queues/{q}/dead/{seq}             one dead letter with its payload
//	POST queues/{q}/dead/{seq}/replay      put it back at the tail (new seq, same op id)
//	POST queues/{q}/dead/{seq}/discard     delete it for good
//	POST queues/{q}/dead/replay            {"key": K} or {"all": true}, "dryRun": bool
//	POST queues/{q}/dead/discard           same selection
//	POST queues/{q}/mover/pause, resume
//	GET  stats                             engine counters
//	GET  actions                           the recent state-changing requests
//	...  {section}/...                     a Section's routes
//
// Lists answer {"items": [...], "next": "<cursor>"}; pass next as "after" for
// the next page. Errors answer {"error": "..."} with 400 (malformed: bad
// number, paging, body, unknown parameter), 404 (no such queue, entry or
// path), 405, 409 (an action on an entry in the wrong state, such as
// replaying a pending entry), 415 (a POST body that is not JSON), 401/403
// (Authorize, ReadOnly, a POST without the X-Zest-Admin header) or 501. A
// refused or malformed request changes nothing.
//
// # Safety
//
//   - GET never changes anything. Every POST needs the header
//     "X-Zest-Admin: 1", which the page and the CLI send and a cross-site
//     form cannot; the handler grants no CORS, so a cross-site script cannot
//     send it either. Bodies must be JSON.
//   - ReadOnly refuses every non-GET with 403, and the page shows no
//     actions.
//   - Authorize runs first, for the page too: 401 when the request carried
//     no Authorization header, 403 when it did.
//   - Every POST is recorded (who, path, status, error): logged at Info (Warn
//     when refused) and kept in memory for GET actions (the last 200).
//   - Payloads are shown capped (Options.MaxPayload), text as text and
//     anything else as base64 or hex; the page puts every server value into
//     the document as text, never as HTML, and sends a
//     Content-Security-Policy that allows no inline script.
//
// # Sections
//
// A Section adds routes under RootPath/api/<name>/ and a panel to the page,
// described by a View (counters, a list with row actions, a lookup form). The
// routes get the same authorization, read-only and CSRF checks. SagaSection
// and IdemSection are the sections of packages saga and idem.
//
// # Caveats
//
//   - The summary's dead-letter count is the queue's own (kept without
//     scans); its lanes come from the first 2,000 pending entries: with more
//     the page shows the lanes of the oldest entries only.
//   - Lanes come from Mover.Lanes for a queue with a mover; without one, from
//     the retry state persisted with each key's head entry (attempts, last
//     error, next retry). Either way a lane shows as blocked from its first
//     failed attempt.
//   - Replaying a dead letter puts it at the tail: it is delivered after
//     every entry committed before the replay, including newer ones of the
//     same key. Replay-all of a key keeps the key's dead letters in their
//     original order among themselves.
//   - A batch acts on the dead letters one by one; if one fails, those before
//     it stay done, and the answer says where it stopped.
//   - Pausing a mover is not persisted (see mover.Mover.Pause): after a
//     restart it runs again, unless the application sets
//     mover.Options.StartPaused.
//   - The record of actions lives in memory: it is lost on restart (the log
//     keeps it).
//   - With a nil Authorize, anyone who reaches the handler can act: mount it
//     only on a listener that only operators reach.
//   - The default Actor believes the X-Zest-Actor header that the client
//     sends: for a record of who did what that holds up, set Options.Actor
//     from your authentication.
package admin
