package portal

import (
	"context"
	"strings"
	"testing"

	"github.com/concord-hie/concord/internal/testkit"
)

// TestNoLabsNoEmptyShareForm: with no lab results the labs page offers no share button
// and the share page no empty "one result" list, but says why.
func TestNoLabsNoEmptyShareForm(t *testing.T) {
	t.Parallel()
	pool := testkit.DB(t)
	alog := auditLog(t, pool)
	e := newEnv(t, envOpts{shares: NewShareStore(pool).WithAudit(alog), shared: noSharedLabs{}})
	e.records.mu.Lock()
	e.records.labs = map[string][]LabResult{}
	e.records.mu.Unlock()
	c := newClient(t)
	e.signIn(t, c, "alice", "alice-pw")
	labs := c.getPrivate(e.base, "/labs").body
	if !strings.Contains(labs, "No lab results yet") || strings.Contains(labs, `href="/labs/share"`) {
		t.Errorf("labs page with no results:\n%s", labs)
	}
	share := c.getPrivate(e.base, "/labs/share").body
	if strings.Contains(share, `<select id="result"`) || !strings.Contains(share, "You have no lab results yet") {
		t.Errorf("share page with no results:\n%s", share)
	}
}

// noSharedLabs shows nothing through a share link.
type noSharedLabs struct{}

func (noSharedLabs) SharedLabs(context.Context, Viewer, ShareLink) ([]LabResult, error) {
	return nil, nil
}

func TestLabStatusWords(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"final", ""}, {"", ""}, {"preliminary", "Preliminary, may change"}, {"corrected", "Corrected"},
		{"entered-in-error", "Entered in error"}, {"odd", "odd"},
	} {
		if got := labStatusWords(tt.in); got != tt.want {
			t.Errorf("labStatusWords(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
