package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// printGeneric prints JSON whose shape zest does not know in advance (a
// section's answer): a page of items as a table with a column per field, an
// object as sorted key/value lines.
func (c *cli) printGeneric(raw json.RawMessage, page bool) error {
	if page {
		var p struct {
			Items []map[string]any `json:"items"`
			Next  string           `json:"next"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return err
		}
		cols := columns(p.Items)
		up := make([]string, len(cols))
		for i, k := range cols {
			up[i] = strings.ToUpper(k)
		}
		tw := c.table(up...)
		for _, it := range p.Items {
			cells := make([]any, len(cols))
			for i, k := range cols {
				cells[i] = scalar(it[k])
			}
			row(tw, cells...)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if p.Next != "" {
			fmt.Fprintf(c.out, "more: --after %s\n", p.Next)
		}
		return nil
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return c.printJSON(raw)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\n", clean(k), clean(scalar(obj[k])))
	}
	return tw.Flush()
}

// columns are the fields of the items, in first-seen order of a sorted walk.
func columns(items []map[string]any) []string {
	seen := map[string]bool{}
	var cols []string
	for _, it := range items {
		ks := make([]string, 0, len(it))
		for k := range it {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			if !seen[k] {
				seen[k] = true
				cols = append(cols, k)
			}
		}
	}
	return cols
}

// scalar renders a JSON value in one line.
func scalar(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return fmt.Sprint(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}
