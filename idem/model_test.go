package idem_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/zest-stm/zest/idem"
	"github.com/zest-stm/zest/internal/testutil"
	"github.com/zest-stm/zest/stm"
)

// mtoken is the model's token.
type mtoken struct {
	state   string // claimed, done, linked
	fp      string // "" for none
	result  string
	ref     string
	expires time.Time // zero while linked
}

// model is a trivially correct Tokens: a map and the rules of the doc.
type model struct {
	ttl, width time.Duration
	now        time.Time
	m          map[string]mtoken
}

func (md *model) live(k string) (mtoken, bool) {
	t, ok := md.m[k]
	if !ok || (!t.expires.IsZero() && !md.now.Before(t.expires)) {
		return mtoken{}, false
	}
	return t, true
}

var errRollback = errors.New("model: roll back")

// TestModel runs random operations (Begin, Finish, Once, Forget, Link,
// Settle, some in transactions that roll back), clock steps and sweeps
// against Tokens and against the model, and checks after each step that
// the answers and every key's token agree, and that Expire removes exactly
// the tokens whose expiry bucket has passed. The seed is printed;
// IDEM_MODEL_SEED replays one, ZEST_STRESS=1 runs 50 seeds.
func TestModel(t *testing.T) {
	for _, seed := range testutil.Seeds(t, "IDEM_MODEL_SEED") {
		runModel(t, seed, 2000)
	}
}

