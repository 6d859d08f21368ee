package admin

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/zest-stm/zest/effectqueue"
)

// Payload is an entry's payload rendered for people, safely: capped at
// Options.MaxPayload bytes, binary data encoded.
type Payload struct {
	// Size is the payload's full size in bytes.
	Size int `json:"size"`
	// Encoding says how Data is written: "text" (UTF-8 as is),
	// "formatted" (by Options.FormatPayload), "base64" or "hex".
	Encoding string `json:"encoding"`
	Data     string `json:"data"`
	// Truncated says Data shows only the first bytes.
	Truncated bool `json:"truncated,omitempty"`
	// FormatError says why Options.FormatPayload was not used.
	FormatError string `json:"formatError,omitempty"`
}

// renderPayload renders it's payload. enc forces an encoding ("base64" or
// "hex"); "" lets the formatter, then text, then base64 decide.
func (h *handler) renderPayload(it effectqueue.Item, enc string) Payload {
	p := Payload{Size: len(it.Payload)}
	if enc == "" && h.opts.FormatPayload != nil {
		text, ok, err := h.format(it)
		switch {
		case err != nil:
			p.FormatError = err.Error()
		case ok:
			p.Encoding = "formatted"
			p.Data, p.Truncated = capText(text, h.opts.MaxPayload)
			return p
		}
	}
	b := it.Payload
	if len(b) > h.opts.MaxPayload {
		b, p.Truncated = b[:h.opts.MaxPayload], true
	}
	switch {
	case enc == "hex":
		p.Encoding, p.Data = "hex", hex.EncodeToString(b)
	case enc == "" && isText(b, p.Truncated):
		p.Encoding, p.Data = "text", string(b)
		if p.Truncated {
			p.Data, _ = capText(string(it.Payload), h.opts.MaxPayload)
		}
	default:
		p.Encoding, p.Data = "base64", base64.StdEncoding.EncodeToString(b)
	}
	return p
}

// format calls Options.FormatPayload, recovering its panic: a formatter bug
// must not break the page.
func (h *handler) format(it effectqueue.Item) (text string, ok bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			text, ok, err = "", false, fmt.Errorf("admin: FormatPayload panicked: %v", p)
		}
	}()
	text, ok = h.opts.FormatPayload(it)
	return text, ok, nil
}

// isText reports whether b is UTF-8 text without control characters other
// than whitespace. A cut payload may end inside a rune; that is allowed.
func isText(b []byte, cut bool) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			return cut && len(b) < utf8.UTFMax && !utf8.FullRune(b)
		}
		if unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' {
			return false
		}
		b = b[n:]
	}
	return true
}

// capText cuts s to at most n bytes at a rune boundary.
func capText(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i], true
}
