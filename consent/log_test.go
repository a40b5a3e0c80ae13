package consent

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLogsCarryNoPHI(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	d := part2ForB
	d.SourceAttachment = &Attachment{ContentType: "application/pdf", Data: []byte("CANARY-FORM-BYTES")}
	req := with(read("org-a", PurposeBreakGlass), func(r *Request) {
		b := btg(true)
		b.Text = "CANARY-BTG-TEXT"
		r.BreakGlass = b
	})
	log.Info("x", "directive", d, "attachment", *d.SourceAttachment, "request", req, "btg", *req.BreakGlass,
		"decision", Decide([]Directive{d}, req))
	out := buf.String()
	for _, canary := range []string{"CANARY-FORM-BYTES", "Q0FOQVJZ", "CANARY-BTG-TEXT"} {
		if strings.Contains(out, canary) {
			t.Errorf("log contains %q: %s", canary, out)
		}
	}
	for _, want := range []string{`"id":"part2-b"`, `"purpose":"BTG"`, `"reason":"break-glass"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s: %s", want, out)
		}
	}
}
