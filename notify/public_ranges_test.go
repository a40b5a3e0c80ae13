package notify

import (
	"net/netip"
	"testing"
)

// TestPublicRefusesReservedRanges: ranges that are not public unicast, which Public let
// through before the session review: documentation, benchmarking, SRv6 and the 6to4 relay
// anycast (besides those TestClientRefusesInternalTargets dials).
func TestPublicRefusesReservedRanges(t *testing.T) {
	for _, s := range []string{
		"3fff::1",         // documentation (RFC 9637, 3fff::/20)
		"2001:2::1",       // benchmarking (RFC 5180, 2001:2::/48)
		"5f00::1",         // SRv6 SIDs (RFC 9602, 5f00::/16), not globally routable
		"192.88.99.1",     // 6to4 relay anycast (deprecated, RFC 7526), embeds a relay
		"::ffff:0:7f00:1", // IPv4-translated (SIIT)
		"100::1",          // discard-only
	} {
		if Public(netip.MustParseAddr(s)) {
			t.Errorf("Public(%s) = true; want false", s)
		}
	}
	for _, s := range []string{"8.8.8.8", "2606:4700:4700::1111"} {
		if !Public(netip.MustParseAddr(s)) {
			t.Errorf("Public(%s) = false; want true", s)
		}
	}
}
