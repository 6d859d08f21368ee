package saga

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/zest-stm/zest/stm"
	"github.com/zest-stm/zest/whilecommit"
)

// Flow is a defined saga: named steps over the state S, registered with one
// Runner.
//
// A Flow is safe for concurrent use once registered: Start is called from
// any transaction.
type Flow[S any] struct {
	name    string
	version int
	steps   []Step[S]
	onEnd   func(tx *stm.Tx, id string, outcome Outcome, s *S) error
	r       *Runner
}

// FlowOptions configure a flow's registration. A nil *FlowOptions selects
// the defaults. OnEnd is called from the goroutines that end sagas, so it
// must be safe for concurrent use.
type FlowOptions[S any] struct {
	// OnEnd runs inside the transaction that ends a saga of the flow (Done,
	// Compensated or Aborted), so that what it writes (an idempotency
	// token's result, say) commits atomically with the end. It runs in a
	// savepoint: an error or panic rolls its writes back and leaves the saga
	// stuck with the reason; an operator's Retry runs it again, Skip ends the
	// saga without it. Default none.
	OnEnd func(tx *stm.Tx, id string, outcome Outcome, s *S) error
}

// Define returns the flow called name, at version, made of steps in order.
// It checks the definition: at least one step, unique non-empty names, each
// step either local (Do) or remote (Call), undo functions of the same kind,
// no negative timeout or retry field, and a state type S that the encoding
// (msgpack) can carry: no unexported fields, functions or channels.
func Define[S any](name string, version int, steps ...Step[S]) (*Flow[S], error) {
	if name == "" {
		return nil, fmt.Errorf("%w: empty flow name", ErrBadFlow)
	}
	if version < 1 {
		return nil, fmt.Errorf("%w: flow %s: version %d, must be 1 or more", ErrBadFlow, name, version)
	}
	if len(steps) == 0 {
		return nil, fmt.Errorf("%w: flow %s has no steps", ErrBadFlow, name)
	}
	seen := make(map[string]bool, len(steps))
	for i, st := range steps {
		switch {
		case st.Name == "":
			return nil, fmt.Errorf("%w: flow %s: step %d has no name", ErrBadFlow, name, i)
		case seen[st.Name]:
			return nil, fmt.Errorf("%w: flow %s: duplicate step name %q", ErrBadFlow, name, st.Name)
		case (st.Do == nil) == (st.Call == nil):
			return nil, fmt.Errorf("%w: flow %s: step %q must set exactly one of Do and Call", ErrBadFlow, name, st.Name)
		case st.Do != nil && (st.CallUndo != nil || st.Query != nil):
			return nil, fmt.Errorf("%w: flow %s: local step %q has a remote undo or query", ErrBadFlow, name, st.Name)
		case st.Call != nil && st.Undo != nil:
			return nil, fmt.Errorf("%w: flow %s: remote step %q has a local undo", ErrBadFlow, name, st.Name)
		case st.Timeout < 0 || st.Retry.MaxAttempts < 0 || st.Retry.Base < 0 || st.Retry.Max < 0:
			return nil, fmt.Errorf("%w: flow %s: step %q has a negative timeout or retry field", ErrBadFlow, name, st.Name)
		}
		seen[st.Name] = true
	}
	if err := checkType(reflect.TypeFor[S](), "S"); err != nil {
		return nil, fmt.Errorf("%w: flow %s: %v", ErrBadState, name, err)
	}
	return &Flow[S]{name: name, version: version, steps: append([]Step[S](nil), steps...)}, nil
}

