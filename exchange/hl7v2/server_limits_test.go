package hl7v2

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// TestServerUnauthenticatedSilentPeersFreeTheirSlots: a peer the Authenticator refuses
// (an address not on the allowlist) that connects and sends nothing is closed after
// UnauthTimeout, not after IdleTimeout (5 minutes by default), so a few such peers
// cannot lock every member out of the listener by holding its MaxConns slots. Here
// MaxConns is 2 and two refused peers connect and stay silent; a registered member gets
// in once they are closed, and the refused peers see their connections closed.
func TestServerUnauthenticatedSilentPeersFreeTheirSlots(t *testing.T) {
	refused := errors.New("address not allowed")
	auth := func(_ context.Context, c ConnInfo) (string, error) {
		if c.ID <= 2 {
			return "", refused
		}
		return "member", nil
	}
	const unauth = 300 * time.Millisecond
	addr := startServer(t, &Server{MaxConns: 2, Authenticate: auth, UnauthTimeout: unauth,
		Handler: HandlerFunc(func(context.Context, ConnInfo, *Message) Ack { return Accept() })})
	silent := []net.Conn{dial(t, addr), dial(t, addr)}
	start := time.Now()
	for {
		time.Sleep(100 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ack, err := NewClient(dial(t, addr)).Send(ctx, msgWithID("LEGIT"))
		cancel()
		if err == nil && ack.Get("MSA-1") == "AA" {
			break
		}
		if time.Since(start) > 10*unauth {
			t.Fatalf("registered member still locked out by two silent unauthenticated peers after %v: %v", time.Since(start), err)
		}
	}
	for i, c := range silent {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("silent peer %d: connection still open (read %d, %v)", i+1, n, err)
		}
	}
}

// TestServerMaxConnsPerAddr: one IP address may hold at most MaxConnsPerAddr of the
// MaxConns slots; a connection over that is closed at once, another address still gets
// in, and a slot given back can be taken again. Without it, one peer that reaches the
// port takes every slot by opening connections faster than timeouts close them.
func TestServerMaxConnsPerAddr(t *testing.T) {
	addr := startServer(t, &Server{MaxConns: 10, MaxConnsPerAddr: 2,
		Handler: HandlerFunc(func(context.Context, ConnInfo, *Message) Ack { return Accept() })})
	send := func(c net.Conn, id string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := Send(ctx, c, msgWithID(id))
		return err
	}
	first, second := dial(t, addr), dial(t, addr)
	for _, c := range []net.Conn{first, second} {
		if err := send(c, "HOLD"); err != nil {
			t.Fatal(err)
		}
	}
	if err := send(dial(t, addr), "OVER"); err == nil {
		t.Error("third connection from one address served over MaxConnsPerAddr")
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	if other, err := d.Dial("tcp", addr); err != nil {
		t.Logf("no second loopback address (%v): not checking another address", err)
	} else {
		t.Cleanup(func() { other.Close() })
		if err := send(other, "OTHER"); err != nil {
			t.Errorf("another address refused: %v", err)
		}
	}
	first.Close()
	deadline := time.Now().Add(3 * time.Second)
	for send(dial(t, addr), "AGAIN") != nil {
		if time.Now().After(deadline) {
			t.Fatal("a slot given back by a closed connection was not freed")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAddrKey: MaxConnsPerAddr counts an IPv4 peer by its address (also written
// IPv4-mapped) and an IPv6 peer by its /64, since a host given a /64 could open every
// connection from another address of it (session review).
func TestAddrKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"2001:db8:1:2:a::1":    "2001:db8:1:2::",
		"2001:db8:1:2:ffff::9": "2001:db8:1:2::",
		"fe80::1%eth0":         "fe80::",
	} {
		if got := addrKey(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("addrKey(%s) = %s; want %s", in, got, want)
		}
	}
}
