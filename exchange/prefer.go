package exchange

import (
	"strings"
)

// preferHas reports whether the Prefer header values (RFC 7240) hold preference pref
// ("respond-async", "handling=lenient", "presigned-url"), compared without case or spaces.
func preferHas(values []string, pref string) bool {
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.ReplaceAll(strings.TrimSpace(p), " ", ""), pref) {
				return true
			}
		}
	}
	return false
}
