package admin

import (
	"bytes"
	"html/template"
	"net/http"
	"strconv"
)

var pageTmpl = template.Must(template.ParseFS(uiFS, "ui/index.html"))

// servePage serves the page with its settings in data attributes: the
// Content-Security-Policy allows no inline script.
func (h *handler) servePage(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	err := pageTmpl.Execute(&b, map[string]string{
		"Root":     h.opts.RootPath,
		"ReadOnly": strconv.FormatBool(h.opts.ReadOnly),
		"Refresh":  strconv.Itoa(h.opts.RefreshInterval),
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	w.Write(b.Bytes())
}
