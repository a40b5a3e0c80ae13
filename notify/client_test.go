package notify

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/concord-hie/concord/internal/errs"
)

// fakeDNS resolves every name to loopback, as a hostile DNS record would.
type fakeDNS map[string][]netip.Addr

func (f fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// countingListener is a local receiver that counts every connection it accepts.
func countingListener(t *testing.T) (port string, count *atomic.Int64) {
	t.Helper()
	count = new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			count.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	_, port, _ = net.SplitHostPort(srv.Listener.Addr().String())
	return port, count
}

func TestClientRefusesInternalTargets(t *testing.T) {
	port, count := countingListener(t)
	// The redirector itself is allowed; it sends the client to the counting listener.
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:"+port+"/", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	redirAddr := netip.MustParseAddrPort(redirector.Listener.Addr().String())
	dns := fakeDNS{
		"localhost":             {netip.MustParseAddr("127.0.0.1")},
		"rebind.example":        {netip.MustParseAddr("127.0.0.1")},
		"mixed.example":         {netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("127.0.0.1")},
		"mapped.example":        {netip.MustParseAddr("::ffff:127.0.0.1")},
		"metadata.example":      {netip.MustParseAddr("169.254.169.254")},
		"127.0.0.1.nip.io":      {netip.MustParseAddr("127.0.0.1")},
		"internal.corp.example": {netip.MustParseAddr("10.1.2.3")},
	}
	client := NewClient(ClientConfig{Resolver: dns, Allow: []netip.AddrPort{redirAddr}})
	p := ":" + port
	targets := []string{
		"http://127.0.0.1" + p + "/",
		"http://2130706433" + p + "/",
		"http://0x7f000001" + p + "/",
		"http://0x7f.1" + p + "/",
		"http://0177.0.0.1" + p + "/",
		"http://017700000001" + p + "/",
		"http://127.1" + p + "/",
		"http://127.0.1" + p + "/",
		"http://127.000.000.001" + p + "/",
		"http://127.0.0.1." + p + "/",
		"http://[::ffff:127.0.0.1]" + p + "/",
		"http://[::ffff:7f00:1]" + p + "/",
		"http://[0:0:0:0:0:ffff:127.0.0.1]" + p + "/",
		"http://[::127.0.0.1]" + p + "/",
		"http://[::1]" + p + "/",
		"http://0.0.0.0" + p + "/",
		"http://0" + p + "/",
		"http://[::]" + p + "/",
		"http://localhost" + p + "/",
		"http://rebind.example" + p + "/",
		"http://mixed.example" + p + "/",
		"http://mapped.example" + p + "/",
		"http://127.0.0.1.nip.io" + p + "/",
		"http://169.254.169.254/latest/meta-data/",
		"http://[::ffff:169.254.169.254]/",
		"http://metadata.example/",
		"http://10.0.0.1/",
		"http://internal.corp.example/",
		"http://172.16.0.1/",
		"http://172.31.255.255/",
		"http://192.168.1.1/",
		"http://100.64.0.1/",
		"http://[fe80::1]/",
		"http://[fc00::1]/",
		"http://[64:ff9b::7f00:1]" + p + "/",
		"http://[2002:7f00:1::]" + p + "/",
		"http://[::ffff:0:7f00:1]" + p + "/", // IPv4-translated (SIIT) 127.0.0.1
		"http://[100::1]/",
		"http://user@127.0.0.1" + p + "/",
		"http://%31%32%37.0.0.1" + p + "/",
		redirector.URL + "/", // allowed hop, redirect to loopback refused
	}
	for _, target := range targets {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, target, strings.NewReader("{}"))
		if err != nil {
			continue // the URL does not even parse: nothing can be sent
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: delivered (status %d); want refused", target, resp.StatusCode)
			continue
		}
		if target != redirector.URL+"/" && errs.CodeOf(err) != errs.Forbidden && !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s: %v; want a refusal", target, err)
		}
	}
	if n := count.Load(); n != 0 {
		t.Fatalf("the loopback listener accepted %d connections; want 0", n)
	}
	if len(targets) < 20 {
		t.Fatalf("only %d encodings", len(targets))
	}
}

func TestClientAllowlistIsExact(t *testing.T) {
	port, count := countingListener(t)
	ap := netip.MustParseAddrPort("127.0.0.1:" + port)
	refused := NewClient(ClientConfig{Resolver: fakeDNS{}})
	allowed := NewClient(ClientConfig{Resolver: fakeDNS{"receiver.test": {ap.Addr()}}, Allow: []netip.AddrPort{ap}})
	post := func(c *http.Client, u string) error {
		resp, err := c.Post(u, "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := post(refused, "http://127.0.0.1:"+port+"/"); err == nil {
		t.Fatal("without the allowlist the loopback receiver was reached")
	}
	if count.Load() != 0 {
		t.Fatal("a refused request connected")
	}
	for _, u := range []string{"http://127.0.0.1:" + port + "/", "http://receiver.test:" + port + "/", "http://[::ffff:127.0.0.1]:" + port + "/"} {
		if err := post(allowed, u); err != nil {
			t.Fatalf("%s with the allowlist: %v", u, err)
		}
	}
	// The allowlist names an address and port, not a host: another port stays refused.
	if err := post(allowed, "http://127.0.0.1:1/"); errs.CodeOf(err) != errs.Forbidden && !strings.Contains(err.Error(), "refused") {
		t.Fatalf("other port: %v; want refused", err)
	}
	if count.Load() != 3 {
		t.Fatalf("%d connections; want 3", count.Load())
	}
}

func TestParseEndpoint(t *testing.T) {
	ok := []string{"https://ehr.example.org/hook", "https://ehr.example.org:8443/a?b=c", "http://93.184.216.34/x"}
	for _, s := range ok {
		if _, _, err := ParseEndpoint(s, nil); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	bad := []string{"ftp://ehr.example.org/", "/relative", "https://u:p@ehr.example.org/", "http://127.0.0.1/",
		"http://2130706433/", "http://0x7f.1/", "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/", "https://ehr.example.org:0/", "https:///x"}
	for _, s := range bad {
		if _, _, err := ParseEndpoint(s, nil); err == nil {
			t.Errorf("%s: accepted", s)
		}
	}
	_, o, _ := ParseEndpoint("HTTPS://EHR.example.org/x", nil)
	if o.String() != "https://ehr.example.org:443" {
		t.Fatalf("origin %s", o)
	}
}
