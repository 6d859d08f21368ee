package idem

import "errors"

// ErrMismatch is returned by Begin when the key was already used with a
// different fingerprint: the same key, other parameters. HTTP: 422.
var ErrMismatch = errors.New("idem: key reused with different parameters")

// ErrInProgress is returned by Begin (and Finish, Once) when the key's token
// is linked to an outside operation that has not ended (see Link). HTTP: 409.
var ErrInProgress = errors.New("idem: operation still in progress")

// ErrDuplicate is returned by Once when the key already has a token: the
// operation was done before.
var ErrDuplicate = errors.New("idem: operation already done")

// ErrBadKey is returned for a key whose ID is empty, whose parts contain a
// NUL byte, or whose encoded size exceeds Options.MaxKeySize. HTTP: 400.
var ErrBadKey = errors.New("idem: invalid key")

// ErrBadFingerprint is returned for a fingerprint that is neither nil nor
// exactly FingerprintSize bytes long.
var ErrBadFingerprint = errors.New("idem: invalid fingerprint")

// ErrBadRef is returned by Link and Settle for an empty reference or one
// longer than MaxRefSize.
var ErrBadRef = errors.New("idem: invalid reference")

// ErrResultTooLarge is returned by Finish and Settle for a result larger
// than Options.MaxResultSize. Nothing is stored.
var ErrResultTooLarge = errors.New("idem: result too large")

// ErrNotBegun is returned by Finish and Link when the key has no live token
// in the transaction: Begin was not called, or the token expired or was
// forgotten.
var ErrNotBegun = errors.New("idem: no token begun for key")

// ErrFinished is returned by Finish and Link when the token already holds a
// final result.
var ErrFinished = errors.New("idem: token already finished")

// ErrNotLinked is returned by Settle when the key's token is not linked to
// the given reference (it was forgotten, expired, never linked, or linked
// to another operation).
var ErrNotLinked = errors.New("idem: token not linked to this reference")

// ErrNotFound is returned by Lookup when the key has no live token.
var ErrNotFound = errors.New("idem: no such token")

// ErrWrongDB is returned when a transaction of another stm.DB is passed to
// a Tokens method.
var ErrWrongDB = errors.New("idem: transaction belongs to another database")
