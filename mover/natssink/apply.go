package natssink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zest-stm/zest/mover"
)

// maxScan bounds how many messages of a subject the sink reads to find
// whether its publish landed, after the server refused the chain.
const maxScan = 1000

// Apply implements mover.Sink.
func (s *Sink) Apply(ctx context.Context, d mover.Delivery) error {
	if d.Kind != KindPublish {
		return mover.Permanent(fmt.Errorf("natssink: unknown kind %q", d.Kind))
	}
	subject := d.Key
	if !validSubject(subject) {
		return mover.Permanent(fmt.Errorf("natssink: %q is not a subject to publish to", subject))
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	st, err := s.stream(ctx)
	if err != nil {
		return err
	}
	last, known := s.lastOf(subject)
	if !known {
		// First publish on the subject in this process: read where its chain
		// stands.
		m, err := lastMsg(ctx, st, subject)
		if err != nil {
			return err
		}
		last = tipOf(m)
		s.setLast(subject, last)
	}
	if last.covers(d) {
		// This entry, or a later one of this queue, is already on the
		// subject (a replay after a crash): done.
		return nil
	}
	expected := last.stream
	for try := 0; ; try++ {
		seq, err := s.publish(ctx, subject, expected, d)
		if err == nil {
			s.setLast(subject, tip{stream: seq, writer: d.Writer, seq: d.Seq})
			return nil
		}
		if !wrongLast(err) || try > 0 {
			s.forget(subject) // re-read the chain next time
			return err
		}
		// The subject moved since expected: an earlier attempt of this entry
		// landed, or a message this sink did not know of is there.
		r, err := s.resolve(ctx, st, subject, expected, d)
		if err != nil {
			s.forget(subject)
			return err
		}
		s.setLast(subject, r.newest)
		if r.landed {
			return nil
		}
		expected = r.newest.stream
	}
}

// tip is the last message on a subject, as the sink knows it: its stream
// sequence, and the writer and entry sequence number it carries.
type tip struct {
	stream uint64 // 0: no message
	writer string
	seq    uint64
}

func tipOf(m *jetstream.RawStreamMsg) tip {
	if m == nil {
		return tip{}
	}
	seq, _ := strconv.ParseUint(m.Header.Get(HeaderSeq), 10, 64)
	return tip{stream: m.Sequence, writer: m.Header.Get(HeaderWriter), seq: seq}
}

// covers reports whether the tip is d's message or a later entry of the
// same writer (which, per-subject order being kept, came after d).
func (t tip) covers(d mover.Delivery) bool {
	return t.stream != 0 && d.Writer != "" && t.writer == d.Writer && t.seq >= d.Seq
}

func (s *Sink) publish(ctx context.Context, subject string, expected uint64, d mover.Delivery) (uint64, error) {
	ack, err := s.js.PublishMsg(ctx, s.message(subject, d), s.publishOpts(expected, d)...)
	if err != nil {
		return 0, classify(fmt.Errorf("natssink: publish %s (entry %d): %w", subject, d.Seq, err))
	}
	return ack.Sequence, nil
}

// message is d's message: its payload and headers, the writer and entry
// sequence number among them.
func (s *Sink) message(subject string, d mover.Delivery) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Data = d.Payload
	for k, v := range d.Meta {
		msg.Header.Set(k, v)
	}
	msg.Header.Set(HeaderWriter, d.Writer)
	msg.Header.Set(HeaderSeq, strconv.FormatUint(d.Seq, 10))
	return msg
}

// publishOpts are the options of d's publish: its operation id for the
// server's duplicate window, and the chain on the subject's last sequence.
func (s *Sink) publishOpts(expected uint64, d mover.Delivery) []jetstream.PublishOpt {
	return []jetstream.PublishOpt{
		jetstream.WithMsgID(d.OpID),
		jetstream.WithExpectLastSequencePerSubject(expected),
		jetstream.WithExpectStream(s.opts.Stream),
	}
}

// resolution is what resolve found on a subject after the chain's CAS
// failed.
type resolution struct {
	landed bool // the entry is on the subject
	newest tip  // the subject's newest message
}

// resolve reads the subject's messages after expected. It returns landed if
// the entry is among them; an error of class "conflict" (permanent) if a
// message of another writer is; otherwise (messages of this writer it did
// not track, or messages removed by the stream's limits) the sequence to
// chain on.
func (s *Sink) resolve(ctx context.Context, st jetstream.Stream, subject string, expected uint64, d mover.Delivery) (resolution, error) {
	r := resolution{newest: tip{stream: expected}}
	var foreign *jetstream.RawStreamMsg
	next := expected + 1
	for n := 0; ; n++ {
		if n == maxScan {
			return r, fmt.Errorf("natssink: %s: more than %d messages since sequence %d; will read again", subject, maxScan, expected)
		}
		m, err := st.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return r, classify(fmt.Errorf("natssink: read %s after sequence %d: %w", subject, expected, err))
		}
		r.newest, next = tipOf(m), m.Sequence+1
		if r.newest.covers(d) {
			r.landed = true
		}
		if r.newest.writer != d.Writer && foreign == nil {
			foreign = m
		}
	}
	switch {
	case r.landed:
		return r, nil
	case foreign != nil:
		return r, mover.Permanent(mover.WithClass("conflict", fmt.Errorf(
			"natssink: subject %s has message %d from another writer (%q, not this queue %q) since the sink's last publish (%d): one writer per subject; not published",
			subject, foreign.Sequence, foreign.Header.Get(HeaderWriter), d.Writer, expected)))
	case r.newest.stream == expected:
		// Nothing after expected: the stream dropped messages (limits,
		// purge). Chain on what is there now.
		m, err := lastMsg(ctx, st, subject)
		if err != nil {
			return r, err
		}
		r.newest = tipOf(m)
		r.landed = r.newest.covers(d)
	}
	return r, nil
}

// lastMsg returns the subject's last message, or nil if it has none.
func lastMsg(ctx context.Context, st jetstream.Stream, subject string) (*jetstream.RawStreamMsg, error) {
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, classify(fmt.Errorf("natssink: read the last message of %s: %w", subject, err))
	}
	return m, nil
}

func (s *Sink) lastOf(subject string) (tip, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.mu.last[subject]
	return v, ok
}

func (s *Sink) setLast(subject string, t tip) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mu.last) >= maxKnownSubjects {
		clear(s.mu.last)
	}
	s.mu.last[subject] = t
}

func (s *Sink) forget(subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.last, subject)
}

func wrongLast(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) &&
		(api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// validSubject reports whether s is a subject one can publish to: tokens
// separated by dots, none empty, no wildcards or whitespace.
func validSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n*>") {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" {
			return false
		}
	}
	return true
}

// classify marks errors retrying cannot fix as permanent, and gives the
// others a class (see mover.ErrorClass).
func classify(err error) error {
	var api *jetstream.APIError
	switch {
	case errors.As(err, &api) && wrongLast(err):
		return err
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrBadSubject),
		errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, nats.ErrAuthorization),
		errors.Is(err, nats.ErrPermissionViolation):
		return mover.Permanent(err)
	case errors.As(err, &api) && api.Code >= 400 && api.Code < 500 && api.Code != 408 && api.Code != 429:
		return mover.Permanent(err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return mover.WithClass(mover.ClassTimeout, err)
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse):
		return mover.WithClass("unavailable", err)
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrReconnectBufExceeded):
		return mover.WithClass(mover.ClassNetwork, err)
	}
	return err
}

// The sink does not implement mover.Superseder: messages are appended,
// never replaced, so no entry supersedes another.
var _ mover.Sink = (*Sink)(nil)
