package portal

import (
	"strings"
	"testing"
)

// TestLocalPath: only a path on this site survives as a return target after sign-in;
// everything a browser could read as another site, and anything odd, becomes "".
func TestLocalPath(t *testing.T) {
	t.Parallel()
	invite := "/caregiver/" + strings.Repeat("A", 43)
	tests := []struct {
		name, in, want string
	}{
		{"invitation", invite, invite},
		{"root", "/", "/"},
		{"page", "/labs", "/labs"},
		{"query", "/officer?patient=p-1&outcome=deny", "/officer?patient=p-1&outcome=deny"},
		{"base64url token", "/caregiver/ab-_CD09", "/caregiver/ab-_CD09"},

		{"empty", "", ""},
		{"relative", "labs", ""},
		{"protocol-relative", "//evil.example", ""},
		{"protocol-relative with path", "//evil.example/caregiver/x", ""},
		{"slash backslash", "/\\evil", ""},
		{"backslash slash", "/\\/evil.example", ""},
		{"backslash inside", "/caregiver\\x", ""},
		{"absolute https", "https://x", ""},
		{"absolute http to self-like host", "http://127.0.0.1/labs", ""},
		{"javascript scheme", "javascript:alert(1)", ""},
		{"data scheme", "data:text/html,x", ""},
		{"double slash later", "/labs//evil.example", ""},
		{"encoded slashes", "/%2F%2Fevil.example", ""},
		{"encoded slashes lower case", "/%2f%2fevil.example", ""},
		{"encoded backslash", "/%5Cevil.example", ""},
		{"encoded newline", "/labs%0d%0aSet-Cookie:x", ""},
		{"encoded tab", "/%09/evil.example", ""},
		{"encoded delete", "/labs%7F", ""},
		{"tab", "/\t/evil.example", ""},
		{"newline", "/labs\nLocation: //evil.example", ""},
		{"carriage return", "/labs\r", ""},
		{"NUL", "/labs\x00", ""},
		{"space", "/ /evil.example", ""},
		{"non-ASCII", "/caf\u00e9", ""},
		{"unicode slash look-alike", "/\u2215evil.example", ""},
		{"dot segment", "/./labs", ""},
		{"dot-dot segment", "/caregiver/../labs", ""},
		{"trailing dot-dot", "/labs/..", ""},
		{"userinfo-like", "/@evil.example", "/@evil.example"}, // a path on this site, harmless
		{"too long", "/" + strings.Repeat("a", maxReturnPath), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := localPath(tt.in); got != tt.want {
				t.Errorf("localPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
