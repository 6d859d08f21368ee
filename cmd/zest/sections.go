package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"strconv"
)

// The sagas and tokens commands talk to the admin sections of packages saga
// and idem (admin.SagaSection, admin.IdemSection). A server without them
// answers 404, which zest reports as "not found" (exit 3).

func (c *cli) cmdSagas(ctx context.Context, sub string, args []string) error {
	switch sub {
	case "stuck":
		fs := flag.NewFlagSet("stuck", flag.ContinueOnError)
		after := fs.String("after", "", "start after this cursor")
		limit := fs.Int("limit", 100, "sagas per page (1-1000)")
		if _, err := c.parse(fs, args, 0, 0, "zest sagas stuck [--after C] [--limit N]"); err != nil {
			return err
		}
		v := url.Values{"limit": {strconv.Itoa(*limit)}}
		if *after != "" {
			v.Set("after", *after)
		}
		return c.getSection(ctx, "sagas", "stuck?"+v.Encode(), true)
	case "show":
		fs := flag.NewFlagSet("show", flag.ContinueOnError)
		pos, err := c.parse(fs, args, 1, 1, "zest sagas show ID")
		if err != nil {
			return err
		}
		return c.getSection(ctx, "sagas", "saga/"+url.PathEscape(pos[0]), false)
	case "resolve":
		fs := flag.NewFlagSet("resolve", flag.ContinueOnError)
		action := fs.String("action", "", "retry, skip or abort")
		note := fs.String("note", "", "why (recorded with the resolution)")
		dry := fs.Bool("dry-run", false, "show the saga; change nothing")
		what := "zest sagas resolve ID --action retry|skip|abort --note TEXT [--dry-run]"
		pos, err := c.parse(fs, args, 1, 1, what)
		if err != nil {
			return err
		}
		switch *action {
		case "retry", "skip", "abort":
		default:
			return usageErr("usage: --action must be retry, skip or abort (%s)", what)
		}
		if *note == "" {
			return usageErr("usage: --note is required: say why (%s)", what)
		}
		if *dry {
			fmt.Fprintf(c.out, "dry run: would %s saga %s\n", *action, clean(pos[0]))
			return c.getSection(ctx, "sagas", "saga/"+url.PathEscape(pos[0]), false)
		}
		return c.postSection(ctx, "sagas", "saga/"+url.PathEscape(pos[0])+"/resolve", map[string]string{"action": *action, "note": *note},
			fmt.Sprintf("saga %s: %s recorded", clean(pos[0]), *action))
	}
	return usageErr("usage: zest sagas stuck|show|resolve (not %q)", sub)
}

func (c *cli) cmdTokens(ctx context.Context, sub string, args []string) error {
	fs := flag.NewFlagSet(sub, flag.ContinueOnError)
	scope := fs.String("scope", "", "the key's scope (whose key it is)")
	scene := fs.String("scene", "", `the key's scene (idem's HTTP middleware uses "http")`)
	switch sub {
	case "get", "show":
		pos, err := c.parse(fs, args, 1, 1, "zest tokens get ID [--scope S] [--scene X]")
		if err != nil {
			return err
		}
		v := url.Values{"scope": {*scope}, "id": {pos[0]}, "scene": {*scene}}
		return c.getSection(ctx, "tokens", "token?"+v.Encode(), false)
	case "forget":
		note := fs.String("note", "", "why (recorded with the action)")
		dry := fs.Bool("dry-run", false, "show the token; change nothing")
		pos, err := c.parse(fs, args, 1, 1, "zest tokens forget ID [--scope S] [--scene X] [--note TEXT] [--dry-run]")
		if err != nil {
			return err
		}
		key := fmt.Sprintf("%s/%s/%s", *scope, pos[0], *scene)
		if *dry {
			fmt.Fprintf(c.out, "dry run: would forget token %s\n", clean(key))
			v := url.Values{"scope": {*scope}, "id": {pos[0]}, "scene": {*scene}}
			return c.getSection(ctx, "tokens", "token?"+v.Encode(), false)
		}
		body := map[string]string{"scope": *scope, "id": pos[0], "scene": *scene, "note": *note}
		return c.postSection(ctx, "tokens", "forget", body, fmt.Sprintf("token %s forgotten", clean(key)))
	}
	return usageErr("usage: zest tokens get|forget (not %q)", sub)
}

// getSection prints a section's answer: a Page as a table of its items, an
// object as key/value lines, or the JSON with --json.
func (c *cli) getSection(ctx context.Context, section, path string, page bool) error {
	raw, err := c.call(ctx, "GET", section+"/"+path, nil, nil)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	return c.printGeneric(raw, page)
}

func (c *cli) postSection(ctx context.Context, section, path string, body any, done string) error {
	raw, err := c.call(ctx, "POST", section+"/"+path, body, nil)
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	fmt.Fprintln(c.out, done)
	return nil
}
