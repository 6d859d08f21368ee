package admin

import (
	"encoding/base64"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/zest-stm/zest/effectqueue"
)

func TestRenderPayload(t *testing.T) {
	item := func(b []byte) effectqueue.Item {
		return effectqueue.Item{Entry: effectqueue.Entry{Kind: "k", Payload: b}}
	}
	bin := []byte{0, 1, 2, 0xff, 0xfe}
	long := strings.Repeat("é", 40) // 80 bytes
	cases := []struct {
		name      string
		format    func(effectqueue.Item) (string, bool)
		payload   []byte
		enc       string
		wantEnc   string
		wantData  string
		truncated bool
		fmtErr    string
	}{
		{"text", nil, []byte("hello\n\tworld"), "", "text", "hello\n\tworld", false, ""},
		{"empty", nil, nil, "", "text", "", false, ""},
		{"binary", nil, bin, "", "base64", base64.StdEncoding.EncodeToString(bin), false, ""},
		{"control chars", nil, []byte("a\x1b[2Jb"), "", "base64", base64.StdEncoding.EncodeToString([]byte("a\x1b[2Jb")), false, ""},
		{"invalid utf8", nil, []byte("a\xc3"), "", "base64", base64.StdEncoding.EncodeToString([]byte("a\xc3")), false, ""},
		{"hex on request", nil, []byte("hi"), "hex", "hex", "6869", false, ""},
		{"base64 on request", nil, []byte("hi"), "base64", "base64", "aGk=", false, ""},
		{"text cut at a rune", nil, []byte(long), "", "text", strings.Repeat("é", 16), true, ""},
		{"binary cut", nil, append(bin, make([]byte, 100)...), "hex", "hex", "000102fffe" + strings.Repeat("00", 27), true, ""},
		{"formatter", func(effectqueue.Item) (string, bool) { return "decoded", true }, bin, "", "formatted", "decoded", false, ""},
		{"formatter declines", func(effectqueue.Item) (string, bool) { return "", false }, []byte("t"), "", "text", "t", false, ""},
		{"formatter panics", func(effectqueue.Item) (string, bool) { panic("boom") }, []byte("t"), "", "text", "t", false, "FormatPayload panicked: boom"},
		{"formatter skipped for hex", func(effectqueue.Item) (string, bool) { return "decoded", true }, []byte("t"), "hex", "hex", "74", false, ""},
		{"formatter output capped", func(effectqueue.Item) (string, bool) { return long, true }, bin, "", "formatted", strings.Repeat("é", 16), true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := &handler{opts: Options{MaxPayload: 32, FormatPayload: c.format}}
			p := h.renderPayload(item(c.payload), c.enc)
			if p.Encoding != c.wantEnc || p.Data != c.wantData || p.Truncated != c.truncated || p.Size != len(c.payload) || !strings.Contains(p.FormatError, c.fmtErr) || (c.fmtErr == "" && p.FormatError != "") {
				t.Fatalf("renderPayload = %+v; want encoding %q data %q truncated %v formatError ~%q", p, c.wantEnc, c.wantData, c.truncated, c.fmtErr)
			}
			if !utf8.ValidString(p.Data) {
				t.Fatalf("rendered data is not valid UTF-8: %q", p.Data)
			}
		})
	}
}
