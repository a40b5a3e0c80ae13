package notify

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/concord-hie/concord/internal/errs"
)

// Resolver looks up the addresses of a host name. *net.Resolver satisfies it; tests pass
// their own to make a name resolve to loopback.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ClientConfig configures the outbound HTTP client that delivers notifications.
type ClientConfig struct {
	// Resolver resolves endpoint host names; nil means net.DefaultResolver.
	Resolver Resolver
	// Allow lists exact addresses (IP and port) that may be dialled although they are not
	// public: receivers on loopback in tests, an on-premises receiver in a deployment.
	// Nothing else that is loopback, private, link-local, shared, reserved or IPv4-mapped
	// to one of those is ever dialled.
	Allow []netip.AddrPort
	// Timeout bounds one request, connection included; 0 means 10 s.
	Timeout time.Duration
}

// errRefused is the cause of every refused target; its text names no address.
var errRefused = errors.New("notify: target address refused")

// NewClient returns an HTTP client for user-influenced URLs (subscription endpoints). It
// refuses redirects, ignores proxy variables, resolves each host itself, checks every
// address it resolves to, and dials only an address it checked, so DNS rebinding between
// check and connect is impossible. A refused target is errs.Forbidden.
func NewClient(cfg ClientConfig) *http.Client {
	g := &guard{resolver: cfg.Resolver, allow: map[netip.AddrPort]bool{}}
	if g.resolver == nil {
		g.resolver = net.DefaultResolver
	}
	for _, a := range cfg.Allow {
		g.allow[netip.AddrPortFrom(a.Addr().Unmap(), a.Port())] = true
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           g.dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          32,
		IdleConnTimeout:       60 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errs.E("notify.redirect", errs.Forbidden, "redirects are not followed", errRefused)
		},
	}
}

type guard struct {
	resolver Resolver
	allow    map[netip.AddrPort]bool
	dialer   net.Dialer
}

// dial resolves addr, refuses it unless every address is permitted, and dials the first
// checked address (never the name again).
func (g *guard) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	const op = "notify.dial"
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, errs.E(op, errs.Forbidden, "bad target address", errRefused)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, errs.E(op, errs.Forbidden, "bad target port", errRefused)
	}
	if err := checkHost(host); err != nil {
		return nil, err
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		if ips, err = g.resolver.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, errs.E(op, errs.Unavailable, "endpoint host does not resolve", err)
		}
	}
	if len(ips) == 0 {
		return nil, errs.E(op, errs.Unavailable, "endpoint host does not resolve")
	}
	for _, ip := range ips {
		ap := netip.AddrPortFrom(ip.Unmap().WithZone(""), uint16(port))
		if !g.allow[ap] && !Public(ip) {
			return nil, errs.E(op, errs.Forbidden, "the endpoint resolves to an address that is not allowed", errRefused)
		}
	}
	target := netip.AddrPortFrom(ips[0].Unmap().WithZone(""), uint16(port))
	return g.dialer.DialContext(ctx, network, target.String())
}

// special lists the non-public ranges beyond what netip's predicates cover.
var special = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (CGNAT)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated) and unspecified
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: embeds an IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated (SIIT): embeds an IPv4 address
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001:10::/28"),    // ORCHID (deprecated)
	netip.MustParsePrefix("2001:20::/28"),    // ORCHIDv2: identifiers, not routable
	netip.MustParsePrefix("2001:2::/48"),     // benchmarking
	netip.MustParsePrefix("3fff::/20"),       // documentation (RFC 9637)
	netip.MustParsePrefix("5f00::/16"),       // SRv6 segment identifiers, not globally routable
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast (deprecated): embeds a relay
	netip.MustParsePrefix("2002::/16"),       // 6to4: embeds an IPv4 address
	netip.MustParsePrefix("2001::/32"),       // Teredo
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fc00::/7"),        // unique local
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
}

// Public reports whether ip is a public unicast address: not loopback, private,
// link-local (169.254.169.254 included), unspecified, multicast, shared or reserved, also
// when written as an IPv4-mapped IPv6 address.
func Public(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() ||
		ip.IsLinkLocalUnicast() || ip.IsUnspecified() || ip.IsMulticast() {
		return false
	}
	for _, p := range special {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// checkHost refuses host spellings that resolvers read differently: numeric hosts that
// are not a canonical dotted quad or IPv6 literal (2130706433, 0x7f.1, 0177.0.0.1, 127.1),
// empty hosts and hosts with characters no DNS name has.
func checkHost(host string) error {
	const op = "notify.checkHost"
	h := strings.TrimSuffix(host, ".")
	if h == "" {
		return errs.E(op, errs.Forbidden, "the endpoint has no host", errRefused)
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		if h != host || ip.Is4() && ip.String() != h {
			return errs.E(op, errs.Forbidden, "the endpoint host is not a canonical address", errRefused)
		}
		return nil
	}
	labels := strings.Split(h, ".")
	last := strings.ToLower(labels[len(labels)-1])
	if last == "" || isNumeric(last) {
		// No top-level domain is numeric; a resolver (getaddrinfo, inet_aton) reads this
		// as an IPv4 address in decimal, octal or hex.
		return errs.E(op, errs.Forbidden, "the endpoint host is not a canonical address", errRefused)
	}
	for _, r := range h {
		if !(r == '-' || r == '.' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return errs.E(op, errs.Forbidden, "the endpoint host is not a DNS name", errRefused)
		}
	}
	return nil
}

func isNumeric(label string) bool {
	s := label
	if strings.HasPrefix(s, "0x") {
		s = s[2:]
		if s == "" {
			return true
		}
		for _, r := range s {
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
				return false
			}
		}
		return true
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Origin is an endpoint's scheme, host and port, compared exactly (never by prefix).
type Origin struct {
	Scheme string
	Host   string // lower case; an IPv6 literal without brackets
	Port   int
}

// String renders the origin as scheme://host:port.
func (o Origin) String() string {
	return o.Scheme + "://" + net.JoinHostPort(o.Host, strconv.Itoa(o.Port))
}

// ParseEndpoint checks an endpoint URL for a subscription or the endpoint allowlist and
// returns its origin: absolute http or https, no user information, no fragment, a host
// that passes the address-spelling checks, a port in range (the scheme's default if
// none). A literal address that is not public is refused here already unless allow
// names it. It does not resolve names: the dialer checks every resolved address.
func ParseEndpoint(raw string, allow []netip.AddrPort) (*url.URL, Origin, error) {
	const op = "notify.ParseEndpoint"
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" {
		return nil, Origin{}, errs.E(op, errs.Invalid, "the endpoint must be an absolute http(s) URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, Origin{}, errs.E(op, errs.Invalid, "the endpoint must use http or https")
	}
	if u.User != nil || u.Fragment != "" {
		return nil, Origin{}, errs.E(op, errs.Invalid, "the endpoint may not carry user information or a fragment")
	}
	host := strings.ToLower(u.Hostname())
	if err := checkHost(host); err != nil {
		return nil, Origin{}, err
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, Origin{}, errs.E(op, errs.Invalid, "the endpoint port is out of range")
		}
		port = n
	}
	if ip, err := netip.ParseAddr(host); err == nil && !Public(ip) {
		ok := false
		for _, a := range allow {
			ok = ok || netip.AddrPortFrom(ip.Unmap().WithZone(""), uint16(port)) == netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
		}
		if !ok {
			return nil, Origin{}, errs.E(op, errs.Forbidden, "the endpoint address is not allowed", errRefused)
		}
	}
	return u, Origin{Scheme: u.Scheme, Host: host, Port: port}, nil
}
