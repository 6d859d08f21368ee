// Command zest talks to a Zest admin handler (package admin) over HTTP: it
// shows queues, dead letters and engine statistics, replays or discards dead
// letters, pauses and resumes movers, resolves stuck sagas and looks up or
// forgets idempotency tokens.
//
//	zest [--url URL] [--queue NAME] [--json] COMMAND ...
//
//	zest queue                                  queues: head, depth, oldest, dead letters, lanes
//	zest dead ls [--key K] [--after SEQ] [--limit N]
//	zest dead show SEQ [--hex|--base64]
//	zest dead replay SEQ | --all [--key K] [--dry-run]
//	zest dead discard SEQ | --all [--key K] [--dry-run]
//	zest pending ls [--key K] [--after SEQ] [--limit N]
//	zest pending show SEQ
//	zest mover pause|resume
//	zest sagas stuck [--after C] [--limit N] | show ID | resolve ID --action retry|skip|abort --note TEXT [--dry-run]
//	zest tokens get ID [--scope S] [--scene X] | forget ID [--scope S] [--scene X] [--note TEXT] [--dry-run]
//	zest stats                                  engine counters
//	zest actions                                actions recorded by the handler
//	zest inspect --dir DIR [--prefix P] queue|dead ls|dead show SEQ|pending ls|pending show SEQ
//
// --url defaults to $ZEST_ADMIN_URL, else http://127.0.0.1:8080 (the address
// and RootPath the application mounted the handler at). The token in
// $ZEST_ADMIN_TOKEN, when set, is sent as "Authorization: Bearer <token>";
// $USER is sent as the actor recorded with each action. --queue may be left
// out when the server has one queue.
//
// Output is a table for people; --json prints the server's JSON answer for
// scripts. Exit codes: 0 done; 1 failed (server error, network, a batch that
// stopped partway); 2 usage error, or a request the server found malformed;
// 3 not found (queue, entry, saga, token, or a section the server lacks);
// 4 refused (401/403: credentials, read-only handler); 5 conflict (the item is
// not in a state for that action, such as replaying a pending entry).
//
// Flags may come before or after the command's arguments.
//
// # Caveats
//
//   - zest needs the admin handler of the running server; it cannot open the
//     queue's Badger directory while the server holds it. For a stopped
//     server, zest inspect --dir opens the directory read-only (Badger's
//     read-only mode, which refuses a directory another process holds) and
//     answers the read commands; a directory left by a crash, with a log
//     still to replay, must first be opened once by the application.
//   - A batch (--all) acts on the dead letters one by one: if one fails, the
//     ones before it are done, and the answer lists them.
package main