func runModel(t *testing.T, seed uint64, steps int) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(seed, 0))
	clk := newClock()
	db, tokens := openMem(t, &idem.Options{TTL: time.Hour, Now: clk.Now, Granularity: time.Second, SweepBatch: 3, MaxResultSize: 8})
	md := &model{ttl: time.Hour, width: time.Second, now: clk.Now(), m: map[string]mtoken{}}
	keys := []string{"a", "b", "c", "d"}
	fps := [][]byte{nil, idem.Fingerprint([]byte("x")), idem.Fingerprint([]byte("y"))}
	refs := []string{"r1", "r2"}

	// Weighted: forgetting often would hide what expiry must do.
	ops := []string{"begin", "begin", "begin", "begin", "finish", "finish", "finish", "once", "once",
		"forget", "link", "link", "settle", "settle", "advance", "advance", "expire", "expire"}
	succeeded := map[string]int{} // committed operations that changed a token, by op
	defer func() { t.Logf("seed %d: %v", seed, succeeded) }()
	for step := range steps {
		k := keys[r.IntN(len(keys))]
		key := idem.Key{ID: k}
		fp := fps[r.IntN(len(fps))]
		ref := refs[r.IntN(len(refs))]
		result := []byte(fmt.Sprint(step))
		if r.IntN(10) == 0 {
			result = make([]byte, 9) // over MaxResultSize
		}
		rollback := r.IntN(5) == 0
		where := fmt.Sprintf("seed %d step %d", seed, step)

		var op string
		var got, want error
		var gotRes, wantRes string
		var gotReplay, wantReplay bool
		next := map[string]mtoken{}
		for kk, v := range md.m {
			next[kk] = v
		}
		tok, live := md.live(k)
		op = ops[r.IntN(len(ops))]
		if op == "advance" || op == "expire" {
			rollback = false // not transactions of the caller's
		}
		switch op {
		case "begin":
			err := db.Run(ctx, func(tx *stm.Tx) error {
				res, replay, err := tokens.Begin(tx, key, fp)
				gotRes, gotReplay, got = string(res), replay, err
				if rollback {
					return errRollback
				}
				return nil
			})
			if !rollback {
				require.NoError(t, err, where)
			}
			switch {
			case !live:
				next[k] = mtoken{state: "claimed", fp: string(fp), expires: md.now.Add(md.ttl)}
			case tok.fp != string(fp):
				want = idem.ErrMismatch
			case tok.state == "linked":
				want = idem.ErrInProgress
			default:
				wantRes, wantReplay = tok.result, true
			}
		case "finish", "once", "forget", "link", "settle":
			err := db.Run(ctx, func(tx *stm.Tx) error {
				var err error
				switch op {
				case "finish":
					err = tokens.Finish(tx, key, result)
				case "once":
					err = tokens.Once(tx, key)
				case "forget":
					_, err = tokens.Forget(tx, key)
				case "link":
					err = tokens.Link(tx, key, ref)
				case "settle":
					err = tokens.Settle(tx, key, ref, result)
				}
				got = err
				if rollback {
					return errRollback
				}
				return nil
			})
			if !rollback {
				require.NoError(t, err, where)
			}
			big := len(result) > 8
			switch op {
			case "finish":
				switch {
				case big:
					want = idem.ErrResultTooLarge
				case !live:
					want = idem.ErrNotBegun
				case tok.state == "done":
					want = idem.ErrFinished
				case tok.state == "linked":
					want = idem.ErrInProgress
				default:
					tok.state, tok.result = "done", string(result)
					next[k] = tok
				}
			case "once":
				switch {
				case live && tok.state == "linked":
					want = idem.ErrInProgress
				case live:
					want = idem.ErrDuplicate
				default:
					next[k] = mtoken{state: "done", expires: md.now.Add(md.ttl)}
				}
			case "forget":
				delete(next, k)
			case "link":
				switch {
				case !live:
					want = idem.ErrNotBegun
				case tok.state == "done":
					want = idem.ErrFinished
				case tok.state == "linked":
					want = idem.ErrInProgress
				default:
					tok.state, tok.ref, tok.expires = "linked", ref, time.Time{}
					next[k] = tok
				}
			case "settle":
				switch {
				case big:
					want = idem.ErrResultTooLarge
				case !live || tok.state != "linked" || tok.ref != ref:
					want = idem.ErrNotLinked
				default:
					tok.state, tok.result, tok.expires = "done", string(result), md.now.Add(md.ttl)
					next[k] = tok
				}
			}
		case "advance":
			d := time.Duration(r.IntN(40)) * time.Minute
			if r.IntN(4) == 0 {
				d = time.Duration(r.IntN(3000)) * time.Millisecond
			}
			clk.Advance(d)
			md.now = md.now.Add(d)
		case "expire":
			n, err := tokens.Expire(ctx)
			require.NoError(t, err, where)
			// Expire must remove every token whose expiry bucket has ended;
			// it may also remove another expired token, reached through a
			// stale index entry of its key's earlier token.
			removed := 0
			for kk, v := range md.m {
				if v.state == "linked" || v.expires.IsZero() {
					require.True(t, idem.Stored(tokens, idem.Key{ID: kk}), "%s: %s removed", where, kk)
					continue
				}
				end := v.expires.Truncate(md.width).Add(md.width)
				stored := idem.Stored(tokens, idem.Key{ID: kk})
				switch {
				case !end.After(md.now):
					require.False(t, stored, "%s: %s's bucket has ended, it must be removed", where, kk)
				case md.now.Before(v.expires):
					require.True(t, stored, "%s: %s is live, it must stay", where, kk)
				}
				if !stored {
					delete(next, kk)
					removed++
				}
			}
			require.Equal(t, removed, n, "%s: tokens expired", where)
		}
		if want != nil {
			require.ErrorIs(t, got, want, "%s: %s %s", where, op, k)
		} else {
			require.NoError(t, got, "%s: %s %s", where, op, k)
		}
		require.Equal(t, wantReplay, gotReplay, "%s: %s %s replay", where, op, k)
		require.Equal(t, wantRes, gotRes, "%s: %s %s result", where, op, k)
		if !rollback {
			if want == nil && op != "advance" && !wantReplay {
				succeeded[op]++
			}
			md.m = next
		}

		// Every key's token agrees with the model.
		for _, kk := range keys {
			in, err := tokens.Lookup(ctx, idem.Key{ID: kk})
			mt, ok := md.live(kk)
			if !ok {
				require.ErrorIs(t, err, idem.ErrNotFound, "%s: key %s after %s", where, kk, op)
				continue
			}
			require.NoError(t, err, "%s: key %s after %s", where, kk, op)
			require.Equal(t, mt.state, in.State, "%s: key %s", where, kk)
			require.Equal(t, len(mt.result), in.ResultSize, "%s: key %s", where, kk)
			if mt.state == "linked" || mt.state == "done" && mt.ref != "" {
				require.Equal(t, mt.ref, in.Ref, "%s: key %s", where, kk)
			}
			require.Equal(t, mt.fp != "", in.Fingerprint != "", "%s: key %s", where, kk)
			if mt.expires.IsZero() {
				require.True(t, in.Expires.IsZero(), "%s: key %s", where, kk)
			} else {
				require.True(t, mt.expires.Equal(in.Expires), "%s: key %s expires %v, model %v", where, kk, in.Expires, mt.expires)
			}
		}
		require.Equal(t, len(md.m), idem.Count(tokens), "%s: stored tokens (expired included)", where)
	}
}
