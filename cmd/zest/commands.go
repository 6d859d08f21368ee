package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/zest-stm/zest/admin"
)

func (c *cli) cmdQueue(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("queue", flag.ContinueOnError)
	if _, err := c.parse(fs, args, 0, 0, "zest queue"); err != nil {
		return err
	}
	path := "queues"
	if c.queue != "" {
		path = "queues/" + url.PathEscape(c.queue)
	}
	raw, err := c.call(ctx, "GET", path, nil, nil)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var qs []admin.QueueSummary
	if c.queue != "" {
		var q admin.QueueSummary
		err = json.Unmarshal(raw, &q)
		qs = []admin.QueueSummary{q}
	} else {
		err = json.Unmarshal(raw, &qs)
	}
	if err != nil {
		return err
	}
	tw := c.table("QUEUE", "HEAD", "DEPTH", "OLDEST", "DEAD", "BLOCKED", "MOVER", "DELIVERED", "RETRIES")
	for _, q := range qs {
		mv, delivered, retries := "-", "-", "-"
		if m := q.Mover; m != nil {
			mv = "running"
			if m.Paused {
				mv = "paused"
			}
			delivered, retries = strconv.FormatUint(m.Delivered, 10), strconv.FormatUint(m.Retries, 10)
		}
		dead := strconv.Itoa(q.DeadLetters)
		if q.DeadLettersCapped {
			dead += "+"
		}
		row(tw, q.Name, q.Head, q.Depth, age(q.OldestAgeSeconds), dead, q.LanesBlocked, mv, delivered, retries)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, q := range qs {
		var failing []admin.LaneState
		for _, l := range q.Lanes {
			if l.Failing {
				failing = append(failing, l)
			}
		}
		if len(failing) == 0 {
			continue
		}
		fmt.Fprintf(c.out, "\nblocked lanes of %s:\n", clean(q.Name))
		tw := c.table("KEY", "SEQ", "KIND", "ATTEMPTS", "NEXT RETRY", "LAST ERROR")
		for _, l := range failing {
			row(tw, l.Key, l.Seq, l.Kind, l.Attempts, when(l.NextRetry), l.LastError)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func (c *cli) cmdDead(ctx context.Context, sub string, args []string) error {
	switch sub {
	case "ls", "list":
		return c.listEntries(ctx, "dead", args)
	case "show":
		return c.showEntry(ctx, "dead", args)
	case "replay", "discard":
		return c.deadAction(ctx, sub, args)
	}
	return usageErr("usage: zest dead ls|show|replay|discard (not %q)", sub)
}

func (c *cli) cmdPending(ctx context.Context, sub string, args []string) error {
	switch sub {
	case "ls", "list":
		return c.listEntries(ctx, "entries", args)
	case "show":
		return c.showEntry(ctx, "entries", args)
	}
	return usageErr("usage: zest pending ls|show (not %q)", sub)
}

func (c *cli) listEntries(ctx context.Context, kind string, args []string) error {
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	key := fs.String("key", "", "only entries of this ordering key")
	after := fs.Uint64("after", 0, "start after this sequence number")
	limit := fs.Int("limit", 100, "entries per page (1-1000)")
	if _, err := c.parse(fs, args, 0, 0, "zest "+cmdName(kind)+" ls [--key K] [--after SEQ] [--limit N]"); err != nil {
		return err
	}
	q, err := c.queueName(ctx)
	if err != nil {
		return err
	}
	v := url.Values{"limit": {strconv.Itoa(*limit)}}
	if *after > 0 {
		v.Set("after", strconv.FormatUint(*after, 10))
	}
	if isSet(fs, "key") {
		v.Set("key", *key)
	}
	var p admin.Page[admin.EntrySummary]
	raw, err := c.call(ctx, "GET", "queues/"+url.PathEscape(q)+"/"+kind+"?"+v.Encode(), nil, &p)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var tw *tabwriter.Writer
	if kind == "dead" {
		tw = c.table("SEQ", "KIND", "KEY", "SIZE", "DEAD AT", "REASON")
		for _, e := range p.Items {
			row(tw, e.Seq, e.Kind, e.Key, e.Size, when(e.DeadAt), e.Reason)
		}
	} else {
		tw = c.table("SEQ", "KIND", "KEY", "SIZE", "COMMITTED", "ATTEMPTS", "LAST ERROR")
		for _, e := range p.Items {
			row(tw, e.Seq, e.Kind, e.Key, e.Size, e.Committed.Local().Format(time.DateTime), e.Attempts, e.LastError)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if p.Next != "" {
		fmt.Fprintf(c.out, "more: --after %s\n", p.Next)
	}
	return nil
}

func cmdName(kind string) string {
	if kind == "entries" {
		return "pending"
	}
	return kind
}

func (c *cli) showEntry(ctx context.Context, kind string, args []string) error {
	fs := flag.NewFlagSet("show", flag.ContinueOnError)
	hex := fs.Bool("hex", false, "payload as hex")
	b64 := fs.Bool("base64", false, "payload as base64")
	pos, err := c.parse(fs, args, 1, 1, "zest "+cmdName(kind)+" show SEQ [--hex|--base64]")
	if err != nil {
		return err
	}
	seq, err := seqArg(pos[0])
	if err != nil {
		return err
	}
	if *hex && *b64 {
		return usageErr("usage: --hex and --base64 exclude each other")
	}
	q, err := c.queueName(ctx)
	if err != nil {
		return err
	}
	path := fmt.Sprintf("queues/%s/%s/%d", url.PathEscape(q), kind, seq)
	if *hex {
		path += "?encoding=hex"
	} else if *b64 {
		path += "?encoding=base64"
	}
	var d admin.EntryDetail
	raw, err := c.call(ctx, "GET", path, nil, &d)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	kv := func(k string, v any) { fmt.Fprintf(tw, "%s\t%s\n", k, clean(fmt.Sprint(v))) }
	kv("seq", d.Seq)
	kv("state", d.State)
	kv("kind", d.Kind)
	kv("key", d.Key)
	kv("op id", d.OpID)
	kv("committed", d.Committed.Local().Format(time.RFC3339))
	if d.State == "dead" {
		kv("dead at", when(d.DeadAt))
		kv("reason", d.Reason)
	}
	if d.Attempts > 0 {
		kv("attempts", d.Attempts)
		kv("last error", d.LastError)
		kv("next retry", when(d.NextRetry))
	}
	keys := make([]string, 0, len(d.Meta))
	for k := range d.Meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kv("meta "+k, d.Meta[k])
	}
	trunc := ""
	if d.Payload.Truncated {
		trunc = ", truncated"
	}
	kv("payload", fmt.Sprintf("%d bytes, %s%s", d.Payload.Size, d.Payload.Encoding, trunc))
	if err := tw.Flush(); err != nil {
		return err
	}
	// The payload is shown whole, but with terminal control characters
	// escaped: an entry must not be able to drive the operator's terminal.
	fmt.Fprintln(c.out, cleanBlock(d.Payload.Data))
	return nil
}

func seqArg(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, usageErr("usage: %q is not a sequence number", s)
	}
	return n, nil
}

func (c *cli) deadAction(ctx context.Context, action string, args []string) error {
	fs := flag.NewFlagSet(action, flag.ContinueOnError)
	all := fs.Bool("all", false, "every dead letter (of --key, when given)")
	key := fs.String("key", "", "with --all: only this ordering key")
	dry := fs.Bool("dry-run", false, "show what would be done; change nothing")
	what := "zest dead " + action + " SEQ | --all [--key K] [--dry-run]"
	pos, err := c.parse(fs, args, 0, 1, what)
	if err != nil {
		return err
	}
	keySet := isSet(fs, "key")
	if keySet && !*all {
		return usageErr("usage: --key needs --all (%s)", what)
	}
	if (len(pos) == 1) == *all {
		return usageErr("usage: give a sequence number or --all (%s)", what)
	}
	q, err := c.queueName(ctx)
	if err != nil {
		return err
	}
	qp := "queues/" + url.PathEscape(q) + "/dead/"
	if len(pos) == 1 {
		seq, err := seqArg(pos[0])
		if err != nil {
			return err
		}
		if *dry {
			// Show the one it would act on; a missing one fails as the
			// real action would.
			var d admin.EntryDetail
			raw, err := c.call(ctx, "GET", fmt.Sprintf("%s%d", qp, seq), nil, &d)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			fmt.Fprintf(c.out, "dry run: would %s dead letter %d (key %s)\n", action, seq, clean(d.Key))
			return nil
		}
		var r admin.ReplayResult
		raw, err := c.call(ctx, "POST", fmt.Sprintf("%s%d/%s", qp, seq, action), struct{}{}, &r)
		if err != nil {
			return err
		}
		if c.json {
			return c.printJSON(raw)
		}
		if action == "replay" {
			fmt.Fprintf(c.out, "replayed %d as %d\n", r.Seq, r.NewSeq)
		} else {
			fmt.Fprintf(c.out, "discarded %d\n", r.Seq)
		}
		return nil
	}
	body := map[string]any{"dryRun": *dry}
	if keySet {
		body["key"] = *key
	} else {
		body["all"] = true
	}
	var res admin.BatchResult
	raw, err := c.call(ctx, "POST", qp+action, body, &res)
	if err != nil {
		return err
	}
	if c.json {
		if err := c.printJSON(raw); err != nil {
			return err
		}
	} else {
		verb := map[string]string{"replay": "replayed", "discard": "discarded"}[action]
		if res.DryRun {
			verb = "would " + action
		}
		tw := c.table("SEQ", "NEW SEQ")
		for _, r := range res.Done {
			n := "-"
			if r.NewSeq != 0 {
				n = strconv.FormatUint(r.NewSeq, 10)
			}
			row(tw, r.Seq, n)
		}
		if len(res.Done) > 0 {
			if err := tw.Flush(); err != nil {
				return err
			}
		}
		fmt.Fprintf(c.out, "%s %d dead letter(s)\n", verb, len(res.Done))
	}
	if res.Error != "" {
		return fmt.Errorf("stopped after %d: %s", len(res.Done), res.Error)
	}
	return nil
}

func (c *cli) cmdMover(ctx context.Context, sub string, args []string) error {
	if sub != "pause" && sub != "resume" {
		return usageErr("usage: zest mover pause|resume (not %q)", sub)
	}
	fs := flag.NewFlagSet("mover", flag.ContinueOnError)
	if _, err := c.parse(fs, args, 0, 0, "zest mover "+sub); err != nil {
		return err
	}
	q, err := c.queueName(ctx)
	if err != nil {
		return err
	}
	var r struct {
		Paused bool `json:"paused"`
	}
	raw, err := c.call(ctx, "POST", "queues/"+url.PathEscape(q)+"/mover/"+sub, struct{}{}, &r)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	state := "running"
	if r.Paused {
		state = "paused"
	}
	fmt.Fprintf(c.out, "mover of %s: %s\n", clean(q), state)
	return nil
}

func (c *cli) cmdStats(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	if _, err := c.parse(fs, args, 0, 0, "zest stats"); err != nil {
		return err
	}
	var s admin.EngineStats
	raw, err := c.call(ctx, "GET", "stats", nil, &s)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	tw := c.table("COUNTER", "VALUE")
	row(tw, "commits", s.Commits)
	row(tw, "rollbacks", s.Rollbacks)
	row(tw, "panics", s.Panics)
	row(tw, "canceled", s.Canceled)
	row(tw, "redo limit", s.RedoLimit)
	row(tw, "serial mode", s.SerialMode)
	row(tw, "reruns", s.Reruns)
	for _, k := range sortedKeys(s.RerunsByCause) {
		row(tw, "reruns: "+k, s.RerunsByCause[k])
	}
	for _, k := range sortedKeys(s.Conflicts) {
		t := k
		if t == "" {
			t = "(no table)"
		}
		row(tw, "conflicts: "+t, s.Conflicts[k])
	}
	row(tw, "attempts p50/p90/p99/max", fmt.Sprintf("%d/%d/%d/%d", s.AttemptsP50, s.AttemptsP90, s.AttemptsP99, s.AttemptsMax))
	return tw.Flush()
}

func (c *cli) cmdActions(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("actions", flag.ContinueOnError)
	if _, err := c.parse(fs, args, 0, 0, "zest actions"); err != nil {
		return err
	}
	var as []admin.ActionRecord
	raw, err := c.call(ctx, "GET", "actions", nil, &as)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	tw := c.table("TIME", "WHO", "ACTION", "NOTE", "STATUS", "ERROR")
	for _, a := range as {
		row(tw, a.Time.Local().Format(time.DateTime), a.Actor, a.Path, a.Note, a.Status, a.Error)
	}
	return tw.Flush()
}

func sortedKeys(m map[string]uint64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func (c *cli) table(headers ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(headers, "\t"))
	return tw
}

// row writes one table row, each cell cleaned and cut to 80 characters.
func row(tw *tabwriter.Writer, cells ...any) {
	s := make([]string, len(cells))
	for i, v := range cells {
		t := clean(fmt.Sprint(v))
		if r := []rune(t); len(r) > 80 {
			t = string(r[:79]) + "…"
		}
		if t == "" {
			t = "-"
		}
		s[i] = t
	}
	fmt.Fprintln(tw, strings.Join(s, "\t"))
}

// clean escapes control characters (tabs and newlines included), so that a
// value from the server can neither break a table nor send escape sequences
// to the terminal.
func clean(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// cleanBlock is clean for a multi-line block: newlines and tabs stay.
func cleanBlock(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		parts := strings.Split(l, "\t")
		for j, p := range parts {
			parts[j] = clean(p)
		}
		lines[i] = strings.Join(parts, "\t")
	}
	return strings.Join(lines, "\n")
}

func age(sec float64) string {
	if sec == 0 {
		return "0s"
	}
	return (time.Duration(sec * float64(time.Second))).Round(time.Millisecond).String()
}

func when(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}