// checkType refuses what msgpack cannot carry faithfully.
func checkType(t reflect.Type, path string) error {
	switch t.Kind() {
	case reflect.Func, reflect.Chan, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
		return fmt.Errorf("%s has kind %s", path, t.Kind())
	case reflect.Pointer, reflect.Slice, reflect.Array:
		return checkType(t.Elem(), path+"[]")
	case reflect.Map:
		if err := checkType(t.Key(), path+"{key}"); err != nil {
			return err
		}
		return checkType(t.Elem(), path+"{}")
	case reflect.Struct:
		if t == reflect.TypeFor[time.Time]() {
			return nil
		}
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Tag.Get("msgpack") == "-" {
				continue
			}
			if !f.IsExported() {
				return fmt.Errorf("%s.%s is unexported and would be lost", path, f.Name)
			}
			if err := checkType(f.Type, path+"."+f.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// Name returns the flow's name.
func (f *Flow[S]) Name() string { return f.name }

// Version returns the flow's version.
func (f *Flow[S]) Version() int { return f.version }

// Register makes f runnable by r. A flow is registered once, with one
// Runner, before sagas start; several versions of one flow name may be
// registered side by side, so that sagas started under an old version
// finish under it. A saga whose version is not registered runs under the
// newest registered version with the same step names in the same order, or
// goes stuck.
func (f *Flow[S]) Register(r *Runner, opts *FlowOptions[S]) error {
	if f.r != nil {
		return fmt.Errorf("%w: %s version %d is registered with a runner", ErrRegistered, f.name, f.version)
	}
	if opts != nil {
		f.onEnd = opts.OnEnd
	}
	return r.register(f)
}

// Start starts the saga id of flow f in tx, with state s, as part of the
// caller's transaction: the saga exists if and only if tx commits. The
// leading local steps run at once, in tx; the first remote step is
// dispatched through the effect queue with the commit.
//
// Start returns a *DuplicateError (errors.Is(err, ErrDuplicate)) if a saga
// with this id exists, whatever its flow, and changes nothing. Bad input
// (an empty or too long id, a state that does not round-trip or is larger
// than Options.MaxStateSize, a flow not registered) returns an error and
// changes nothing. A panic in a leading local step propagates to the caller.
func (f *Flow[S]) Start(tx *stm.Tx, id string, s S) error {
	if err := tx.Err(); err != nil {
		return err
	}
	r := f.r
	if r == nil {
		return fmt.Errorf("%w: %s version %d", ErrNotRegistered, f.name, f.version)
	}
	if tx.DB() != r.db {
		return ErrWrongDB
	}
	if err := r.checkID(id); err != nil {
		return err
	}
	state, err := f.encode(&s)
	if err != nil {
		return err
	}
	if len(state) > r.opts.MaxStateSize {
		return fmt.Errorf("%w: %d bytes, limit %d (Options.MaxStateSize)", ErrStateTooLarge, len(state), r.opts.MaxStateSize)
	}
	if old, ok := r.sagas.Get(tx, id); ok {
		return &DuplicateError{ID: id, Status: old.status()}
	}
	now := time.Now()
	rec := record{Flow: f.name, Version: f.version, Phase: Running, State: state, Created: now, Updated: now}
	rec.Steps = make([]stepMark, len(f.steps))
	for i, st := range f.steps {
		rec.Steps[i].Name = st.Name
	}
	rec.event(r.opts.MaxHistory, Event{At: now, Kind: EvStarted})
	whilecommit.Do(tx, func() { r.counts.started.Add(1) })
	if err := r.advance(tx, id, &rec, f, nil); err != nil {
		return err
	}
	r.sagas.Put(tx, id, rec)
	whilecommit.Do(tx, r.changed)
	return nil
}

// marshal encodes v with map keys sorted, so that equal values encode to
// equal bytes.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sameEncoding reports whether a and b encode the same value. Maps other
// than of strings to strings or bools encode in Go's random order, so
// different bytes are compared again as generic values.
func sameEncoding(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if msgpack.Unmarshal(a, &va) != nil || msgpack.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// encode encodes s and checks that it round-trips.
func (f *Flow[S]) encode(s *S) ([]byte, error) {
	b, err := marshal(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadState, err)
	}
	var back S
	if err := msgpack.Unmarshal(b, &back); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadState, err)
	}
	again, err := marshal(&back)
	if err != nil || !sameEncoding(b, again) {
		return nil, fmt.Errorf("%w: decoding and encoding again gives different bytes", ErrBadState)
	}
	return b, nil
}

func (f *Flow[S]) decode(b []byte) (*S, error) {
	s := new(S)
	if err := msgpack.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadState, err)
	}
	return s, nil
}

