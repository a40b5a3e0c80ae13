package portal

import (
	"net/url"
	"strings"
)

// maxReturnPath bounds a return path. An invitation path is 54 bytes; no page of the
// portal needs anything near this.
const maxReturnPath = 512

// localPath returns p when it is safe to send a browser to after sign-in, and "" when it
// is not. Safe means a path on this site, with an optional query: it starts with a single
// "/"; it holds only printable ASCII without spaces; it has no "//" anywhere, no backslash,
// no "." or ".." segment, no percent-encoded slash, backslash or control character (which
// a browser or proxy could turn back into one of those), no scheme and no host; and it is
// at most maxReturnPath bytes. A path may carry a secret (an invitation token): callers
// keep it server-side and never log it.
func localPath(p string) string {
	if p == "" || len(p) > maxReturnPath || p[0] != '/' {
		return ""
	}
	for i := 0; i < len(p); i++ {
		if b := p[i]; b <= ' ' || b >= 0x7f || b == '\\' {
			return ""
		}
	}
	if strings.Contains(p, "//") {
		return ""
	}
	lower := strings.ToLower(p)
	for _, enc := range []string{"%2f", "%5c", "%0", "%1", "%7f"} {
		if strings.Contains(lower, enc) {
			return ""
		}
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return ""
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return ""
		}
	}
	return p
}
