package main

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

// TestIPExtractor: the audit's source address is the peer's unless the peer is a
// configured proxy, and then the nearest forwarded address that is not a proxy; loopback
// and private peers are not believed by default, and a garbled header falls back to the
// peer.
func TestIPExtractor(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00::1/128")}
	tests := []struct {
		name    string
		trusted []netip.Prefix
		peer    string
		xff     []string
		want    string
	}{
		{"no proxies: header ignored", nil, "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"no proxies: loopback peer not believed", nil, "127.0.0.1:5000", []string{"198.51.100.1"}, "127.0.0.1"},
		{"untrusted peer: header ignored", proxies, "203.0.113.9:5000", []string{"198.51.100.1"}, "203.0.113.9"},
		{"private peer outside the ranges", proxies, "10.0.1.5:5000", []string{"198.51.100.1"}, "10.0.1.5"},
		{"loopback peer outside the ranges", proxies, "127.0.0.1:5000", []string{"198.51.100.1"}, "127.0.0.1"},
		{"trusted peer", proxies, "10.0.0.7:5000", []string{"198.51.100.1"}, "198.51.100.1"},
		{"trusted chain", proxies, "10.0.0.7:5000", []string{"198.51.100.1, 10.0.0.3"}, "198.51.100.1"},
		{"spoofed leftmost entry", proxies, "10.0.0.7:5000", []string{"192.0.2.66, 198.51.100.1"}, "198.51.100.1"},
		{"several headers", proxies, "10.0.0.7:5000", []string{"192.0.2.66", "198.51.100.1"}, "198.51.100.1"},
		{"garbled entry", proxies, "10.0.0.7:5000", []string{"198.51.100.1, not-an-ip"}, "10.0.0.7"},
		{"ipv6 proxy", proxies, "[fd00::1]:5000", []string{"2001:db8::5"}, "2001:db8::5"},
		{"no header", proxies, "10.0.0.7:5000", nil, "10.0.0.7"},
		{"all hops trusted, mapped form", proxies, "10.0.0.7:5000", []string{"0:0:0:0:0:ffff:a00:5"}, "10.0.0.5"},
		{"mapped client", proxies, "10.0.0.7:5000", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/fhir/metadata", nil)
			r.RemoteAddr = tt.peer
			for _, h := range tt.xff {
				r.Header.Add("X-Forwarded-For", h)
			}
			r.Header.Set("X-Real-Ip", "192.0.2.99")
			if got := ipExtractor(tt.trusted)(r); got != tt.want {
				t.Fatalf("source %q; want %q", got, tt.want)
			}
		})
	}
}
