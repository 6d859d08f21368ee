package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Exit codes.
const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	exitNotFound = 3
	exitRefused  = 4
	exitConflict = 5
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// cli is one invocation: its global settings and where it writes.
type cli struct {
	base    string // the handler's URL, without a trailing slash
	token   string
	actor   string
	queue   string
	json    bool
	timeout time.Duration
	out     io.Writer
	errw    io.Writer
	http    *http.Client
}

// exitError carries an exit code with its message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErr(format string, a ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, a...)}
}

const usage = `usage: zest [--url URL] [--queue NAME] [--json] COMMAND ...

  queue                                   queues: head, depth, oldest entry, dead letters, lanes
  dead ls [--key K] [--after SEQ] [--limit N]
  dead show SEQ [--hex|--base64]
  dead replay SEQ | --all [--key K] [--dry-run]
  dead discard SEQ | --all [--key K] [--dry-run]
  pending ls [--key K] [--after SEQ] [--limit N]
  pending show SEQ
  mover pause|resume
  sagas stuck [--after C] [--limit N]
  sagas show ID
  sagas resolve ID --action retry|skip|abort --note TEXT [--dry-run]
  tokens get ID [--scope S] [--scene X]
  tokens forget ID [--scope S] [--scene X] [--note TEXT] [--dry-run]
  stats                                   engine counters
  actions                                 actions recorded by the handler
  inspect --dir DIR [--prefix P] queue|dead ...|pending ...
                                          read a stopped server's queue directory

--url defaults to $ZEST_ADMIN_URL, else http://127.0.0.1:8080; the token in
$ZEST_ADMIN_TOKEN is sent as a bearer token.
Exit codes: 0 done, 1 failed, 2 usage or malformed request, 3 not found,
4 refused (credentials, read-only), 5 conflict.
`

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &cli{out: stdout, errw: stderr, http: &http.Client{}}
	fs := flag.NewFlagSet("zest", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	def := getenv("ZEST_ADMIN_URL")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	fs.StringVar(&c.base, "url", def, "admin handler URL")
	fs.StringVar(&c.queue, "queue", "", "queue name (default: the server's only queue)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "timeout of each request")
	help := fs.Bool("help", false, "show usage")
	if err := fs.Parse(args); err != nil || *help || fs.NArg() == 0 {
		if err != nil {
			fmt.Fprintf(stderr, "zest: %v\n", err)
		}
		fmt.Fprint(stderr, usage)
		if *help {
			return exitOK
		}
		return exitUsage
	}
	c.base = strings.TrimSuffix(c.base, "/")
	if u, err := url.Parse(c.base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "zest: --url %q is not an http(s) URL\n", c.base)
		return exitUsage
	}
	c.token = getenv("ZEST_ADMIN_TOKEN")
	c.actor = getenv("USER")
	err := c.dispatch(ctx, fs.Arg(0), fs.Args()[1:])
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		fmt.Fprintf(stderr, "zest: %s\n", ee.msg)
		if ee.code == exitUsage && strings.HasPrefix(ee.msg, "usage") {
			fmt.Fprint(stderr, usage)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "zest: %v\n", err)
	return exitFailed
}

func (c *cli) dispatch(ctx context.Context, cmd string, args []string) error {
	sub := func() (string, []string, error) {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return "", nil, usageErr("usage: zest %s needs a subcommand", cmd)
		}
		return args[0], args[1:], nil
	}
	switch cmd {
	case "queue", "queues":
		return c.cmdQueue(ctx, args)
	case "dead":
		s, rest, err := sub()
		if err != nil {
			return err
		}
		return c.cmdDead(ctx, s, rest)
	case "pending":
		s, rest, err := sub()
		if err != nil {
			return err
		}
		return c.cmdPending(ctx, s, rest)
	case "mover":
		s, rest, err := sub()
		if err != nil {
			return err
		}
		return c.cmdMover(ctx, s, rest)
	case "sagas", "saga":
		s, rest, err := sub()
		if err != nil {
			return err
		}
		return c.cmdSagas(ctx, s, rest)
	case "tokens", "token":
		s, rest, err := sub()
		if err != nil {
			return err
		}
		return c.cmdTokens(ctx, s, rest)
	case "inspect":
		return c.inspect(ctx, args)
	case "stats":
		return c.cmdStats(ctx, args)
	case "actions":
		return c.cmdActions(ctx, args)
	case "help":
		fmt.Fprint(c.out, usage)
		return nil
	}
	return usageErr("usage: unknown command %q", cmd)
}

// parse parses a command's flags, which may come before, between or after
// its positional arguments, and checks the number of positional ones. The
// global --json and --queue are accepted there too.
func (c *cli) parse(fs *flag.FlagSet, args []string, minPos, maxPos int, what string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.BoolVar(&c.json, "json", c.json, "print JSON")
	fs.StringVar(&c.queue, "queue", c.queue, "queue name")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageErr("usage: %s: %v", what, err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) < minPos || len(pos) > maxPos {
		return nil, usageErr("usage: %s", what)
	}
	return pos, nil
}

// apiError is the server's {"error": "..."}.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// call sends a request to the API and decodes the answer into out. It returns
// the raw JSON too, for --json. An error answer becomes an exitError with the
// code of its status.
func (c *cli) call(ctx context.Context, method, path string, body any, out any) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/api/"+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if method == http.MethodPost {
		req.Header.Set("X-Zest-Admin", "1")
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.actor != "" {
		req.Header.Set("X-Zest-Actor", c.actor)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, req.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		if len(msg) > 500 {
			msg = msg[:500] + "..."
		}
		return nil, &exitError{code: codeOf(resp.StatusCode), msg: fmt.Sprintf("%s (HTTP %d)", msg, resp.StatusCode)}
	}
	if !json.Valid(raw) {
		return nil, fmt.Errorf("%s %s: the answer is not JSON (is --url the admin handler?)", method, req.URL)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("%s %s: the answer is not what zest expects (is --url the admin handler?): %w", method, req.URL, err)
		}
	}
	return raw, nil
}

func codeOf(status int) int {
	switch status {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType, http.StatusMethodNotAllowed:
		return exitUsage
	case http.StatusNotFound:
		return exitNotFound
	case http.StatusUnauthorized, http.StatusForbidden:
		return exitRefused
	case http.StatusConflict:
		return exitConflict
	}
	return exitFailed
}

// printJSON writes raw indented.
func (c *cli) printJSON(raw json.RawMessage) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err := c.out.Write(b.Bytes())
	return err
}

// queueName returns --queue, or the server's only queue.
func (c *cli) queueName(ctx context.Context) (string, error) {
	if c.queue != "" {
		return c.queue, nil
	}
	var qs []struct {
		Name string `json:"name"`
	}
	if _, err := c.call(ctx, "GET", "queues", nil, &qs); err != nil {
		return "", err
	}
	switch len(qs) {
	case 1:
		return qs[0].Name, nil
	case 0:
		return "", &exitError{code: exitNotFound, msg: "the server shows no queue"}
	}
	names := make([]string, len(qs))
	for i, q := range qs {
		names[i] = q.Name
	}
	return "", usageErr("usage: the server has several queues (%s): choose one with --queue", strings.Join(names, ", "))
}