// The flowDef methods: the Runner drives flows of any S through them.

func (f *Flow[S]) def() (string, int)         { return f.name, f.version }
func (f *Flow[S]) numSteps() int              { return len(f.steps) }
func (f *Flow[S]) stepName(i int) string      { return f.steps[i].Name }
func (f *Flow[S]) isRemote(i int) bool        { return f.steps[i].remote() }
func (f *Flow[S]) isPivot(i int) bool         { return f.steps[i].Pivot }
func (f *Flow[S]) hasQuery(i int) bool        { return f.steps[i].Query != nil }
func (f *Flow[S]) runner() *Runner            { return f.r }
func (f *Flow[S]) setRunner(r *Runner)        { f.r = r }
func (f *Flow[S]) hasUndo(i int) bool         { return f.steps[i].Undo != nil || f.steps[i].CallUndo != nil }
func (f *Flow[S]) retry(i int, d Retry) Retry { return f.steps[i].Retry.or(d) }
func (f *Flow[S]) timeout(i int, d time.Duration) time.Duration {
	if t := f.steps[i].Timeout; t > 0 {
		return t
	}
	return d
}

func (f *Flow[S]) classify(i int, err error) (c Class) {
	fn := f.steps[i].Classify
	if fn == nil {
		return DefaultClassify(err)
	}
	defer func() {
		if recover() != nil {
			c = ClassPermanent
		}
	}()
	return fn(err)
}

// local runs local step i (its undo if undo is set) in a savepoint of tx,
// and returns the new encoded state.
func (f *Flow[S]) local(tx *stm.Tx, i int, undo bool, state []byte) ([]byte, error) {
	s, err := f.decode(state)
	if err != nil {
		return nil, err
	}
	fn := f.steps[i].Do
	if undo {
		fn = f.steps[i].Undo
	}
	if err := tx.Savepoint(func(tx *stm.Tx) error { return fn(tx, s) }); err != nil {
		return nil, err
	}
	return f.encode(s)
}

// call makes one remote call (or query) outside any transaction. Panics
// become permanent errors.
func (f *Flow[S]) call(ctx context.Context, i int, c Call, state []byte, query bool) (landed bool, out []byte, err error) {
	s, err := f.decode(state)
	if err != nil {
		return false, nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			landed, out, err = false, nil, permanentf("panic in step %s: %v", f.steps[i].Name, p)
		}
	}()
	st := &f.steps[i]
	switch {
	case query:
		landed, err = st.Query(ctx, c, s)
	case c.Undo:
		err = st.CallUndo(ctx, c, s)
	default:
		err = st.Call(ctx, c, s)
	}
	if err != nil {
		return false, nil, err
	}
	out, err = f.encode(s)
	if err != nil {
		return false, nil, permanentf("step %s: %v", f.steps[i].Name, err)
	}
	return landed, out, nil
}

func (f *Flow[S]) end(tx *stm.Tx, id string, outcome Outcome, state []byte) error {
	if f.onEnd == nil {
		return nil
	}
	s, err := f.decode(state)
	if err != nil {
		return err
	}
	return tx.Savepoint(func(tx *stm.Tx) error { return f.onEnd(tx, id, outcome, s) })
}

// flowDef is a Flow of any state type, as the Runner sees it.
type flowDef interface {
	def() (name string, version int)
	numSteps() int
	stepName(i int) string
	isRemote(i int) bool
	isPivot(i int) bool
	hasUndo(i int) bool
	hasQuery(i int) bool
	retry(i int, d Retry) Retry
	timeout(i int, d time.Duration) time.Duration
	classify(i int, err error) Class
	local(tx *stm.Tx, i int, undo bool, state []byte) ([]byte, error)
	call(ctx context.Context, i int, c Call, state []byte, query bool) (bool, []byte, error)
	end(tx *stm.Tx, id string, outcome Outcome, state []byte) error
	runner() *Runner
	setRunner(r *Runner)
}
